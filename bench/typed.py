"""Section 9: typed property columns ("all" vs "none"): CPU per profile and load rates."""

from __future__ import annotations

import typing as t

from bench.harness import BenchError, Params, Runner, Simulator, simulator
from bench.pipeline import pipeline


def typed_columns(run: Runner, p: Params) -> dict[str, t.Any]:
    """Section 9: property_columns "all" vs "none", per CPU-second (30 and 300 listed
    properties, the schema cached beforehand as a discovery leaves it), and tap |
    target-duckdb's load rate and peak RSS for both."""
    out: dict[str, t.Any] = {}
    for width, wide in (("30", 0), ("300", 300)):
        with simulator(run.workdir, p.cpu_profiles, realistic=True, wide=wide) as sim:
            cache = str(run.path(f"cache-{width}"))

            def config(mode: str, cache: str = cache, sim: Simulator = sim) -> dict[str, t.Any]:
                return sim.tap_config(
                    queries_per_hour=100_000,
                    property_columns=mode,
                    property_schema_cache_dir=cache,
                )

            run.tap(config("all"), args=["--discover"], label="columns-discover")
            runs: dict[str, list[dict[str, t.Any]]] = {"none": [], "all": []}
            for _ in range(p.cpu_repeats):
                for mode in ("none", "all"):
                    result = run.tap(config(mode), label=f"columns-{width}-{mode}")
                    if not result["record_path_fast"]:
                        raise BenchError(f"columns-{width}-{mode}: not on the fast record path")
                    if result["summary"].get("total_rows") != p.cpu_profiles:
                        raise BenchError(f"columns-{width}-{mode}: wrong row count")
                    result["profiles_per_cpu_s"] = round(p.cpu_profiles / result["cpu_s"])
                    runs[mode].append(result)
        best = {m: min(rs, key=lambda r: r["cpu_s"]) for m, rs in runs.items()}
        ratio = best["none"]["cpu_s"] / best["all"]["cpu_s"]
        print(
            f"  {width} listed properties: all {best['all']['profiles_per_cpu_s']:,} vs none "
            f"{best['none']['profiles_per_cpu_s']:,} profiles/CPU-s = {ratio:.2f}x "
            f"(target >= 0.80 at 30)",
            flush=True,
        )
        out[f"properties_{width}"] = {"best": best, "runs": runs, "all_of_none": round(ratio, 3)}
    with simulator(run.workdir, p.e2e_profiles, realistic=True) as sim:
        cache = str(run.path("cache-e2e"))
        loads = {}
        for mode in ("none", "all"):
            cfg = sim.tap_config(
                queries_per_hour=100_000, property_columns=mode, property_schema_cache_dir=cache
            )
            loads[mode] = pipeline(run, sim, cfg, p.e2e_profiles, label=f"columns-e2e-{mode}")
            r = loads[mode]
            print(
                f"  tap | target-duckdb, {mode}: {r['columns']} columns, {r['profiles_per_s']:,} "
                f"profiles/s; target {r['target']['cpu_s']:.1f} CPU-s, peak RSS "
                f"{r['target']['peak_rss_mb']} MB (tap {r['tap']['peak_rss_mb']} MB)",
                flush=True,
            )
    out["load"] = loads
    return out


def report(s: dict[str, t.Any]) -> list[str]:
    """The section's tables for latest.md."""
    lines: list[str] = []
    tc = s["typed_columns"]
    lines += [
        '## 9. Typed property columns ("all" vs "none")',
        "Profiles per CPU-second of the whole process (least CPU of the repeats), the "
        "property schema cached beforehand; both on the fast record path.",
        "",
        "| listed properties | none | all | all ÷ none (target ≥ 0.80 at 30) |",
        "|---|---|---|---|",
    ]
    for width in ("30", "300"):
        b = tc[f"properties_{width}"]
        lines.append(
            f"| {width} | {b['best']['none']['profiles_per_cpu_s']:,} | "
            f"{b['best']['all']['profiles_per_cpu_s']:,} | {b['all_of_none']} |"
        )
    lines += [
        "",
        "| tap \\| target-duckdb | columns | profiles/s | target CPU-s | target peak RSS (MB) "
        "| tap peak RSS (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for mode, r in tc["load"].items():
        lines.append(
            f"| {mode} | {r['columns']} | {r['profiles_per_s']:,} | {r['target']['cpu_s']} | "
            f"{r['target']['peak_rss_mb']} | {r['tap']['peak_rss_mb']} |"
        )
    lines.append("")
    return lines
