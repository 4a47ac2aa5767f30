"""Benchmarks of tap-mixpanel-profiles against the local Mixpanel simulator.

    python -m bench                      # everything, a few minutes (or: python bench/run.py)
    python -m bench --quick              # smaller data sets and latency, about a minute
    python -m bench --only 1,2,3         # a subset (sections 1..9 below)

Sections: 1 schedule efficiency vs T_min, 2 speedup of 5 workers vs 1, 3 profiles per
CPU-second of the whole process, start-up included (SDK record path vs the fast one),
4 tap | target-duckdb, 5 peak RSS flat in N, 6 queries and peak RSS per page size
(1000 / 10 000 / 50 000 on 150 000 realistic profiles), 7 the singer-io tap-mixpanel peer,
8 queries and quota hours by project size and page size (arithmetic, no run), 9 typed
property columns ("all" vs "none": per CPU-second, load rate and peak RSS of target-duckdb).

Every simulator and tap runs in its own process; this script only orchestrates (it
stays small, so the peak RSS the kernel reports for a child is the child's own). All
ratios come from one run. Results: a table on stdout, bench/results/latest.json and
bench/results/latest.md. The exit code is non-zero only when a measurement could not
be taken; no figure is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

from bench.harness import BENCH, RESULTS, BenchError, Runner, params
from bench.memory import memory_and_page_size
from bench.peer import peer
from bench.pipeline import end_to_end
from bench.quota import quota_table
from bench.report import markdown
from bench.schedule import schedule
from bench.throughput import throughput
from bench.typed import typed_columns


def main(argv: t.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", default="1,2,3,4,5,6,7,8,9", help="comma list of sections to run (default: all)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller data sets, 0.2 s latency, one repeat"
    )
    parser.add_argument("--latency", type=float, help="simulated seconds per page (1, 2, 7)")
    parser.add_argument("--jitter", type=float, help="extra uniform 0..jitter seconds per page")
    parser.add_argument(
        "--peer-venv",
        default=str(BENCH / ".peer-venv"),
        help="venv for singer-io tap-mixpanel (created when missing)",
    )
    parser.add_argument("--out", default=str(RESULTS), help="directory for latest.json/.md")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    try:
        sections = {int(x) for x in args.only.split(",") if x.strip()}
    except ValueError:
        parser.error("--only takes section numbers, e.g. 1,2,3")
    if not sections <= set(range(1, 10)):
        parser.error("sections are 1..9")
    p = params(args)
    command = "python -m bench" + (
        f" {' '.join(argv if argv is not None else sys.argv[1:])}"
        if (argv if argv is not None else sys.argv[1:])
        else ""
    )
    results: dict[str, t.Any] = {
        "meta": {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": command,
            "quick": args.quick,
            "sections": sorted(sections),
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
            "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in p._asdict().items()},
        },
        "sections": {},
        "errors": {},
    }
    workdir = Path(tempfile.mkdtemp(prefix="tmp-bench-"))
    run = Runner(workdir)
    plan: list[tuple[str, set[int], t.Callable[[], dict]]] = [
        ("schedule", {1, 2}, lambda: schedule(run, p)),
        ("throughput", {3}, lambda: throughput(run, p)),
        ("end_to_end", {4}, lambda: end_to_end(run, p)),
        ("memory/page_size", {5, 6}, lambda: memory_and_page_size(run, p, sections)),
        ("peer", {7}, lambda: peer(run, p)),
        ("quota", {8}, lambda: quota_table(p)),
        ("typed_columns", {9}, lambda: typed_columns(run, p)),
    ]
    started = time.perf_counter()
    try:
        for name, needs, fn in plan:
            if not needs & sections:
                continue
            print(f"[{'/'.join(map(str, sorted(needs & sections)))}] {name} ...", flush=True)
            try:
                value = fn()
            except (BenchError, subprocess.CalledProcessError, OSError) as exc:
                print(f"  COULD NOT RUN: {exc}", flush=True)
                results["errors"][name] = str(exc)
                continue
            if name == "memory/page_size":
                results["sections"].update(value)
            else:
                results["sections"][name] = value
    finally:
        if args.keep:
            print(f"scratch files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["meta"]["duration_s"] = round(time.perf_counter() - started, 1)
    results["meta"]["harness_peak_rss_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    summary = markdown(results)
    (out / "latest.md").write_text(summary + "\n")
    print()
    print(summary)
    print(
        f"\n({results['meta']['duration_s']} s; results in {out / 'latest.json'} and "
        f"{out / 'latest.md'})"
    )
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
