"""meltano.yml, target_config/ and the manual (README.md, docs/) stay in step with the tap's
settings contract.

Fast, static checks (no processes): the e2e tests prove the same files actually run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tap_mixpanel_profiles.settings import CONFIG_SCHEMA
from tests.helpers.engage_fake import base_config
from tests.helpers.tap_runner import discover

REPO = Path(__file__).resolve().parent.parent
PROJECT = yaml.safe_load((REPO / "meltano.yml").read_text(encoding="utf-8"))
EXTRACTOR = next(
    p for p in PROJECT["plugins"]["extractors"] if p["name"] == "tap-mixpanel-profiles"
)
LOADERS = {p["name"]: p for p in PROJECT["plugins"]["loaders"]}
EXTRACTORS = {p["name"]: p for p in PROJECT["plugins"]["extractors"]}
LOADER = LOADERS["target-duckdb"]
HUB_LOADER = LOADERS["target-duckdb-hub"]
DECLARED = {s["name"]: s for s in EXTRACTOR["settings"]}
SCHEMA = CONFIG_SCHEMA["properties"]
#: SDK built-in settings the project declares too (typed columns use stream maps).
BUILTINS = {"stream_maps", "stream_map_config"}

# JSON-schema type -> acceptable Meltano kinds. Numbers are declared `kind: integer` on purpose
# (see meltano.yml: Meltano 4.4.1 cannot serialise `kind: decimal` values given as text).
KINDS = {
    "string": {"string", "options", "date_iso8601"},
    "integer": {"integer"},
    "number": {"integer", "decimal"},
    "boolean": {"boolean"},
    "array": {"array"},
    "object": {"object"},
    "options": {"options"},
}


def _type(prop: dict) -> str:
    if {"boolean", "string"} <= set(prop.get("type", [])):  # true / false / text choices
        return "options"
    types = prop.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    return next(t for t in types if t != "null")


@pytest.mark.parametrize("name", sorted(SCHEMA))
def test_every_tap_setting_is_declared_with_kind_and_description(name):
    assert name in DECLARED, f"meltano.yml does not declare the tap setting {name!r}"
    setting, prop = DECLARED[name], SCHEMA[name]
    assert setting.get("kind") in KINDS[_type(prop)], (name, setting.get("kind"), _type(prop))
    assert setting.get("description", "").strip(), f"{name} has no description"
    secret = bool(prop.get("secret") or prop.get("writeOnly"))
    assert bool(setting.get("sensitive")) == secret, f"{name}: sensitive must be {secret}"
    if "allowed_values" in prop or "enum" in prop:
        allowed = [v for v in prop.get("enum") or prop["allowed_values"] if isinstance(v, str)]
        assert setting["kind"] == "options"
        assert [o["value"] for o in setting["options"]] == list(allowed)
    default = prop.get("default")
    if default is not None:
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        match = re.search(r"Default (\S+)\.$", " ".join(setting["description"].split()))
        assert match and match.group(1) == shown, (
            f"{name}: description should end with 'Default {shown}.' (the tap's default)"
        )
    assert "value" not in setting, (
        f"{name}: let the tap own its defaults (no value: in meltano.yml)"
    )


def test_no_setting_is_declared_that_the_tap_does_not_have():
    assert set(DECLARED) <= set(SCHEMA) | BUILTINS, set(DECLARED) - set(SCHEMA) - BUILTINS
    for name in BUILTINS:
        assert DECLARED[name]["kind"] == "object"


def test_extractor_definition():
    assert EXTRACTOR["namespace"] == "tap_mixpanel_profiles"
    assert EXTRACTOR["pip_url"] == "-e ."
    assert EXTRACTOR["executable"] == "tap-mixpanel-profiles"
    assert set(EXTRACTOR["capabilities"]) >= {
        "about",
        "discover",
        "catalog",
        "state",
        "stream-maps",
    }
    assert "schema-flattening" not in EXTRACTOR["capabilities"]
    assert EXTRACTOR["select"] == ["profiles.*"]
    assert "variant" not in EXTRACTOR and "variant" not in LOADER, "variant: means a Hub lookup"


def loader_config(name: str) -> dict:
    """A loader's project-level config with what it inherits (Meltano: own values win)."""
    plugin = LOADERS[name]
    parent = loader_config(plugin["inherit_from"]) if plugin.get("inherit_from") else {}
    return {**parent, **plugin.get("config", {})}


def test_loader_is_pinned_to_a_pair_that_loads_every_row():
    assert sorted(LOADER["pip_url"].split()) == ["duckdb==1.0.0", "target-duckdb==0.8.0"]
    match = re.fullmatch(r"python3\.(\d+)", LOADER["python"])
    assert match and 10 <= int(match.group(1)) <= 12, "duckdb 1.0.0 needs CPython <= 3.12"
    assert LOADER["inherit_from"] == "target-duckdb-hub", "settings come from the Hub loader"


def test_hub_loader_installs_from_the_variable_on_meltanos_python():
    # ${VAR} has no default in Meltano 4.4.1: unset, the pip_url is just "duckdb", so a plain
    # `meltano install` still succeeds (tests/e2e/test_meltano.py runs one without it).
    assert HUB_LOADER["pip_url"] == "${TARGET_DUCKDB_PIP_URL} duckdb"
    assert "python" not in HUB_LOADER, "Meltano's own Python (an inherited python: cannot unset)"
    assert HUB_LOADER["namespace"] == "target_duckdb_hub" and "inherit_from" not in HUB_LOADER
    assert HUB_LOADER["executable"] == "target-duckdb"
    names = {s["name"] for s in HUB_LOADER["settings"]}
    assert {"filepath", "default_target_schema", "batch_size_rows"} <= names
    env = PROJECT.get("env", {})
    assert "TARGET_DUCKDB_PIP_URL" not in env, "meltano.yml's env: would beat the shell's value"
    jobs = {j["name"]: j for j in PROJECT["jobs"]}
    assert jobs["profiles-to-duckdb-hub"]["tasks"] == ["tap-mixpanel-profiles target-duckdb-hub"]


def test_each_loader_writes_its_own_file():
    files = {name: Path(loader_config(name)["filepath"]).name for name in LOADERS}
    assert len(set(files.values())) == len(files), files
    for name in LOADERS:
        config = loader_config(name)
        assert Path(config["filepath"]).stem != config["default_target_schema"], (
            f"{name}: a file named like its schema makes DuckDB references ambiguous"
        )


@pytest.mark.parametrize("name", ["target-duckdb", "target-duckdb-hub"])
def test_loader_config_mirrors_target_config(name):
    pipe = json.loads((REPO / "target_config" / "duckdb.json").read_text(encoding="utf-8"))
    meltano = loader_config(name)
    assert Path(meltano["filepath"]).suffix == ".duckdb"
    for key in set(pipe) - {"filepath"}:
        assert meltano.get(key) == pipe[key], key
    assert pipe["batch_size_rows"] == 10000 and pipe["add_metadata_columns"] is True
    assert Path(pipe["filepath"]).name == Path(loader_config("target-duckdb")["filepath"]).name


PROJECTS = ("web", "mobile")


def test_two_mixpanel_projects_inherit_with_their_own_loaders_schemas_and_jobs():
    taps = {n: p for n, p in EXTRACTORS.items() if p.get("inherit_from") == EXTRACTOR["name"]}
    assert set(taps) == {"tap-mixpanel-web", "tap-mixpanel-mobile"}
    for tap in taps.values():
        assert set(tap) == {"name", "inherit_from"}, "settings come from env vars, per project"
    schemas = {
        loader_config(f"target-duckdb-{p}")["default_target_schema"] for p in ("web", "mobile")
    }
    assert schemas == {"mixpanel_web", "mixpanel_mobile"}
    jobs = {j["name"]: j["tasks"] for j in PROJECT["jobs"]}
    assert jobs["web-to-duckdb"] == ["tap-mixpanel-web target-duckdb-web"]
    assert jobs["mobile-to-duckdb"] == ["tap-mixpanel-mobile target-duckdb-mobile"]
    assert jobs["all-projects-to-duckdb"] == jobs["web-to-duckdb"] + jobs["mobile-to-duckdb"]


def test_capabilities_are_what_the_tap_advertises():
    from tap_mixpanel_profiles.capabilities import CAPABILITIES

    assert sorted(EXTRACTOR["capabilities"]) == sorted(c.value for c in CAPABILITIES)


def test_environments_job_and_schedule():
    envs = {e["name"]: e for e in PROJECT["environments"]}
    assert PROJECT["default_environment"] == "demo" and {"demo", "prod"} <= set(envs)
    demo_tap = envs["demo"]["config"]["plugins"]["extractors"][0]["config"]
    assert demo_tap["api_url"].startswith("http://127.0.0.1:")
    prod_tap = [
        p.get("config", {})
        for p in envs["prod"].get("config", {}).get("plugins", {}).get("extractors", [])
    ]
    assert not any(
        k in c
        for c in prod_tap
        for k in ("service_account_secret", "api_secret", "service_account_username")
    ), "prod credentials belong in env vars, not meltano.yml"
    jobs = {j["name"]: j for j in PROJECT["jobs"]}
    assert jobs["profiles-to-duckdb"]["tasks"] == ["tap-mixpanel-profiles target-duckdb"]
    assert any(s.get("job") == "profiles-to-duckdb" for s in PROJECT["schedules"])
    assert PROJECT.get("project_id"), "without a project_id Meltano rewrites meltano.yml"
    assert PROJECT.get("send_anonymous_usage_stats") is False


def test_readme_keeps_the_test_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "./scripts/test.sh" in readme and "./scripts/demo.sh" in readme
    # Every setting in docs/settings.md: tests/test_docs.py.


def test_the_manual_documents_every_stream_and_how_to_select_them():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    events = (REPO / "docs" / "events.md").read_text(encoding="utf-8")
    engage = (REPO / "docs" / "engage-streams.md").read_text(encoding="utf-8")
    # Discovered by the console script: a Tap built in this process would add the SDK's own
    # settings to CONFIG_SCHEMA, which the tests above read.
    streams = {
        s["tap_stream_id"]: next(m["metadata"] for m in s["metadata"] if m["breadcrumb"] == [])
        for s in discover(base_config())["streams"]
    }
    assert events.startswith("# Events stream")
    for name in set(streams) - {"profiles", "events"}:
        assert f"\n## `{name}`\n" in engage, f"docs/engage-streams.md has no section for {name}"
    for name in streams:
        assert f"| `{name}` |" in readme, f"the README's stream table lacks {name}"
    names = ["profiles", "cohorts", "cohort_members", "group_profiles"]
    assert set(names) <= set(streams)
    assert f"select: [{', '.join(n + '.*' for n in names)}]" in engage
    off = [n for n, m in streams.items() if n != "profiles" and m.get("selected-by-default")]
    assert off == [], "every stream but profiles is off unless selected"


def test_ci_workflow_runs_the_job_with_persisted_state_and_secret_credentials():
    text = (REPO / ".github" / "workflows" / "profiles-sync.yml").read_text(encoding="utf-8")
    flow = yaml.safe_load(text)
    triggers = flow.get("on") or flow.get(True)  # YAML 1.1 reads a bare `on` as true
    assert triggers["schedule"][0]["cron"]
    assert "meltano --environment=prod run" in text and "profiles-to-duckdb" in text
    assert "MELTANO_STATE_BACKEND_URI" in text
    for var in ("TAP_MIXPANEL_PROFILES_PROJECT_ID", "TAP_MIXPANEL_PROFILES_SERVICE_ACCOUNT_SECRET"):
        assert re.search(var + r":\s*\$\{\{\s*secrets\.", text), f"{var} must come from secrets"
