"""The Hub variant of target-duckdb (MeltanoLabs v0.9.0) with the newest duckdb, end to end.

Run by scripts/test.sh in its newest-Python venv (.venv-py3.N), where that loader is
installed from the wheel (or TARGET_DUCKDB_PIP_URL); anywhere else these tests skip and say
why. Two paths, as users run them:

* the plain pipe, `tap-mixpanel-profiles | target-duckdb`, in small load batches (PyPI's 0.8.0
  loses a row per batch with any duckdb >= 1.1: this one must lose none);
* `meltano install` + `meltano run profiles-to-duckdb-hub` on meltano.yml's target-duckdb-hub
  loader, installed from TARGET_DUCKDB_PIP_URL on the Python that runs Meltano, then an
  incremental run from the saved state.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

from tap_mixpanel_profiles.simulator import MixpanelSimulator, SimulatorConfig
from tests.e2e.test_pipe import assert_exact_copy
from tests.helpers.e2e import (
    REPO,
    TABLE,
    loaded_profiles,
    ok,
    query,
    run_pipe,
    sim_profiles,
    tap_config,
    target_config,
)
from tests.helpers.e2e import meltano as run_meltano
from tests.helpers.hub import require_hub_source, require_hub_target

pytestmark = [pytest.mark.e2e, pytest.mark.hub]


def newest_duckdb() -> tuple[int, ...]:
    return tuple(int(p) for p in importlib.metadata.version("duckdb").split(".")[:2])


def test_pipe_into_the_hub_variant_keeps_every_row(tmp_path: Path) -> None:
    require_hub_target()
    assert newest_duckdb() >= (1, 1), "the Hub checks are meant for a current duckdb"
    with MixpanelSimulator(SimulatorConfig(profiles=1500, seed=31)) as sim:
        db = tmp_path / "profiles.duckdb"
        run = run_pipe(
            tmp_path / "run", tap_config(sim, page_size=250), target_config(db, batch_size_rows=97)
        )
        assert run.tap_rc == 0 and run.target_rc == 0, run.describe()
        assert_exact_copy(db, sim)
    assert query(db, f"SELECT count(*), count(DISTINCT distinct_id) FROM {TABLE}")[0] == (
        1500,
        1500,
    )
    final = run.states[-1]["bookmarks"]["profiles"]
    assert final.get("replication_key_value") and not final.get("pass"), final


def meltano(project: Path, *args: str, env: dict[str, str]) -> str:
    """The output of a meltano command that must succeed."""
    return ok(run_meltano(project, *args, env=env, timeout=600))


def installed_in(python: Path) -> dict[str, t.Any]:
    code = (
        "import importlib.metadata as m, json, sys; print(json.dumps({'python': "
        "list(sys.version_info[:2]), 'target': m.version('target-duckdb'), "
        "'duckdb': m.version('duckdb')}))"
    )
    return dict(json.loads(subprocess.check_output([str(python), "-c", code], text=True)))


def test_meltano_run_with_the_hub_loader_of_meltano_yml(tmp_path: Path) -> None:
    require_hub_target()
    pip_url = require_hub_source()
    project = tmp_path / "project"
    project.mkdir()
    for name in ("meltano.yml", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, project / name)
    shutil.copytree(
        REPO / "tap_mixpanel_profiles",
        project / "tap_mixpanel_profiles",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    db = tmp_path / "hub.duckdb"
    env = {
        "TARGET_DUCKDB_PIP_URL": pip_url,
        "MELTANO_STATE_BACKEND_URI": (tmp_path / "state").as_uri(),
        "TARGET_DUCKDB_HUB_FILEPATH": str(db),
        "TAP_MIXPANEL_PROFILES_BACKOFF_BASE_SECONDS": "0",
        "TAP_MIXPANEL_PROFILES_PAGE_SIZE": "400",
    }
    meltano(project, "install", "tap-mixpanel-profiles", "target-duckdb-hub", env=env)
    loader = installed_in(project / ".meltano/loaders/target-duckdb-hub/venv/bin/python")
    assert loader["target"] == "0.9.0"
    assert loader["python"] == list(sys.version_info[:2]), "the loader runs on Meltano's Python"
    assert tuple(int(p) for p in loader["duckdb"].split(".")[:2]) >= (1, 1), loader

    with MixpanelSimulator(SimulatorConfig(profiles=2000, seed=32)) as sim:
        env["TAP_MIXPANEL_PROFILES_API_URL"] = sim.url
        first = meltano(project, "run", "profiles-to-duckdb-hub", env=env)
        assert "Full sync: every profile" in first
        assert set(loaded_profiles(db)) == set(sim_profiles(sim))
        assert query(db, f"SELECT count(*) FROM {TABLE}")[0][0] == 2000

        sim.touch_profiles(25)
        second = meltano(project, "run", "profiles-to-duckdb-hub", env=env)
        assert "Incremental sync: profiles with $last_seen >=" in second, second[-3000:]
        assert len(loaded_profiles(db)) == 2000, "an incremental run upserts"
    assert (project / "meltano.yml").read_text() == (REPO / "meltano.yml").read_text()
