"""Typed property columns through `tap | target-duckdb` (both variants: also marked `hub`).

The simulator serves properties of every type, case twins (`Plan`/`plan`), names of the tap's
own columns (`distinct_id`, `last_seen`, `properties`), spaces, dots and quotes, and values of
another type than their property's (`drift`, `signup_at`, `verified`). Every listed property
must be in its own typed column equal to the served value (NULL where the type differs), the
`properties` JSON whole, no row lost, and the schema query must never meet a 429.
"""

from __future__ import annotations

import datetime as dt
import json
import typing as t
from pathlib import Path

import pytest

from tap_mixpanel_profiles.profiles.columns import column_name
from tap_mixpanel_profiles.simulator import MixpanelSimulator, SimulatorConfig
from tests.helpers.e2e import (
    TABLE,
    column_types,
    query,
    run_pipe,
    sim_profiles,
    tap_config,
    target_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.hub]

DUCKDB_TYPES = {
    "string": "VARCHAR",
    "number": "DOUBLE",
    "boolean": "BOOLEAN",
    "datetime": "TIMESTAMP",
    "list": "JSON",
    "object": "JSON",
}


def expected(value: t.Any, kind: str) -> t.Any:
    """What the column of a property of Mixpanel type `kind` holds for a served value."""
    if kind == "number":
        return float(value) if type(value) in (int, float) else None
    if kind == "boolean":
        return value if type(value) is bool else None
    if kind == "datetime":
        try:
            return dt.datetime.fromisoformat(value) if type(value) is str else None
        except ValueError:
            return None
    if kind in ("list", "object"):
        return value if type(value) is (list if kind == "list" else dict) else None
    return value if type(value) is str and value != "" else None  # the loader writes "" as NULL


def loaded(db: Path, columns: list[str]) -> dict[str, dict[str, t.Any]]:
    """distinct_id -> {column: value} (JSON columns decoded)."""
    types = column_types(db)
    select = ", ".join(
        f'CAST("{c}" AS VARCHAR)' if types[c] == "JSON" else f'"{c}"' for c in columns
    )
    rows = query(db, f"SELECT distinct_id, {select} FROM {TABLE}")
    out = {}
    for distinct_id, *values in rows:
        row = dict(zip(columns, values, strict=True))
        for c in columns:
            if types[c] == "JSON" and row[c] is not None:
                row[c] = json.loads(row[c])
        out[distinct_id] = row
    return out


def config(sim: MixpanelSimulator, tmp_path: Path, **extra: t.Any) -> dict[str, t.Any]:
    cache = str(tmp_path / "cache")
    return tap_config(
        sim, page_size=400, property_columns="all", property_schema_cache_dir=cache, **extra
    )


def test_every_listed_property_is_its_own_typed_column(tmp_path: Path) -> None:
    db = tmp_path / "p.duckdb"
    with MixpanelSimulator(SimulatorConfig(profiles=1500, seed=23)) as sim:
        run = run_pipe(tmp_path / "run", config(sim, tmp_path), target_config(db))
        assert run.tap_rc == 0 and run.target_rc == 0, run.describe()
        served = sim_profiles(sim)
        listing = sim.property_listing()
        stats = sim.stats()
    assert "Record path: fast" in run.tap_stderr
    assert stats["rate_limited_concurrent"] == stats["rate_limited_hourly"] == 0
    assert stats["requests_by_endpoint"]["engage_properties"] == 1
    types = column_types(db)
    kinds = {column_name(name): kind for name, _, kind in listing}
    for column, kind in kinds.items():
        assert types[column] == DUCKDB_TYPES[kind], (column, kind)
    assert {"^plan", "plan", "distinct_id^", "last_seen^", "properties^"} <= set(types)
    rows = loaded(db, ["properties", *kinds])
    assert len(rows) == len(served) == 1500, "no row lost"
    names = {column_name(name): name for name, _, _ in listing}
    mismatched = 0
    for distinct_id, row in rows.items():
        props = served[distinct_id]
        assert row["properties"] == props, "the JSON column is whole"
        for column, kind in kinds.items():
            value = props.get(names[column])
            assert row[column] == expected(value, kind), (distinct_id, column, value)
            mismatched += value is not None and row[column] is None
    assert mismatched > 50, "the data has values of another type (NULL in their column)"


def test_a_new_property_lands_in_json_then_as_a_column_at_the_next_discovery(
    tmp_path: Path,
) -> None:
    db = tmp_path / "p.duckdb"
    with MixpanelSimulator(SimulatorConfig(profiles=600, seed=29)) as sim:
        first = run_pipe(tmp_path / "1", config(sim, tmp_path), target_config(db))
        assert first.tap_rc == 0 and first.target_rc == 0, first.describe()
        touched = sim.touch_profiles(40, properties={"Loyalty Tier": "gold"})
        # The cache is fresh: this run's schema has no column for the new property.
        second = run_pipe(
            tmp_path / "2", config(sim, tmp_path), target_config(db), state=first.states[-1]
        )
        assert second.tap_rc == 0 and second.target_rc == 0, second.describe()
        assert "^loyalty ^tier" not in column_types(db)
        in_json = query(
            db, f"""SELECT count(*) FROM {TABLE} WHERE properties->>'$."Loyalty Tier"' = 'gold'"""
        )
        assert in_json == [(40,)]
        again = sim.touch_profiles(10, properties={"Loyalty Tier": "silver"})
        third = run_pipe(
            tmp_path / "3",
            config(sim, tmp_path, property_schema_refresh=True),
            target_config(db),
            state=second.states[-1],
        )
        assert third.tap_rc == 0 and third.target_rc == 0, third.describe()
    assert column_types(db)["^loyalty ^tier"] == "VARCHAR", "the target added the column"
    rows = dict(query(db, f'SELECT distinct_id, "^loyalty ^tier" FROM {TABLE}'))
    assert len(rows) == 600
    assert {rows[d] for d in again} == {"silver"}
    # The incremental run re-read the profiles touched since its bookmark (the first 40 too:
    # the bookmark is inclusive); every other row was loaded before the column existed.
    for distinct_id, value in rows.items():
        if distinct_id in again:
            continue
        assert value == ("gold" if distinct_id in touched else None) or value is None
    assert sum(v is None for v in rows.values()) >= 600 - 50, "old rows keep NULL there"
