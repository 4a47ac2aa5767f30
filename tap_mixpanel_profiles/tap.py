"""The Tap class and the command line entry point.

The SDK provides the CLI (`--about`, `--discover`, `--config`, `--catalog`,
`--state`). This module adds what a scheduler needs on top of it: distinct exit
codes (0 complete or paused by design, 1 incomplete, 2 auth, 3 config, 130/143
signals), one clear line per failure instead of a traceback, secrets redacted
from every log line, and a graceful SIGTERM that writes resumable STATE.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import typing as t

from singer_sdk import Tap

from tap_mixpanel_profiles.engine.runtime import Engine
from tap_mixpanel_profiles.events.stream import EventsStream
from tap_mixpanel_profiles.errors import (
    ConfigError,
    IncompleteSyncError,
    OutputClosed,
    TapError,
    redact,
)
from tap_mixpanel_profiles.engine.records import BufferedMsgSpecWriter
from tap_mixpanel_profiles.settings import CONFIG_SCHEMA, Settings
from tap_mixpanel_profiles.profiles.stream import ProfilesStream

if t.TYPE_CHECKING:
    from types import FrameType

    from singer_sdk.streams import Stream

LOGGER_NAME = "tap-mixpanel-profiles"


class RedactingFilter(logging.Filter):
    """Replace secret values in every log record (defence in depth).

    Values shorter than MIN_SECRET_LENGTH are not redacted: masking every "s"
    in every line would only make the logs unreadable (Mixpanel secrets are
    32 characters).
    """

    MIN_SECRET_LENGTH = 6

    def __init__(self, secrets: t.Sequence[str] = ()) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: t.Sequence[str]) -> None:
        """Redact these values too."""
        for secret in secrets:
            if secret and len(secret) >= self.MIN_SECRET_LENGTH and secret not in self.secrets:
                self.secrets.append(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the message in place; never drop a record."""
        if not self.secrets:
            return True
        message = record.getMessage()
        redacted = redact(message, self.secrets)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_REDACTION = RedactingFilter()


class TapMixpanelProfiles(Tap):
    """Singer tap for Mixpanel user profiles."""

    name = LOGGER_NAME
    package_name = "tap-mixpanel-profiles"
    config_jsonschema = CONFIG_SCHEMA
    # msgspec serialises messages several times faster than the stdlib writer; the
    # buffered subclass flushes per ~64 KB and at every STATE instead of per message.
    message_writer_class = BufferedMsgSpecWriter

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self._settings: Settings | None = None
        self._engine: Engine | None = None
        self._syncing = False
        self.outcomes: dict[str, tuple[str, list[t.Any]]] = {}
        self.deferred_errors: list[BaseException] = []
        super().__init__(*args, **kwargs)

    # ----------------------------------------------------------------- config
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """JSON-schema validation plus semantic checks, as one ConfigError (exit 3)."""
        errors = super()._validate_config(raise_errors=False)
        if not raise_errors:
            return errors
        if errors:
            secrets = [
                str(self.config.get(key))
                for key, spec in self.config_jsonschema["properties"].items()
                if spec.get("secret") and self.config.get(key) not in (None, "")
            ]
            raise ConfigError(f"Invalid configuration: {redact(errors[0], secrets)}")
        self._settings = Settings.from_config(self.config, self.logger)
        self._install_redaction(self._settings.secrets)
        return errors

    @staticmethod
    def _install_redaction(secrets: t.Sequence[str]) -> None:
        """Add `secrets` to the one process-wide redaction filter (installed once)."""
        root = logging.getLogger()
        _REDACTION.add(secrets)
        for target in (root, *root.handlers):
            if _REDACTION not in target.filters:
                target.addFilter(_REDACTION)

    @property
    def settings(self) -> Settings:
        """Validated settings (built on first use when validation was skipped)."""
        if self._settings is None:
            self._settings = Settings.from_config(self.config, self.logger)
        return self._settings

    @property
    def engine(self) -> Engine:
        """Run-time pieces shared by all streams."""
        if self._engine is None:
            self._engine = Engine(self.settings, self.logger)
        return self._engine

    def discover_streams(self) -> list[Stream]:
        """The streams this tap offers."""
        return [ProfilesStream(self), EventsStream(self)]

    # ------------------------------------------------------------------- sync
    def sync_all(self) -> None:
        """Sync every selected stream, then fail (exit 1) if any stream is incomplete."""
        _ = self.engine
        for stream in self.streams.values():  # fail fast, before any stream spends quota
            check = getattr(stream, "check_settings", None)
            if stream.selected and check is not None:
                check()
        self._syncing = True
        try:
            super().sync_all()
        except BrokenPipeError as exc:
            raise OutputClosed(
                "Output closed by its reader (did the target exit?): sync "
                "incomplete; rerun with the last STATE the target emitted."
            ) from exc
        finally:
            self._syncing = False
        if self.deferred_errors:
            raise self.deferred_errors[0]
        failed = {
            name: pages for name, (status, pages) in self.outcomes.items() if status == "failed"
        }
        if failed:
            details = "; ".join(
                f"{name}: {', '.join(map(str, pages)) or 'see log'}"
                for name, pages in failed.items()
            )
            raise IncompleteSyncError(
                f"Sync incomplete, not fetched: {details}. Everything else was delivered; "
                f"rerun with the last STATE to fetch only what is missing."
            )

    def record_outcome(
        self, stream: str, status: str, failed: list[t.Any], error: BaseException | None = None
    ) -> None:
        """Called by each stream when it ends: complete, paused, failed or interrupted.

        A stream that hit a fatal error (e.g. a rejected query) passes it here instead of
        raising, so the other streams still sync; it is raised once all have run.
        """
        self.outcomes[stream] = (status, list(failed))
        if error is not None:
            self.deferred_errors.append(error)

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT during a sync: stop promptly, but through a resumable STATE."""
        if not self._syncing or self._engine is None:
            super()._handle_termination(signum, frame)
            return
        if self._engine.cancel.is_set():
            self.logger.warning("Second signal: exiting now.")
            sys.exit(128 + signum)
        self._engine.signal_received = signum
        self.logger.warning(
            "Received %s: finishing the current batch and writing STATE.",
            signal.Signals(signum).name,
        )
        self._engine.cancel.set()


def cli() -> None:
    """Console script: the SDK's CLI with exit codes and one-line errors."""
    logger = logging.getLogger(LOGGER_NAME)
    try:
        TapMixpanelProfiles.cli()  # click standalone mode: exits itself on success
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
        sys.exit(130)

    except Exception as exc:  # a bug: keep the traceback, but end on one clear line
        logger.exception("Unexpected error")
        logger.error("Failed: %s: %s", type(exc).__name__, exc)
        sys.exit(1)
