"""The group_profiles stream against the simulator: exact, incremental and resumable per group.

The simulator serves data group 1 (company_id) and 2 (account_id) with their own data sets;
an unknown data_group_id answers 400.
"""

from __future__ import annotations

import functools
import typing as t

import pytest

from tap_mixpanel_profiles.simulator import MixpanelSimulator
from tests.helpers.tap_runner import (
    TapRun,
    catalog_args,
    run_tap,
    runs_until_complete,
    sim_config,
    simulator,
)

#: Runs the tap as a process against the simulator (slower; marked to run apart: `-m integration`).
pytestmark = pytest.mark.integration

PAGE = 100
make_sim = functools.partial(
    simulator, profiles=200, seed=41, max_page_size=PAGE, data_groups="1:company_id:450,2:acc:120"
)


def run_groups(
    config: dict[str, t.Any],
    state: dict[str, t.Any] | None = None,
    streams: t.Sequence[str] = ("group_profiles",),
) -> TapRun:
    return run_tap(config, state, extra=catalog_args(config, streams))


def served(sim: MixpanelSimulator, group: int) -> dict[str, dict[str, t.Any]]:
    return {p["$distinct_id"]: p["$properties"] for p in sim.group_profiles(group)}


def delivered(runs: t.Sequence[TapRun], group: int) -> dict[str, dict[str, t.Any]]:
    return {
        r["distinct_id"]: r
        for run in runs
        for r in run.records_of("group_profiles")
        if r["data_group_id"] == group
    }


def test_every_group_profile_exactly_once_keyed_by_group_and_key_value() -> None:
    with make_sim() as sim:
        run = run_groups(sim_config(sim, page_size=PAGE, data_group_ids=[1, 2]))
        stats = sim.stats()
        expected = {group: served(sim, group) for group in (1, 2)}
    assert run.returncode == 0, run.stderr[-3000:]
    records = run.records_of("group_profiles")
    keys = [(r["data_group_id"], r["distinct_id"]) for r in records]
    assert len(keys) == len(set(keys)) == 450 + 120
    for group, profiles in expected.items():
        rows = delivered([run], group)
        assert rows.keys() == profiles.keys()
        for key, props in profiles.items():
            assert rows[key]["properties"] == props
            seen = props.get("$last_seen")
            assert rows[key]["last_seen"] == (seen + "+00:00" if seen else None)
    assert stats["data_group_requests"] == {"1": 5, "2": 2}, "page-parallel per group"
    assert run.summary_of("group_profiles")["queries"] == 7
    schema = next(m for m in run.messages if m["type"] == "SCHEMA")
    assert schema["key_properties"] == ["data_group_id", "distinct_id"]
    bookmarks = run.bookmark_of("group_profiles")["data_groups"]
    assert set(bookmarks) == {"1", "2"}
    assert all(b["pass"] == [] and b["replication_key_value"] for b in bookmarks.values())


def test_incremental_per_group_reads_only_what_changed() -> None:
    with make_sim() as sim:
        config = sim_config(sim, page_size=PAGE, data_group_ids=[1, 2])
        first = run_groups(config)
        assert first.returncode == 0, first.stderr[-3000:]
        before = first.bookmark_of("group_profiles")["data_groups"]
        changed = set(sim.touch_profiles(15, data_group_id=1))
        sim.reset_stats()
        second = run_groups(config, first.last_state)
        stats = sim.stats()
    assert second.returncode == 0, second.stderr[-3000:]
    group1 = set(delivered([second], 1))
    assert changed <= group1 and len(group1) < PAGE, "only profiles seen since the bookmark"
    assert len(delivered([second], 2)) < 10
    assert stats["data_group_requests"] == {"1": 1, "2": 1}
    assert second.stderr.count("Incremental sync") == 2
    after = second.bookmark_of("group_profiles")["data_groups"]
    assert after["1"]["replication_key_value"] > before["1"]["replication_key_value"]
    assert after["2"]["replication_key_value"] >= before["2"]["replication_key_value"]


def test_a_pause_inside_a_group_resumes_its_pass() -> None:
    with make_sim(hourly_limit=3, window_seconds=1.5) as sim:
        config = sim_config(
            sim,
            page_size=PAGE,
            data_group_ids=[2, 1],
            queries_per_hour=3,
            quota_window_seconds=1.5,
            on_quota_exhausted="stop",
            state_every_pages=1,
        )
        runs = runs_until_complete(
            lambda state: run_groups(config, state), "group_profiles", max_runs=6, between=1.6
        )
        stats = sim.stats()
        expected = {group: served(sim, group) for group in (1, 2)}
    assert runs[0].summary_of("group_profiles")["data_groups"] == {
        "2": "complete",
        "1": "unfinished",
    }
    saved = runs[0].bookmark_of("group_profiles")["data_groups"]["1"]["pass"][0]
    assert saved["segments"][0]["session"]["next_page"] == 1, "page 0 read, its session kept"
    assert len(runs) == 3 and runs[-1].summary_of("group_profiles")["status"] == "complete"
    for group, profiles in expected.items():
        assert delivered(runs, group).keys() == profiles.keys()
    rows = [r for run in runs for r in run.records_of("group_profiles") if r["data_group_id"] == 1]
    assert len(rows) == 450, "group 1 resumed page by page: nothing read twice"
    assert "Incremental sync" in runs[1].stderr, "group 2, complete, went on incrementally"
    assert stats["rate_limited_hourly"] == 0


def test_data_group_ids_are_required_before_any_stream_syncs() -> None:
    with make_sim() as sim:
        run = run_groups(sim_config(sim), streams=("profiles", "group_profiles"))
        stats = sim.stats()
    assert run.returncode == 3, run.stderr[-3000:]
    assert "Setting 'data_group_ids' is required when the group_profiles stream" in run.stderr
    assert stats["requests"] == 0 and run.records == []
    assert "Traceback" not in run.stderr


def test_an_unknown_data_group_is_a_config_error_after_the_others_are_delivered() -> None:
    with make_sim() as sim:
        run = run_groups(sim_config(sim, page_size=PAGE, data_group_ids=[9, 2]))
        expected = served(sim, 2)
    assert run.returncode == 3, run.stderr[-3000:]
    assert delivered([run], 2).keys() == expected.keys()
    assert "Setting 'data_group_ids': Mixpanel refused data group 9" in run.stderr
    summary = run.summary_of("group_profiles")
    assert summary["failed_page_indices"] == ["data group 9"]
    assert summary["data_groups"] == {"9": "refused", "2": "complete"}
