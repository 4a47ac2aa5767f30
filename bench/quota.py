"""Section 8: queries and hours of quota by project size and page size (arithmetic).

The same function as the tap's plan line (profiles/cost.py), so the table cannot drift from
what the tap says before a sync.
"""

from __future__ import annotations

import typing as t

from bench.harness import Params
from tap_mixpanel_profiles.profiles.cost import pass_cost


def quota_table(p: Params) -> dict[str, t.Any]:
    """Section 8: queries and hours of quota by project size and page size (arithmetic)."""
    rows = []
    for profiles in (100_000, 1_000_000, 10_000_000):
        for size in p.page_sizes:
            counted = pass_cost(profiles, size, session_pages_counted=True, queries_per_hour=60)
            exempt = pass_cost(profiles, size, session_pages_counted=False, queries_per_hour=60)
            rows.append(
                {
                    "profiles": profiles,
                    "page_size": size,
                    "queries_counted": counted.queries,
                    "hours_counted": round(counted.hours, 2),
                    "queries_exempt": exempt.queries,
                    "hours_exempt": round(exempt.hours, 3),
                }
            )
    return {"rows": rows}


def report(s: dict[str, t.Any]) -> list[str]:
    """The section's table for latest.md."""
    lines: list[str] = []
    lines += [
        "## 8. What a sync costs in quota (Mixpanel: 60 queries an hour)",
        "",
        "| profiles | page_size | queries (session pages count) | hours | queries "
        "(they do not) | hours |",
        "|---|---|---|---|---|---|",
    ]
    for r in s["quota"]["rows"]:
        lines.append(
            f"| {r['profiles']:,} | {r['page_size']:,} | {r['queries_counted']:,} | "
            f"{r['hours_counted']} | {r['queries_exempt']} | {r['hours_exempt']} |"
        )
    lines.append("")
    return lines
