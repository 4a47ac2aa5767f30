"""Section 7: the singer-io tap-mixpanel peer on the same simulated pages.

The peer is installed from PyPI into its own venv (bench/.peer-venv; its pins are old) and
pointed at the simulator by peer_wrapper.py, which only rewrites its mixpanel.com URLs.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
import typing as t
from pathlib import Path

from bench.harness import (
    BENCH,
    PY,
    BenchError,
    Params,
    Runner,
    count_lines,
    rusage_run,
    simulator,
)


def peer(run: Runner, p: Params) -> dict[str, t.Any]:
    """Section 7: singer-io tap-mixpanel (engage, 250 per page, one page at a time)."""
    peer_python = ensure_peer_venv(p.peer_venv)
    version = subprocess.run(
        [
            str(peer_python),
            "-c",
            "import importlib.metadata as m; print(m.version('tap-mixpanel'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    wrapper = str(BENCH / "peer_wrapper.py")
    result: dict[str, t.Any] = {
        "peer": f"tap-mixpanel {version} (PyPI)",
        "profiles": p.peer_profiles,
        "latency_s": p.latency,
        "jitter_s": p.jitter,
    }
    with simulator(
        run.workdir, p.peer_profiles, realistic=True, latency=p.latency, jitter=p.jitter
    ) as sim:
        catalog = run.path("peer-catalog.json")
        subprocess.run([str(peer_python), wrapper, sim.url, "catalog", str(catalog)], check=True)
        start = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).strftime(
            "%Y-%m-%dT00:00:00Z"
        )
        config = run.path("peer-config.json")
        config.write_text(
            json.dumps(
                {
                    "project_timezone": "UTC",
                    "api_secret": "sim-api-secret",
                    "attribution_window": 5,
                    "start_date": start,
                    "user_agent": "tap-mixpanel-profiles bench",
                    "select_properties_by_default": "true",
                    "date_window_size": 30,
                }
            )
        )
        out = run.path("peer-out.jsonl")
        stderr = run.path("peer.stderr.txt")
        sim.reset_stats()
        with out.open("wb") as handle:
            peer_run = rusage_run(
                [
                    str(peer_python),
                    wrapper,
                    sim.url,
                    "sync",
                    "--",
                    "--config",
                    str(config),
                    "--catalog",
                    str(catalog),
                ],
                stdout=handle,
                stderr=stderr,
            )
        if peer_run["rc"] != 0:
            raise BenchError(f"peer exited {peer_run['rc']}: {stderr.read_text()[-1500:]}")
        peer_run["requests"] = sim.stats()["requests"]
        peer_run["records"] = count_lines(out, b'{"type": "RECORD"')
        result["peer_run"] = peer_run
        for size in (1000, 250):
            sim.reset_stats()
            ours_out = run.path(f"peer-ours-{size}.jsonl")
            with ours_out.open("wb") as handle:
                ours = run.tap(
                    sim.tap_config(queries_per_hour=100_000, page_size=size),
                    stdout=handle,
                    label=f"peer-ours-{size}",
                )
            ours["requests"] = sim.stats()["requests"]
            ours["records"] = count_lines(ours_out, b'{"type":"RECORD"')
            ours["wall_ratio_peer_over_ours"] = round(peer_run["wall_s"] / ours["wall_s"], 2)
            result[f"ours_page_size_{size}"] = ours
    peer_q = peer_run["requests"]
    extra = peer_q - math.ceil(p.peer_profiles / 250)  # its access check, a last empty page
    result["at_60_per_hour"] = {
        "peer_queries": peer_q,
        "peer_hours": round(peer_q / 60, 2),
        "peer_queries_200k": math.ceil(200_000 / 250) + extra,
        "peer_hours_200k": round((math.ceil(200_000 / 250) + extra) / 60, 1),
        "note": "at Mixpanel's 60 queries/hour a run needs about queries/60 hours",
    }
    for size in (1000, 250):
        o = result[f"ours_page_size_{size}"]
        print(
            f"  peer {peer_run['wall_s']:.1f} s / {peer_q} requests / {peer_run['records']:,} "
            f"records; ours (page_size {size}) {o['wall_s']:.1f} s / {o['requests']} requests "
            f"/ {o['records']:,} records: peer/ours wall x{o['wall_ratio_peer_over_ours']}",
            flush=True,
        )
    return result


def ensure_peer_venv(venv: Path) -> Path:
    """The peer in its own venv (its pins are old; never in the project venv)."""
    python = venv / "bin" / "python"
    if (
        python.exists()
        and subprocess.run(
            [str(python), "-c", "import tap_mixpanel"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return python
    base = os.environ.get("BENCH_PEER_PYTHON") or getattr(sys, "_base_executable", None) or PY
    print(f"  creating the peer's venv at {venv} (tap-mixpanel from PyPI) ...", flush=True)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "tap-mixpanel"],
        capture_output=True,
        text=True,
        check=False,
    )
    if install.returncode != 0:
        raise BenchError(f"could not install tap-mixpanel: {install.stderr[-1500:]}")
    return python


def report(s: dict[str, t.Any]) -> list[str]:
    """The section's table for latest.md."""
    lines: list[str] = []
    pr = s["peer"]
    if "error" in pr:
        lines += ["## 7. Peer", f"Could not run: {pr['error']}", ""]
    else:
        pe = pr["peer_run"]
        lines += [
            f"## 7. Against the peer: {pr['peer']}",
            f"{pr['profiles']:,} realistic profiles, latency {pr['latency_s']} s + jitter "
            f"0..{pr['jitter_s']} s, hourly limit lifted for both (5 concurrent kept).",
            "",
            "| run | wall (s) | requests | records | peer ÷ ours (wall) |",
            "|---|---|---|---|---|",
            f"| peer (engage, 250/page, sequential) | {pe['wall_s']} | {pe['requests']} | "
            f"{pe['records']:,} | |",
        ]
        for size in (1000, 250):
            o = pr[f"ours_page_size_{size}"]
            lines.append(
                f"| ours, page_size {size}, 5 workers | {o['wall_s']} | "
                f"{o['requests']} | {o['records']:,} | {o['wall_ratio_peer_over_ours']}× |"
            )
        h = pr["at_60_per_hour"]
        lines += [
            "",
            f"At Mixpanel's 60 queries/hour: here the peer spends {pe['requests']} "
            f"queries ({h['peer_hours']} h of quota); for 200,000 profiles it would "
            f"spend {h['peer_queries_200k']} (≈{h['peer_hours_200k']} h), against 200 "
            "for this tap at page_size 1000 and 20 at 10000 (section 6). The peer "
            "does not pace itself: its client gives up on a 429 after 7 tries with "
            "exponential backoff.",
            "",
        ]
    return lines
