"""hub/tap-mixpanel-profiles.yml, the Meltano Hub-format definition, stays in step with the tap.

Static checks, like tests/test_meltano_project.py for meltano.yml: every setting the tap
offers (`--about`: its own settings and the stream-maps ones) is declared with a `kind` that
fits its type, secrets are `sensitive`, options match the allowed values, the capabilities are
exactly what the tap advertises, and the settings are those of meltano.yml's extractor (one
contract, two files). tests/e2e/test_meltano_add.py proves `meltano add --from-ref` with it.
"""

from __future__ import annotations

import copy
import importlib.metadata
import typing as t
from pathlib import Path

import pytest
import yaml

from tap_mixpanel_profiles.capabilities import CAPABILITIES
from tap_mixpanel_profiles.settings import CONFIG_SCHEMA
from tap_mixpanel_profiles.tap import TapMixpanelProfiles
from tests.test_meltano_project import EXTRACTOR, KINDS, _type

REPO = Path(__file__).resolve().parent.parent
DEFINITION_PATH = REPO / "hub" / "tap-mixpanel-profiles.yml"
DEFINITION = yaml.safe_load(DEFINITION_PATH.read_text(encoding="utf-8"))
DECLARED = {s["name"]: s for s in DEFINITION["settings"]}
DISTRIBUTION = importlib.metadata.distribution("tap-mixpanel-profiles")

#: SDK built-ins that cannot work here: `fake` in map expressions needs singer-sdk's faker
#: extra, which the tap does not install.
NOT_DECLARED = {"faker_config"}


def offered_settings() -> dict[str, t.Any]:
    """The settings `tap-mixpanel-profiles --about` lists (the tap's plus the SDK built-ins)."""
    schema = copy.deepcopy(CONFIG_SCHEMA)
    TapMixpanelProfiles.append_builtin_config(schema)
    return dict(schema["properties"])


OFFERED = offered_settings()


def test_identity_install_and_capabilities() -> None:
    assert DEFINITION["name"] == "tap-mixpanel-profiles"
    assert DEFINITION["namespace"] == "tap_mixpanel_profiles"
    assert DEFINITION["variant"] and DEFINITION["label"] and DEFINITION["description"]
    assert DEFINITION["pip_url"] == DISTRIBUTION.metadata["Name"], "pip_url is the package name"
    scripts = {e.name for e in DISTRIBUTION.entry_points if e.group == "console_scripts"}
    assert DEFINITION["executable"] in scripts
    assert DEFINITION["capabilities"] == sorted(c.value for c in CAPABILITIES)
    assert set(EXTRACTOR["capabilities"]) == set(DEFINITION["capabilities"]), "meltano.yml too"


def test_settings_group_validation_is_a_service_account_or_the_api_secret() -> None:
    groups = [sorted(g) for g in DEFINITION["settings_group_validation"]]
    assert groups == [
        ["project_id", "service_account_secret", "service_account_username"],
        ["api_secret", "project_id"],
    ]
    assert {name for group in groups for name in group} <= set(DECLARED)


@pytest.mark.parametrize("name", sorted(set(OFFERED) - NOT_DECLARED))
def test_every_offered_setting_is_declared_with_its_kind(name: str) -> None:
    assert name in DECLARED, f"{DEFINITION_PATH.name} does not declare {name!r}"
    setting, prop = DECLARED[name], OFFERED[name]
    assert setting.get("kind") in KINDS[_type(prop)], (name, setting.get("kind"), _type(prop))
    assert setting.get("label") and setting.get("description", "").strip(), name
    secret = bool(prop.get("secret") or prop.get("writeOnly"))
    assert bool(setting.get("sensitive")) == secret, f"{name}: sensitive must be {secret}"
    allowed = [
        v for v in prop.get("enum") or prop.get("allowed_values") or [] if isinstance(v, str)
    ]
    if allowed:  # as text (a true / false / auto setting also takes booleans)
        assert setting["kind"] == "options"
        assert [o["value"] for o in setting["options"]] == allowed
    assert "value" not in setting, f"{name}: the tap owns its defaults"


def test_nothing_else_is_declared_and_the_settings_are_meltano_ymls() -> None:
    assert set(DECLARED) <= set(OFFERED) - NOT_DECLARED, set(DECLARED) - set(OFFERED)
    assert DEFINITION["settings"] == EXTRACTOR["settings"], (
        "hub/tap-mixpanel-profiles.yml and meltano.yml declare the same settings: copy the "
        "changed entries across"
    )


def test_the_unsupported_capabilities_have_no_settings_here() -> None:
    for name in ("flattening_enabled", "batch_config", "emit_activate_version_messages"):
        assert name not in DECLARED and name not in OFFERED
