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

from tap_mixpanel_profiles.engine.records import FastRecordsMixin
from tap_mixpanel_profiles.profiles.sync import ProfilesSync

if t.TYPE_CHECKING:
    from tap_mixpanel_profiles.engine.runtime import Engine
    from tap_mixpanel_profiles.settings import Settings

PROFILE_SCHEMA = th.PropertiesList(
    th.Property(
        "distinct_id", th.StringType, required=True, description="The profile's $distinct_id (key)."
    ),
    th.Property(
        "last_seen",
        th.DateTimeType,
        description="$last_seen as UTC; null when the profile has none.",
    ),
    th.Property(
        "properties",
        th.ObjectType(additional_properties=True),
        description="All $properties exactly as Mixpanel served them.",
    ),
).to_dict()


class EngineStreamMixin:
    """What every stream of this tap shares: settings, the run's engine, STATE and outcome.

    Mix in before the SDK stream class. Streams sync through the shared engine
    (limiter, client, partitioned fetcher) and own their bookmark: the SDK's
    per-record progress markers are disabled (see `_increment_stream_state`).
    """

    @property
    def settings(self) -> Settings:
        """Validated settings of the tap."""
        return self._tap.settings  # type: ignore[attr-defined]

    @property
    def tap_engine(self) -> Engine:
        """Shared run-time pieces (cancel event, limiter and client factories)."""
        return self._tap.engine  # type: ignore[attr-defined]

    def _increment_stream_state(
        self, latest_record: dict, *, context: t.Mapping[str, t.Any] | None = None
    ) -> None:
        """Do not track progress markers per record.

        The SDK would promote the max replication value seen to the bookmark
        whenever `get_records` returns, even after a paused or partial sync. The
        bookmark is set by the stream's sync only over what completed.
        """

    def _write_starting_replication_value(self, context: t.Mapping[str, t.Any] | None) -> None:
        """Skip the SDK's starting value: each stream computes its own start from its bookmark.

        The SDK would mix the `start_date` setting (events only) into every
        incremental stream's state and log it as the profiles bookmark.
        """

    def emit_state(self) -> None:
        """Write a STATE message now (the stream's bookmark as it stands)."""
        stream = t.cast("t.Any", self)
        stream.state_manager.is_flushed = False
        stream._write_state_message()  # noqa: SLF001 - the SDK's own STATE path

    def report_outcome(
        self, status: str, failed: list[t.Any], error: BaseException | None = None
    ) -> None:
        """Tell the tap how this stream ended (it decides the exit code).

        `error`: a fatal error (bad query, no access) that the tap raises only after
        the other selected streams have synced.
        """
        self._tap.record_outcome(
            self.name,
            status,
            failed,  # type: ignore[attr-defined]
            error=error,
        )


class ProfilesStream(FastRecordsMixin, EngineStreamMixin, RESTStream):
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
    def url_base(self) -> str:
        """Region host or the api_url override."""
        return self.settings.base_url

    @property
    def authenticator(self) -> BasicAuthenticator:
        """HTTP Basic: service account user:secret, or legacy api_secret with empty password."""
        return BasicAuthenticator(
            username=self.settings.auth_username, password=self.settings.auth_password
        )

    def get_records(self, context: t.Mapping[str, t.Any] | None) -> t.Iterable[dict]:
        """Page 0, then pages 1..N-1 in parallel; records in page order."""
        yield from ProfilesSync(self).run()
