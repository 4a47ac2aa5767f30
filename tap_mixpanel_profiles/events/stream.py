"""The `events` stream: Mixpanel's raw Export API, off unless selected in the catalog.

Same shape as `profiles`: the SDK owns catalog, schema, record messages and
state plumbing; `events_sync` runs the date chunks through the shared engine
(limiter, client, partitioned fetcher) and yields records on the main thread.
"""

from __future__ import annotations

import typing as t

from singer_sdk import Stream
from singer_sdk import typing as th

from tap_mixpanel_profiles.events.sync import EventsSync
from tap_mixpanel_profiles.engine.records import FastRecordsMixin
from tap_mixpanel_profiles.profiles.stream import EngineStreamMixin

EVENT_SCHEMA = th.PropertiesList(
    th.Property("event", th.StringType, description="The event's name."),
    th.Property(
        "distinct_id",
        th.StringType,
        description="properties.distinct_id: joins to profiles.distinct_id.",
    ),
    th.Property(
        "time", th.DateTimeType, description="properties.time (epoch seconds) as a UTC date-time."
    ),
    th.Property(
        "insert_id",
        th.StringType,
        required=True,
        description="Key: properties.$insert_id, or for events without one the sha1 of "
        "their canonical JSON (see README).",
    ),
    th.Property(
        "properties",
        th.ObjectType(additional_properties=True),
        description="All properties exactly as Mixpanel served them.",
    ),
).to_dict()


class EventsStream(FastRecordsMixin, EngineStreamMixin, Stream):
    """Raw events from the Export API, by date range, in parallel chunks."""

    name = "events"
    primary_keys: t.ClassVar[list[str]] = ["insert_id"]
    replication_key = "time"
    is_sorted = False
    selected_by_default = False
    schema = EVENT_SCHEMA

    def check_settings(self) -> None:
        """Fail fast (before any stream syncs) on settings this stream cannot run without."""
        self.settings.require_events_settings()

    def get_records(self, context: t.Mapping[str, t.Any] | None) -> t.Iterable[dict]:
        """Chunks fetched in parallel; records in chunk order."""
        yield from EventsSync(self).run()
