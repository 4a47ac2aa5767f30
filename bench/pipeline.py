"""Section 4: `tap | target-duckdb` into a DuckDB file; `pipeline` is shared with section 9."""

from __future__ import annotations

import json
import os
import subprocess
import time
import typing as t
from pathlib import Path

from bench.harness import (
    PY,
    TAP_RUNNER,
    BenchError,
    Params,
    Runner,
    Simulator,
    simulator,
    usage_dict,
)


def end_to_end(run: Runner, p: Params) -> dict[str, t.Any]:
    """Section 4: tap | target-duckdb into a file."""
    with simulator(run.workdir, p.e2e_profiles, realistic=True) as sim:
        result = pipeline(run, sim, sim.tap_config(queries_per_hour=100_000), p.e2e_profiles)
    print(
        f"  {p.e2e_profiles:,} profiles in {result['wall_s']:.1f} s = "
        f"{result['profiles_per_s']:,}/s; peak RSS tap {result['tap']['peak_rss_mb']} MB, "
        f"target {result['target']['peak_rss_mb']} MB; rows loaded {result['rows_loaded']:,}",
        flush=True,
    )
    return result


def pipeline(
    run: Runner, sim: Simulator, config: dict[str, t.Any], profiles: int, label: str = "e2e"
) -> dict[str, t.Any]:
    """One `tap | target-duckdb` into a new file: wall time, both processes' rusage, rows."""
    target = Path(PY).with_name("target-duckdb")
    if not target.exists():
        raise BenchError(f"target-duckdb is not installed next to {PY}")
    tap_config = run.path(f"{label}-tap.json")
    tap_config.write_text(json.dumps(config))
    db = run.path(f"{label}.duckdb")
    target_config = run.path(f"{label}-target.json")
    target_config.write_text(json.dumps({"filepath": str(db), "default_target_schema": "mixpanel"}))
    tap_err, target_err = run.path(f"{label}-tap.stderr.txt"), run.path(f"{label}-target.txt")
    read_end, write_end = os.pipe()
    started = time.perf_counter()
    with tap_err.open("wb") as te, target_err.open("wb") as ge:
        tap = subprocess.Popen(
            [PY, "-c", TAP_RUNNER, "fast", "--config", str(tap_config)],
            stdout=write_end,
            stderr=te,
        )
        tgt = subprocess.Popen(
            [str(target), "--config", str(target_config)],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=ge,
        )
        os.close(read_end)
        os.close(write_end)
        usage = {}
        for name, proc in (("tap", tap), ("target", tgt)):
            _, status, ru = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            usage[name] = usage_dict(proc.returncode, time.perf_counter() - started, ru)
    wall = time.perf_counter() - started
    if usage["tap"]["rc"] or usage["target"]["rc"]:
        raise BenchError(
            f"pipeline failed: tap rc {usage['tap']['rc']}, target rc "
            f"{usage['target']['rc']}: {target_err.read_text()[-1000:]}"
        )
    count = subprocess.run(
        [
            PY,
            "-c",
            "import duckdb,sys; c=duckdb.connect(sys.argv[1], read_only=True); print("
            "c.execute('select count(*) from mixpanel.profiles').fetchall()[0][0], "
            'c.execute("select count(*) from information_schema.columns where '
            "table_name='profiles'\").fetchall()[0][0])",
            str(db),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {
        "profiles": profiles,
        "wall_s": round(wall, 2),
        "profiles_per_s": round(profiles / wall),
        "rows_loaded": int(count[0]),
        "columns": int(count[1]),
        "tap": usage["tap"],
        "target": usage["target"],
    }


def report(s: dict[str, t.Any]) -> list[str]:
    """The section's line for latest.md."""
    lines: list[str] = []
    e = s["end_to_end"]
    lines += [
        "## 4. tap | target-duckdb (latency 0, into a DuckDB file)",
        f"{e['profiles']:,} profiles in {e['wall_s']} s = **{e['profiles_per_s']:,} "
        f"profiles/s**; rows loaded {e['rows_loaded']:,}. Peak RSS: tap "
        f"{e['tap']['peak_rss_mb']} MB, target-duckdb {e['target']['peak_rss_mb']} MB. "
        f"CPU: tap {e['tap']['cpu_s']} s, target {e['target']['cpu_s']} s.",
        "",
    ]
    return lines
