"""Run the real `tap-mixpanel-profiles` command against a simulator and read what it wrote.

Shared by the integration and end-to-end tests: a subprocess is the only way to
test exit codes, signals and the console script exactly as users run them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

from tap_mixpanel_profiles.simulator import MixpanelSimulator, SimulatorConfig

TAP = str(Path(sys.executable).with_name("tap-mixpanel-profiles"))


def simulator(**config: t.Any) -> MixpanelSimulator:
    """A simulator (start it with `with`); modules bind their defaults with functools.partial."""
    return MixpanelSimulator(SimulatorConfig(**config))


def sim_config(sim: t.Any, **extra: t.Any) -> dict[str, t.Any]:
    """Tap config pointing at a running MixpanelSimulator (service-account auth)."""
    return {
        "project_id": sim.config.project_id,
        "service_account_username": sim.config.service_account_username,
        "service_account_secret": sim.config.service_account_secret,
        "api_url": sim.url,
        "export_api_url": sim.url,
        "backoff_base_seconds": 0.02,
        "backoff_max_seconds": 0.5,
        # Today's table unless a test asks for typed columns (they add a schema query).
        "property_columns": "none",
        **extra,
    }


@dataclasses.dataclass
class TapRun:
    """What one tap process produced."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def messages(self) -> list[dict[str, t.Any]]:
        # Singer messages end with "\n" only: str.splitlines() would also split inside
        # JSON strings holding U+2028, U+0085 ... (valid unescaped in JSON).
        return [json.loads(line) for line in self.stdout.split("\n") if line.strip()]

    @property
    def records(self) -> list[dict[str, t.Any]]:
        return [m["record"] for m in self.messages if m["type"] == "RECORD"]

    @property
    def ids(self) -> list[str]:
        """distinct_ids of the profiles records."""
        return [r["distinct_id"] for r in self.records_of("profiles")]

    def records_of(self, stream: str) -> list[dict[str, t.Any]]:
        return [
            m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream
        ]

    def bookmark_of(self, stream: str) -> dict[str, t.Any]:
        return ((self.last_state or {}).get("bookmarks") or {}).get(stream) or {}

    def summary_of(self, stream: str) -> dict[str, t.Any]:
        """The SUMMARY line of one stream (`summary` is the last one printed)."""
        for line in reversed(self.stderr.splitlines()):
            if line.startswith("{") and '"SUMMARY"' in line:
                summary = json.loads(line)
                if summary.get("stream") == stream:
                    return summary
        raise AssertionError(f"no {stream} SUMMARY line on stderr:\n{self.stderr[-3000:]}")

    @property
    def last_state(self) -> dict[str, t.Any] | None:
        states = [m["value"] for m in self.messages if m["type"] == "STATE"]
        return states[-1] if states else None

    @property
    def bookmark(self) -> dict[str, t.Any]:
        return ((self.last_state or {}).get("bookmarks") or {}).get("profiles") or {}

    @property
    def summary(self) -> dict[str, t.Any]:
        for line in reversed(self.stderr.splitlines()):
            if line.startswith("{") and '"SUMMARY"' in line:
                return json.loads(line)
        raise AssertionError(f"no SUMMARY line on stderr:\n{self.stderr[-3000:]}")


def select_streams(catalog: dict[str, t.Any], names: t.Iterable[str]) -> dict[str, t.Any]:
    """Mark exactly the streams `names` selected in a discovered catalog (in place; returned)."""
    wanted = set(names)
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = stream["tap_stream_id"] in wanted
    return catalog


def discover(config: dict[str, t.Any]) -> dict[str, t.Any]:
    """The catalog the console script discovers (`--discover`)."""
    proc = subprocess.run(
        [TAP, "--config", str(write_json(config)), "--discover"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(proc.stdout)


def catalog_args(
    config: dict[str, t.Any], streams: t.Iterable[str] = ("profiles", "events")
) -> list[str]:
    """`--catalog <file>` selecting `streams` (how users enable the events stream)."""
    return ["--catalog", str(write_json(select_streams(discover(config), streams)))]


def write_json(data: t.Any, directory: Path | None = None) -> Path:
    """Write `data` to a temp JSON file and return its path."""
    with tempfile.NamedTemporaryFile(
        "w", suffix=".json", delete=False, dir=directory, encoding="utf-8"
    ) as handle:
        json.dump(data, handle)
    return Path(handle.name)


def tap_command(
    config: dict[str, t.Any], state: dict[str, t.Any] | None = None, extra: t.Sequence[str] = ()
) -> list[str]:
    """The command line for one run."""
    cmd = [TAP, "--config", str(write_json(config))]
    if state is not None:
        cmd += ["--state", str(write_json(state))]
    return cmd + list(extra)


def run_tap(
    config: dict[str, t.Any],
    state: dict[str, t.Any] | None = None,
    timeout: float = 120,
    extra: t.Sequence[str] = (),
) -> TapRun:
    """Run the tap to completion."""
    proc = subprocess.run(
        tap_command(config, state, extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    return TapRun(proc.returncode, proc.stdout, proc.stderr)


def runs_until_complete(
    run: t.Callable[[dict[str, t.Any] | None], TapRun],
    stream: str,
    *,
    max_runs: int,
    between: float = 0.0,
) -> list[TapRun]:
    """`run(state)` again with the last STATE until `stream` completes.

    Every run must exit 0 and every run before the last must have paused.
    """
    runs: list[TapRun] = []
    state = None
    for _ in range(max_runs):
        result = run(state)
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(result)
        state = result.last_state
        status = result.summary_of(stream)["status"]
        if status == "complete":
            return runs
        assert status == "paused", result.stderr[-3000:]
        time.sleep(between)
    raise AssertionError(f"{stream} not complete after {max_runs} runs")


def start_tap(
    config: dict[str, t.Any],
    state: dict[str, t.Any] | None = None,
    extra: t.Sequence[str] = (),
    **popen: t.Any,
) -> subprocess.Popen:
    """Start the tap without waiting (for signal tests and pipes)."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(tap_command(config, state, extra), text=True, **popen)
