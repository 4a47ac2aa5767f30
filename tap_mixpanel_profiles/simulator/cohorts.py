"""Cohorts of the Mixpanel simulator: the ``cohorts`` spec, deterministic membership, and the
answer of the cohorts list (``POST /api/query/cohorts/list``, legacy ``GET /api/2.0/cohorts/list``).

The spec is a comma list of ``ID:SHARE[:orphans=N][:group=K][:hidden]``:

* ``SHARE`` (0..1): the fraction of the data set's profiles that are members. Each profile is
  drawn independently from (seed, cohort id), so cohorts overlap: a person can be in several.
* ``orphans=N``: N more members that have no profile, the distinct_ids Engage returns with
  ``include_all_users`` (its default for a cohort query). Every cohort of a data set takes the
  first N of one shared pool, so these overlap too.
* ``group=K``: a cohort of data group K's profiles (the list shows ``data_group_id``). If K is
  not in ``data_groups`` (a deleted group key), the list still shows the cohort but querying
  its members answers 404 ``{"error": "Missing Datagroup"}``, as Mixpanel does.
* ``hidden``: ``is_visible`` is false (the cohort is still listed and queryable).

Members are served in profile order, with the orphans at seeded positions among them. A
cohort's ``count`` is its member count with the orphans (what a default query returns); for a
cohort of a missing data group it is the stale ``SHARE x user profiles + N``.
"""

from __future__ import annotations

import random
import threading
import time
import typing as t
from dataclasses import dataclass

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from .data import DataSet, ProfileRecord

__all__ = ["DEFAULT_COHORTS", "CohortSet", "CohortSpec", "MissingDatagroup", "parse_cohorts"]

DEFAULT_COHORTS = (
    "101:0.6:orphans=40,102:0.3:orphans=25:hidden,103:0,104:0.05:group=3,105:0.5:group=1"
)
CREATED_FORMAT = "%Y-%m-%d %H:%M:%S"

_NAMES = [
    "Power users 🚀",
    'Churn risk: "at risk" users',
    "Nobody (empty)",
    "Legacy accounts (group key deleted)",
    "Enterprise companies",
    "Trial → paid",
    "Ünïcödé & <b>html</b> cohort",
    "Dormant 90+ days",
]
_DESCRIPTIONS = [
    "Active on at least 20 of the last 30 days",
    'multi\nline, "quoted" and \\ backslash',
    "",
    "Its group key was deleted: members cannot be queried",
    "Companies on the enterprise plan",
    "Started a trial, then paid 💳",
    "<script>alert(1)</script>",
    "No event in 90 days",
]


class MissingDatagroup(LookupError):
    """The cohort belongs to a data group that does not exist (any more)."""


@dataclass(frozen=True)
class CohortSpec:
    """One entry of the ``cohorts`` spec (see the module docstring)."""

    id: int
    share: float
    orphans: int = 0
    data_group_id: int | None = None
    visible: bool = True


def parse_cohorts(spec: str) -> tuple[CohortSpec, ...]:
    """Parse a ``cohorts`` spec; raises ValueError naming the bad entry."""
    cohorts: list[CohortSpec] = []
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        try:
            cohort = _parse_entry(entry)
        except ValueError as exc:
            raise ValueError(f"cohorts entry {entry!r}: {exc}") from None
        if any(c.id == cohort.id for c in cohorts):
            raise ValueError(f"cohorts: cohort id {cohort.id} is configured twice")
        cohorts.append(cohort)
    return tuple(cohorts)


def _parse_entry(entry: str) -> CohortSpec:
    fields = [f.strip() for f in entry.split(":")]
    if len(fields) < 2:
        raise ValueError("expected ID:SHARE[:orphans=N][:group=K][:hidden]")
    cohort_id, share = int(fields[0]), float(fields[1])
    if cohort_id < 1:
        raise ValueError("the cohort id must be >= 1")
    if not 0.0 <= share <= 1.0:
        raise ValueError("SHARE must be between 0 and 1")
    orphans, group, visible = 0, None, True
    for option in fields[2:]:
        name, _, value = option.partition("=")
        if name == "orphans" and value:
            orphans = int(value)
            if orphans < 0:
                raise ValueError("orphans must be >= 0")
        elif name == "group" and value:
            group = int(value)
            if group < 0:
                raise ValueError("group must be >= 0")
        elif option == "hidden":
            visible = False
        else:
            raise ValueError(f"unknown option {option!r} (orphans=N, group=K, hidden)")
    return CohortSpec(cohort_id, share, orphans, group, visible)


def member_slots(spec: CohortSpec, seed: int, size: int) -> list[int]:
    """The cohort's members in served order: profile indexes (>= 0) and orphans (-1 - k for the
    data set's k-th orphan), deterministic from (seed, cohort id)."""
    rng = random.Random(f"{seed}:cohort:{spec.id}")
    rnd, share = rng.random, spec.share
    members = [i for i in range(size) if rnd() < share]
    if not spec.orphans:
        return members
    positions = sorted(rng.randrange(len(members) + 1) for _ in range(spec.orphans))
    merged: list[int] = []
    start = 0
    for k, position in enumerate(positions):
        merged.extend(members[start:position])
        merged.append(-1 - k)
        start = position
    merged.extend(members[start:])
    return merged


class CohortSet:
    """The project's cohorts: membership (computed on first use, then cached) and the list."""

    def __init__(
        self,
        specs: tuple[CohortSpec, ...],
        seed: int,
        now: int,
        datasets: Callable[[int | None], DataSet | None],
    ) -> None:
        self.specs = specs
        self._by_id = {spec.id: spec for spec in specs}
        self._seed, self._now, self._datasets = seed, now, datasets
        self._slots: dict[int, list[int]] = {}
        self._lock = threading.Lock()

    def get(self, cohort_id: int) -> CohortSpec | None:
        return self._by_id.get(cohort_id)

    def members(self, spec: CohortSpec, include_all_users: bool = True) -> list[ProfileRecord]:
        """The members' current records in served order; without ``include_all_users`` only
        those with a profile. Raises MissingDatagroup for a cohort of a missing data group."""
        dataset, slots = self._membership(spec)
        records = dataset.records
        if not include_all_users:
            return [records[slot] for slot in slots if slot >= 0]
        orphans = dataset.orphans(spec.orphans)
        return [records[slot] if slot >= 0 else orphans[-1 - slot] for slot in slots]

    def count(self, spec: CohortSpec) -> int:
        """The list's ``count``: members with orphans (stale for a missing data group)."""
        try:
            return len(self._membership(spec)[1])
        except MissingDatagroup:
            users = self._datasets(None)
            size = len(users.records) if users is not None else 0
            return round(spec.share * size) + spec.orphans

    def listing(self, project_id: str) -> list[dict[str, t.Any]]:
        """The cohorts list's JSON array (no paging), in spec order."""
        project: int | str = int(project_id) if project_id.isdigit() else project_id
        out = []
        for ordinal, spec in enumerate(self.specs):
            rng = random.Random(f"{self._seed}:cohort-meta:{spec.id}")
            created = self._now - rng.randrange(30 * 86_400, 900 * 86_400)
            suffix = "" if ordinal < len(_NAMES) else f" #{ordinal}"
            entry: dict[str, t.Any] = {
                "id": spec.id,
                "name": _NAMES[ordinal % len(_NAMES)] + suffix,
                "description": _DESCRIPTIONS[ordinal % len(_DESCRIPTIONS)],
                "count": self.count(spec),
                "is_visible": spec.visible,
                "created": time.strftime(CREATED_FORMAT, time.gmtime(created)),
                "project_id": project,
            }
            if spec.data_group_id is not None:
                entry["data_group_id"] = spec.data_group_id
            out.append(entry)
        return out

    def _membership(self, spec: CohortSpec) -> tuple[DataSet, list[int]]:
        dataset = self._datasets(spec.data_group_id)
        if dataset is None:
            raise MissingDatagroup(f"cohort {spec.id}: no data group {spec.data_group_id}")
        with self._lock:
            slots = self._slots.get(spec.id)
            if slots is None:
                slots = member_slots(spec, self._seed, len(dataset.records))
                self._slots[spec.id] = slots
        return dataset, slots
