"""Singer streams. `profiles` is an SDK RESTStream whose record path is parallel.

The SDK owns what it is good at (catalog, schema and record messages, state
plumbing, selection, stream maps); the parallel, rate-limited fetching lives in
`profiles_sync`, started from `get_records`, so that records are still yielded
from — and written by — the one main thread.
"""

from __future__ import annotations

import typing as t

from singer_sdk import RESTStream
from singer_sdk import typing as th
from singer_sdk.authenticators import BasicAuthenticator

from tap_mixpanel_profiles.fast_records import FastRecordsMixin
from tap_mixpanel_profiles.profiles_sync import ProfilesSync

if t.TYPE_CHECKING:
    from tap_mixpanel_profiles.engine import Engine
    from tap_mixpanel_profiles.settings import Settings

PROFILE_SCHEMA = th.PropertiesList(
    th.Property("distinct_id", th.StringType, required=True,
                description="The profile's $distinct_id (key)."),
    th.Property("last_seen", th.DateTimeType,
                description="$last_seen as UTC; null when the profile has none."),
    th.Property("properties", th.ObjectType(additional_properties=True),
                description="All $properties exactly as Mixpanel served them."),
).to_dict()


class ProfilesStream(FastRecordsMixin, RESTStream):
    """Mixpanel user profiles from the Engage query API."""

    name = "profiles"
    path = "/api/query/engage"
    http_method = "POST"
    payload_as_json = False
    primary_keys: t.ClassVar[list[str]] = ["distinct_id"]
    replication_key = "last_seen"
    is_sorted = False
    schema = PROFILE_SCHEMA

    @property
    def settings(self) -> Settings:
        """Validated settings of the tap."""
        return self._tap.settings  # type: ignore[attr-defined]

    @property
    def tap_engine(self) -> Engine:
        """Shared run-time pieces (cancel event, limiter and client factories)."""
        return self._tap.engine  # type: ignore[attr-defined]

    @property
    def url_base(self) -> str:
        """Region host or the api_url override."""
        return self.settings.base_url

    @property
    def authenticator(self) -> BasicAuthenticator:
        """HTTP Basic: service account user:secret, or legacy api_secret with empty password."""
        return BasicAuthenticator(username=self.settings.auth_username,
                                  password=self.settings.auth_password)

    def get_records(self, context: t.Mapping[str, t.Any] | None) -> t.Iterable[dict]:
        """Page 0, then pages 1..N-1 in parallel; records in page order."""
        yield from ProfilesSync(self).run()

    def _increment_stream_state(self, latest_record: dict, *,
                                context: t.Mapping[str, t.Any] | None = None) -> None:
        """Do not track progress markers per record.

        The SDK would promote the max `last_seen` seen to the bookmark whenever
        `get_records` returns, even after a paused or partial pass. The bookmark
        is set by `ProfilesSync` only when a whole pass completed.
        """

    def report_outcome(self, status: str, failed: list[t.Any]) -> None:
        """Tell the tap how this stream ended (it decides the exit code)."""
        self._tap.record_outcome(self.name, status, failed)  # type: ignore[attr-defined]
