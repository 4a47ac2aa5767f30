"""Resumable syncs, quota pauses and incremental sync, against the simulator over HTTP.

The quota window is compressed to seconds so an "hourly" limit can be spent and
refilled inside a test.
"""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import tempfile
import time

import pytest

from tap_mixpanel_profiles.simulator import MixpanelSimulator
from tests.helpers.e2e import TARGET, query, target_config
from tests.helpers.tap_runner import (
    TapRun,
    run_tap,
    runs_until_complete,
    sim_config,
    simulator,
    start_tap,
    write_json,
)

#: Runs the tap as a process against the simulator (slower; marked to run apart: `-m integration`).
pytestmark = pytest.mark.integration

PROFILES = 2000
PAGE = 100  # 20 pages


make_sim = functools.partial(
    simulator, profiles=PROFILES, seed=11, max_page_size=PAGE, latency=0.01
)


def all_ids(sim: MixpanelSimulator) -> set[str]:
    return {p["$distinct_id"] for p in sim.profiles}


def run_until_complete(
    sim: MixpanelSimulator, config: dict, *, max_runs: int = 12, between: float = 0.0
) -> tuple[list[TapRun], set[str]]:
    """Rerun with the last STATE until a run completes; every run must exit 0."""
    runs = runs_until_complete(
        lambda state: run_tap(config, state), "profiles", max_runs=max_runs, between=between
    )
    return runs, {i for run in runs for i in run.ids}


def test_stop_mode_walks_through_an_export_larger_than_the_quota():
    with make_sim(hourly_limit=6, window_seconds=2.0) as sim:
        config = sim_config(
            sim,
            page_size=PAGE,
            queries_per_hour=6,
            quota_window_seconds=2,
            on_quota_exhausted="stop",
        )
        runs, seen = run_until_complete(sim, config, between=2.2)
        assert seen == all_ids(sim)
        assert len(runs) >= 4  # 20 pages at 6 per window
        assert sim.stats()["rate_limited_hourly"] == 0, "the client budget must prevent 429s"
        paused = runs[0]
        assert "next run can start after" in paused.stderr
        assert runs[-1].bookmark.get("replication_key_value")
        assert not runs[-1].bookmark.get("pass")


def test_stop_mode_survives_sessions_expiring_between_runs():
    with make_sim(hourly_limit=6, window_seconds=1.5, session_max_age=1.0) as sim:
        config = sim_config(
            sim,
            page_size=PAGE,
            queries_per_hour=6,
            quota_window_seconds=1.5,
            on_quota_exhausted="stop",
        )
        runs, seen = run_until_complete(sim, config, max_runs=25, between=1.7)
        assert seen == all_ids(sim)
        assert any("ranges" in r.stderr for r in runs), "expected the $last_seen ranges scheme"


def test_wait_mode_finishes_in_one_run_within_the_windows():
    with make_sim(hourly_limit=8, window_seconds=1.0) as sim:
        config = sim_config(sim, page_size=PAGE, queries_per_hour=8, quota_window_seconds=1.0)
        run = run_tap(config)
        assert run.returncode == 0, run.stderr[-3000:]
        assert set(run.ids) == all_ids(sim)
        stats = sim.stats()
        assert stats["rate_limited_hourly"] == 0
        assert stats["requests"] == 20
        # 20 queries at 8 per window need at least two full windows of waiting.
        assert run.summary["duration_seconds"] >= 2.0
        assert "budget spent" in run.stderr and "resuming" in run.stderr


def test_sigterm_writes_state_and_the_next_run_resumes():
    with make_sim(latency=0.3) as sim:
        config = sim_config(sim, page_size=PAGE, max_workers=2)
        # stdout to a file: a pipe nobody reads before the signal would fill and block the tap.
        with tempfile.TemporaryFile("w+", encoding="utf-8") as stdout:
            proc = start_tap(config, stdout=stdout)
            time.sleep(3.0)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
            stdout.seek(0)
            out = stdout.read()
        first = TapRun(proc.returncode, out, err)
        assert first.returncode == 143, err[-2000:]
        assert first.messages[-1]["type"] == "STATE"
        assert first.bookmark["pass"][0]["segments"][0]["session"]["next_page"] > 1
        assert "SIGTERM" in err and "Traceback" not in err
        second = run_tap(config, first.last_state)
        assert second.returncode == 0, second.stderr[-2000:]
        assert set(first.ids) | set(second.ids) == all_ids(sim)
        # Only the missing pages were fetched again (plus at most the pages in flight).
        assert len(first.ids) >= PAGE
        assert len(second.ids) <= PROFILES - len(first.ids) + 2 * PAGE


def test_incremental_run_reads_only_changed_profiles():
    with make_sim() as sim:
        config = sim_config(sim, page_size=PAGE)
        first = run_tap(config)
        assert first.returncode == 0 and set(first.ids) == all_ids(sim)
        bookmark = first.bookmark["replication_key_value"]
        changed = set(sim.touch_profiles(30))
        sim.reset_stats()
        second = run_tap(config, first.last_state)
        assert second.returncode == 0, second.stderr[-2000:]
        assert changed <= set(second.ids)
        assert len(second.ids) < 2 * PAGE  # not the full set
        assert sim.stats()["requests"] <= 2
        assert "Incremental sync" in second.stderr and bookmark[:19] in second.stderr
        assert second.bookmark["replication_key_value"] >= bookmark


def test_paused_incremental_pass_does_not_move_the_bookmark():
    with make_sim() as sim:
        config = sim_config(sim, page_size=PAGE, queries_per_hour=50)
        first = run_tap(config)
        assert first.returncode == 0
        bookmark = first.bookmark["replication_key_value"]
        sim.touch_profiles(PAGE * 5)  # 5 pages of changes
        stopped = dict(
            config, queries_per_hour=2, quota_window_seconds=30, on_quota_exhausted="stop"
        )
        second = run_tap(stopped, first.last_state)
        assert second.returncode == 0 and second.summary["status"] == "paused"
        assert second.bookmark["replication_key_value"] == bookmark
        assert second.bookmark["pass"][0]["where"].count("$last_seen") == 1


def test_state_from_other_settings_is_ignored_with_a_warning():
    with make_sim() as sim:
        config = sim_config(sim, page_size=PAGE)
        first = run_tap(config)
        other = dict(config, where='defined (properties["$last_seen"])')
        second = run_tap(other, first.last_state)
        assert second.returncode == 0
        assert "different settings" in second.stderr and "where" in second.stderr
        assert len(second.ids) > PROFILES * 0.9  # a full read, not incremental


def test_garbage_state_is_ignored_not_fatal():
    with make_sim() as sim:
        config = sim_config(sim, page_size=PAGE)
        state = {
            "bookmarks": {
                "profiles": {
                    "fingerprint": "junk",
                    "pass": {"segments": "x"},
                    "replication_key_value": "yesterday",
                }
            }
        }
        run = run_tap(config, state)
        assert run.returncode == 0, run.stderr[-2000:]
        assert set(run.ids) == all_ids(sim)


def test_two_concurrent_slots_server_completes_with_few_429s():
    with make_sim(concurrency_limit=2, latency=0.05) as sim:
        config = sim_config(sim, page_size=PAGE)
        run = run_tap(config)
        assert run.returncode == 0, run.stderr[-2000:]
        assert set(run.ids) == all_ids(sim)
        assert sim.stats()["rate_limited_concurrent"] <= 4
        assert "lowering parallelism" in run.stderr


@pytest.mark.parametrize("expiry", [0.25])
def test_expiring_sessions_still_deliver_everything_in_one_run(expiry):
    with make_sim(session_max_age=expiry, latency=0.05) as sim:
        config = sim_config(sim, page_size=PAGE, max_workers=2)
        run = run_tap(config)
        assert run.returncode == 0, run.stderr[-2000:]
        assert set(run.ids) == all_ids(sim)
        assert run.summary["scheme"] == "ranges"


@pytest.mark.e2e  # through target-duckdb: the newest-Python unit run (-m "not e2e") may have none
def test_sigkill_then_resume_through_target_duckdb(tmp_path):
    target_cfg = write_json(target_config(tmp_path / "p.duckdb", batch_size_rows=300), tmp_path)
    with make_sim(latency=0.15) as sim:
        config = sim_config(sim, page_size=PAGE, max_workers=2)

        def pipe(state):
            tap = start_tap(config, state, stderr=subprocess.DEVNULL)
            tgt = subprocess.Popen(
                [str(TARGET), "--config", str(target_cfg)],
                stdin=tap.stdout,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            tap.stdout.close()
            return tap, tgt

        tap, tgt = pipe(None)
        time.sleep(1.5)
        tap.kill()
        out, _ = tgt.communicate(timeout=60)
        tap.wait(timeout=10)
        states = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert states, "target emitted no STATE before the kill"
        tap2, tgt2 = pipe(states[-1])
        tgt2.communicate(timeout=120)
        assert tap2.wait(timeout=30) == 0
        ((count, distinct),) = query(
            tmp_path / "p.duckdb",
            "select count(*), count(distinct distinct_id) from mixpanel.profiles",
        )
        assert count == distinct == PROFILES


def test_a_reader_that_goes_away_ends_the_tap_with_one_clear_line():
    with make_sim(latency=0.02) as sim:
        proc = start_tap(sim_config(sim, page_size=PAGE))
        proc.stdout.read(2000)
        proc.stdout.close()  # the "target" exits
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 1
        assert (
            err.strip()
            .splitlines()[-1]
            .endswith(
                "Output closed by its reader (did the target exit?): sync incomplete; rerun with "
                "the last STATE the target emitted."
            )
        )
        assert "Traceback" not in err and "Exception ignored" not in err
