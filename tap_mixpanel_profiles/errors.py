"""Exception types and the exit codes they map to.

The command line promises distinct exit codes so that schedulers can tell a bad
configuration (fix the config) from bad credentials (fix the secret) from an
incomplete sync (rerun: STATE lets it resume). Every error carries a one-line
message that is safe to print: it never contains a secret.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_AUTH = 2
EXIT_CONFIG = 3
EXIT_SIGTERM = 143
EXIT_SIGINT = 130


class TapError(Exception):
    """Base class: a failure that ends the run with a clear one-line message."""

    exit_code = EXIT_INCOMPLETE


class ConfigError(TapError):
    """The configuration is invalid (detected before any request, or a 400 on page 0)."""

    exit_code = EXIT_CONFIG


class AuthError(TapError):
    """Mixpanel refused the credentials or the project (401, 402, 403)."""

    exit_code = EXIT_AUTH


class FatalResponseError(TapError):
    """The server answered something no retry can fix (an unexpected 4xx)."""


class IncompleteSyncError(TapError):
    """Some partitions (pages, date ranges) could not be fetched; the rest was delivered."""


class OutputClosed(TapError):
    """stdout was closed by its reader (the target exited): nothing more can be delivered."""


class Interrupted(TapError):
    """The run was cancelled by SIGTERM/SIGINT after writing a resumable STATE."""

    def __init__(self, message: str, signum: int = 15) -> None:
        super().__init__(message)
        self.exit_code = EXIT_SIGINT if signum == 2 else EXIT_SIGTERM


class Cancelled(Exception):
    """Raised inside worker threads and waits when the run is being shut down.

    Not a TapError: it is an internal control-flow signal, never a final outcome.
    """


class QuotaExhausted(Exception):
    """The hourly query budget is spent and the tap is configured to stop, not wait.

    `resume_at` is a wall-clock epoch time at which the budget has room again.
    """

    def __init__(self, resume_at: float, message: str = "hourly query budget exhausted") -> None:
        super().__init__(message)
        self.resume_at = resume_at


class PartitionFailed(Exception):
    """One page (or date range) failed after its retries; the run continues without it."""


class SessionExpired(Exception):
    """Mixpanel rejected the session_id of a page > 0 (400): the session is gone."""
