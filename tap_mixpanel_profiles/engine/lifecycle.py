"""What one stream's sync run shares with the others: engine handles, progress, statistics.

`ProfilesSync` and `EventsSync` differ in their partitions (pages, date chunks)
and their STATE; the run-time pieces and the summary's request figures are
the same and live here once.
"""

from __future__ import annotations

import typing as t

from tap_mixpanel_profiles.engine.progress import Progress

if t.TYPE_CHECKING:
    from tap_mixpanel_profiles.engine.client import ApiClient


class StreamSync:
    """Base of a stream's sync: settings, logger, cancel event, its client, limiter, progress."""

    def __init__(self, stream: t.Any, client: ApiClient, *, unit: str) -> None:
        self.stream = stream
        self.settings = stream.settings
        self.log = stream.logger
        self.engine = stream.tap_engine
        self.cancel = self.engine.cancel
        self.client = client
        self.limiter = client.limiter
        self.progress = Progress(
            stream.name, self.log, unit=unit, budget=self.limiter.describe_budget
        )

    def request_stats(self) -> dict[str, int]:
        """The SUMMARY line's request figures: every request sent, retries, 429s, peak in flight."""
        return {
            "queries": self.limiter.requests_counted + self.limiter.requests_uncounted,
            "retries": self.client.retries,
            "rate_limited": self.client.rate_limited,
            "max_in_flight": self.limiter.max_in_flight_seen,
        }
