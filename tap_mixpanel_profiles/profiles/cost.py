"""What an Engage pass costs in Mixpanel's hourly quota, said before it is spent.

For a large project the wall-clock cost of a sync is set by the 60 queries an
hour, not by the tap's speed. Once page 0 tells the total, the plan line says
how many queries the pass takes, how many quota hours that is at the
configured budget, and what a larger `page_size` would cut it to. Whether
session pages count is Mixpanel's undocumented call (see
`session_pages_count_against_quota`), so both answers are given when unknown.

The same arithmetic fills the cost table of docs/rate-limits.md (bench's quota section prints it).
"""

from __future__ import annotations

import dataclasses
import math

#: Page sizes the plan line compares with (when larger than the one in use).
LARGER_PAGE_SIZES = (10_000, 50_000)


@dataclasses.dataclass(frozen=True)
class Cost:
    """Queries one pass spends, and the quota hours they take."""

    pages: int
    queries: int
    hours: float


def pass_cost(
    profiles: int,
    page_size: int,
    *,
    session_pages_counted: bool,
    queries_per_hour: int,
    window_seconds: float = 3600.0,
) -> Cost:
    """The cost of reading `profiles` at `page_size` (one session: page 0, then the rest)."""
    pages = max(1, math.ceil(profiles / max(1, page_size)))
    queries = pages if session_pages_counted else 1
    hours = queries / max(1, queries_per_hour) * window_seconds / 3600.0
    return Cost(pages, queries, hours)


def _hours(hours: float) -> str:
    return f"{hours:.2f} h" if hours < 10 else f"{hours:.0f} h"


def plan_line(
    profiles: int,
    page_size: int,
    session_pages_counted: bool | None,
    queries_per_hour: int,
    window_seconds: float,
    noun: str = "profiles",
    schema_queries: int = 0,
) -> str:
    """One log line: pages, queries, quota hours, and what larger pages would cut them to.

    `session_pages_counted`: None while unknown (auto): both cases are given;
    `schema_queries`: property-schema queries the run spent before (said, and in the budget).
    """

    def cost(size: int, counted: bool) -> Cost:
        return pass_cost(
            profiles,
            size,
            session_pages_counted=counted,
            queries_per_hour=queries_per_hour,
            window_seconds=window_seconds,
        )

    counted = cost(page_size, True)
    budget = f"{queries_per_hour} queries per {window_seconds:g} s"
    line = (
        f"Plan: {profiles:,} {noun} in {counted.pages:,} pages of {page_size:,}: "
        f"{counted.queries:,} queries, {_hours(counted.hours)} of quota at {budget}"
    )
    if session_pages_counted is None:
        line += " if session pages count (auto: learned on the way), 1 query if they do not"
    elif not session_pages_counted:
        line = (
            f"Plan: {profiles:,} {noun} in {counted.pages:,} pages of {page_size:,}: 1 query "
            f"against the quota (session pages are not counted), {counted.pages:,} requests"
        )
    larger = [
        f"{size:,}: {cost(size, True).queries:,} ({_hours(cost(size, True).hours)})"
        for size in LARGER_PAGE_SIZES
        if size > page_size and cost(size, True).pages < counted.pages
    ]
    if larger and session_pages_counted is not False:
        line += "; a larger page_size (if Mixpanel serves it) would need " + ", ".join(larger)
    if schema_queries:
        line += f"; the run's property schema took {schema_queries} more (counted)"
    return line + "."
