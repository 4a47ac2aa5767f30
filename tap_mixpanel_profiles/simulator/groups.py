"""Group profiles of the Mixpanel simulator: the ``data_groups`` spec and its data sets.

Mixpanel's group analytics keeps one profile per value of a group key (``company_id``,
``account_id``, ...); Engage serves them with ``data_group_id`` (Project Settings -> Group Keys),
and each result's ``$distinct_id`` is the group's key value. Here every configured data group has
its own deterministic data set, derived from (seed, data_group_id): awkward key values (unicode,
quotes, spaces, digits only), nested and null properties, ``$last_seen`` over the last two years
(missing on ~5 %, like user profiles) so incremental ``where`` filters work the same way.
"""

from __future__ import annotations

import random
import re
import typing as t
from dataclasses import dataclass

from .data import LAST_SEEN_SPAN_SECONDS, MISSING_LAST_SEEN_RATE, ProfileRecord, format_ts

__all__ = ["DataGroupSpec", "generate_group_profiles", "parse_data_groups"]

_KEY_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$ .-]*")

_WORDS = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Müller & Söhne",
    "Soylent",
    "Ōkami",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Łódź Works",
    "北京科技",
    'The "Best" Co',
    "O'Reilly",
]
_SUFFIXES = ["GmbH", "Inc.", "S.A.", "株式会社", "Ltd", "LLC", "AG", ""]
_INDUSTRIES = ["Software", "Finance", "Retail", "Healthcare", "Éducation", "物流", None]
_PLANS = ["free", "team", "business", "enterprise", None]
_REGIONS = ["EMEA", "AMER", "APAC", None]


@dataclass(frozen=True)
class DataGroupSpec:
    """One entry of the ``data_groups`` spec: ``DATA_GROUP_ID:GROUP_KEY:PROFILES``."""

    id: int
    key: str
    profiles: int


def parse_data_groups(spec: str) -> tuple[DataGroupSpec, ...]:
    """Parse ``"1:company_id:2000,2:account_id:300"`` (empty: no data groups).

    Raises ValueError naming the entry for anything else.
    """
    groups: list[DataGroupSpec] = []
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        fields = entry.split(":")
        try:
            if len(fields) != 3:
                raise ValueError("expected DATA_GROUP_ID:GROUP_KEY:PROFILES")
            group_id, key, profiles = int(fields[0]), fields[1].strip(), int(fields[2])
            if group_id < 0 or profiles < 0:
                raise ValueError("the id and the profile count must be >= 0")
            if not _KEY_RE.fullmatch(key):
                raise ValueError(f"invalid group key {key!r}")
        except ValueError as exc:
            raise ValueError(f"data_groups entry {entry!r}: {exc}") from None
        if any(g.id == group_id for g in groups):
            raise ValueError(f"data_groups: data_group_id {group_id} is configured twice")
        groups.append(DataGroupSpec(group_id, key, profiles))
    return tuple(groups)


def _key_value(i: int, rng: random.Random) -> str:
    """Awkward but unique group key values: every pattern embeds ``i`` unambiguously."""
    kind = rng.randrange(7)
    if kind == 0:
        return f"acme-{i}"
    if kind == 1:
        return str(100_000 + i)
    if kind == 2:
        return f"Ünïcödé Café №{i}"
    if kind == 3:
        return f'quote"d\\{i}'
    if kind == 4:
        return f"  padded {i}  "
    if kind == 5:
        return f"org_{i}@tenant.example"
    return f"株式会社-{i}"


def generate_group_profiles(group: DataGroupSpec, seed: int, now: int) -> list[ProfileRecord]:
    """The ``group.profiles`` profiles of one data group, deterministic from (seed, group id)."""
    rng = random.Random(f"{seed}:group:{group.id}")
    rnd = rng.random
    records: list[ProfileRecord] = []
    for i in range(group.profiles):
        key_value = _key_value(i, rng)
        seen = now - int(rnd() * LAST_SEEN_SPAN_SECONDS)
        word = _WORDS[rng.randrange(len(_WORDS))]
        suffix = _SUFFIXES[rng.randrange(len(_SUFFIXES))]
        props: dict[str, t.Any] = {
            "$name": f"{word} {suffix}".strip(),
            "$created": format_ts(seen - int(rnd() * LAST_SEEN_SPAN_SECONDS)),
        }
        if rnd() >= MISSING_LAST_SEEN_RATE:
            props["$last_seen"] = format_ts(seen)
        props.update(
            {
                "plan": _PLANS[rng.randrange(len(_PLANS))],
                "industry": _INDUSTRIES[rng.randrange(len(_INDUSTRIES))],
                "employees": rng.randrange(1, 50_000) if rnd() < 0.9 else None,
                "mrr": round(rnd() * 100_000, 2),
                "is_customer": rnd() < 0.6,
                "region": _REGIONS[rng.randrange(len(_REGIONS))],
                "tags": [f"t{rng.randrange(20)}" for _ in range(rng.randrange(4))],
                "notes": ["", "multi\nline", 'says "hi"', "emoji 🏢", "back\\slash"][
                    rng.randrange(5)
                ],
            }
        )
        if rnd() < 0.5:
            # A custom property named like the tap's own column, and a case twin of "plan".
            props["data_group_id"] = f"legacy-{rng.randrange(7)}"
            props["Plan"] = ["Gold", "Silver"][rng.randrange(2)]
        if rnd() < 0.3:
            props["billing"] = {
                "currency": ["EUR", "USD", "JPY"][rng.randrange(3)],
                "address": {"city": ["Zürich", "東京", "São Paulo"][rng.randrange(3)]},
                "vat_id": None,
            }
        records.append(ProfileRecord(i, key_value, props))
    return records
