"""End to end: cohorts, cohort_members and group_profiles through target-duckdb into DuckDB.

The whole set of Engage streams lands exactly, and the manual's current-membership query
answers each cohort's members: a member removed between two runs leaves the answer once a
snapshot without them completes, and a snapshot interrupted half-way changes nothing.
"""

from __future__ import annotations

import collections
import time
import typing as t
from pathlib import Path

import pytest

from tests.helpers.e2e import REPO, query, run_pipe, target_config
from tests.helpers.tap_runner import catalog_args, sim_config, simulator

pytestmark = pytest.mark.e2e

#: docs/engage-streams.md's "current membership" query, verbatim (checked below).
CURRENT_MEMBERS = """\
SELECT m.cohort_id, m.distinct_id
FROM mixpanel.cohort_members AS m
JOIN mixpanel.cohort_snapshots AS s
  ON s.cohort_id = m.cohort_id AND m.synced_at >= s.synced_at;"""

#: docs/engage-streams.md's query for the rows of people who left, verbatim.
LEFT_MEMBERS = """\
SELECT m.* FROM mixpanel.cohort_members m
JOIN mixpanel.cohort_snapshots s ON s.cohort_id = m.cohort_id AND m.synced_at < s.synced_at;"""

ENGAGE_STREAMS = ["profiles", "cohorts", "cohort_members", "group_profiles"]


def current_members(db: Path) -> dict[int, set[str]]:
    members: dict[int, set[str]] = collections.defaultdict(set)
    for cohort, distinct_id in query(db, CURRENT_MEMBERS):
        members[cohort].add(distinct_id)
    return dict(members)


def test_the_manual_gives_the_current_membership_query() -> None:
    manual = (REPO / "docs" / "engage-streams.md").read_text(encoding="utf-8")
    assert CURRENT_MEMBERS in manual
    assert LEFT_MEMBERS in manual


def test_the_whole_set_lands_in_duckdb_exactly(tmp_path: Path) -> None:
    with simulator(profiles=800, seed=61) as sim:
        config = sim_config(sim, page_size=250, data_group_ids=[1, 2])
        db = tmp_path / "engage.duckdb"
        run = run_pipe(
            tmp_path / "run",
            config,
            target_config(db),
            tap_args=catalog_args(config, ENGAGE_STREAMS),
        )
        profiles = {p["$distinct_id"] for p in sim.profiles}
        cohorts = sim.cohorts()
        members = {
            c: {m["$distinct_id"] for m in sim.cohort_members(c)} for c in (101, 102, 103, 105)
        }
        groups = {(g, p["$distinct_id"]) for g in (1, 2) for p in sim.group_profiles(g)}
        stats = sim.stats()
    assert run.tap_rc == 1 and run.target_rc == 0, run.describe()  # cohort 104: 404
    assert "not fetched: cohort_members: cohort 104." in run.tap_stderr

    assert {r[0] for r in query(db, "SELECT distinct_id FROM mixpanel.profiles")} == profiles
    assert query(db, "SELECT id, name, is_visible FROM mixpanel.cohorts ORDER BY id") == [
        (c["id"], c["name"], c["is_visible"]) for c in cohorts
    ]
    loaded = query(db, "SELECT cohort_id, distinct_id FROM mixpanel.cohort_members")
    assert len(loaded) == len(set(loaded)) == sum(len(m) for m in members.values())
    assert set(loaded) == {(c, i) for c, ids in members.items() for i in ids}
    assert current_members(db) == {c: ids for c, ids in members.items() if ids}
    assert [
        r[0] for r in query(db, "SELECT cohort_id FROM mixpanel.cohort_snapshots ORDER BY 1")
    ] == [
        101,
        102,
        103,
        105,
    ]
    group_rows = query(db, "SELECT data_group_id, distinct_id FROM mixpanel.group_profiles")
    assert len(group_rows) == len(groups) and set(group_rows) == groups

    types = dict(
        query(
            db,
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'mixpanel'",
        )
    )
    assert types["cohort_members.synced_at"] == types["cohort_snapshots.synced_at"] == "TIMESTAMP"
    assert types["cohorts.created"] == "TIMESTAMP" and types["cohorts.is_visible"] == "BOOLEAN"
    assert types["group_profiles.properties"] == "JSON"
    # Queries spent: the list once, one per page of every Engage stream, the failing cohort.
    assert stats["requests_by_endpoint"]["cohorts_list"] == 1


def run_members(
    sim: t.Any, workdir: Path, db: Path, state: dict[str, t.Any] | None, **settings: t.Any
) -> tuple[t.Any, dict[str, t.Any] | None]:
    config = sim_config(sim, page_size=100, **settings)
    run = run_pipe(
        workdir,
        config,
        target_config(db),
        state=state,
        tap_args=catalog_args(config, ["cohort_members"]),
    )
    assert run.tap_rc == 0 and run.target_rc == 0, run.describe()
    return run, (run.states[-1] if run.states else state)


def test_membership_follows_complete_snapshots_only(tmp_path: Path) -> None:
    """Run 1 on A; runs 2 and 3 on B, where some of A's members left cohort 101 (same seed,
    smaller share: B's members are a subset). Run 2 pauses inside cohort 101."""
    db = tmp_path / "members.duckdb"
    common = {"profiles": 400, "seed": 62, "max_page_size": 100}
    with simulator(cohorts="101:0.6:orphans=40,103:0", **common) as a:
        was = {m["$distinct_id"] for m in a.cohort_members(101)}
        _, state = run_members(a, tmp_path / "1", db, None)
    assert current_members(db) == {101: was}

    with simulator(
        cohorts="101:0.5:orphans=30,103:0", hourly_limit=3, window_seconds=2, **common
    ) as b:
        now = {m["$distinct_id"] for m in b.cohort_members(101)}
        assert now < was, "members left between the runs, nobody joined"
        budget = {"queries_per_hour": 3, "quota_window_seconds": 2, "on_quota_exhausted": "stop"}
        second, state = run_members(b, tmp_path / "2", db, state, **budget)
        assert second.summary["status"] == "paused"
        # Half-way: some of 101's rows already carry the new snapshot's synced_at ...
        newer = query(
            db,
            "SELECT count(*) FROM mixpanel.cohort_members m JOIN mixpanel.cohort_snapshots s "
            "USING (cohort_id) WHERE cohort_id = 101 AND m.synced_at > s.synced_at",
        )[0][0]
        assert 0 < newer < len(now)
        # ... and the answer has not changed.
        assert current_members(db) == {101: was}

        time.sleep(2.1)
        third, state = run_members(b, tmp_path / "3", db, state, **budget)
        assert third.summary["status"] == "complete"
        assert b.stats()["page0_requests"] == 2, "run 3 resumed run 2's session of cohort 101"
    assert current_members(db) == {101: now}
    left = was - now
    stale = {r[0] for r in query(db, "SELECT distinct_id FROM mixpanel.cohort_members")}
    assert left <= stale, "their rows stay (target-duckdb never deletes) ..."
    assert not left & current_members(db)[101], "... but they are no longer members"
    gone = query(db, "SELECT cohort_id, distinct_id FROM (" + LEFT_MEMBERS.rstrip(";") + ")")
    assert sorted(gone) == sorted((101, i) for i in left)
