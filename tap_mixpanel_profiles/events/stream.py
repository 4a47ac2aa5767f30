"""The `events` stream: Mixpanel's raw Export API, off unless selected in the catalog."""

from __future__ import annotations

import typing as t

from singer_sdk import typing as th
from typing_extensions import override

from tap_mixpanel_profiles.engine.stream import EngineStream
from tap_mixpanel_profiles.errors import ConfigError
from tap_mixpanel_profiles.settings import Settings

if t.TYPE_CHECKING:
    from singer_sdk import Tap

    from tap_mixpanel_profiles.events.sync import EventsSync

EVENT_SCHEMA = th.PropertiesList(
    th.Property(
        "event_id",
        th.StringType,
        required=True,
        description="Key: sha1 of [event name, distinct_id, time, insert_id] as served, "
        "Mixpanel's identity of an event (see docs/events.md).",
    ),
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
        description="properties.$insert_id, or for events without one the sha1 of their "
        "canonical JSON (see docs/events.md); the key with events_primary_key insert_id.",
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
    primary_keys: t.ClassVar[list[str]] = ["event_id"]
    replication_key = "time"
    is_sorted = False
    selected_by_default = False
    schema = EVENT_SCHEMA

    def __init__(self, tap: Tap) -> None:
        super().__init__(tap)
        if tap.config.get("events_primary_key") == "insert_id":
            # The key of tables loaded before event_id (shadows the class attribute).
            self.primary_keys = ["insert_id"]  # type: ignore[misc]

    @override
    def check_settings(self) -> None:
        self.settings.require_events_settings()
        key = self.settings.events_primary_key
        if list(self.primary_keys) != [key]:
            raise ConfigError(
                f"events: the catalog keys events on {', '.join(self.primary_keys) or 'nothing'} "
                f"but events_primary_key is {key}: discover the catalog again (--discover)."
            )
        check_key(self.stream_state, key)

    @override
    def new_sync(self) -> EventsSync:
        # Imported here: `--discover`, `--about` and runs without this stream never load it.
        from tap_mixpanel_profiles.events.sync import EventsSync

        return EventsSync(self)


#: The bookmark's record of the key its table was loaded with (absent: insert_id, before 0.2).
KEY_FIELD = "primary_key"


def check_key(bookmark: t.Mapping[str, t.Any], key: str) -> None:
    """Refuse (exit 3) to load with another key than the table was created with.

    target-duckdb only adds columns: a table created with PRIMARY KEY (insert_id) keeps it,
    and the first event re-read with the new key (or two events Mixpanel counts as two)
    would fail the load with a duplicate-key error. STATE tells which key loaded the table.
    """
    progress = any(bookmark.get(k) for k in ("last_date", "resume_date", "replication_key_value"))
    readable = isinstance(bookmark.get("fingerprint"), dict)  # else the sync ignores it anyway
    saved = bookmark.get(KEY_FIELD) or ("insert_id" if progress and readable else None)
    if saved is None or saved == key:
        return
    raise ConfigError(
        f"events: the STATE was written while the events table was keyed on {saved} "
        f"(its PRIMARY KEY), and events_primary_key is {key}: load events into a new table "
        f"(rename or drop the events table and clear the events STATE; docs/events.md, "
        f"'Upgrading the events key') or set events_primary_key: {saved}."
    )
