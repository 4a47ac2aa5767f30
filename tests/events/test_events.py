"""The events stream end to end: the console script against the simulator's Export API.

Parallel chunks within the limits, chunk order, exact contents, faults, failed
date ranges, SIGTERM and resume, incremental runs with lookback, quota pauses,
fatal errors that do not stop the profiles stream, and tap | target-duckdb.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import signal
import time
import typing as t
from pathlib import Path

import pytest

from tap_mixpanel_profiles.events.export import to_record
from tap_mixpanel_profiles.events.stream import EventsStream
from tap_mixpanel_profiles.simulator import MixpanelSimulator
from tap_mixpanel_profiles.tap import TapMixpanelProfiles
from tests.helpers.e2e import query, run_pipe, target_config
from tests.helpers.tap_runner import (
    TapRun,
    catalog_args,
    run_tap,
    select_streams,
    sim_config,
    simulator,
    start_tap,
)

#: Runs the tap as a process against the simulator (slower; marked to run apart: `-m integration`).
pytestmark = pytest.mark.integration

TODAY = dt.datetime.now(dt.timezone.utc).date()


def day(n: int) -> dt.date:
    """`n` days before today."""
    return TODAY - dt.timedelta(days=n)


make_sim = functools.partial(simulator, profiles=200, seed=5, events_per_day=40)


def expected_ids(sim: MixpanelSimulator, first: dt.date, last: dt.date = TODAY) -> set[str]:
    """The event_ids (Mixpanel's identity) of every distinct event the range holds."""
    return {to_record(e)[0]["event_id"] for e in sim.events(first, last)}


def events_config(sim: MixpanelSimulator, first: dt.date, **extra: t.Any) -> dict[str, t.Any]:
    return sim_config(sim, start_date=first.isoformat(), **extra)


def run_events(
    config: dict[str, t.Any],
    state: dict[str, t.Any] | None = None,
    streams: t.Sequence[str] = ("profiles", "events"),
) -> TapRun:
    return run_tap(config, state, extra=catalog_args(config, streams))


def event_ids(run: TapRun) -> set[str]:
    return {r["event_id"] for r in run.records_of("events")}


def run_day(record: dict[str, t.Any]) -> dt.date:
    return dt.datetime.fromtimestamp(record["properties"]["time"], dt.timezone.utc).date()


# --------------------------------------------------------------------------- selection
def test_events_are_off_by_default():
    with make_sim() as sim:
        run = run_tap(events_config(sim, day(5)))
        assert run.returncode == 0, run.stderr[-3000:]
        assert len(run.ids) == 200
        assert not [m for m in run.messages if m.get("stream") == "events"]
        assert sim.stats()["export_requests"] == 0


def test_missing_start_date_fails_before_any_stream_syncs():
    with make_sim() as sim:
        run = run_events(sim_config(sim))
        assert run.returncode == 3
        assert "start_date" in run.stderr.strip().splitlines()[-1]
        assert not run.records
        stats = sim.stats()
        assert stats["requests"] == 0 and stats["export_requests"] == 0


# ------------------------------------------------------------------ parallel, ordered, exact
def test_chunks_fetched_in_parallel_within_limits_and_written_in_order():
    with make_sim(export_concurrency_limit=3, export_latency=1.0) as sim:
        config = events_config(sim, day(11), events_chunk_days=1, events_max_workers=3)
        run = run_events(config)
        assert run.returncode == 0, run.stderr[-3000:]
        stats = sim.stats()
        summary = run.summary_of("events")
    records = run.records_of("events")
    assert event_ids(run) == expected_ids(sim, day(11))
    assert len(records) > len(event_ids(run)), "the export repeats some events"
    days = [run_day(r) for r in records]
    assert days == sorted(days), "records leave in chunk order"
    assert summary["status"] == "complete" and summary["successful_chunks"] == 12
    assert summary["total_rows"] == len(records) and summary["failed_date_ranges"] == []
    assert 2 <= summary["max_in_flight"] <= 3, "parallel, within events_max_workers"
    assert stats["export_max_in_flight"] <= 3 and stats["export_rate_limited_concurrent"] == 0
    assert stats["export_requests"] == 12
    assert "events chunk 12/12" in run.stderr
    assert {r["distinct_id"] for r in records} <= set(run.ids), "every event joins a profile"
    bookmark = run.bookmark_of("events")
    assert bookmark["last_date"] == TODAY.isoformat() and bookmark["resume_date"] is None
    assert bookmark["replication_key_value"] == f"{TODAY.isoformat()}T00:00:00+00:00"


def test_faults_are_retried_and_nothing_is_lost():
    with make_sim(export_fault_5xx=0.2, export_fault_reset=0.15, export_fault_truncated=0.2) as sim:
        config = events_config(sim, day(15), events_chunk_days=2, max_retries=15)
        run = run_events(config, streams=["events"])
        assert run.returncode == 0, run.stderr[-3000:]
        stats = sim.stats()
    assert event_ids(run) == expected_ids(sim, day(15))
    assert (
        stats["export_fault_5xx"] + stats["export_fault_reset"] + stats["export_fault_truncated"]
        > 0
    )
    assert run.summary_of("events")["retries"] > 0


def test_failed_range_is_named_the_bookmark_holds_and_the_rerun_fetches_it():
    with make_sim(export_fail_dates=day(5).isoformat()) as sim:
        config = events_config(sim, day(9), events_chunk_days=2, max_retries=1)
        first = run_events(config)
        assert first.returncode == 1, first.stderr[-3000:]
        failed = f"{day(5).isoformat()}..{day(4).isoformat()}"
        assert f"events: 1 date ranges failed: {failed}" in first.stderr
        assert first.summary_of("events")["failed_date_ranges"] == [failed]
        assert first.summary_of("events")["failed_chunks"] == 1
        assert len(first.ids) == 200, "the profiles stream still synced"
        assert failed in first.stderr.strip().splitlines()[-1]
        bookmark = first.bookmark_of("events")
        assert bookmark["resume_date"] == day(5).isoformat() and not bookmark.get("last_date")

        sim.set_faults(export_fail_dates="")
        second = run_events(config, first.last_state)
        assert second.returncode == 0, second.stderr[-3000:]
    assert second.summary_of("events")["from_date"] == day(5).isoformat()
    assert event_ids(first) | event_ids(second) == expected_ids(sim, day(9))
    assert second.bookmark_of("events")["last_date"] == TODAY.isoformat()


# ----------------------------------------------------------------- resume and incremental
def test_sigterm_writes_state_and_the_rerun_resumes_at_the_first_unfinished_chunk(tmp_path: Path):
    with make_sim(export_latency=0.4) as sim:
        config = events_config(sim, day(11), events_chunk_days=1, events_max_workers=2)
        out, err = tmp_path / "out", tmp_path / "err"
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = start_tap(
                config, extra=catalog_args(config, ["events"]), stdout=stdout, stderr=stderr
            )
            deadline = time.monotonic() + 60
            while "events chunk 4/12" not in err.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
        first = TapRun(code, out.read_text(), err.read_text())
        assert code == 143, first.stderr[-3000:]
        resume = first.bookmark_of("events")["resume_date"]
        assert day(7).isoformat() <= resume < TODAY.isoformat()
        assert first.summary_of("events")["status"] == "interrupted"

        sim.reset_stats()
        second = run_events(config, first.last_state, streams=["events"])
        assert second.returncode == 0, second.stderr[-3000:]
        stats = sim.stats()
    assert second.summary_of("events")["from_date"] == resume
    summary = second.summary_of("events")
    assert (
        summary["queries"] - summary["rate_limited"]
        == (TODAY - dt.date.fromisoformat(resume)).days + 1
    )
    assert stats["export_max_in_flight"] <= 2
    assert event_ids(first) | event_ids(second) == expected_ids(sim, day(11))


def test_incremental_run_starts_lookback_days_before_the_last_synced_day():
    with make_sim() as sim:
        config = events_config(sim, day(20), events_chunk_days=7, events_lookback_days=3)
        first = run_events(config, streams=["events"])
        assert (
            first.returncode == 0 and first.bookmark_of("events")["last_date"] == TODAY.isoformat()
        )
        assert event_ids(first) == expected_ids(sim, day(20))

        sim.reset_stats()
        second = run_events(config, first.last_state, streams=["events"])
        assert second.returncode == 0, second.stderr[-3000:]
        summary = second.summary_of("events")
        assert (summary["from_date"], summary["to_date"]) == (day(3).isoformat(), TODAY.isoformat())
        # (a 429 is possible: the previous run's queries may still be in the server's last second)
        assert summary["queries"] - summary["rate_limited"] == 1, second.stderr[-3000:]
        assert event_ids(second) == expected_ids(sim, day(3))
        assert "incremental from" in second.stderr

        no_lookback = run_events(
            {**config, "events_lookback_days": 0}, first.last_state, streams=["events"]
        )
        assert no_lookback.summary_of("events")["from_date"] == TODAY.isoformat()


def test_state_from_other_settings_is_ignored():
    with make_sim() as sim:
        config = events_config(sim, day(4))
        first = run_events(config, streams=["events"])
        other = run_events(
            {**config, "event_names": ["Purchase"]}, first.last_state, streams=["events"]
        )
        assert other.returncode == 0, other.stderr[-3000:]
        assert "different settings (event_names)" in other.stderr
        assert other.summary_of("events")["from_date"] == day(4).isoformat()
        assert event_ids(other) == {
            to_record(e)[0]["event_id"] for e in sim.events(day(4), TODAY, event=["Purchase"])
        }
        # An unreadable STATE is ignored with a warning too, never a crash.
        broken = {"bookmarks": {"events": {"fingerprint": "garbage", "last_date": "not-a-date"}}}
        again = run_events(config, broken, streams=["events"])
        assert again.returncode == 0, again.stderr[-3000:]
        assert again.summary_of("events")["from_date"] == day(4).isoformat()


def test_quota_stop_mode_pauses_with_state_and_later_runs_finish():
    with make_sim() as sim:
        config = events_config(
            sim,
            day(7),
            events_chunk_days=1,
            events_queries_per_hour=3,
            quota_window_seconds=2,
            on_quota_exhausted="stop",
        )
        seen: set[str] = set()
        state, runs = None, []
        for _ in range(8):
            run = run_events(config, state, streams=["events"])
            assert run.returncode == 0, run.stderr[-3000:]
            runs.append(run)
            seen |= event_ids(run)
            state = run.last_state
            if run.summary_of("events")["status"] == "complete":
                break
            assert run.summary_of("events")["status"] == "paused"
            time.sleep(2.1)
        assert runs[-1].summary_of("events")["status"] == "complete"
        assert len(runs) >= 3 and "next run can start after" in runs[0].stderr
        assert seen == expected_ids(sim, day(7))


# ------------------------------------------------------------------------- fatal errors
def test_a_rejected_export_query_fails_events_but_profiles_still_sync():
    with make_sim() as sim:
        run = run_events(events_config(sim, day(3), events_where="properties[oops"))
        assert run.returncode == 3, run.stderr[-3000:]
        assert len(run.ids) == 200
        assert run.summary_of("events")["status"] == "failed"
        assert "rejected the export query" in run.stderr.strip().splitlines()[-1]


def test_a_rejected_engage_query_fails_profiles_but_events_still_sync():
    with make_sim() as sim:
        run = run_events(events_config(sim, day(3), where="properties[oops"))
        assert run.returncode == 3, run.stderr[-3000:]
        assert event_ids(run) == expected_ids(sim, day(3))
        assert not run.records_of("profiles")
        assert run.summary_of("profiles")["status"] == "failed"
        assert run.summary_of("events")["status"] == "complete"
        assert "rejected the query" in run.stderr.strip().splitlines()[-1]


def test_a_project_today_behind_ours_exports_through_yesterday():
    with make_sim(export_today=day(1).isoformat()) as sim:
        run = run_events(events_config(sim, day(3)), streams=["events"])
        assert run.returncode == 0, run.stderr[-3000:]
        assert "project_timezone" in run.stderr
        assert run.bookmark_of("events")["last_date"] == day(1).isoformat()
        assert event_ids(run) == expected_ids(sim, day(3), day(1))


# ------------------------------------------------------------------- record paths
def test_fast_and_sdk_record_paths_write_the_same_events(
    capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    """EventsStream works with and without fast_records' shortcut (same RECORD messages)."""
    caplog.set_level(logging.INFO)
    with make_sim(events_per_day=30) as sim:
        config = events_config(sim, day(2))
        catalog = select_streams(TapMixpanelProfiles(config=config).catalog_dict, ["events"])
        outputs = []
        for fast in (True, False):
            monkeypatch.setattr(EventsStream, "fast_record_path", fast)
            capsys.readouterr()
            caplog.clear()
            TapMixpanelProfiles(config=config, catalog=catalog).run()
            out = capsys.readouterr().out
            assert f"Record path: {'fast' if fast else 'SDK (disabled)'}" in caplog.text
            messages = [json.loads(line) for line in out.split("\n") if line.strip()]
            outputs.append([m["record"] for m in messages if m["type"] == "RECORD"])
    assert outputs[0] and outputs[0] == outputs[1]
    assert {r["event_id"] for r in outputs[0]} == expected_ids(sim, day(2))


# ------------------------------------------------------------------------ into DuckDB
@pytest.mark.e2e
def test_pipe_into_duckdb_exact_counts_and_events_join_profiles(tmp_path: Path):
    with make_sim(profiles=500, events_per_day=60) as sim:
        config = events_config(
            sim,
            day(13),
            events_chunk_days=5,
            property_columns="all",  # docs/events.md's join query reads $email
            property_schema_cache_dir=str(tmp_path / "cache"),
        )
        db = tmp_path / "events.duckdb"  # not mixpanel.duckdb: the catalog would shadow the schema
        run = run_pipe(
            tmp_path / "run",
            config,
            target_config(db),
            tap_args=catalog_args(config, ["profiles", "events"]),
        )
        assert run.tap_rc == 0 and run.target_rc == 0, run.describe()
        expected = expected_ids(sim, day(13))
        profile_ids = {p["$distinct_id"] for p in sim.profiles}
    rows, distinct, insert_ids = query(
        db,
        "SELECT count(*), count(DISTINCT event_id), count(DISTINCT insert_id) FROM mixpanel.events",
    )[0]
    assert rows == distinct == len(expected), "one row per event: repeats were upserted"
    assert insert_ids < rows, "events that share an $insert_id (another name) are two rows"
    loaded = {r[0] for r in query(db, "SELECT event_id FROM mixpanel.events")}
    assert loaded == expected
    assert query(db, "SELECT count(*) FROM mixpanel.profiles")[0][0] == len(profile_ids)
    orphans = query(
        db,
        "SELECT count(*) FROM mixpanel.events e LEFT JOIN mixpanel.profiles p "
        "USING (distinct_id) WHERE p.distinct_id IS NULL",
    )[0][0]
    assert orphans == 0, "every event joins its profile on distinct_id"
    joined = query(
        db, "SELECT count(*) FROM mixpanel.events e JOIN mixpanel.profiles p USING (distinct_id)"
    )[0][0]
    assert joined == len(expected)
    types = dict(
        query(
            db,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'mixpanel' AND table_name = 'events'",
        )
    )
    assert types["time"] == "TIMESTAMP" and types["properties"] == "JSON"
    # The manual's join query (docs/events.md) runs.
    top = query(
        db,
        'SELECT p."$email" AS email, e.event, count(*) AS n '
        "FROM mixpanel.events e JOIN mixpanel.profiles p USING (distinct_id) "
        "GROUP BY ALL ORDER BY n DESC LIMIT 20",
    )
    assert top and all(email for email, _, _ in top)
    # Properties arrive intact (unicode, U+2028, nesting).
    sample = {
        r[0]: json.loads(r[1])
        for r in query(db, "SELECT event_id, CAST(properties AS VARCHAR) FROM mixpanel.events")
    }
    served = {to_record(e)[0]["event_id"]: e["properties"] for e in sim.events(day(13), TODAY)}
    assert sample == served
    final = run.states[-1]["bookmarks"]
    assert final["events"]["last_date"] == TODAY.isoformat()
