"""Sections 1 and 2: the schedule against its lower bound, and 5 workers against 1.

T_min = L + ceil((N - 1) / 5) * L: page 0 alone, then the other pages five at a time at the
served latency L. A sync slower than that waits on something other than Mixpanel.
"""

from __future__ import annotations

import math
import typing as t

from bench.harness import MAX_CONCURRENCY, BenchError, Params, Runner, simulator


def t_min(pages: int, latency: float) -> float:
    """Page 0 alone, then the other pages MAX_CONCURRENCY at a time."""
    return latency + math.ceil((pages - 1) / MAX_CONCURRENCY) * latency


def speedup_bound(pages: int) -> float:
    return pages / (1 + math.ceil((pages - 1) / MAX_CONCURRENCY))


def schedule(run: Runner, p: Params) -> dict[str, t.Any]:
    """Sections 1 and 2: wall time vs T_min, 5 workers vs 1, limits 5 concurrent / 60 per hour."""
    latency_eff = p.latency + p.jitter / 2  # mean served latency
    rows = []
    startup = None
    for pages in p.schedule_pages:
        page_size = math.ceil(p.schedule_profiles / pages)
        row: dict[str, t.Any] = {
            "pages": pages,
            "page_size": page_size,
            "t_min_s": round(t_min(pages, latency_eff), 3),
        }
        for workers in (MAX_CONCURRENCY, 1):
            # A fresh simulator per run: each run starts with an empty hourly window.
            with simulator(
                run.workdir,
                p.schedule_profiles,
                latency=p.latency,
                jitter=p.jitter,
                hourly_limit=60,
            ) as sim:
                if startup is None:
                    startup = run.startup(sim)
                result = run.tap(
                    sim.tap_config(page_size=page_size, max_workers=workers),
                    label=f"schedule-n{pages}-w{workers}",
                )
                stats = sim.stats()
            summary = result["summary"]
            if summary.get("successful_pages") != pages:
                raise BenchError(
                    f"expected {pages} pages, the tap reported {summary.get('successful_pages')}"
                )
            sync_s = summary["duration_seconds"]
            row[f"w{workers}"] = {
                "sync_s": sync_s,
                "process_wall_s": result["wall_s"],
                "process_minus_startup_s": round(result["wall_s"] - startup["wall_s"], 3),
                "requests": stats["requests"],
                "rate_limited": stats["rate_limited_concurrent"] + stats["rate_limited_hourly"],
                "max_in_flight": stats["max_in_flight"],
            }
        w5, w1 = row[f"w{MAX_CONCURRENCY}"], row["w1"]
        row["efficiency"] = round(w5["sync_s"] / row["t_min_s"], 3)
        row["efficiency_process"] = round(w5["process_minus_startup_s"] / row["t_min_s"], 3)
        row["speedup"] = round(w1["sync_s"] / w5["sync_s"], 2)
        row["speedup_bound"] = round(speedup_bound(pages), 2)
        row["speedup_of_bound"] = round(row["speedup"] / row["speedup_bound"], 3)
        rows.append(row)
        print(
            f"  N={pages}: sync {w5['sync_s']:.2f} s vs T_min {row['t_min_s']:.2f} s "
            f"(x{row['efficiency']:.3f}); 1 worker {w1['sync_s']:.2f} s, "
            f"speedup {row['speedup']:.2f} of {row['speedup_bound']:.2f}",
            flush=True,
        )
    return {
        "latency_s": p.latency,
        "jitter_s": p.jitter,
        "latency_eff_s": latency_eff,
        "profiles": p.schedule_profiles,
        "limits": "5 concurrent / 60 per hour",
        "startup": startup,
        "rows": rows,
    }


def report(s: dict[str, t.Any]) -> list[str]:
    """The section's table for latest.md."""
    lines: list[str] = []
    sch = s["schedule"]
    lines += [
        "## 1-2. Schedule efficiency and speedup",
        f"Latency {sch['latency_s']} s + jitter 0..{sch['jitter_s']} s (T_min uses the "
        f"mean, {sch['latency_eff_s']:.3f} s), limits {sch['limits']}, "
        f"{sch['profiles']:,} small profiles. Sync time = the tap's SUMMARY "
        f"duration_seconds (start-up excluded; start-up alone: "
        f"{sch['startup']['wall_s']} s).",
        "",
        "| N pages | T_min (s) | 5 workers (s) | ÷ T_min | process − start-up ÷ T_min "
        "| 1 worker (s) | speedup | bound | of bound |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sch["rows"]:
        lines.append(
            f"| {r['pages']} | {r['t_min_s']} | {r['w5']['sync_s']} | "
            f"{r['efficiency']} | {r['efficiency_process']} | {r['w1']['sync_s']} | "
            f"{r['speedup']}× | {r['speedup_bound']}× | {r['speedup_of_bound']} |"
        )
    lines.append("")
    return lines
