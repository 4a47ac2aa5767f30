"""Profile records and data sets of the Mixpanel simulator, and its timestamps.

Each profile is held as an immutable :class:`ProfileRecord` that carries its JSON serialization,
computed once. Serving a page then only joins pre-built strings, which keeps the simulator from
being the bottleneck of the tap's throughput benchmark. Mutations (``touch``) replace the record
instead of editing it, so sessions that snapshotted the old record keep serving it unchanged.

The user profiles are generated in :mod:`.users`, the group profiles in :mod:`.groups`.
"""

from __future__ import annotations

import calendar
import contextlib
import gc
import json
import random
import threading
import time
import typing as t
from datetime import datetime, timezone

if t.TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "DataSet",
    "ProfileRecord",
    "dumps",
    "format_ts",
    "gc_paused",
    "now_utc_str",
    "parse_now",
    "serialize",
]

TS_FORMAT = "%Y-%m-%dT%H:%M:%S"
LAST_SEEN_SPAN_SECONDS = 730 * 86_400  # $last_seen spread over the last ~2 years
MISSING_LAST_SEEN_RATE = 0.05


class ProfileRecord:
    """One profile as served: ``{"$distinct_id": ..., "$properties": {...}}`` plus its JSON.

    The UTF-8 JSON is kept as ``parts`` (a per-profile head and a tail that is usually shared
    with other profiles built from the same template), so a page is one ``bytes.join``.
    """

    __slots__ = ("distinct_id", "index", "parts", "properties")

    def __init__(
        self,
        index: int,
        distinct_id: str,
        properties: dict[str, t.Any],
        parts: tuple[bytes, bytes] | None = None,
    ) -> None:
        self.index = index
        self.distinct_id = distinct_id
        self.properties = properties
        self.parts = parts if parts is not None else (serialize(distinct_id, properties), b"")

    @property
    def json(self) -> bytes:
        """The serialized result entry, exactly as it appears in a page."""
        return self.parts[0] + self.parts[1]

    def with_properties(self, **updates: t.Any) -> ProfileRecord:
        """Return a new record with some properties replaced (the original stays untouched)."""
        return ProfileRecord(self.index, self.distinct_id, {**self.properties, **updates})

    def projected_json(self, keys: list[str]) -> bytes:
        """This profile's JSON, ``$properties`` restricted to ``keys`` (``output_properties``)."""
        props = self.properties
        return serialize(self.distinct_id, {k: props[k] for k in keys if k in props})


class DataSet:
    """One Engage data set: the user profiles, or the profiles of one data group.

    Besides the records (in served order, ``records[i].index == i``) it keeps a pool of
    distinct_ids that have no profile here (the "orphans" that cohort queries with
    ``include_all_users`` return): a deterministic sequence, grown on demand, so the first ``n``
    are the same whoever asks first.
    """

    def __init__(self, records: list[ProfileRecord], orphan_seed: str) -> None:
        self.records = records
        self.index_by_id = {r.distinct_id: r.index for r in records}
        self._orphan_rng = random.Random(orphan_seed)
        self._orphans: list[ProfileRecord] = []
        self._orphan_ids: set[str] = set()
        self._lock = threading.Lock()

    def by_ids(self, ids: list[str]) -> list[ProfileRecord]:
        """The current records of these distinct_ids, in served order (unknown ids skipped)."""
        known = self.index_by_id
        return [self.records[i] for i in sorted({known[d] for d in ids if d in known})]

    def orphans(self, count: int) -> list[ProfileRecord]:
        """The first ``count`` orphans: ``{"$distinct_id": "$device:<hex>", "$properties": {}}``."""
        with self._lock:
            while len(self._orphans) < count:
                distinct_id = f"$device:{self._orphan_rng.getrandbits(64):016x}"
                if distinct_id in self.index_by_id or distinct_id in self._orphan_ids:
                    continue
                self._orphan_ids.add(distinct_id)
                self._orphans.append(ProfileRecord(-1, distinct_id, {}))
            return self._orphans[:count]


def serialize(distinct_id: str, properties: dict[str, t.Any]) -> bytes:
    """Serialize one result entry as UTF-8 (not ``\\u`` escapes), like Mixpanel's API."""
    return dumps({"$distinct_id": distinct_id, "$properties": properties}).encode()


def dumps(value: t.Any) -> str:
    """JSON text as Mixpanel serves it: non-ASCII characters as they are, not ``\\u`` escapes."""
    return json.dumps(value, ensure_ascii=False)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building many small containers (it only slows that down)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def now_utc_str() -> str:
    """Current UTC time truncated to seconds, in Mixpanel's ``$last_seen`` format."""
    return datetime.now(timezone.utc).strftime(TS_FORMAT)


def parse_now(now: str | None) -> int:
    """Epoch seconds for a ``YYYY-MM-DDTHH:MM:SS`` string (UTC), or the current time for None."""
    if now is None:
        return int(time.time())
    return calendar.timegm(time.strptime(now[:19], TS_FORMAT))


def format_ts(epoch: int) -> str:
    return time.strftime(TS_FORMAT, time.gmtime(epoch))
