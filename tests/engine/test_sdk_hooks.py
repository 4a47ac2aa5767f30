"""The SDK's private surface the tap relies on is still there, with the same shape.

Every private hook, import and attribute is listed in `engine.sdk_hooks`; a
newer singer-sdk that renames or reshapes one fails here, by name, before any
sync test can fail in a confusing way.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing as t

import pytest
from singer_sdk import Stream, Tap
from singer_sdk.plugin_base import PluginBase

from tap_mixpanel_profiles.engine import sdk_hooks
from tap_mixpanel_profiles.engine.sdk_hooks import (
    PRIVATE_ATTRIBUTES,
    PRIVATE_HOOKS,
    PRIVATE_IMPORTS,
    StreamHooks,
    TapHooks,
    config_input,
)
from tap_mixpanel_profiles.engine.stream import EngineStream
from tap_mixpanel_profiles.tap import TapMixpanelProfiles
from tests.helpers.engage_fake import base_config

HOOK_IDS = [f"{cls.__name__}.{name}" for cls, name, _ in PRIVATE_HOOKS]


@pytest.mark.parametrize(("key", "why"), PRIVATE_HOOKS.items(), ids=HOOK_IDS)
def test_each_overridden_private_hook_exists_with_the_same_parameters(
    key: tuple[type[t.Any], str, tuple[str, ...]], why: str
) -> None:
    cls, name, params = key
    assert why
    hook = getattr(cls, name, None)
    assert hook is not None, f"singer-sdk's {cls.__name__}.{name} is gone: {why}"
    assert tuple(inspect.signature(hook).parameters) == params, (
        f"singer-sdk changed {cls.__name__}.{name}{inspect.signature(hook)}; the tap overrides "
        f"it to {why}"
    )


def test_the_hooks_list_is_exactly_what_the_hook_classes_override() -> None:
    overridden = {
        (base, name)
        for hooks, base in ((TapHooks, Tap), (StreamHooks, Stream))
        for name in vars(hooks)
        if name.startswith("_") and not name.startswith("__") and callable(vars(hooks)[name])
    }
    assert overridden == {(cls, name) for cls, name, _ in PRIVATE_HOOKS}


def test_the_tap_and_its_streams_reach_the_hooks() -> None:
    assert TapMixpanelProfiles._validate_config is TapHooks._validate_config
    assert TapMixpanelProfiles._handle_termination is TapHooks._handle_termination
    assert TapMixpanelProfiles.sync_all is Tap.sync_all, "sync_all is final in the SDK"
    for name in ("_increment_stream_state", "_write_starting_replication_value"):
        assert getattr(EngineStream, name) is getattr(StreamHooks, name)


@pytest.mark.parametrize(("key", "why"), PRIVATE_IMPORTS.items())
def test_each_private_import_exists(key: tuple[str, str], why: str) -> None:
    module, name = key
    assert why
    assert callable(getattr(importlib.import_module(module), name, None)), (
        f"{module}.{name} is gone: {why}"
    )


def test_the_private_attributes_read_exist() -> None:
    assert set(PRIVATE_ATTRIBUTES) == {
        ("singer_sdk.Stream", "_stream_version"),
        ("singer_sdk.plugin_base._ConfigInput", "config"),
        ("singer_sdk.plugin_base._ConfigInput", "parse_env"),
    }
    tap = TapMixpanelProfiles(config=base_config())
    assert hasattr(tap.streams["profiles"], "_stream_version")
    config_class = importlib.import_module("singer_sdk.plugin_base")._ConfigInput
    fields = {f.name for f in dataclasses.fields(config_class)}
    assert {"config", "parse_env"} <= fields
    assert config_input(config_class(config={"a": 1}, parse_env=True)) == ({"a": 1}, True)
    assert config_input(None) == ({}, False)


def test_invoke_keeps_the_sdk_signature() -> None:
    ours = inspect.signature(TapMixpanelProfiles.invoke)
    sdks = inspect.signature(Tap.invoke)
    assert list(ours.parameters) == list(sdks.parameters)
    assert "about" in inspect.signature(PluginBase.invoke).parameters


def test_the_conformance_helpers_answer_as_the_sdk_does() -> None:
    assert sdk_hooks.schema_is_boolean({"type": ["boolean", "null"]})
    assert not sdk_hooks.schema_is_boolean({"type": ["string", "null"]})
    assert sdk_hooks.schema_is_list({"type": "array", "items": {"type": "string"}})
    assert sdk_hooks.schema_is_object({"type": "object", "properties": {}})
    assert not sdk_hooks.schema_is_object({"type": "string"})


def test_emit_state_writes_the_stream_state_where_the_sync_says(
    engage: t.Callable[..., t.Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """emit_state replaces the SDK's private _write_state_message: STATE exactly when asked."""
    import json

    engage(25)
    capsys.readouterr()
    TapMixpanelProfiles(config=base_config(page_size=10, state_every_pages=100)).run()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = "".join({"RECORD": "r", "STATE": "S"}.get(m["type"], "-") for m in lines)
    # SCHEMA, page 0's records then its STATE, the other pages, the STATE at the session's end,
    # the final STATE (pass done), and the SDK's own finalized copy of it.
    assert kinds == "-" + "r" * 10 + "S" + "r" * 15 + "SSS", kinds
    states = [m["value"]["bookmarks"]["profiles"] for m in lines if m["type"] == "STATE"]
    assert states[0]["pass"] and states[1]["pass"]
    assert states[2]["pass"] == [] and states[2]["replication_key_value"]
    assert {k: v for k, v in states[2].items() if k != "replication_key_signpost"} == states[3]
