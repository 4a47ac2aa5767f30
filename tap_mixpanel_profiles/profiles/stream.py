"""The `profiles` stream: Mixpanel user profiles from the Engage query API."""

from __future__ import annotations

import typing as t

from singer_sdk import typing as th
from typing_extensions import override

from tap_mixpanel_profiles.profiles.typed_stream import PropertyColumnsStream

if t.TYPE_CHECKING:
    from tap_mixpanel_profiles.profiles.sync import ProfilesSync

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


class ProfilesStream(PropertyColumnsStream):
    """User profiles: page 0, then pages 1..N-1 in parallel; records in page order.

    Besides its own columns, one typed column per property of Mixpanel's property schema
    (`property_columns`, see `typed_stream`)."""

    name = "profiles"
    primary_keys: t.ClassVar[list[str]] = ["distinct_id"]
    replication_key = "last_seen"
    is_sorted = False
    base_schema = PROFILE_SCHEMA

    @override
    def new_sync(self) -> ProfilesSync:
        # Imported here: `--discover`, `--about` and runs without this stream never load it.
        from tap_mixpanel_profiles.profiles.sync import ProfilesSync

        return ProfilesSync(self)
