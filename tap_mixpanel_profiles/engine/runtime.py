"""What one tap run shares between its streams: cancellation, limiters, clients, the outcome.

One cancel event (set by SIGTERM/SIGINT) reaches every wait in every thread.
Limiters are shared per API: streams that query the same Mixpanel API (and so
spend the same per-project limits) get the same `QueryLimiter`, each with a
client of its own (its own sessions, retries and figures). Every stream reports
how it ended to the one `RunOutcome`, which decides the exit code once all
selected streams have run.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import typing as t

from tap_mixpanel_profiles.engine.client import ApiClient
from tap_mixpanel_profiles.engine.limiter import QueryLimiter, Window
from tap_mixpanel_profiles.errors import IncompleteSyncError
from tap_mixpanel_profiles.redaction import redact


class ClientSettings(t.Protocol):
    """The settings every API client takes (a subset of the tap's Settings)."""

    @property
    def auth_username(self) -> str: ...
    @property
    def auth_password(self) -> str: ...
    @property
    def request_timeout(self) -> float: ...
    @property
    def max_retries(self) -> int: ...
    @property
    def max_rate_limit_wait_seconds(self) -> float: ...
    @property
    def backoff_base_seconds(self) -> float: ...
    @property
    def backoff_max_seconds(self) -> float: ...
    @property
    def on_quota_exhausted(self) -> str: ...
    @property
    def secrets(self) -> tuple[str, ...]: ...


S = t.TypeVar("S", bound=ClientSettings)


@dataclasses.dataclass(frozen=True)
class ApiSpec:
    """One rate-limited API as a domain describes it.

    `key` names the limits: every stream whose spec has the same key shares one
    limiter (Mixpanel counts per project and API, not per stream).
    """

    key: str
    name: str  # in error messages, e.g. "Mixpanel Engage API"
    budget_name: str  # in budget log lines, e.g. "Engage query"
    max_in_flight: int
    windows: tuple[Window, ...]


@dataclasses.dataclass
class StreamOutcome:
    """How one stream ended: complete, paused, failed or interrupted, and what is missing."""

    status: str
    failed: list[t.Any]


class RunOutcome:
    """Every stream's outcome; `raise_for_status` turns them into the run's exit code."""

    def __init__(self) -> None:
        self.streams: dict[str, StreamOutcome] = {}
        self.errors: list[BaseException] = []

    def record(
        self, stream: str, status: str, failed: t.Sequence[t.Any], error: BaseException | None
    ) -> None:
        """Called by each stream when it ends.

        A stream that hit a fatal error (a rejected query, no access) passes it here
        instead of raising, so the other streams still sync; it is raised at the end.
        """
        self.streams[stream] = StreamOutcome(status, list(failed))
        if error is not None:
            self.errors.append(error)

    def raise_for_status(self) -> None:
        """Raise the first fatal error, else IncompleteSyncError naming what is missing."""
        if self.errors:
            raise self.errors[0]
        failed = {name: o.failed for name, o in self.streams.items() if o.status == "failed"}
        if failed:
            details = "; ".join(
                f"{name}: {', '.join(map(str, parts)) or 'see log'}"
                for name, parts in failed.items()
            )
            raise IncompleteSyncError(
                f"Sync incomplete, not fetched: {details}. Everything else was delivered; "
                f"rerun with the last STATE to fetch only what is missing."
            )


class Runtime(t.Generic[S]):
    """Cancel event, redaction, shared limiters and the outcome of one tap run."""

    def __init__(self, settings: S, logger: logging.Logger) -> None:
        self.settings = settings
        self.log = logger
        self.cancel = threading.Event()
        self.signal_received: int | None = None
        self.outcome = RunOutcome()
        self._limiters: dict[str, QueryLimiter] = {}
        self._lock = threading.Lock()

    def redact(self, text: str) -> str:
        """Remove every configured secret from `text`."""
        return redact(text, self.settings.secrets)

    def limiter(self, spec: ApiSpec) -> QueryLimiter:
        """The one limiter of `spec.key` in this run (created on first use)."""
        with self._lock:
            limiter = self._limiters.get(spec.key)
            if limiter is None:
                limiter = QueryLimiter(
                    max_in_flight=spec.max_in_flight,
                    windows=[dataclasses.replace(w) for w in spec.windows],
                    on_exhausted=self.settings.on_quota_exhausted,
                    cancel=self.cancel,
                    logger=self.log,
                    name=spec.budget_name,
                    slow_start=True,
                )
                self._limiters[spec.key] = limiter
            return limiter

    def client(self, spec: ApiSpec, *, patience: float | None = None) -> ApiClient:
        """A new client for one stream, behind the shared limiter of its API.

        `patience` bounds a request that is only worth a short wait (seconds: the timeout,
        each backoff and the 429 waits; at most 2 retries), for optional queries.
        """
        return self.client_with(self.limiter(spec), spec.name, patience=patience)

    def client_with(
        self, limiter: QueryLimiter, api_name: str, *, patience: float | None = None
    ) -> ApiClient:
        """A client with this run's retry policy and redaction behind `limiter`."""
        s = self.settings

        def bounded(value: float) -> float:
            return value if patience is None else min(value, patience)

        return ApiClient(
            limiter=limiter,
            auth=(s.auth_username, s.auth_password),
            timeout=bounded(s.request_timeout),
            max_retries=s.max_retries if patience is None else min(s.max_retries, 2),
            max_rate_limit_wait=bounded(s.max_rate_limit_wait_seconds),
            backoff_base=bounded(s.backoff_base_seconds),
            backoff_max=bounded(s.backoff_max_seconds),
            redact=self.redact,
            logger=self.log,
            api_name=api_name,
        )

    def close(self) -> None:
        """The run is over: wake and refuse every waiter of every limiter."""
        with self._lock:
            for limiter in self._limiters.values():
                limiter.close()
