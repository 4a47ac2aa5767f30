"""Run-time pieces shared by the streams of one tap run.

One cancel event (set by SIGTERM/SIGINT) reaches every wait in every thread;
clients are built here so that all streams get the same retry policy,
redaction and limiter design.
"""

from __future__ import annotations

import logging
import threading

from tap_mixpanel_profiles.engine.client import ApiClient
from tap_mixpanel_profiles.errors import redact
from tap_mixpanel_profiles.engine.limiter import QueryLimiter, Window
from tap_mixpanel_profiles.settings import EXPORT_QUERIES_PER_SECOND, Settings


class Engine:
    """Cancel event, secret redaction and client factories for one run."""

    def __init__(self, settings: Settings, logger: logging.Logger) -> None:
        self.settings = settings
        self.log = logger
        self.cancel = threading.Event()
        self.signal_received: int | None = None

    def redact(self, text: str) -> str:
        """Remove every configured secret from `text`."""
        return redact(text, self.settings.secrets)

    def client(self, limiter: QueryLimiter, api_name: str) -> ApiClient:
        """An ApiClient with the configured retry policy behind `limiter`."""
        s = self.settings
        return ApiClient(
            limiter=limiter,
            auth=(s.auth_username, s.auth_password),
            timeout=s.request_timeout,
            max_retries=s.max_retries,
            max_rate_limit_wait=s.max_rate_limit_wait_seconds,
            backoff_base=s.backoff_base_seconds,
            backoff_max=s.backoff_max_seconds,
            redact=self.redact,
            logger=self.log,
            api_name=api_name,
        )

    def engage_client(self) -> ApiClient:
        """Client for the Engage query API: max_workers in flight, queries_per_hour per window."""
        s = self.settings
        limiter = QueryLimiter(
            max_in_flight=s.max_workers,
            windows=[Window(s.queries_per_hour, s.quota_window_seconds, stoppable=True)],
            on_exhausted=s.on_quota_exhausted,
            cancel=self.cancel,
            logger=self.log,
            name="Engage query",
        )
        return self.client(limiter, "Mixpanel Engage API")

    def export_client(self) -> ApiClient:
        """Client for the raw Export API: its own limiter (same design, its own limits).

        events_max_workers in flight (Mixpanel: 100), events_queries_per_hour per quota
        window (stoppable, like Engage's) and 3 per second (pacing: always waits).
        """
        s = self.settings
        limiter = QueryLimiter(
            max_in_flight=s.events_max_workers,
            windows=[
                Window(s.events_queries_per_hour, s.quota_window_seconds, stoppable=True),
                Window(EXPORT_QUERIES_PER_SECOND, 1.0, stoppable=False),
            ],
            on_exhausted=s.on_quota_exhausted,
            cancel=self.cancel,
            logger=self.log,
            name="Export",
        )
        return self.client(limiter, "Mixpanel Export API")
