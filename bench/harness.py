"""What every benchmark shares: simulator and tap processes, their CPU and peak RSS.

Every simulator and tap runs in its own process; the harness only orchestrates (it stays
small, so the peak RSS the kernel reports for a child is the child's own: Linux carries a
parent's RSS into a child's peak). `Params` holds the sizes of a run (`--quick` or full).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import typing as t
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
PY = sys.executable
MAX_CONCURRENCY = 5


#: The tap as users run it ("fast"), or with the SDK's own record path, stdlib GC
#: thresholds and per-message flushing ("sdk": the code before engine/records.py).
TAP_RUNNER = """
import sys
mode = sys.argv.pop(1)
from tap_mixpanel_profiles import tap
from tap_mixpanel_profiles.engine import records as fast_records
if mode == "sdk":
    from singer_sdk.contrib.msgspec import MsgSpecWriter
    fast_records.FastRecordsStream.fast_record_path = False
    fast_records.FastRecordsStream.relax_gc = False
    tap.TapMixpanelProfiles.message_writer_class = MsgSpecWriter
tap.cli()
"""


class BenchError(RuntimeError):
    """A measurement could not be taken."""


@contextlib.contextmanager
def simulator(
    workdir: Path,
    profiles: int,
    *,
    realistic: bool = False,
    latency: float = 0.0,
    jitter: float = 0.0,
    hourly_limit: int = 0,
    max_page_size: int = 1000,
    wide: int = 0,
) -> t.Iterator[Simulator]:
    """A simulator process (its data set lives there, not in this process)."""
    url_file = workdir / f"sim-{time.monotonic_ns()}.url"
    cmd = [
        PY,
        "-m",
        "tap_mixpanel_profiles.simulator",
        "--profiles",
        str(profiles),
        "--latency",
        str(latency),
        "--jitter",
        str(jitter),
        "--concurrency-limit",
        str(MAX_CONCURRENCY),
        "--hourly-limit",
        str(hourly_limit),
        "--max-page-size",
        str(max_page_size),
        "--wide-properties",
        str(wide),
        "--url-file",
        str(url_file),
    ]
    if realistic:
        cmd.append("--realistic")
    log = (workdir / "simulator.log").open("ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while not url_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"simulator did not start (see {workdir / 'simulator.log'})")
            time.sleep(0.05)
        yield Simulator(url_file.read_text().strip())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class Simulator:
    """HTTP handle on a running simulator: stats and runtime settings."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def stats(self) -> dict:
        return self._call("GET", "/_stats")

    def reset_stats(self) -> None:
        self._call("POST", "/_stats/reset", {})

    def configure(self, **fields: t.Any) -> None:
        self._call("POST", "/_faults", fields)

    def tap_config(self, **extra: t.Any) -> dict[str, t.Any]:
        return {
            "project_id": "12345",
            "service_account_username": "sim-user",
            "service_account_secret": "sim-secret",
            "api_url": self.url,
            # Sections 1-8 measure today's table; section 9 measures typed columns.
            "property_columns": "none",
            **extra,
        }


def rusage_run(
    cmd: list[str],
    *,
    stdin: t.Any = None,
    stdout: t.Any = subprocess.DEVNULL,
    stderr: Path | None = None,
    env: dict | None = None,
) -> dict[str, t.Any]:
    """Run one process; wall time and its own rusage (CPU, peak RSS) from wait4."""
    err = stderr.open("wb") if stderr else subprocess.DEVNULL
    started = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        if stderr:
            err.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage_dict(proc.returncode, time.perf_counter() - started, usage)


def usage_dict(rc: int, wall: float, usage: t.Any) -> dict[str, t.Any]:
    return {
        "rc": rc,
        "wall_s": round(wall, 3),
        "cpu_user_s": round(usage.ru_utime, 3),
        "cpu_sys_s": round(usage.ru_stime, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }


def count_lines(path: Path, prefix: bytes) -> int:
    """Lines starting with `prefix`, read line by line: the harness stays small."""
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.startswith(prefix))


def summary_line(stderr: Path) -> dict[str, t.Any]:
    """The tap's SUMMARY JSON line (stderr)."""
    for line in reversed(stderr.read_text(errors="replace").splitlines()):
        if line.startswith("{") and '"SUMMARY"' in line:
            return json.loads(line)
    return {}


class Runner:
    """Runs taps and keeps their files in one scratch directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._n = 0

    def path(self, name: str) -> Path:
        self._n += 1
        return self.workdir / f"{self._n:03d}-{name}"

    def tap(
        self,
        config: dict[str, t.Any],
        *,
        mode: str = "fast",
        stdout: t.Any = None,
        args: t.Sequence[str] = (),
        label: str = "tap",
    ) -> dict[str, t.Any]:
        """One tap run; raises BenchError unless it exits 0."""
        config_path = self.path(f"{label}.config.json")
        config_path.write_text(json.dumps(config))
        stderr = self.path(f"{label}.stderr.txt")
        cmd = [PY, "-c", TAP_RUNNER, mode, "--config", str(config_path), *args]
        result = rusage_run(
            cmd, stdout=stdout if stdout is not None else subprocess.DEVNULL, stderr=stderr
        )
        if result["rc"] != 0:
            tail = stderr.read_text(errors="replace")[-1500:]
            raise BenchError(f"{label}: tap exited {result['rc']}:\n{tail}")
        result["summary"] = summary_line(stderr)
        result["record_path_fast"] = "Record path: fast" in stderr.read_text(errors="replace")
        return result

    def startup(self, sim: Simulator, runs: int = 3) -> dict[str, t.Any]:
        """Process start-up: `--discover` imports everything and validates config, no HTTP."""
        samples = [
            self.tap(sim.tap_config(), args=["--discover"], label="startup") for _ in range(runs)
        ]
        return {
            "wall_s": min(s["wall_s"] for s in samples),
            "cpu_s": min(s["cpu_s"] for s in samples),
            "peak_rss_mb": min(s["peak_rss_mb"] for s in samples),
        }


class Params(t.NamedTuple):
    latency: float
    jitter: float
    schedule_pages: tuple[int, ...]
    schedule_profiles: int
    cpu_profiles: int
    cpu_repeats: int
    e2e_profiles: int
    memory_profiles: tuple[int, int]  # (large, small)
    page_sizes: tuple[int, ...]
    peer_profiles: int
    peer_venv: Path


def params(args: argparse.Namespace) -> Params:
    quick = args.quick
    return Params(
        latency=args.latency if args.latency is not None else (0.2 if quick else 0.5),
        jitter=args.jitter if args.jitter is not None else (0.02 if quick else 0.05),
        schedule_pages=(10, 30, 50),
        schedule_profiles=5000,
        cpu_profiles=20_000 if quick else 100_000,
        cpu_repeats=1 if quick else 3,
        e2e_profiles=20_000 if quick else 100_000,
        memory_profiles=(50_000, 10_000) if quick else (150_000, 10_000),
        page_sizes=(1000, 10_000, 50_000),
        peer_profiles=2_500 if quick else 10_000,
        peer_venv=Path(args.peer_venv),
    )
