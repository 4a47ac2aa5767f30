"""End-to-end through Meltano: `meltano install` + `meltano run profiles-to-duckdb` on meltano.yml.

The project is copied to a temporary folder (the repository's .meltano/ and output/ stay
untouched) and installed once per test session; each test gets its own state backend
(`MELTANO_STATE_BACKEND_URI=file://...`) and DuckDB file (`TARGET_DUCKDB_FILEPATH`), and its own
simulator, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import typing as t
from pathlib import Path

import pytest

from tap_mixpanel_profiles.simulator import MixpanelSimulator, SimulatorConfig
from tests.helpers.e2e import (
    REPO,
    TABLE,
    clean_env,
    column_types,
    loaded_profiles,
    meltano,
    ok,
    query,
    sim_profiles,
)

pytestmark = pytest.mark.e2e

STATE_ID = "{env}:tap-mixpanel-profiles-to-target-duckdb"


@pytest.fixture
def run_env(tmp_path: Path) -> t.Callable[..., dict[str, str]]:
    """Env for one test: private state backend and DuckDB file, plus the given settings."""

    def make(sim: MixpanelSimulator, **settings: t.Any) -> dict[str, str]:
        env = {
            "MELTANO_STATE_BACKEND_URI": (tmp_path / "state").as_uri(),
            "TARGET_DUCKDB_FILEPATH": str(tmp_path / "profiles.duckdb"),
            "TAP_MIXPANEL_PROFILES_API_URL": sim.url,
            # A spent quota must never make a test sit for an hour.
            "TAP_MIXPANEL_PROFILES_ON_QUOTA_EXHAUSTED": "stop",
            # Whole numbers only: see the note on `kind: integer` in meltano.yml.
            "TAP_MIXPANEL_PROFILES_BACKOFF_BASE_SECONDS": "0",
            "TAP_MIXPANEL_PROFILES_BACKOFF_MAX_SECONDS": "1",
        }
        env.update({f"TAP_MIXPANEL_PROFILES_{k.upper()}": str(v) for k, v in settings.items()})
        return env

    return make


def saved_state(project: Path, env: dict[str, str], environment: str = "demo") -> dict[str, t.Any]:
    """The profiles bookmark Meltano saved for the job's extract/load pair."""
    out = ok(
        meltano(
            project,
            f"--environment={environment}",
            "state",
            "get",
            STATE_ID.format(env=environment),
            env=env,
        )
    )
    start = out.index('{"singer_state"')
    return json.loads(out[start : out.index("\n", start)])["singer_state"]["bookmarks"]["profiles"]


def assert_typed_columns(db: Path, served: dict[str, dict[str, t.Any]]) -> None:
    """Typed columns beside `properties`, each equal to the served value (NULL: another type)."""
    types = column_types(db)
    wanted = {"$email": "VARCHAR", "^plan": "VARCHAR", "score": "DOUBLE", "drift": "DOUBLE"}
    assert {c: types.get(c) for c in wanted} == wanted, types
    assert types["distinct_id^"] == "VARCHAR" and types["$created"] == "TIMESTAMP", types
    rows = query(db, f'SELECT distinct_id, "$email", "^plan", score, drift FROM {TABLE}')
    for distinct_id, email, plan, score, drift in rows:
        props = served[distinct_id]
        assert (email, plan, score) == (props["$email"], props.get("Plan"), props["score"])
        value = props["drift"]
        assert drift == (value if type(value) is int else None), (distinct_id, value)


def test_meltano_job_loads_every_profile_then_runs_incrementally_from_its_state(
    project, run_env, tmp_path
):
    with MixpanelSimulator(SimulatorConfig(profiles=2500, seed=21)) as sim:
        env = run_env(sim, page_size=500)
        first = ok(meltano(project, "run", "profiles-to-duckdb", env=env))
        db = tmp_path / "profiles.duckdb"
        assert set(loaded_profiles(db)) == set(sim_profiles(sim)), first[-4000:]
        assert query(db, f"SELECT count(*) FROM {TABLE}")[0][0] == 2500
        # meltano.yml's defaults: every property is also a typed column (property_columns all).
        assert_typed_columns(db, sim_profiles(sim))
        stats1 = sim.stats()
        state1 = saved_state(project, env)
        bookmark = state1.get("replication_key_value")
        assert bookmark and not state1.get("pass"), state1
        assert "Full sync: every profile" in first

        # Profiles change; the scheduled job runs again and reads only what changed.
        sim.reset_stats()
        touched = set(sim.touch_profiles(40))
        changed = {
            i for i, p in sim_profiles(sim).items() if p.get("$last_seen", "") >= bookmark[:19]
        }
        second = ok(meltano(project, "schedule", "run", "profiles-to-duckdb-6h", env=env))
        stats2 = sim.stats()

    assert f"Incremental sync: profiles with $last_seen >= {bookmark[:19]}" in second, second[
        -4000:
    ]
    assert stats2["page0_requests"] == 1
    assert stats2["rows_served"] == len(changed) < 2500 / 10, (stats2, len(changed))
    assert stats2["requests"] < stats1["requests"], (stats1, stats2)
    assert touched <= changed

    rows = loaded_profiles(db)
    assert len(rows) == 2500, "an incremental run must upsert, not duplicate"
    new_seen = {rows[i][0] for i in touched}
    assert len(new_seen) == 1 and new_seen.pop().isoformat() >= bookmark[:19]
    state2 = saved_state(project, env)
    assert state2["replication_key_value"] > bookmark, (state1, state2)

    # Running Meltano must never rewrite the committed meltano.yml (comments and all).
    assert (project / "meltano.yml").read_text() == (REPO / "meltano.yml").read_text()


def test_failed_page_is_saved_in_meltano_state_and_the_next_run_fetches_only_it(
    project, run_env, tmp_path
):
    cfg = SimulatorConfig(profiles=2200, seed=22, fail_pages=frozenset({2}))
    with MixpanelSimulator(cfg) as sim:
        env = run_env(sim, page_size=500, max_retries=1)
        first = meltano(project, "run", "profiles-to-duckdb", env=env)
        assert first.returncode != 0, first.stdout[-4000:]
        assert "not fetched: profiles: 2" in first.stdout, first.stdout[-4000:]
        db = tmp_path / "profiles.duckdb"
        assert len(loaded_profiles(db)) == 2200 - 500
        state1 = saved_state(project, env)
        assert state1.get("pass") and not state1.get("replication_key_value"), state1

        sim.set_faults(fail_pages=frozenset())
        sim.reset_stats()
        second = ok(meltano(project, "run", "profiles-to-duckdb", env=env))
        stats2 = sim.stats()
        assert set(loaded_profiles(db)) == set(sim_profiles(sim)), second[-4000:]
    assert stats2["rows_served"] == 500 and stats2["page0_requests"] == 0, stats2
    assert saved_state(project, env).get("replication_key_value")


WORKFLOW = REPO / ".github" / "workflows" / "profiles-sync.yml"


def workflow_sync_step(values: dict[str, str]) -> tuple[dict[str, str], str]:
    """The CI workflow's job env (with `${{ ... }}` expressions resolved from `values`) and the
    script of its "Sync profiles" step."""
    import yaml

    job = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))["jobs"]["sync"]
    script = next(s["run"] for s in job["steps"] if s.get("name") == "Sync profiles")

    def resolve(match: re.Match[str]) -> str:
        assert match.group(1) in values, f"unknown workflow expression {match.group(0)!r}"
        return values[match.group(1)]

    env = {k: re.sub(r"\$\{\{\s*(.*?)\s*\}\}", resolve, str(v)) for k, v in job["env"].items()}
    return env, script


def test_ci_workflow_sync_step_runs_incrementally_and_finds_deleted_profiles(project):
    """The workflow's own env and script, three times: full, incremental, weekly full refresh.

    Prod environment, credentials only in (secret) env vars, state in a file:// backend next to
    the DuckDB file. Before the full refresh a profile that Mixpanel no longer has is planted in
    the table: the deleted-profiles query of docs/querying.md must find exactly that one.
    """
    secret = "prod-looking-secret-123"
    cfg = SimulatorConfig(
        profiles=1200,
        seed=23,
        project_id="987654",
        service_account_username="ci-bot",
        service_account_secret=secret,
    )
    sync_dir = project / ".sync"
    shutil.rmtree(sync_dir, ignore_errors=True)
    with MixpanelSimulator(cfg) as sim:

        def run(full_refresh: bool) -> str:
            env, script = workflow_sync_step(
                {
                    "github.workspace": str(project),
                    "secrets.MIXPANEL_PROJECT_ID": "987654",
                    "secrets.MIXPANEL_SERVICE_ACCOUNT_USERNAME": "ci-bot",
                    "secrets.MIXPANEL_SERVICE_ACCOUNT_SECRET": secret,
                    "vars.MIXPANEL_REGION || 'us'": "us",
                    "github.event.schedule == '41 3 * * 0' || inputs.full_refresh == true": "true"
                    if full_refresh
                    else "false",
                }
            )
            env.update(
                TAP_MIXPANEL_PROFILES_API_URL=sim.url,  # the simulator, not mixpanel.com
                TAP_MIXPANEL_PROFILES_BACKOFF_BASE_SECONDS="0",
                # many pages and several loads per run: Meltano sees several STATE
                # messages with a pass in progress (see the full-refresh test below)
                TAP_MIXPANEL_PROFILES_PAGE_SIZE="100",
                TARGET_DUCKDB_BATCH_SIZE_ROWS="500",
            )
            done = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                cwd=project,
                env=clean_env(**env),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=300,
                check=False,
            )
            return ok(done)

        first = run(full_refresh=False)
        assert "Full sync: every profile" in first
        db = sync_dir / "profiles.duckdb"
        assert set(loaded_profiles(db)) == set(sim_profiles(sim))

        sim.touch_profiles(10)
        second = run(full_refresh=False)
        assert "Incremental sync: profiles with $last_seen >=" in second, second[-3000:]

        import duckdb

        con = duckdb.connect(str(db))
        con.execute(
            f"INSERT INTO {TABLE} (distinct_id, properties, _sdc_extracted_at) "
            "VALUES ('deleted-in-mixpanel', '{}', TIMESTAMP '2020-01-01 00:00:00')"
        )
        con.close()
        third = run(full_refresh=True)
        assert "Full sync: every profile" in third, third[-3000:]
        started = (sync_dir / "last_full_refresh_started_at").read_text().strip()
        deleted = query(
            db, f"SELECT distinct_id FROM {TABLE} WHERE _sdc_extracted_at < TIMESTAMP '{started}'"
        )
        assert deleted == [("deleted-in-mixpanel",)]
        assert len(loaded_profiles(db)) == 1201

    for out in (first, second, third):
        assert secret not in out
    env_state = {"MELTANO_STATE_BACKEND_URI": (sync_dir / "state").as_uri()}
    final = saved_state(project, env_state, environment="prod")
    assert final.get("replication_key_value") and not final.get("pass"), final


@pytest.mark.parametrize(
    "strategy",
    [
        None,  # Meltano's default (auto) strategy merges partial STATEs
        "overwrite",
    ],
)
def test_full_refresh_leaves_state_for_an_incremental_next_run(project, run_env, strategy):
    with MixpanelSimulator(SimulatorConfig(profiles=2500, seed=24)) as sim:
        # Small target batches: several STATE messages reach Meltano during the run.
        env = {**run_env(sim, page_size=100), "TARGET_DUCKDB_BATCH_SIZE_ROWS": "700"}
        args = [
            "run",
            "--full-refresh",
            *([f"--state-strategy={strategy}"] if strategy else []),
            "profiles-to-duckdb",
        ]
        # Twice: the second run's STATEs merge into what the first one stored (a finished
        # pass; a dict written where null was stored failed Meltano's merge).
        for _ in range(2):
            ok(meltano(project, *args, env=env))
        state = saved_state(project, env)
        nxt = ok(meltano(project, "run", "profiles-to-duckdb", env=env))
    assert "Incremental sync: profiles with $last_seen >=" in nxt and "Resuming" not in nxt, (
        f"saved state after the full refresh: {json.dumps(state)[:800]}"
    )


def test_meltano_selects_the_engage_streams_as_the_readme_says(project, run_env, tmp_path):
    """`select: [profiles.*, cohorts.*, cohort_members.*, group_profiles.*]` (here through the
    select extra's env var) loads all four, and the companion cohort_snapshots table with them."""
    with MixpanelSimulator(
        SimulatorConfig(profiles=600, seed=23, cohorts="101:0.6:orphans=10,102:0.3,103:0")
    ) as sim:
        env = run_env(sim, page_size=250, data_group_ids="[1, 2]")
        env["TAP_MIXPANEL_PROFILES__SELECT"] = json.dumps(
            ["profiles.*", "cohorts.*", "cohort_members.*", "group_profiles.*"]
        )
        out = ok(meltano(project, "run", "profiles-to-duckdb", env=env))
        members = {c: {m["$distinct_id"] for m in sim.cohort_members(c)} for c in (101, 102)}
        groups = {(g, p["$distinct_id"]) for g in (1, 2) for p in sim.group_profiles(g)}
    db = tmp_path / "profiles.duckdb"
    assert len(loaded_profiles(db)) == 600, out[-4000:]
    assert [r[0] for r in query(db, "SELECT id FROM mixpanel.cohorts ORDER BY id")] == [
        101,
        102,
        103,
    ]
    current = query(
        db,
        "SELECT m.cohort_id, m.distinct_id FROM mixpanel.cohort_members m "
        "JOIN mixpanel.cohort_snapshots s "
        "ON s.cohort_id = m.cohort_id AND m.synced_at >= s.synced_at",
    )
    assert set(current) == {(c, i) for c, ids in members.items() for i in ids}
    assert (
        set(query(db, "SELECT data_group_id, distinct_id FROM mixpanel.group_profiles")) == groups
    )


def test_a_plain_install_without_the_variable_leaves_the_hub_loader_unrunnable_but_harmless(
    project,
):
    """meltano.yml's target-duckdb-hub has `pip_url: ${TARGET_DUCKDB_PIP_URL} duckdb`: unset, the
    plain `meltano install` of the fixture succeeded and installed only duckdb there."""
    hub = project / ".meltano" / "loaders" / "target-duckdb-hub" / "venv"
    assert (hub / "bin" / "python").exists()
    assert not (hub / "bin" / "target-duckdb").exists()
    assert (
        project / ".meltano" / "loaders" / "target-duckdb" / "venv" / "bin" / "target-duckdb"
    ).exists()
