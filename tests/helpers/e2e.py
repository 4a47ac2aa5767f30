"""Helpers for the end-to-end tests: real processes, real target-duckdb, a real DuckDB file.

Everything here runs what users run (console scripts of the test environment, the files under
target_config/, meltano.yml) against the local Mixpanel simulator.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import typing as t
from pathlib import Path

from tests.helpers.tap_runner import sim_config

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TAP = BIN / "tap-mixpanel-profiles"
TARGET = BIN / "target-duckdb"
MELTANO = BIN / "meltano"
TARGET_CONFIG = REPO / "target_config" / "duckdb.json"
TABLE = "mixpanel.profiles"


# One config builder for every test that runs the tap against the simulator.
tap_config = sim_config


def target_config(db_path: Path, **overrides: t.Any) -> dict[str, t.Any]:
    """target_config/duckdb.json with the database moved to `db_path` (plus overrides)."""
    config = json.loads(TARGET_CONFIG.read_text(encoding="utf-8"))
    config["filepath"] = str(db_path)
    config.update(overrides)
    return config


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without settings that could leak into a run."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TAP_MIXPANEL_PROFILES_", "TARGET_DUCKDB_", "MELTANO_"))
    }
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "NO_COLOR": "1",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


@dataclasses.dataclass
class PipeRun:
    """What `tap | target-duckdb` produced."""

    tap_rc: int
    target_rc: int
    tap_stderr: str
    target_stderr: str
    target_stdout: str

    @property
    def states(self) -> list[dict[str, t.Any]]:
        """STATE values the target emitted (one JSON object per line)."""
        return [json.loads(line) for line in self.target_stdout.splitlines() if line.strip()]

    @property
    def summary(self) -> dict[str, t.Any]:
        """The tap's SUMMARY line (the last one on stderr)."""
        for line in reversed(self.tap_stderr.splitlines()):
            start = line.find('{"type": "SUMMARY"')
            if start >= 0:
                return json.loads(line[start:])
        raise AssertionError("no SUMMARY line on the tap's stderr:\n" + self.tap_stderr[-3000:])

    def describe(self) -> str:
        return (
            f"tap exit {self.tap_rc}, target exit {self.target_rc}\n--- tap stderr (tail)\n"
            f"{self.tap_stderr[-4000:]}\n--- target stderr (tail)\n{self.target_stderr[-2000:]}"
        )


def run_pipe(
    workdir: Path,
    tap_cfg: dict[str, t.Any],
    target_cfg: dict[str, t.Any],
    *,
    state: dict[str, t.Any] | None = None,
    timeout: float = 120,
    tap_args: t.Sequence[str] = (),
) -> PipeRun:
    """`tap-mixpanel-profiles --config c.json | target-duckdb --config t.json` as two processes."""
    workdir.mkdir(parents=True, exist_ok=True)
    tap_json, target_json = workdir / "tap.json", workdir / "target.json"
    tap_json.write_text(json.dumps(tap_cfg), encoding="utf-8")
    target_json.write_text(json.dumps(target_cfg), encoding="utf-8")
    tap_cmd = [str(TAP), "--config", str(tap_json)]
    if state is not None:
        state_json = workdir / "state.json"
        state_json.write_text(json.dumps(state), encoding="utf-8")
        tap_cmd += ["--state", str(state_json)]
    tap_cmd += list(tap_args)  # e.g. --catalog selecting the events stream
    env = clean_env()
    with (
        open(workdir / "tap.err", "wb") as tap_err,
        open(workdir / "target.err", "wb") as tgt_err,
        open(workdir / "target.out", "wb") as tgt_out,
    ):
        tap = subprocess.Popen(
            tap_cmd, stdout=subprocess.PIPE, stderr=tap_err, env=env, cwd=workdir
        )
        target = subprocess.Popen(
            [str(TARGET), "--config", str(target_json)],
            stdin=tap.stdout,
            stdout=tgt_out,
            stderr=tgt_err,
            env=env,
            cwd=workdir,
        )
        assert tap.stdout is not None
        tap.stdout.close()  # the target owns the pipe now: a dead target gives the tap SIGPIPE
        try:
            tap_rc = tap.wait(timeout=timeout)
            target_rc = target.wait(timeout=timeout)
        finally:
            for proc in (tap, target):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    read = lambda name: (workdir / name).read_text(encoding="utf-8", errors="replace")  # noqa: E731
    return PipeRun(tap_rc, target_rc, read("tap.err"), read("target.err"), read("target.out"))


def query(db_path: Path, sql: str) -> list[tuple[t.Any, ...]]:
    """Run one query on a DuckDB file, read-only (the same duckdb version target-duckdb uses)."""
    import duckdb

    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def column_types(db_path: Path, table: str = "profiles") -> dict[str, str]:
    """column -> DuckDB type of a table of the mixpanel schema."""
    return dict(
        query(
            db_path,
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = 'mixpanel' AND table_name = '{table}'",
        )
    )


def loaded_profiles(db_path: Path) -> dict[str, tuple[t.Any, dict[str, t.Any]]]:
    """distinct_id -> (last_seen, properties) of every row of mixpanel.profiles."""
    rows = query(
        db_path, f"SELECT distinct_id, last_seen, CAST(properties AS VARCHAR) FROM {TABLE}"
    )
    return {r[0]: (r[1], json.loads(r[2]) if r[2] is not None else None) for r in rows}


def parse_last_seen(value: t.Any) -> dt.datetime | None:
    """Mixpanel's "$last_seen" ("YYYY-MM-DDTHH:MM:SS", UTC) as DuckDB's naive TIMESTAMP."""
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None


def sim_profiles(sim: t.Any) -> dict[str, dict[str, t.Any]]:
    """distinct_id -> $properties of every profile the simulator serves."""
    return {p["$distinct_id"]: p["$properties"] for p in sim.profiles}


def meltano(
    project: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the meltano CLI of the test environment in `project` (stdout and stderr together)."""
    return subprocess.run(
        [str(MELTANO), *args],
        cwd=project,
        env=clean_env(**(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    """The output of a command that must have succeeded (else the tail of it, in the failure)."""
    assert done.returncode == 0, f"{done.args} exited {done.returncode}:\n{done.stdout[-6000:]}"
    return done.stdout
