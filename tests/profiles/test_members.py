"""The cohort_members stream against the simulator: exact membership, the key, snapshots.

The simulator's default cohorts: 101 (60 % of the users plus 40 members without a profile),
102 (30 %, hidden, 25 without a profile: overlaps 101), 103 (empty), 104 (its data group was
deleted: its members answer 404 "Missing Datagroup"), 105 (half of data group 1's companies).
"""

from __future__ import annotations

import collections
import functools
import json
import math
import re
import signal
import typing as t

import pytest

from tap_mixpanel_profiles.simulator import MixpanelSimulator
from tap_mixpanel_profiles.tap import TapMixpanelProfiles
from tests.helpers.engage_fake import EngageFake, base_config
from tests.helpers.tap_runner import (
    TapRun,
    catalog_args,
    run_tap,
    runs_until_complete,
    select_streams,
    sim_config,
    simulator,
    start_tap,
)

#: Runs the tap as a process against the simulator (slower; marked to run apart: `-m integration`).
pytestmark = pytest.mark.integration

PAGE = 100
make_sim = functools.partial(
    simulator, profiles=500, seed=31, max_page_size=PAGE, data_groups="1:company_id:400"
)


def members_of(sim: MixpanelSimulator, cohort_id: int) -> set[str]:
    return {m["$distinct_id"] for m in sim.cohort_members(cohort_id)}


def by_cohort(run: TapRun) -> dict[int, list[str]]:
    rows: dict[int, list[str]] = collections.defaultdict(list)
    for record in run.records_of("cohort_members"):
        rows[record["cohort_id"]].append(record["distinct_id"])
    return rows


def snapshots(run: TapRun) -> dict[int, dict[str, t.Any]]:
    return {r["cohort_id"]: r for r in run.records_of("cohort_snapshots")}


def run_members(config: dict[str, t.Any], state: dict[str, t.Any] | None = None) -> TapRun:
    return run_tap(config, state, extra=catalog_args(config, ["cohorts", "cohort_members"]))


@pytest.fixture(scope="module")
def full_run() -> t.Iterator[tuple[MixpanelSimulator, TapRun, dict[str, t.Any]]]:
    """One run of cohorts + cohort_members on the default cohorts (page size 100)."""
    with make_sim() as sim:
        run = run_members(sim_config(sim, page_size=PAGE))
        yield sim, run, sim.stats()


def test_exact_membership_per_cohort(full_run: t.Any) -> None:
    sim, run, _ = full_run
    rows = by_cohort(run)
    for cohort in (101, 102, 103, 105):
        expected = members_of(sim, cohort)
        assert set(rows[cohort]) == expected, cohort
        assert len(rows[cohort]) == len(expected), f"cohort {cohort}: a member delivered twice"
    assert len(rows[101]) == sim.cohorts()[0]["count"] > PAGE, "101 spans several pages"
    profiles = {p["$distinct_id"] for p in sim.profiles}
    assert len(set(rows[101]) - profiles) == 40, "members without a profile are members too"
    assert 104 not in rows
    assert rows[103] == [], "the empty cohort has no rows"


def test_the_key_is_cohort_and_member_and_a_person_in_two_cohorts_keeps_both_rows(
    full_run: t.Any,
) -> None:
    sim, run, _ = full_run
    keys = [(r["cohort_id"], r["distinct_id"]) for r in run.records_of("cohort_members")]
    assert len(keys) == len(set(keys))
    both = members_of(sim, 101) & members_of(sim, 102)
    assert both, "the data set must have people in both cohorts"
    rows = by_cohort(run)
    assert both <= set(rows[101]) and both <= set(rows[102])
    schema = next(
        m for m in run.messages if m["type"] == "SCHEMA" and m["stream"] == "cohort_members"
    )
    assert schema["key_properties"] == ["cohort_id", "distinct_id"]


def test_no_profile_properties_travel_by_default(full_run: t.Any) -> None:
    _, run, _ = full_run
    records = run.records_of("cohort_members")
    assert records and all(r["properties"] == {} for r in records)
    assert {r["data_group_id"] for r in records if r["cohort_id"] == 105} == {1}
    assert {r["data_group_id"] for r in records if r["cohort_id"] != 105} == {None}


def test_the_failing_cohort_is_named_and_the_others_delivered(full_run: t.Any) -> None:
    _, run, _ = full_run
    assert run.returncode == 1, run.stderr[-3000:]
    summary = run.summary_of("cohort_members")
    assert summary["status"] == "failed" and summary["failed_cohorts"] == ["cohort 104"]
    assert summary["cohorts"] == {
        "101": "complete",
        "102": "complete",
        "103": "complete",
        "104": "refused",
        "105": "complete",
    }
    assert "Missing Datagroup" in run.stderr
    assert "not fetched: cohort_members: cohort 104." in run.stderr
    assert run.summary_of("cohorts")["status"] == "complete"


def test_a_marker_per_complete_snapshot_after_its_rows(full_run: t.Any) -> None:
    _, run, _ = full_run
    marks = snapshots(run)
    assert sorted(marks) == [101, 102, 103, 105], "no marker for the refused cohort"
    synced = {r["cohort_id"]: r["synced_at"] for r in run.records_of("cohort_members")}
    for cohort in (101, 102, 105):
        assert synced[cohort] == marks[cohort]["synced_at"]
    # Every marker follows the last row of its cohort in the message stream.
    order = [
        (m["stream"], m["record"]["cohort_id"])
        for m in run.messages
        if m["type"] == "RECORD" and m["stream"] != "cohorts"
    ]
    for cohort in (101, 102, 105):
        last_row = max(i for i, o in enumerate(order) if o == ("cohort_members", cohort))
        assert order.index(("cohort_snapshots", cohort)) > last_row
    state = run.bookmark_of("cohort_members")
    assert state["round"] is None, "every cohort is settled: the round is over"
    assert state["cohorts"]["101"]["complete_synced_at"] == marks[101]["synced_at"]


def test_the_plan_is_logged_before_any_member_is_fetched_and_the_list_read_once(
    full_run: t.Any,
) -> None:
    sim, run, stats = full_run
    pages = sum(max(1, math.ceil(c["count"] / PAGE)) for c in sim.cohorts())
    plan = re.search(
        r"cohort_members plan: (\d+) cohorts, (\d+) pages .*? (\d+) queries", run.stderr
    )
    assert plan, run.stderr[-3000:]
    assert (int(plan.group(1)), int(plan.group(2)), int(plan.group(3))) == (5, pages, pages + 1)
    assert "hours of quota at 60 queries per 3600 s" in run.stderr
    assert run.stderr.index("cohort_members plan:") < run.stderr.index("cohort 101 page 1/")
    assert stats["requests_by_endpoint"]["cohorts_list"] == 1, "cohorts reuses the list"
    member_queries = run.summary_of("cohort_members")["queries"]
    assert stats["requests"] == pages, "one Engage query per member page"
    assert member_queries == pages + 1, "cohort_members read the list (it syncs first)"
    assert run.summary_of("cohorts")["queries"] == 0
    assert [r["id"] for r in run.records_of("cohorts")] == [c["id"] for c in sim.cohorts()]


def test_only_the_asked_cohorts_and_properties() -> None:
    with make_sim() as sim:
        config = sim_config(
            sim,
            page_size=PAGE,
            cohort_members_cohort_ids=[102, 999],
            cohort_members_properties=["$email", "plan"],
        )
        run = run_members(config)
        profiles = {p["$distinct_id"]: p["$properties"] for p in sim.profiles}
        expected = members_of(sim, 102)
    assert run.returncode == 1, run.stderr[-3000:]
    assert set(by_cohort(run)) == {102}
    records = run.records_of("cohort_members")
    assert {r["distinct_id"] for r in records} == expected
    for record in records:
        props = profiles.get(record["distinct_id"])
        wanted = {} if props is None else {k: props[k] for k in ("$email", "plan") if k in props}
        assert record["properties"] == wanted
    assert any(r["properties"] for r in records)
    assert run.summary_of("cohort_members")["failed_cohorts"] == [
        "cohort 999 (not in the cohorts list)"
    ]


def test_a_pause_inside_a_cohort_resumes_its_snapshot_in_the_next_run() -> None:
    with make_sim(hourly_limit=3, window_seconds=1.5) as sim:
        config = sim_config(
            sim,
            page_size=PAGE,
            cohort_members_cohort_ids=[101],
            queries_per_hour=3,
            quota_window_seconds=1.5,
            on_quota_exhausted="stop",
            state_every_pages=1,
        )
        expected = members_of(sim, 101)
        runs = runs_until_complete(
            lambda state: run_members(config, state), "cohort_members", max_runs=6, between=1.6
        )
        stats = sim.stats()
    first = runs[0]
    assert first.summary_of("cohort_members")["status"] == "paused"
    assert 0 < len(first.records_of("cohort_members")) < len(expected)
    assert snapshots(first) == {}, "no marker while the snapshot is incomplete"
    saved = first.bookmark_of("cohort_members")["cohorts"]["101"]["pass"][0]
    assert saved["segments"][0]["session"]["next_page"] > 1, "paused inside the cohort"
    last = runs[-1]
    assert last.summary_of("cohort_members")["status"] == "complete"
    delivered = [r for run in runs for r in run.records_of("cohort_members")]
    assert {r["distinct_id"] for r in delivered} == expected
    assert len(delivered) == len(expected), "resumed page by page: nothing read twice"
    assert len({r["synced_at"] for r in delivered}) == 1, "one snapshot across the runs"
    assert snapshots(last)[101]["synced_at"] == delivered[0]["synced_at"]
    assert stats["page0_requests"] == 1, "the session was resumed, not restarted"
    assert stats["rate_limited_hourly"] == 0


def test_a_failed_page_is_named_and_the_rerun_fetches_only_it() -> None:
    with make_sim(fail_pages=frozenset({1})) as sim:
        config = sim_config(
            sim, page_size=PAGE, cohort_members_cohort_ids=[101, 103], max_retries=1
        )
        first = run_members(config)
        sim.set_faults(fail_pages=frozenset())
        sim.reset_stats()
        second = run_members(config, first.last_state)
        stats = sim.stats()
        expected = members_of(sim, 101)
    assert first.returncode == 1, first.stderr[-3000:]
    summary = first.summary_of("cohort_members")
    assert summary["failed_cohorts"] == ["cohort 101 page 1"]
    assert summary["cohorts"] == {"101": "unfinished", "103": "complete"}
    assert "not fetched: cohort_members: cohort 101 page 1." in first.stderr
    assert sorted(snapshots(first)) == [103]
    assert first.bookmark_of("cohort_members")["round"], "the round stays open for the rerun"

    assert second.returncode == 0, second.stderr[-3000:]
    assert second.summary_of("cohort_members")["cohorts"] == {"101": "complete"}
    assert stats["requests"] == 1 and stats["page0_requests"] == 0, "only page 1, same session"
    rows = by_cohort(first)[101] + by_cohort(second)[101]
    assert sorted(rows) == sorted(expected)
    assert sorted(snapshots(second)) == [101]
    assert second.bookmark_of("cohort_members")["round"] is None


def test_session_pages_are_counted_as_the_setting_says() -> None:
    with make_sim(session_requests_exempt=True) as sim:
        config = sim_config(
            sim,
            page_size=PAGE,
            cohort_members_cohort_ids=[101],
            session_pages_count_against_quota=False,
        )
        run = run_members(config)
        stats = sim.stats()
        pages = math.ceil(len(members_of(sim, 101)) / PAGE)
    assert run.returncode == 0, run.stderr[-3000:]
    assert pages > 1
    assert stats["hourly_counted"] == 2, "the list and page 0 count"
    assert stats["hourly_exempt"] == pages - 1
    assert f"{pages} pages of up to" in run.stderr
    assert "2 queries (with the cohorts list)" in run.stderr, "the plan counts what counts"


def test_sigterm_inside_a_cohort_writes_state_and_the_rerun_resumes_its_snapshot() -> None:
    with make_sim(latency=0.3) as sim:
        config = sim_config(sim, page_size=PAGE, cohort_members_cohort_ids=[101], max_workers=1)
        proc = start_tap(config, extra=catalog_args(config, ["cohort_members"]))
        assert proc.stdout is not None
        head = []
        for line in proc.stdout:  # until the STATE that follows page 0 of cohort 101
            head.append(line)
            if line.startswith('{"type":"STATE"') and '"cohorts"' in line:
                break
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        first = TapRun(proc.returncode, "".join(head) + out, err)
        second = run_members(config, first.last_state)
        expected = members_of(sim, 101)
        stats = sim.stats()
    assert first.returncode == 143, err[-3000:]
    assert first.messages[-1]["type"] == "STATE" and "Traceback" not in err
    assert snapshots(first) == {}
    [saved] = first.bookmark_of("cohort_members")["cohorts"]["101"]["pass"]
    assert saved["segments"][0]["session"]
    assert second.returncode == 0, second.stderr[-3000:]
    rows = first.records_of("cohort_members") + second.records_of("cohort_members")
    assert {r["distinct_id"] for r in rows} == expected
    assert {r["synced_at"] for r in rows} == {snapshots(second)[101]["synced_at"]}
    assert stats["page0_requests"] == 1, "the rerun resumed the session"


def test_the_member_query_and_only_the_asked_properties_even_if_the_server_sends_more(
    engage: t.Callable[..., EngageFake],
    requests_mock: t.Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The fake ignores filter_by_cohort and output_properties: it serves whole profiles."""
    fake = engage(12)
    requests_mock.post(
        "https://mixpanel.com/api/query/cohorts/list",
        json=[{"id": 7, "count": 12}, {"id": 8, "count": 12, "data_group_id": 2}],
    )
    for asked, expected in (([], {}), (["n", "absent"], {"n": 3})):
        config = base_config(cohort_members_properties=asked or None)
        catalog = select_streams(
            TapMixpanelProfiles(config=config).catalog_dict, ["cohort_members"]
        )
        capsys.readouterr()
        TapMixpanelProfiles(config=config, catalog=catalog).run()
        out = capsys.readouterr().out
        records = [
            m["record"]
            for m in map(json.loads, out.splitlines())
            if m["type"] == "RECORD" and m["stream"] == "cohort_members"
        ]
        assert len(records) == 24
        assert (
            next(r for r in records if r["distinct_id"] == "user-00003")["properties"] == expected
        )
    forms = [r.form for r in fake.requests if r.page == 0]
    assert json.loads(forms[0]["filter_by_cohort"]) == {"id": 7}
    assert forms[0]["include_all_users"] == "true"
    assert json.loads(forms[0]["output_properties"]) == []
    assert "data_group_id" not in forms[0]
    assert (
        json.loads(forms[1]["filter_by_cohort"]) == {"id": 8} and forms[1]["data_group_id"] == "2"
    )
    assert json.loads(forms[2]["output_properties"]) == ["n", "absent"]


def test_the_plan_gives_both_counts_while_auto_has_not_learned() -> None:
    with make_sim() as sim:
        config = sim_config(
            sim,
            page_size=PAGE,
            cohort_members_cohort_ids=[101, 103],
            session_pages_count_against_quota="auto",
        )
        run = run_members(config)
        pages = math.ceil(len(members_of(sim, 101)) / PAGE) + 1
    assert run.returncode == 0, run.stderr[-3000:]
    assert (
        f"{pages} pages of up to {PAGE} members, {pages + 1} queries if session pages count "
        f"(auto), 3 if they do not (with the cohorts list)" in run.stderr
    )


def test_markers_the_target_did_not_confirm_are_written_again(full_run: t.Any) -> None:
    """Found by the soak (bench/soak.py): without flush_all_streams, target-duckdb flushes one
    stream at a time and emits a STATE recording cohort_members' bookmark (snapshots complete)
    while the markers, records of cohort_snapshots, are still in its buffer; a kill then lost
    them for good. Such a STATE lacks their `bookmarks.cohort_snapshots` entry: the next run
    writes those markers again before it fetches any member."""
    sim, first, _ = full_run
    done = snapshots(first)
    state = first.last_state
    assert state is not None and set(state["bookmarks"]["cohort_snapshots"]["markers"]) == {
        str(k) for k in done
    }
    confirmed = run_members(sim_config(sim, page_size=PAGE), state)
    assert "were not confirmed loaded" not in confirmed.stderr
    partial = json.loads(json.dumps(state))
    del partial["bookmarks"]["cohort_snapshots"]  # as the target emits it after such a flush
    again = run_members(sim_config(sim, page_size=PAGE), partial)
    assert again.returncode in (0, 1), again.stderr[-2000:]
    assert "were not confirmed loaded by the target's STATE: written again" in again.stderr
    rewritten = again.records_of("cohort_snapshots")[: len(done)]
    assert {r["cohort_id"]: r["synced_at"] for r in rewritten} == {
        k: r["synced_at"] for k, r in done.items()
    }, "the lost markers, with their snapshots' synced_at, before any new snapshot"
