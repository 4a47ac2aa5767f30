"""A user's existing Meltano project adds the extractor from hub/tap-mixpanel-profiles.yml.

Exactly what docs/meltano.md says: `meltano init` a fresh project, `meltano add --plugin-type
extractor tap-mixpanel-profiles --from-ref <definition>` (with pip_url pointed at this
checkout, as a user of a git URL or a local checkout would), add target-duckdb without the
Hub (also --from-ref), select the profiles stream, configure, `meltano run` against the
simulator, and find every profile in DuckDB.
"""

from __future__ import annotations

import sys
import typing as t
from pathlib import Path

import pytest
import yaml

from tap_mixpanel_profiles.simulator import MixpanelSimulator, SimulatorConfig
from tests.helpers.e2e import (
    REPO,
    TABLE,
    loaded_profiles,
    ok,
    query,
    sim_profiles,
)
from tests.helpers.e2e import meltano as run_meltano
from tests.helpers.hub import require_hub_source

pytestmark = pytest.mark.e2e

DEFINITION = REPO / "hub" / "tap-mixpanel-profiles.yml"


def meltano(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """The output of a meltano command that must succeed (usage stats off)."""
    return ok(run_meltano(cwd, *args, env={**USAGE_STATS_OFF, **(env or {})}, timeout=600))


USAGE_STATS_OFF = {"MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"}


def loader_definition() -> dict[str, t.Any]:
    """target-duckdb as a user would add it without the Hub, for this test's Python."""
    if sys.version_info < (3, 13):
        pip_url = "target-duckdb==0.8.0 duckdb==1.0.0"  # every row (see target_config/README.md)
    else:
        pip_url = f"{require_hub_source()} duckdb"
    return {
        "name": "target-duckdb",
        "namespace": "target_duckdb",
        "pip_url": pip_url,
        "executable": "target-duckdb",
        "settings": [
            {"name": "filepath", "kind": "string"},
            {"name": "default_target_schema", "kind": "string"},
        ],
    }


def test_meltano_add_from_ref_then_run_into_duckdb(tmp_path: Path) -> None:
    meltano(tmp_path, "init", "project", "--no_usage_stats")
    project = tmp_path / "project"
    definition = yaml.safe_load(DEFINITION.read_text(encoding="utf-8"))
    assert definition["pip_url"] == "tap-mixpanel-profiles"
    definition["pip_url"] = f"-e {REPO}"  # the checkout, as docs/meltano.md says
    ref = tmp_path / "tap-mixpanel-profiles.yml"
    ref.write_text(yaml.safe_dump(definition, allow_unicode=True), encoding="utf-8")
    loader_ref = tmp_path / "target-duckdb.yml"
    loader_ref.write_text(yaml.safe_dump(loader_definition()), encoding="utf-8")

    meltano(
        project,
        "add",
        "--plugin-type",
        "extractor",
        "tap-mixpanel-profiles",
        "--from-ref",
        str(ref),
    )
    meltano(
        project, "add", "--plugin-type", "loader", "target-duckdb", "--from-ref", str(loader_ref)
    )
    meltano(project, "select", "tap-mixpanel-profiles", "profiles", "*")

    added = yaml.safe_load((project / "meltano.yml").read_text(encoding="utf-8"))["plugins"]
    assert set(added) == {"extractors", "loaders"}, f"stray plugins added: {sorted(added)}"
    (tap,) = added["extractors"]
    assert tap["namespace"] == "tap_mixpanel_profiles" and tap["pip_url"] == f"-e {REPO}"
    assert tap["settings"] == definition["settings"]
    assert tap["settings_group_validation"] == definition["settings_group_validation"]
    assert tap["capabilities"] == definition["capabilities"]
    assert tap["select"] == ["profiles.*"]

    with MixpanelSimulator(SimulatorConfig(profiles=1500, seed=41, project_id="2024")) as sim:
        meltano(project, "config", "set", "tap-mixpanel-profiles", "project_id", "2024")
        db = tmp_path / "profiles.duckdb"
        secret = sim.config.service_account_secret
        env = {
            "TAP_MIXPANEL_PROFILES_API_URL": sim.url,
            "TAP_MIXPANEL_PROFILES_SERVICE_ACCOUNT_USERNAME": sim.config.service_account_username,
            "TAP_MIXPANEL_PROFILES_SERVICE_ACCOUNT_SECRET": secret,
            "TARGET_DUCKDB_FILEPATH": str(db),
            "TARGET_DUCKDB_DEFAULT_TARGET_SCHEMA": "mixpanel",
        }
        listing = meltano(project, "config", "list", "tap-mixpanel-profiles", env=env)
        out = meltano(project, "run", "tap-mixpanel-profiles", "target-duckdb", env=env)
        assert set(loaded_profiles(db)) == set(sim_profiles(sim)), out[-4000:]
    assert query(db, f"SELECT count(*) FROM {TABLE}")[0][0] == 1500
    assert "Group 1: project_id, service_account_secret, service_account_username" in listing
    assert secret not in listing and secret not in out, "sensitive settings are masked"
