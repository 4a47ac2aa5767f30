"""Two Mixpanel projects from one Meltano project: meltano.yml's tap-mixpanel-web / -mobile.

Two simulators with different project ids and credentials stand for the two projects. Each
extractor gets its settings from its own env vars (TAP_MIXPANEL_WEB_*, TAP_MIXPANEL_MOBILE_*),
as in production (the prod environment has no credentials in meltano.yml).

* Side by side: the two jobs as two concurrent `meltano run` processes, each into its own
  DuckDB file (DuckDB allows one writing process per file), each with its own state id.
* One after the other: the all-projects job in one `meltano run`, both loaders pointed at one
  file, each project in its own schema.
"""

from __future__ import annotations

import json
import subprocess
import typing as t
from pathlib import Path

import pytest

from tap_mixpanel_profiles.simulator import MixpanelSimulator, SimulatorConfig
from tests.helpers.e2e import MELTANO, clean_env, meltano, ok, query, sim_profiles

pytestmark = pytest.mark.e2e

PROJECTS = {
    "web": {"project_id": "311311", "user": "web-bot", "secret": "web-secret-0311", "n": 1300},
    "mobile": {"project_id": "422422", "user": "app-bot", "secret": "app-secret-0422", "n": 900},
}


def simulator(name: str) -> MixpanelSimulator:
    spec = PROJECTS[name]
    return MixpanelSimulator(
        SimulatorConfig(
            profiles=int(spec["n"]),
            seed=len(name),
            project_id=str(spec["project_id"]),
            service_account_username=str(spec["user"]),
            service_account_secret=str(spec["secret"]),
        )
    )


def project_env(sims: dict[str, MixpanelSimulator], files: dict[str, Path], state: Path) -> dict:
    """Each project's settings under its own prefix; the state backend shared (one per id)."""
    env = {"MELTANO_STATE_BACKEND_URI": state.as_uri()}
    for name, sim in sims.items():
        spec, tap, target = (
            PROJECTS[name],
            f"TAP_MIXPANEL_{name.upper()}",
            f"TARGET_DUCKDB_{name.upper()}",
        )
        env.update(
            {
                f"{tap}_PROJECT_ID": str(spec["project_id"]),
                f"{tap}_SERVICE_ACCOUNT_USERNAME": str(spec["user"]),
                f"{tap}_SERVICE_ACCOUNT_SECRET": str(spec["secret"]),
                f"{tap}_API_URL": sim.url,
                f"{tap}_PAGE_SIZE": "200",
                f"{tap}_BACKOFF_BASE_SECONDS": "0",
                f"{target}_FILEPATH": str(files[name]),
            }
        )
    return env


def table(db: Path, name: str) -> set[str]:
    return {row[0] for row in query(db, f"SELECT distinct_id FROM mixpanel_{name}.profiles")}


def saved_bookmark(project: Path, env: dict[str, str], state_id: str) -> dict[str, t.Any]:
    out = ok(meltano(project, "--environment=prod", "state", "get", state_id, env=env))
    start = out.index('{"singer_state"')
    state = json.loads(out[start : out.index("\n", start)])
    return dict(state["singer_state"]["bookmarks"]["profiles"])


def test_two_projects_run_side_by_side_into_their_own_files(project: Path, tmp_path: Path) -> None:
    files = {name: tmp_path / f"{name}.duckdb" for name in PROJECTS}
    with simulator("web") as web, simulator("mobile") as mobile:
        sims = {"web": web, "mobile": mobile}
        env = clean_env(**project_env(sims, files, tmp_path / "state"))
        runs = {
            name: subprocess.Popen(
                [str(MELTANO), "--environment=prod", "run", f"{name}-to-duckdb"],
                cwd=project,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for name in PROJECTS
        }
        outputs = {name: proc.communicate(timeout=300)[0] for name, proc in runs.items()}
        for name, proc in runs.items():
            assert proc.returncode == 0, f"{name}-to-duckdb failed:\n{outputs[name][-5000:]}"
        stats = {name: sim.stats() for name, sim in sims.items()}
        for name, sim in sims.items():
            assert table(files[name], name) == set(sim_profiles(sim)), outputs[name][-3000:]
    for name in PROJECTS:
        assert stats[name]["rows_served"] == PROJECTS[name]["n"], stats
        assert str(PROJECTS[name]["secret"]) not in outputs[name]

    ids = ok(meltano(project, "--environment=prod", "state", "list", env=env))
    for name in PROJECTS:
        state_id = f"prod:tap-mixpanel-{name}-to-target-duckdb-{name}"
        assert state_id in ids, ids
        bookmark = saved_bookmark(project, env, state_id)
        assert bookmark["fingerprint"]["project_id"] == PROJECTS[name]["project_id"], bookmark
        assert bookmark.get("replication_key_value") and not bookmark.get("pass"), bookmark


def test_two_projects_one_after_the_other_into_one_file(project: Path, tmp_path: Path) -> None:
    shared = tmp_path / "mixpanel_all.duckdb"
    with simulator("web") as web, simulator("mobile") as mobile:
        sims = {"web": web, "mobile": mobile}
        env = project_env(sims, dict.fromkeys(PROJECTS, shared), tmp_path / "state")
        out = ok(meltano(project, "--environment=prod", "run", "all-projects-to-duckdb", env=env))
        for name, sim in sims.items():
            assert table(shared, name) == set(sim_profiles(sim)), out[-3000:]
    schemas = {
        row[0]
        for row in query(shared, "SELECT DISTINCT table_schema FROM information_schema.tables")
    }
    assert {"mixpanel_web", "mixpanel_mobile"} <= schemas


def printed_config(project: Path, plugin: str, env: dict[str, str]) -> dict[str, t.Any]:
    out = ok(meltano(project, "--environment=prod", "config", "print", plugin, env=env))
    lines = out.splitlines()
    start = lines.index("{")
    return dict(json.loads("\n".join(lines[start : lines.index("}", start) + 1])))


def test_a_setting_a_project_does_not_set_comes_from_tap_mixpanel_profiles(project: Path) -> None:
    env = {
        "TAP_MIXPANEL_PROFILES_REGION": "eu",  # shared by both, e.g. one service account
        "TAP_MIXPANEL_MOBILE_REGION": "in",  # ... unless a project sets its own
        "TAP_MIXPANEL_WEB_PROJECT_ID": "311311",
    }
    web = printed_config(project, "tap-mixpanel-web", env)
    mobile = printed_config(project, "tap-mixpanel-mobile", env)
    assert (web["region"], web["project_id"]) == ("eu", "311311")
    assert mobile["region"] == "in" and "project_id" not in mobile
