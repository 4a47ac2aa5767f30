"""One Engage budget for every Engage stream: profiles, cohorts, cohort_members, group_profiles.

Mixpanel's 60 queries an hour are per project: the four streams share one limiter and one
hourly budget in a run. With a budget far smaller than the work and on_quota_exhausted=stop,
successive runs (each after the window refilled) walk all four streams to the end, and the
simulator, which enforces the same budget, never answers 429.
"""

from __future__ import annotations

import collections
import functools
import time

import pytest

from tests.helpers.tap_runner import TapRun, catalog_args, run_tap, sim_config, simulator

#: Runs the tap as a process against the simulator (slower; marked to run apart: `-m integration`).
pytestmark = pytest.mark.integration

PAGE = 100
BUDGET = 5
WINDOW = 1.5
STREAMS = ("profiles", "cohorts", "cohort_members", "group_profiles")

make_sim = functools.partial(
    simulator,
    profiles=300,
    seed=51,
    max_page_size=PAGE,
    cohorts="101:0.6:orphans=20,102:0.3,103:0,105:0.5:group=1",
    data_groups="1:company_id:250,2:account_id:90",
    hourly_limit=BUDGET,
    window_seconds=WINDOW,
)


def test_a_small_budget_walks_all_four_streams_to_the_end_across_runs() -> None:
    with make_sim() as sim:
        config = sim_config(
            sim,
            page_size=PAGE,
            data_group_ids=[1, 2],
            queries_per_hour=BUDGET,
            quota_window_seconds=WINDOW,
            on_quota_exhausted="stop",
        )
        catalog = catalog_args(config, STREAMS)
        runs: list[TapRun] = []
        completed: set[str] = set()
        state = None
        while completed != set(STREAMS):
            assert len(runs) < 15, f"not done after {len(runs)} runs: {sorted(completed)}"
            if runs:
                time.sleep(WINDOW + 0.1)
            run = run_tap(config, state, extra=catalog)
            assert run.returncode == 0, run.stderr[-3000:]
            runs.append(run)
            state = run.last_state
            completed |= {s for s in STREAMS if run.summary_of(s)["status"] == "complete"}
        stats = sim.stats()
        profiles = {p["$distinct_id"] for p in sim.profiles}
        groups = {(g, p["$distinct_id"]) for g in (1, 2) for p in sim.group_profiles(g)}
        members = {
            c: {m["$distinct_id"] for m in sim.cohort_members(c)} for c in (101, 102, 103, 105)
        }

    assert stats["rate_limited_hourly"] == 0, "never past the budget"
    spent = [sum(run.summary_of(s)["queries"] for s in STREAMS) for run in runs]
    assert sum(spent) == stats["hourly_counted"], "every request counted, by both sides"
    assert all(0 < n <= BUDGET for n in spent), spent
    assert len(runs) >= 4, "the work is several budgets' worth"

    assert {i for run in runs for i in run.ids} == profiles
    assert {
        (r["data_group_id"], r["distinct_id"])
        for run in runs
        for r in run.records_of("group_profiles")
    } == groups
    rows: dict[int, set[str]] = collections.defaultdict(set)
    for run in runs:
        for record in run.records_of("cohort_members"):
            rows[record["cohort_id"]].add(record["distinct_id"])
    assert rows == {c: ids for c, ids in members.items() if ids}
    marked = {r["cohort_id"] for run in runs for r in run.records_of("cohort_snapshots")}
    assert marked == set(members)
    assert {r["id"] for run in runs for r in run.records_of("cohorts")} == set(members)


def test_while_a_later_stream_waits_an_earlier_one_takes_only_its_share() -> None:
    """cohort_members syncs first (name order) and starts a new round every run: while
    profiles waits for budget it takes at most queries_per_hour / 2 (two Engage streams)."""
    with make_sim(profiles=200, cohorts="101:0.6:orphans=20,102:0.3,103:0") as sim:
        config = sim_config(
            sim,
            page_size=PAGE,
            queries_per_hour=BUDGET,
            quota_window_seconds=WINDOW,
            on_quota_exhausted="stop",
        )
        catalog = catalog_args(config, ["cohort_members", "profiles"])
        first = run_tap(config, extra=catalog)  # the list + 2 + 1 + 1 pages: the whole budget
        time.sleep(WINDOW + 0.1)
        second = run_tap(config, first.last_state, extra=catalog)
        time.sleep(WINDOW + 0.1)
        third = run_tap(config, second.last_state, extra=catalog)
    assert first.summary_of("cohort_members")["status"] == "complete"
    assert first.summary_of("cohort_members")["queries"] == BUDGET
    assert first.summary_of("profiles")["status"] == "paused"
    assert "profiles waits for Engage budget: this stream takes at most 2 of the 5" in (
        second.stderr
    )
    assert second.summary_of("cohort_members")["status"] == "paused"
    assert second.summary_of("cohort_members")["queries"] == 1 + 2, "the list, then its share"
    assert second.summary_of("profiles")["queries"] == 2, "the rest of the budget"
    assert second.summary_of("profiles")["status"] == "complete"
    assert len(set(first.ids) | set(second.ids)) == 200
    assert "wait for Engage budget" not in third.stderr, "nobody waits: full speed again"
    assert third.summary_of("cohort_members")["status"] == "complete"
