"""latest.md: the human summary of a run, each section's table from its own module."""

from __future__ import annotations

import typing as t

from bench import memory, peer, pipeline, quota, schedule, throughput, typed

#: (the key of results["sections"], its table), in the order latest.md has always had.
TABLES: tuple[tuple[str, t.Callable[[dict[str, t.Any]], list[str]]], ...] = (
    ("schedule", schedule.report),
    ("throughput", throughput.report),
    ("end_to_end", pipeline.report),
    ("memory", memory.report_memory),
    ("page_size", memory.report_page_size),
    ("quota", quota.report),
    ("typed_columns", typed.report),
    ("peer", peer.report),
)


def markdown(results: dict[str, t.Any]) -> str:
    """The human summary written next to latest.json."""
    meta = results["meta"]
    lines = [
        f"# Benchmark results ({meta['date']}, {'quick' if meta['quick'] else 'full'} run)",
        "",
        f"`{meta['command']}` on {meta['machine']}, Python {meta['python']}. "
        "Ratios are taken within this one run; absolute times drift on a shared machine.",
        "",
    ]
    sections = results["sections"]
    for key, table in TABLES:
        if key in sections:
            lines += table(sections)
    if results.get("errors"):
        lines += ["## Could not run", *[f"- {k}: {v}" for k, v in results["errors"].items()], ""]
    return "\n".join(lines)
