"""The Tap class and the command line entry point.

The SDK provides the CLI (`--about`, `--discover`, `--config`, `--catalog`,
`--state`) and the sync loop (`sync_all`). This module adds what a scheduler
needs on top of it, through the SDK's public `invoke`: a pre-flight check of
every selected stream's settings before any stream syncs, distinct exit codes
(0 complete or paused by design, 1 incomplete, 2 auth, 3 config, 130/143
signals) decided once every selected stream ran, one clear line per failure
instead of a traceback (a bad --config/--state/--catalog file or command line
included), secrets redacted from every log line, and a graceful SIGTERM that
writes resumable STATE. It advertises only the capabilities it honours
(`capabilities.CAPABILITIES`) and refuses the settings of the others.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import typing as t

import click
from typing_extensions import override

from tap_mixpanel_profiles import inputs, redaction
from tap_mixpanel_profiles.capabilities import (
    CAPABILITIES,
    refuse_unsupported,
    remove_unoffered_settings,
)
from tap_mixpanel_profiles.engine.records import BufferedMsgSpecWriter
from tap_mixpanel_profiles.engine.sdk_hooks import TapHooks, config_input
from tap_mixpanel_profiles.engine.stream import EngineStream
from tap_mixpanel_profiles.errors import (
    EXIT_CONFIG,
    EXIT_SIGINT,
    ConfigError,
    OutputClosed,
    TapError,
)
from tap_mixpanel_profiles.events.stream import EventsStream
from tap_mixpanel_profiles.profiles.engage_streams import (
    CohortMembersStream,
    CohortsStream,
    GroupProfilesStream,
)
from tap_mixpanel_profiles.profiles.stream import ProfilesStream
from tap_mixpanel_profiles.profiles.typed_stream import PropertyColumnsStream
from tap_mixpanel_profiles.settings import CONFIG_SCHEMA, Settings

if t.TYPE_CHECKING:
    from singer_sdk.helpers.capabilities import CapabilitiesEnum
    from singer_sdk.streams import Stream

    from tap_mixpanel_profiles.engine.runtime import Runtime

LOGGER_NAME = "tap-mixpanel-profiles"


class TapMixpanelProfiles(TapHooks):
    """Singer tap for Mixpanel: user profiles (Engage) and raw events (Export)."""

    name = LOGGER_NAME
    package_name = "tap-mixpanel-profiles"
    config_jsonschema = CONFIG_SCHEMA
    # msgspec serialises messages several times faster than the stdlib writer; the
    # buffered subclass flushes per ~64 KB and at every STATE instead of per message.
    message_writer_class = BufferedMsgSpecWriter
    # Not the SDK's default list: schema-flattening, batch and activate-version do not
    # hold for these streams (see capabilities.py); their settings are refused.
    capabilities: t.ClassVar[list[CapabilitiesEnum]] = CAPABILITIES

    @classmethod
    @override
    def append_builtin_config(cls, config_jsonschema: dict[str, t.Any]) -> None:
        """The SDK's built-in settings, only for the capabilities the tap offers."""
        super().append_builtin_config(config_jsonschema)
        remove_unoffered_settings(config_jsonschema)

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self._settings: Settings | None = None
        self._runtime: Runtime[Settings] | None = None
        self._syncing = False
        super().__init__(*args, **kwargs)

    # ----------------------------------------------------------------- config
    @override
    def check_config(self, schema_errors: list[str]) -> None:
        """JSON-schema errors, then the semantic checks, as one ConfigError (exit 3)."""
        if schema_errors:
            secrets = [
                str(self.config.get(key))
                for key, spec in self.config_jsonschema["properties"].items()
                if spec.get("secret") and self.config.get(key) not in (None, "")
            ]
            raise ConfigError(
                f"Invalid configuration: {redaction.redact(schema_errors[0], secrets)}"
            )
        refuse_unsupported(self.config)
        self._settings = Settings.from_config(self.config, self.logger)
        redaction.install(self._settings.secrets)

    @property
    def settings(self) -> Settings:
        """Validated settings (built on first use when validation was skipped)."""
        if self._settings is None:
            self._settings = Settings.from_config(self.config, self.logger)
        return self._settings

    @property
    def runtime(self) -> Runtime[Settings]:
        """What this run's streams share: cancel event, limiters, the outcome."""
        if self._runtime is None:
            # Imported here (with the HTTP client and limiter): `--discover` needs none of it.
            from tap_mixpanel_profiles.engine.runtime import Runtime

            self._runtime = Runtime(self.settings, self.logger)
        return self._runtime

    @override
    def load_state(self, state: dict[str, t.Any]) -> None:
        """The SDK's merge of the input STATE, after dropping what cannot be read (warned),
        plus STATE's other top keys: facts every stream shares (e.g. `engage_quota`, what
        a run learned about Mixpanel's counting) round-trip (the SDK keeps only bookmarks)."""
        clean = inputs.sanitize_state(state, self.logger)
        super().load_state(clean)
        for key, value in clean.items():
            if key != "bookmarks":
                t.cast("dict[str, t.Any]", self.state)[key] = value

    @override
    def discover_streams(self) -> list[Stream]:
        """The streams this tap offers (all but profiles are off unless selected).

        The SDK syncs them in name order: cohort_members, cohorts, events, group_profiles,
        profiles (the Engage streams share one budget: see `profiles.budget`).
        """
        return [
            ProfilesStream(self),
            EventsStream(self),
            CohortsStream(self),
            CohortMembersStream(self),
            GroupProfilesStream(self),
        ]

    # -------------------------------------------------------------------- run
    def preflight(self) -> None:
        """Check every selected stream's settings before any stream spends quota."""
        _ = self.runtime
        for stream in self.streams.values():
            if stream.selected and isinstance(stream, EngineStream):
                stream.check_settings()
        keys = {
            key
            for stream in self.streams.values()
            if stream.selected and isinstance(stream, PropertyColumnsStream) and stream.column_plan
            for key in stream.column_keys(self.settings)
        }
        if keys and self.input_catalog is not None:
            from tap_mixpanel_profiles.profiles.property_schema import account_discovery

            account_discovery(self.settings, self.runtime, keys)

    def run(self) -> None:
        """Pre-flight, sync every selected stream, then raise for the run's outcome.

        `sync_all` (the SDK's, final) runs every selected stream; a stream that
        fails records its outcome instead of raising, so the others still sync.
        The run then raises the first fatal error, or IncompleteSyncError (exit 1)
        naming the partitions that are missing.
        """
        self.preflight()
        self._syncing = True
        try:
            self.sync_all()
        except BrokenPipeError as exc:
            raise OutputClosed(
                "Output closed by its reader (did the target exit?): sync "
                "incomplete; rerun with the last STATE the target emitted."
            ) from exc
        finally:
            self._syncing = False
            self.runtime.close()
        self.runtime.outcome.raise_for_status()

    @classmethod
    @override
    def cb_config(
        cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]
    ) -> t.Any:  # the SDK's private _ConfigInput
        """--config: each file checked first (one clear line, exit 3), then the SDK's merge."""
        for path in value:
            if path != "ENV":
                inputs.read_config_file(path)
        return super().cb_config(ctx, param, value)

    @classmethod
    @override
    def invoke(  # type: ignore[override]  # the signature of singer_sdk's own Tap.invoke
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: t.Any = None,
        state: t.IO[str] | None = None,
        catalog: t.IO[str] | None = None,
    ) -> None:
        """The command line: as the SDK's `Tap.invoke`, but through `run` (outcome, exit codes)."""
        if about:
            cls.print_about(about_format)
            sys.exit(0)
        cls.print_version(print_fn=cls.logger.info)
        config_dict, parse_env = config_input(config)
        tap = cls(
            config=config_dict,
            state=inputs.read_json_handle(state, "state"),
            catalog=inputs.read_json_handle(catalog, "catalog"),
            parse_env_config=parse_env,
            validate_config=True,
        )
        tap.run()

    @override
    def on_signal(self, signum: int) -> bool:
        """SIGTERM/SIGINT during a sync: stop promptly, but through a resumable STATE."""
        if not self._syncing or self._runtime is None:
            return False
        if self._runtime.cancel.is_set():
            self.logger.warning("Second signal: exiting now.")
            sys.exit(128 + signum)
        self._runtime.signal_received = signum
        self.logger.warning(
            "Received %s: finishing the current batch and writing STATE.",
            signal.Signals(signum).name,
        )
        self._runtime.cancel.set()
        return True


def cli() -> None:
    """Console script: the SDK's CLI with exit codes and one-line errors.

    Click runs outside its standalone mode so that a usage error (an unknown
    option, a --state file that does not exist) is one line and exit 3 like any
    other configuration error, not click's usage text and its exit code 2, which
    here means "authentication".
    """
    logger = logging.getLogger(LOGGER_NAME)
    try:
        command = TapMixpanelProfiles.cli  # the SDK's click command (sets up logging)
        code = command.main(standalone_mode=False)
    except click.ClickException as exc:
        logger.error("%s (see --help)", exc.format_message())
        sys.exit(EXIT_CONFIG)
    except click.Abort:
        logger.error("Interrupted.")
        sys.exit(EXIT_SIGINT)
    except TapError as exc:
        if isinstance(exc, OutputClosed):
            # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        else:
            sys.stdout.flush()
        logger.error("%s", exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        logger.error("Interrupted.")
        sys.exit(EXIT_SIGINT)
    except Exception as exc:
        logger.exception("Unexpected error")
        logger.error("Failed: %s: %s", type(exc).__name__, exc)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
