"""Every use of singer-sdk's private surface, in one module.

The tap builds on the SDK's public API (`Tap`, `Stream`, `invoke`, `get_records`,
`state_writer`, `stream_state`, the msgspec writer). Where that is not enough,
the narrowest private hook is overridden *here*, each with the reason, and
`tests/engine/test_sdk_hooks.py` fails loudly when the SDK renames one or
changes its signature (see `PRIVATE_HOOKS`). Every override delegates to a
public method of ours, so the rest of the package never names an SDK private.
"""

from __future__ import annotations

import typing as t

from singer_sdk import Stream, Tap
from singer_sdk.helpers._typing import (  # why: the fast record path must agree exactly with
    _is_exclusive_boolean_type,  # the SDK's own conformance rules, which these helpers decide
    is_object_type,
    is_uniform_list,
)
from typing_extensions import override

if t.TYPE_CHECKING:
    from types import FrameType

#: (SDK class, private hook, its parameters) -> why the tap overrides it.
PRIVATE_HOOKS: dict[tuple[type[t.Any], str, tuple[str, ...]], str] = {
    (Tap, "_validate_config", ("self", "raise_errors")): (
        "turn schema errors into one redacted ConfigError (exit 3) and build Settings before "
        "any request"
    ),
    (Tap, "_handle_termination", ("self", "signum", "frame")): (
        "SIGTERM/SIGINT during a sync stops the workers and ends with resumable STATE (exit "
        "143/130) instead of the SDK's sys.exit(0)"
    ),
    (Stream, "_increment_stream_state", ("self", "latest_record", "context")): (
        "no per-record progress markers: the SDK would promote the max replication value to "
        "the bookmark even after a paused or partial sync"
    ),
    (Stream, "_write_starting_replication_value", ("self", "context")): (
        "each stream computes its start from its own bookmark; the SDK would mix the events "
        "stream's start_date into every incremental stream's state"
    ),
    (Stream, "_write_record_message", ("self", "record")): (
        "skip selection pruning and type conformance when both are provably no-ops, and "
        "write the RECORD line without a message object (about 4x the profiles per CPU-second)"
    ),
}
#: Private names imported from the SDK (module, name) -> why.
PRIVATE_IMPORTS: dict[tuple[str, str], str] = {
    ("singer_sdk.helpers._typing", name): "the fast record path follows the SDK's conformance"
    for name in ("_is_exclusive_boolean_type", "is_object_type", "is_uniform_list")
}
#: Private attributes read from SDK objects -> why.
PRIVATE_ATTRIBUTES: dict[tuple[str, str], str] = {
    ("singer_sdk.Stream", "_stream_version"): (
        "a fast RECORD message carries the same version as the SDK's"
    ),
    ("singer_sdk.plugin_base._ConfigInput", "config"): (
        "Tap.invoke receives --config as this object; the tap's invoke reads it as the SDK's does"
    ),
    ("singer_sdk.plugin_base._ConfigInput", "parse_env"): "likewise (--config ENV)",
}


def config_input(value: t.Any) -> tuple[dict[str, t.Any], bool]:
    """The (config, parse_env) that the SDK's CLI hands `Tap.invoke` as its `config` argument."""
    if value is None:
        return {}, False
    return dict(value.config), bool(value.parse_env)


def schema_is_boolean(schema: dict[str, t.Any]) -> bool:
    """The SDK's test for a property that conformance turns into a boolean."""
    return _is_exclusive_boolean_type(schema)


def schema_is_list(schema: dict[str, t.Any]) -> bool:
    """The SDK's test for a property whose items conformance visits one by one."""
    return bool(is_uniform_list(schema))


def schema_is_object(schema: dict[str, t.Any]) -> bool:
    """The SDK's test for an object property."""
    return bool(is_object_type(schema))


class TapHooks(Tap):
    """The Tap's private overrides; the tap implements the public methods they call."""

    def check_config(self, schema_errors: list[str]) -> None:
        """Raise ConfigError for the first problem (schema errors first); set up settings."""
        raise NotImplementedError

    def on_signal(self, signum: int) -> bool:
        """Handle SIGTERM/SIGINT; False lets the SDK handle it (no sync under way)."""
        return False

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        errors = super()._validate_config(raise_errors=False)
        if raise_errors:
            self.check_config(errors)
        return errors

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        if not self.on_signal(signum):
            super()._handle_termination(signum, frame)


class StreamHooks(Stream):
    """A Stream's private overrides; subclasses decide which records take the fast path."""

    def takes_fast_path(self, record: dict[str, t.Any]) -> bool:
        """True when pruning and conformance would return `record` unchanged."""
        return False

    def write_fast_record(self, record: dict[str, t.Any]) -> bool:
        """Write the RECORD message of `record` when it can skip pruning and conformance.

        False: nothing written, the SDK's path writes it.
        """
        return False

    def sdk_record(self, record: dict[str, t.Any]) -> dict[str, t.Any]:
        """`record` as the SDK's own record path takes it."""
        return record

    def stream_version(self) -> int | None:
        """The version the SDK's RECORD messages carry."""
        return self._stream_version

    @override
    def _increment_stream_state(
        self, latest_record: dict[str, t.Any], *, context: t.Mapping[str, t.Any] | None = None
    ) -> None:
        """Track no progress markers: each stream sets its bookmark over what completed."""

    @override
    def _write_starting_replication_value(self, context: t.Mapping[str, t.Any] | None) -> None:
        """Write no starting value: each stream computes its start from its own bookmark."""

    @override
    def _write_record_message(self, record: dict[str, t.Any]) -> None:
        """The SDK's RECORD message, written directly when pruning and conformance are no-ops."""
        if self.write_fast_record(record):
            self.state_manager.is_flushed = False  # as the SDK's own method does
        else:
            super()._write_record_message(self.sdk_record(record))
