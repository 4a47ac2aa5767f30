"""inputs.py and capabilities.py in process: what is dropped from STATE, what is kept, why."""

from __future__ import annotations

import decimal
import io
import logging

import pytest

from tap_mixpanel_profiles.capabilities import refuse_unsupported
from tap_mixpanel_profiles.errors import ConfigError
from tap_mixpanel_profiles.inputs import parse_json_object, read_json_handle, sanitize_state
from tap_mixpanel_profiles.tap import TapMixpanelProfiles
from tests.helpers.engage_fake import base_config

LOG = logging.getLogger("test-inputs")


def test_well_formed_entries_are_kept_as_they_are_including_unknown_streams() -> None:
    state = {
        "bookmarks": {
            "profiles": {"replication_key_value": "2024-01-01T00:00:00+00:00", "pass": None},
            "a_stream_of_another_version": {"partitions": [{"context": {}, "x": 1}]},
            "broken": 7,
        },
        "currently_syncing": None,
    }
    clean = sanitize_state(state, LOG)
    assert clean == {
        "bookmarks": {
            "profiles": state["bookmarks"]["profiles"],
            "a_stream_of_another_version": state["bookmarks"]["a_stream_of_another_version"],
        },
        "currently_syncing": None,
    }
    assert "broken" in state["bookmarks"], "the input is not modified"


def test_each_dropped_part_is_warned_with_its_stream_and_what_was_found(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        assert sanitize_state({"bookmarks": ["x"]}, LOG) == {"bookmarks": {}}
        assert sanitize_state({"bookmarks": {"events": {"partitions": [1]}}}, LOG) == {
            "bookmarks": {}
        }
    assert [r.getMessage() for r in caplog.records] == [
        "Ignoring STATE: 'bookmarks' must be an object, found list ['x']; every stream starts "
        "over.",
        "Ignoring the STATE of stream 'events': 'partitions' must be a list of objects, found "
        "list [1]; it starts over (full sync).",
    ]


def test_no_bookmarks_is_no_change() -> None:
    assert sanitize_state({}, LOG) == {}
    assert sanitize_state({"bookmarks": None}, LOG) == {"bookmarks": None}


def test_the_tap_loads_a_state_of_the_wrong_shape_without_raising() -> None:
    tap = TapMixpanelProfiles(
        config=base_config(), state={"bookmarks": {"profiles": "oops", "events": {"x": 1}}}
    )
    assert tap.state["bookmarks"] == {"events": {"x": 1}}


def test_json_objects_are_read_as_the_sdk_reads_them() -> None:
    assert parse_json_object('{"a": 1.5}', "config", "c.json") == {"a": decimal.Decimal("1.5")}
    assert read_json_handle(None, "state") is None
    handle = io.StringIO("[]")
    handle.name = "s.json"
    with pytest.raises(ConfigError, match=r"^The state file s.json must hold a JSON object"):
        read_json_handle(handle, "state")


@pytest.mark.parametrize("value", [False, None, "", {}, 0])
def test_unoffered_capabilities_off_is_fine(value: object) -> None:
    refuse_unsupported({"flattening_enabled": value, "batch_config": value})
