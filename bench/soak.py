"""The chaos soak: every stream at once through `tap | target-duckdb`, killed until it completes.

    python -m bench.soak --short --seed 1     # two kills and a SIGTERM, small data, < 1 minute
    python -m bench.soak --seed 1             # the long form: 100 000 profiles, 30 interruptions

The simulator (in this process, on 127.0.0.1) serves faults on every endpoint: 5xx,
connection resets and truncated bodies on Engage pages, the cohorts list, the property
schema, group pages and export chunks; 429s from a small concurrency cap; sessions that
expire. All five streams are selected. Each run pipes the tap into target-duckdb with STATE
taken only from what the target emitted (the last STATE line, as Meltano saves it); both are
SIGKILLed (and, every third interruption, the tap SIGTERMed: a clean stop) at seeded random
moments, until a run exits 0 with every stream complete. Then every table is checked against
what the simulator serves: profiles and group profiles (keys and properties), cohort
memberships (per cohort, the snapshot marker's rule), events (the set of event_ids, with the
lookback: none twice, none missing). One line reports it; the exit code is 1 on any
difference, 2 when the soak could not complete within --max-runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

from bench.soak_world import (
    STREAMS,
    Knobs,
    check,
    plant_difference,
    simulator_config,
    tap_config,
)
from tap_mixpanel_profiles.simulator import MixpanelSimulator

BIN = Path(sys.executable).parent
TAP = BIN / "tap-mixpanel-profiles"
TARGET = BIN / "target-duckdb"


@dataclasses.dataclass
class Tally:
    runs: int = 0
    kills: int = 0
    sigterms: int = 0
    states: int = 0


def catalog(config_path: Path, out: Path) -> Path:
    """Discover once and select every stream."""
    proc = subprocess.run(
        [str(TAP), "--config", str(config_path), "--discover"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    data = json.loads(proc.stdout)
    for stream in data["streams"]:
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = stream["tap_stream_id"] in STREAMS
    out.write_text(json.dumps(data))
    return out


def one_run(
    k: Knobs,
    n: int,
    cfg: Path,
    cat: Path,
    state: dict[str, t.Any] | None,
    interrupt: str | None,
    rng: random.Random,
    tally: Tally,
) -> tuple[int, int, dict[str, t.Any] | None, str]:
    """One `tap | target`, interrupted (`kill`, `term`) at a random moment or left to finish."""
    run_dir = k.workdir / f"run-{n:03d}"
    run_dir.mkdir()
    cmd = [str(TAP), "--config", str(cfg), "--catalog", str(cat)]
    if state is not None:
        (run_dir / "state.json").write_text(json.dumps(state))
        cmd += ["--state", str(run_dir / "state.json")]
    target_cfg = run_dir / "target.json"
    target_cfg.write_text(
        json.dumps(
            {
                "filepath": str(k.workdir / "soak.duckdb"),
                "default_target_schema": "mixpanel",
                "batch_size_rows": k.batch_rows,
                "add_metadata_columns": False,
            }
        )
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (
        (run_dir / "tap.err").open("wb") as tap_err,
        (run_dir / "target.out").open("wb") as out,
        (run_dir / "target.err").open("wb") as tgt_err,
    ):
        tap = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=tap_err, env=env)
        target = subprocess.Popen(
            [str(TARGET), "--config", str(target_cfg)],
            stdin=tap.stdout,
            stdout=out,
            stderr=tgt_err,
            env=env,
        )
        assert tap.stdout is not None
        tap.stdout.close()
        deadline = time.monotonic() + (rng.uniform(k.kill_min, k.kill_max) if interrupt else 600)
        while tap.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if tap.poll() is None:
            if interrupt == "term":
                tap.send_signal(signal.SIGTERM)
                tally.sigterms += 1
            else:
                for proc in (tap, target):
                    proc.kill()
                tally.kills += 1
        tap_rc = tap.wait(timeout=120)
        target_rc = target.wait(timeout=120)
    lines = (run_dir / "target.out").read_text(errors="replace").splitlines()
    states = [json.loads(line) for line in lines if line.strip().startswith("{")]
    tally.states += len(states)
    err = (run_dir / "tap.err").read_text(errors="replace")
    return tap_rc, target_rc, (states[-1] if states else state), err


def complete(err: str) -> bool:
    """Every selected stream's SUMMARY says complete."""
    done = set()
    for line in err.splitlines():
        start = line.find('{"type": "SUMMARY"')
        if start >= 0:
            summary = json.loads(line[start:])
            if summary.get("status") == "complete":
                done.add(summary.get("stream"))
    return set(STREAMS) <= done


def soak(k: Knobs) -> int:
    rng = random.Random(k.seed)
    tally = Tally()
    start = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=k.event_days - 1)
    with MixpanelSimulator(simulator_config(k)) as sim:
        cfg = k.workdir / "tap.json"
        cfg.write_text(json.dumps(tap_config(sim, k, start)))
        cat = catalog(cfg, k.workdir / "catalog.json")
        state: dict[str, t.Any] | None = None
        interruptions = 0
        for n in range(1, k.max_runs + 1):
            interrupt = None
            if interruptions < k.kills:
                interrupt = "term" if interruptions % 3 == 2 else "kill"
            before = tally.kills + tally.sigterms
            tap_rc, target_rc, state, err = one_run(k, n, cfg, cat, state, interrupt, rng, tally)
            tally.runs = n
            interruptions += tally.kills + tally.sigterms - before
            if tap_rc == 0 and target_rc == 0 and complete(err):
                break
            # A clean stop exits 143; -15 is a SIGTERM that came before the tap installed its
            # handler (still starting: nothing synced, nothing to save).
            if interrupt == "term" and tally.sigterms > 0 and tap_rc not in (143, -15, 0, 1):
                print(f"soak seed {k.seed}: SIGTERM ended the tap with exit {tap_rc}, not 143")
                return 1
        else:
            print(f"soak seed {k.seed}: not complete after {k.max_runs} runs ({tally})")
            return 2
        stats = sim.stats()
        if k.plant:
            plant_difference(k.workdir / "soak.duckdb")
        tables = check(sim, k.workdir / "soak.duckdb", k, start)
    kinds = {f: stats["faults"][f] + stats.get(f"export_fault_{f}", 0) for f in ("5xx", "reset")}
    kinds["truncated"] = stats["faults"]["truncated"] + stats.get("export_fault_truncated", 0)
    kinds["expired"] = stats["faults"]["expired"]
    faults = (
        f"{sum(kinds.values())} faults injected ({', '.join(f'{v} {f}' for f, v in kinds.items())})"
    )
    limited = stats["rate_limited_concurrent"] + stats["export_rate_limited_concurrent"]
    bad = {name: v for name, v in tables.items() if v[0] != v[1] or v[2]}
    parts = ", ".join(f"{name} {exp}/{got}" for name, (exp, got, _) in tables.items())
    print(
        f"soak seed {k.seed}: {tally.runs} runs, {tally.kills} kills, {tally.sigterms} SIGTERMs, "
        f"{faults}, {limited} 429s; rows expected/loaded: {parts}; "
        f"duplicates or wrong rows: {sum(v[2] for v in tables.values())}; "
        + ("EXACT" if not bad else f"DIFFERENT: {sorted(bad)}"),
        flush=True,
    )
    return 1 if bad else 0


def main(argv: t.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--short", action="store_true", help="two kills and a SIGTERM, small data (< 1 min)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profiles", type=int)
    parser.add_argument("--events-per-day", type=int)
    parser.add_argument("--event-days", type=int)
    parser.add_argument("--cohorts", type=int)
    parser.add_argument("--group-keys", type=int)
    parser.add_argument("--kills", type=int, help="interruptions before a run may finish")
    parser.add_argument("--kill-min", type=float, help="earliest interruption, seconds")
    parser.add_argument("--kill-max", type=float, help="latest interruption, seconds")
    parser.add_argument("--fault-rate", type=float, help="rate of each fault kind per request")
    parser.add_argument("--session-max-age", type=float, help="seconds before a session expires")
    parser.add_argument("--batch-rows", type=int, help="target-duckdb's batch_size_rows")
    parser.add_argument("--max-runs", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--plant-difference", action="store_true", help="delete one loaded event (tests the check)"
    )
    args = parser.parse_args(argv)
    short = args.short

    def pick(value: t.Any, short_value: t.Any, long_value: t.Any) -> t.Any:
        return value if value is not None else (short_value if short else long_value)

    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    knobs = Knobs(
        seed=args.seed,
        profiles=pick(args.profiles, 3000, 100_000),
        events_per_day=pick(args.events_per_day, 150, 1000),
        event_days=pick(args.event_days, 8, 50),
        cohorts=pick(args.cohorts, 4, 10),
        group_keys=pick(args.group_keys, 2, 3),
        kills=pick(args.kills, 3, 30),
        kill_min=pick(args.kill_min, 0.4, 2.0),
        kill_max=pick(args.kill_max, 1.4, 10.0),
        fault_rate=pick(args.fault_rate, 0.05, 0.05),
        max_runs=args.max_runs,
        workdir=workdir,
        plant=args.plant_difference,
        session_max_age=pick(args.session_max_age, 0.6, 10.0),
        batch_rows=pick(args.batch_rows, 2000, 10_000),
    )
    try:
        return soak(knobs)
    finally:
        if args.keep:
            print(f"scratch files kept in {workdir}")
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
