"""Sections 5 and 6: peak RSS flat in N, and queries and peak RSS by page size."""

from __future__ import annotations

import math
import typing as t

from bench.harness import BenchError, Params, Runner, simulator


def memory_and_page_size(run: Runner, p: Params, sections: set[int]) -> dict[str, t.Any]:
    """Sections 5 and 6 share the large data set: peak RSS vs N, queries per page size."""
    out: dict[str, t.Any] = {}
    big, small = p.memory_profiles
    if 5 in sections:
        with simulator(run.workdir, small, realistic=True) as sim:
            small_run = run.tap(sim.tap_config(queries_per_hour=100_000), label="mem-small")
    with simulator(run.workdir, big, realistic=True, max_page_size=max(p.page_sizes)) as sim:
        by_size = {}
        for size in p.page_sizes if 6 in sections else p.page_sizes[:1]:
            sim.reset_stats()
            result = run.tap(
                sim.tap_config(queries_per_hour=100_000, page_size=size), label=f"pagesize-{size}"
            )
            stats = sim.stats()
            if result["summary"].get("total_rows") != big:
                raise BenchError(f"page_size {size}: {result['summary'].get('total_rows')} rows")
            if stats["requests"] != math.ceil(big / size):
                raise BenchError(f"page_size {size}: {stats['requests']} queries, not ceil(N/size)")
            by_size[size] = {
                "queries": stats["requests"],
                "wall_s": result["wall_s"],
                "sync_s": result["summary"]["duration_seconds"],
                "peak_rss_mb": result["peak_rss_mb"],
                "cpu_s": result["cpu_s"],
                "quota_hours_at_60": round(stats["requests"] / 60, 2),
            }
            print(
                f"  page_size {size}: {stats['requests']} queries "
                f"({stats['requests'] / 60:.2f} h of quota at 60/h), peak RSS "
                f"{result['peak_rss_mb']} MB",
                flush=True,
            )
    if 5 in sections:
        big_rss = by_size[p.page_sizes[0]]["peak_rss_mb"]
        out["memory"] = {
            "page_size": p.page_sizes[0],
            "small_profiles": small,
            "big_profiles": big,
            "small_peak_rss_mb": small_run["peak_rss_mb"],
            "big_peak_rss_mb": big_rss,
            "ratio": round(big_rss / small_run["peak_rss_mb"], 3),
        }
        print(
            f"  peak RSS {small:,} profiles {small_run['peak_rss_mb']} MB, {big:,} profiles "
            f"{big_rss} MB: ratio {out['memory']['ratio']}",
            flush=True,
        )
    if 6 in sections:
        first, last = p.page_sizes[0], p.page_sizes[-1]
        ratio = round(by_size[last]["peak_rss_mb"] / by_size[first]["peak_rss_mb"], 3)
        out["page_size"] = {"profiles": big, "sizes": by_size, "rss_ratio": ratio}
        print(f"  peak RSS at page_size {last} / at {first}: {ratio}", flush=True)
    return out


def report_memory(s: dict[str, t.Any]) -> list[str]:
    """Section 5's line for latest.md."""
    lines: list[str] = []
    m = s["memory"]
    lines += [
        "## 5. Memory is flat in N",
        f"Peak RSS of the tap (page_size {m['page_size']}): {m['small_profiles']:,} "
        f"profiles {m['small_peak_rss_mb']} MB, {m['big_profiles']:,} profiles "
        f"{m['big_peak_rss_mb']} MB: ratio **{m['ratio']}**.",
        "",
    ]
    return lines


def report_page_size(s: dict[str, t.Any]) -> list[str]:
    """Section 6's table for latest.md."""
    lines: list[str] = []
    ps = s["page_size"]
    lines += [
        f"## 6. Page size lever ({ps['profiles']:,} realistic profiles)",
        "",
        "| page_size | queries | hours of quota at 60/h | sync (s) | CPU (s) | peak RSS (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for size, r in ps["sizes"].items():
        lines.append(
            f"| {size} | {r['queries']} | {r['quota_hours_at_60']} | {r['sync_s']} | "
            f"{r['cpu_s']} | {r['peak_rss_mb']} |"
        )
    lines += [
        "",
        f"Peak RSS at the largest page size ÷ at the smallest: **{ps['rss_ratio']}** "
        "(pages are parsed as they arrive).",
        "",
    ]
    return lines
