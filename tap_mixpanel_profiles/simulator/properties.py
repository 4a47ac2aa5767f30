"""The simulator's property schema: ``GET /api/2.0/engage/properties`` (undocumented in Mixpanel).

Mixpanel answers ``{"status": "ok", "results": {"<name>": {"count": N, "type": T}, ...}}``, the
most common properties first, with ``limit`` bounding how many and ``data_group_id`` naming the
group profiles to describe. ``T`` is one of ``string``, ``number``, ``boolean``, ``datetime``,
``list``, ``object``: the type Mixpanel saw most often for the property, not a guarantee (a
``number`` property may hold text on some profiles, a ``datetime`` one ``"1638298874"``).

Here the listing is computed from the data set itself, once per data set: ``count`` is the
number of profiles where the property is set (not null), the type the commonest one of its
values (ties: the first seen). ``properties_endpoint`` (a runtime knob) makes the endpoint
answer like a project where it is ``missing`` (404), ``forbidden`` (403) or ``junk`` (a 200
whose body is no listing), for the tap's fallbacks.
"""

from __future__ import annotations

import collections
import re
import typing as t

if t.TYPE_CHECKING:
    from .data import ProfileRecord

__all__ = ["PROPERTIES_PATHS", "PROPERTY_ENDPOINT_MODES", "mixpanel_type", "property_listing"]

PROPERTIES_PATHS = frozenset({"/api/2.0/engage/properties", "/api/query/engage/properties"})
PROPERTY_ENDPOINT_MODES = ("ok", "missing", "forbidden", "junk")

_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


def mixpanel_type(value: t.Any) -> str | None:
    """The type Mixpanel's property schema would give one value (None for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "datetime" if _DATETIME.fullmatch(value) else "string"
    if isinstance(value, list):
        return "list"
    return "object"


def property_listing(records: t.Sequence[ProfileRecord]) -> list[tuple[str, int, str]]:
    """(name, count, commonest type) of every property of `records`, most common first."""
    counts: collections.Counter[str] = collections.Counter()
    types: dict[str, collections.Counter[str]] = {}
    for record in records:
        for name, value in record.properties.items():
            kind = mixpanel_type(value)
            if kind is None:
                continue
            counts[name] += 1
            seen = types.get(name)
            if seen is None:
                seen = types[name] = collections.Counter()
            seen[kind] += 1
    listing = [(name, count, types[name].most_common(1)[0][0]) for name, count in counts.items()]
    listing.sort(key=lambda item: (-item[1], item[0]))
    return listing


def listing_body(listing: list[tuple[str, int, str]], limit: int) -> dict[str, t.Any]:
    """The endpoint's answer for the first `limit` properties of `listing`."""
    return {
        "status": "ok",
        "results": {name: {"count": count, "type": kind} for name, count, kind in listing[:limit]},
    }
