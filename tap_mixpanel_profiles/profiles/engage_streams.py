"""The Engage streams besides profiles: `cohorts`, `cohort_members`, `group_profiles`.

Their schemas and SDK streams only: each stream's sync (`cohorts`, `members`, `groups`) is
imported when the stream syncs, so `--discover`, `--about` and runs that do not select them
never load it. All three are off unless selected in the catalog.
"""

from __future__ import annotations

import datetime as dt
import typing as t

from singer_sdk import typing as th
from singer_sdk.singerlib import RecordMessage, SchemaMessage
from typing_extensions import override

from tap_mixpanel_profiles.engine.stream import EngineStream
from tap_mixpanel_profiles.profiles.typed_stream import PropertyColumnsStream
from tap_mixpanel_profiles.settings import Settings

if t.TYPE_CHECKING:
    from singer_sdk import Tap

    from tap_mixpanel_profiles.profiles.cohorts import CohortsSync
    from tap_mixpanel_profiles.profiles.groups import GroupProfilesSync
    from tap_mixpanel_profiles.profiles.members import CohortMembersSync

COHORT_SCHEMA = th.PropertiesList(
    th.Property("id", th.IntegerType, required=True, description="The cohort's id (key)."),
    th.Property("name", th.StringType, description="The cohort's name."),
    th.Property("description", th.StringType, description="The cohort's description."),
    th.Property(
        "count",
        th.IntegerType,
        description="Members as the list reports them (with members that have no profile).",
    ),
    th.Property("is_visible", th.BooleanType, description="Whether the cohort is visible."),
    th.Property(
        "created",
        th.DateTimeType,
        description="When the cohort was created: Mixpanel's 'YYYY-MM-DD HH:MM:SS' as served "
        "(Mixpanel does not state its time zone), in ISO form.",
    ),
    th.Property("project_id", th.IntegerType, description="The project's id, as served."),
    th.Property(
        "data_group_id",
        th.IntegerType,
        description="For a cohort of group profiles, its data group; null for user profiles.",
    ),
).to_dict()

#: The companion stream of complete snapshots (written by cohort_members, not discovered).
SNAPSHOTS = "cohort_snapshots"

MEMBER_SCHEMA = th.PropertiesList(
    th.Property("cohort_id", th.IntegerType, required=True, description="The cohort (key)."),
    th.Property(
        "distinct_id",
        th.StringType,
        required=True,
        description="The member's $distinct_id (key, with cohort_id); may have no profile.",
    ),
    th.Property(
        "synced_at",
        th.DateTimeType,
        required=True,
        description="Start of the cohort's snapshot that delivered this row (UTC).",
    ),
    th.Property(
        "data_group_id",
        th.IntegerType,
        description="For a cohort of group profiles, its data group; null for user profiles.",
    ),
    th.Property(
        "properties",
        th.ObjectType(additional_properties=True),
        description="The member's cohort_members_properties as served ({} when none asked).",
    ),
).to_dict()

SNAPSHOT_SCHEMA = th.PropertiesList(
    th.Property("cohort_id", th.IntegerType, required=True, description="The cohort (key)."),
    th.Property(
        "synced_at",
        th.DateTimeType,
        required=True,
        description="synced_at of the cohort's last complete snapshot: its current members.",
    ),
    th.Property("completed_at", th.DateTimeType, description="When that snapshot completed."),
    th.Property("data_group_id", th.IntegerType, description="The cohort's data group, if any."),
).to_dict()

GROUP_PROFILE_SCHEMA = th.PropertiesList(
    th.Property(
        "data_group_id",
        th.IntegerType,
        required=True,
        description="The data group (group key) of Project Settings → Group Keys (key).",
    ),
    th.Property(
        "distinct_id",
        th.StringType,
        required=True,
        description="The group's key value, e.g. a company id (key, with data_group_id).",
    ),
    th.Property(
        "last_seen",
        th.DateTimeType,
        description="$last_seen as UTC; null when the group profile has none.",
    ),
    th.Property(
        "properties",
        th.ObjectType(additional_properties=True),
        description="All $properties exactly as Mixpanel served them.",
    ),
).to_dict()


class CohortsStream(EngineStream[Settings]):
    """Every cohort of the project; off unless selected in the catalog."""

    name = "cohorts"
    primary_keys: t.ClassVar[list[str]] = ["id"]
    replication_key = None
    selected_by_default = False
    schema = COHORT_SCHEMA

    @override
    def new_sync(self) -> CohortsSync:
        # Imported here: `--discover`, `--about` and runs without this stream never load it.
        from tap_mixpanel_profiles.profiles.cohorts import CohortsSync

        return CohortsSync(self)


class CohortMembersStream(PropertyColumnsStream):
    """Members of every cohort (or of cohort_members_cohort_ids); off unless selected.

    The member properties asked (cohort_members_properties) are also typed columns, typed
    by the user profiles' property schema."""

    name = "cohort_members"
    primary_keys: t.ClassVar[list[str]] = ["cohort_id", "distinct_id"]
    replication_key = None
    selected_by_default = False
    base_schema = MEMBER_SCHEMA

    @override
    def column_names(self, settings: Settings) -> t.Collection[str] | None:
        asked = settings.cohort_members_properties
        only = settings.property_columns_only
        return [p for p in asked if only is None or p in only]

    def __init__(self, tap: Tap) -> None:
        super().__init__(tap)
        self.messages = tap  # writes the companion stream's SCHEMA and RECORDs

    @override
    def new_sync(self) -> CohortMembersSync:
        # Imported here: `--discover`, `--about` and runs without this stream never load it.
        from tap_mixpanel_profiles.profiles.members import CohortMembersSync

        return CohortMembersSync(self)

    def write_snapshot_schema(self) -> None:
        """The companion stream's SCHEMA (once per run, before any of its records)."""
        self.messages.write_message(SchemaMessage(SNAPSHOTS, SNAPSHOT_SCHEMA, ["cohort_id"]))

    def write_snapshot(self, record: dict[str, t.Any]) -> None:
        """One complete snapshot's marker, in order with this stream's records."""
        self.messages.write_message(
            RecordMessage(SNAPSHOTS, record, time_extracted=dt.datetime.now(dt.timezone.utc))
        )


class GroupProfilesStream(PropertyColumnsStream):
    """Group profiles of the configured data groups; off unless selected in the catalog.

    Typed columns come from the property schema of each data group; a property two groups
    type differently takes the first configured group's type (the other's values are null
    there, and in properties as served)."""

    name = "group_profiles"
    primary_keys: t.ClassVar[list[str]] = ["data_group_id", "distinct_id"]
    replication_key = "last_seen"
    is_sorted = False
    selected_by_default = False
    base_schema = GROUP_PROFILE_SCHEMA

    @override
    def column_keys(self, settings: Settings) -> list[int | None]:
        return list(settings.data_group_ids or ())

    @override
    def check_settings(self) -> None:
        self.settings.require_group_settings()

    @override
    def new_sync(self) -> GroupProfilesSync:
        # Imported here: `--discover`, `--about` and runs without this stream never load it.
        from tap_mixpanel_profiles.profiles.groups import GroupProfilesSync

        return GroupProfilesSync(self)
