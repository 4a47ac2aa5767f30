"""The manual's stream-maps recipe (docs/querying.md, "Derived columns with stream maps"),
through target-duckdb: stream maps for $email, $name, $created (with property_columns none).

The recipe is read from the manual itself (its YAML block and its SQL), so the documented
text is what runs: the columns exist next to `properties`, hold each profile's values, and
`created` casts to a TIMESTAMP in DuckDB. The maps are also added to a table that already
exists (target-duckdb adds the columns), as when a running pipeline adopts the recipe.
"""

from __future__ import annotations

import datetime as dt
import re
import typing as t
from pathlib import Path

import pytest
import yaml

from tap_mixpanel_profiles.simulator import MixpanelSimulator, SimulatorConfig
from tests.helpers.e2e import (
    REPO,
    TABLE,
    column_types,
    query,
    run_pipe,
    sim_profiles,
    tap_config,
    target_config,
)

pytestmark = pytest.mark.e2e


def readme_section(title: str) -> str:
    text = (REPO / "docs" / "querying.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def recipe() -> tuple[dict[str, t.Any], str]:
    """(the stream_maps of the YAML block and the SQL query of docs/querying.md)."""
    section = readme_section("Typed columns")
    section = section[section.index("### Derived columns with stream maps") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    sql = re.search(r"```sql\n(.*?)```", section, re.S)
    assert block and sql, "docs/querying.md's Typed columns section lost its YAML or SQL block"
    (extractor,) = yaml.safe_load(block.group(1))["plugins"]["extractors"]
    return extractor["config"]["stream_maps"], sql.group(1).strip().rstrip(";")


def test_readme_recipe_adds_typed_columns_that_hold_the_values(tmp_path: Path) -> None:
    stream_maps, sql = recipe()
    assert set(stream_maps["profiles"]) == {"email", "name", "created"}
    with MixpanelSimulator(SimulatorConfig(profiles=1200, seed=51)) as sim:
        db = tmp_path / "profiles.duckdb"
        # A table loaded before the recipe (no such columns yet) ...
        first = run_pipe(tmp_path / "plain", tap_config(sim, page_size=300), target_config(db))
        assert first.tap_rc == 0 and first.target_rc == 0, first.describe()
        assert "email" not in column_types(db)
        # ... then a full sync with the stream maps.
        run = run_pipe(
            tmp_path / "maps",
            tap_config(sim, page_size=300, stream_maps=stream_maps),
            target_config(db),
        )
        assert run.tap_rc == 0 and run.target_rc == 0, run.describe()
        served = sim_profiles(sim)

    types = column_types(db)
    assert types["email"] == types["name"] == types["created"] == "VARCHAR", types
    assert types["properties"] == "JSON", "the recipe keeps every property"
    rows = query(
        db, f"SELECT distinct_id, email, name, created, properties->>'$.\"$email\"' FROM {TABLE}"
    )
    assert len(rows) == len(served) == 1200
    for distinct_id, email, name, created, json_email in rows:
        props = served[distinct_id]
        assert (email, name, created) == (props["$email"], props["$name"], props["$created"])
        assert json_email == email

    typed = query(db, sql)
    assert len(typed) == 10
    created_at = {r[0]: r[3] for r in query(db, sql.replace("LIMIT 10", ""))}
    assert len(created_at) == 1200
    for distinct_id, value in created_at.items():
        expected = dt.datetime.strptime(served[distinct_id]["$created"], "%Y-%m-%dT%H:%M:%S")
        assert value == expected, distinct_id
