"""Upgrading a table keyed on insert_id to Mixpanel's event identity, end to end.

Before event_id, the events table was created with PRIMARY KEY (insert_id); target-duckdb
only adds columns, so loading with the new key into it fails at the first event re-read.
The tap recognises STATE of such a table and refuses with one line (exit 3) naming both
fixes; the fix of docs/events.md (a new table, the events STATE cleared) then loads every event,
including those that share an $insert_id with an event of another name.
"""

from __future__ import annotations

import copy
import datetime as dt
import typing as t
from pathlib import Path

import duckdb
import pytest

from tap_mixpanel_profiles.events.export import to_record
from tap_mixpanel_profiles.events.stream import KEY_FIELD
from tests.helpers.e2e import query, run_pipe, target_config
from tests.helpers.tap_runner import catalog_args, sim_config, simulator

pytestmark = pytest.mark.e2e

TODAY = dt.datetime.now(dt.timezone.utc).date()
START = TODAY - dt.timedelta(days=6)


def primary_key(db: Path) -> list[str]:
    rows = query(
        db,
        "SELECT constraint_column_names FROM duckdb_constraints() "
        "WHERE table_name = 'events' AND constraint_type = 'PRIMARY KEY'",
    )
    return list(rows[0][0]) if rows else []


def test_an_old_insert_id_table_is_refused_with_the_fix_and_the_fix_works(tmp_path: Path) -> None:
    db = tmp_path / "events.duckdb"
    with simulator(profiles=100, seed=8, events_per_day=80) as sim:
        legacy = sim_config(sim, start_date=START.isoformat(), events_primary_key="insert_id")
        args = catalog_args(legacy, ["events"])
        first = run_pipe(tmp_path / "1", legacy, target_config(db), tap_args=args)
        assert first.tap_rc == 0 and first.target_rc == 0, first.describe()
        assert primary_key(db) == ["insert_id"]
        # STATE as the version before event_id wrote it: no key recorded.
        old_state = copy.deepcopy(first.states[-1])
        del old_state["bookmarks"]["events"][KEY_FIELD]

        config = {**legacy, "events_primary_key": "event_id"}
        stale = run_pipe(tmp_path / "2a", config, target_config(db), state=old_state, tap_args=args)
        assert stale.tap_rc == 3 and "discover the catalog again" in stale.tap_stderr
        legacy_args, args = args, catalog_args(config, ["events"])  # Meltano discovers each run
        refused = run_pipe(
            tmp_path / "2", config, target_config(db), state=old_state, tap_args=args
        )
        assert refused.tap_rc == 3, refused.describe()
        lines = [line for line in refused.tap_stderr.splitlines() if "ERROR" in line]
        assert len(lines) == 1 and "keyed on insert_id" in lines[0], lines
        assert (
            "events_primary_key: insert_id" in lines[0] and "Upgrading the events key" in lines[0]
        )

        kept = run_pipe(
            tmp_path / "3", legacy, target_config(db), state=old_state, tap_args=legacy_args
        )
        assert kept.tap_rc == 0 and kept.target_rc == 0, "the old key still loads"

        # The fix of docs/events.md: a new table (the old one renamed), the events STATE cleared.
        con = duckdb.connect(str(db))
        con.execute("ALTER TABLE mixpanel.events RENAME TO events_by_insert_id")
        con.close()
        fresh: dict[str, t.Any] = copy.deepcopy(kept.states[-1])
        del fresh["bookmarks"]["events"]
        fixed = run_pipe(tmp_path / "4", config, target_config(db), state=fresh, tap_args=args)
        assert fixed.tap_rc == 0 and fixed.target_rc == 0, fixed.describe()
        served = {to_record(e)[0]["event_id"] for e in sim.events(START, TODAY)}
    assert primary_key(db) == ["event_id"], query(
        db, "SELECT table_name, constraint_type, constraint_column_names FROM duckdb_constraints()"
    )
    loaded = {r[0] for r in query(db, "SELECT event_id FROM mixpanel.events")}
    assert loaded == served
    twins = query(
        db,
        "SELECT count(*) FROM (SELECT insert_id FROM mixpanel.events "
        "GROUP BY insert_id, distinct_id, time HAVING count(DISTINCT event) > 1)",
    )[0][0]
    assert twins > 0, "events of two names sharing $insert_id, distinct_id and time: two rows"
    old_rows = query(db, "SELECT count(*) FROM mixpanel.events_by_insert_id")[0][0]
    assert old_rows < len(served), "the insert_id table had lost them (one row per insert_id)"
