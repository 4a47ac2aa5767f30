"""The `events` stream: Mixpanel's raw Export API, off unless selected in the catalog."""

from __future__ import annotations

import typing as t

from singer_sdk import typing as th
from typing_extensions import override

from tap_mixpanel_profiles.engine.stream import EngineStream
from tap_mixpanel_profiles.settings import Settings

if t.TYPE_CHECKING:
    from tap_mixpanel_profiles.events.sync import EventsSync

if t.TYPE_CHECKING:
    pass

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


class EventsStream(EngineStream[Settings]):
    """Raw events from the Export API, by date range, in parallel chunks (chunk order)."""

    name = "events"
    primary_keys: t.ClassVar[list[str]] = ["insert_id"]
    replication_key = "time"
    is_sorted = False
    selected_by_default = False
    schema = EVENT_SCHEMA

    @override
    def check_settings(self) -> None:
        self.settings.require_events_settings()

    @override
    def new_sync(self) -> EventsSync:
        # Imported here: `--discover`, `--about` and runs without this stream never load it.
        from tap_mixpanel_profiles.events.sync import EventsSync

        return EventsSync(self)
