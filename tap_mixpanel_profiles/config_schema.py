"""The settings schema: what `--about`, Meltano and env-var parsing see.

Each property's description is the user's documentation of the setting (docs/settings.md
and meltano.yml are kept in step with it by tests). The typed, validated view
of a config is `settings.Settings`.
"""

from __future__ import annotations

import typing as t

from singer_sdk import typing as th

#: Mixpanel allows at most 5 concurrent Query API requests per project.
MIXPANEL_MAX_CONCURRENCY = 5

REGION_HOSTS: dict[str, str] = {
    "us": "https://mixpanel.com",
    "eu": "https://eu.mixpanel.com",
    "in": "https://in.mixpanel.com",
}
QUOTA_MODES = ("wait", "stop")
PROPERTY_COLUMN_MODES = ("all", "none")
EVENT_KEYS = ("event_id", "insert_id")
#: Values of session_pages_count_against_quota as text (Meltano `options`); booleans work too.
SESSION_PAGE_COUNTING = ("true", "false", "auto")

#: The raw Export API lives on its own hosts, with its own limits.
EXPORT_HOSTS: dict[str, str] = {
    "us": "https://data.mixpanel.com",
    "eu": "https://data-eu.mixpanel.com",
    "in": "https://data-in.mixpanel.com",
}
#: Export API limits per project: 100 concurrent queries (and 3 per second, 60 per hour).
EXPORT_MAX_CONCURRENCY = 100

CONFIG_SCHEMA: dict[str, t.Any] = th.PropertiesList(
    th.Property(
        "project_id",
        th.StringType,
        required=True,
        description="Mixpanel project id (Project Settings → Overview).",
    ),
    th.Property(
        "service_account_username",
        th.StringType,
        description="Service account username (preferred auth: HTTP Basic user:secret).",
    ),
    th.Property(
        "service_account_secret", th.StringType, secret=True, description="Service account secret."
    ),
    th.Property(
        "api_secret",
        th.StringType,
        secret=True,
        description="Legacy project API secret (Basic auth, empty password). Mixpanel "
        "retires it on 2027-03-03: prefer a service account.",
    ),
    th.Property(
        "region",
        th.StringType,
        default="us",
        allowed_values=list(REGION_HOSTS),
        description="Data residency: us (mixpanel.com), eu (eu.mixpanel.com), "
        "in (in.mixpanel.com).",
    ),
    th.Property(
        "api_url",
        th.StringType,
        description="Base URL override (a proxy, or the local simulator); default from region.",
    ),
    th.Property(
        "where",
        th.StringType,
        description='Engage filter expression, e.g. properties["plan"] == "pro".',
    ),
    th.Property(
        "cohort_id",
        th.IntegerType,
        description="Only profiles in this cohort (sent as filter_by_cohort).",
    ),
    th.Property(
        "output_properties",
        th.ArrayType(th.StringType),
        description="Only these profile properties (fewer bytes per page).",
    ),
    th.Property(
        "include_all_users",
        th.BooleanType,
        description="With cohort_id: include cohort members without a profile.",
    ),
    th.Property(
        "page_size",
        th.IntegerType,
        default=1000,
        description="Requested profiles per page. The server may serve fewer; the tap "
        "uses the page size it echoes. Larger pages spend fewer queries.",
    ),
    th.Property(
        "max_workers",
        th.IntegerType,
        default=5,
        description="Pages fetched in parallel. Mixpanel allows 5 concurrent queries per "
        "project: larger values are capped to 5. 1 = sequential.",
    ),
    th.Property(
        "queries_per_hour",
        th.IntegerType,
        default=60,
        description="Client-side query budget per window (Mixpanel: 60 per hour). "
        "Every request counts, retries included.",
    ),
    th.Property(
        "quota_window_seconds",
        th.NumberType,
        default=3600,
        description="Length of the sliding quota window in seconds.",
    ),
    th.Property(
        "request_timeout",
        th.NumberType,
        default=120,
        description="Seconds to wait for one HTTP response.",
    ),
    th.Property(
        "max_retries",
        th.IntegerType,
        default=8,
        description="Retries per page for 5xx, network errors and truncated bodies "
        "(429s do not spend them).",
    ),
    th.Property(
        "max_rate_limit_wait_seconds",
        th.NumberType,
        default=1800,
        description="Longest total time one page may wait on 429 answers before it "
        "counts as failed.",
    ),
    th.Property(
        "backoff_base_seconds",
        th.NumberType,
        default=1.0,
        description="First retry delay; doubles per retry (with jitter).",
    ),
    th.Property(
        "backoff_max_seconds",
        th.NumberType,
        default=60,
        description="Upper bound of one retry delay.",
    ),
    th.Property(
        "on_quota_exhausted",
        th.StringType,
        default="wait",
        allowed_values=list(QUOTA_MODES),
        description="When the hourly budget is spent: wait for the window to have room, or "
        "stop: finish pages in flight, emit resumable STATE and exit 0.",
    ),
    th.Property(
        "session_pages_count_against_quota",
        # A boolean, or text as Meltano's `options` pass it (not anyOf: the SDK would append
        # a bare "null" to it, which is not a schema).
        th.CustomType({"type": ["boolean", "string"]}),
        allowed_values=[True, False, *SESSION_PAGE_COUNTING],
        default=True,
        description="Whether pages fetched with a session_id count against the hourly "
        "budget: true, false (only page-0 queries count), or auto (learn it from "
        "Mixpanel's answers, spending at most one 429 a run; what was learned is kept "
        "in STATE for the next run).",
    ),
    th.Property(
        "session_max_age_seconds",
        th.IntegerType,
        default=3600,
        description="Reuse a saved Engage session on resume only while younger than this.",
    ),
    th.Property(
        "state_every_pages",
        th.IntegerType,
        default=5,
        description="Emit a resumable STATE message after this many pages.",
    ),
    # --- cohorts, cohort_members, group_profiles (Engage); used only when selected ---
    th.Property(
        "cohort_members_properties",
        th.ArrayType(th.StringType),
        description="Cohort members: profile properties each member row carries (sent as "
        "output_properties). Unset: none travel, the rows carry an empty properties object.",
    ),
    th.Property(
        "cohort_members_cohort_ids",
        th.ArrayType(th.IntegerType),
        description="Cohort members: only these cohort ids; unset: every cohort the cohorts "
        "list returns. Independent of the profiles stream's cohort_id.",
    ),
    th.Property(
        "data_group_ids",
        th.ArrayType(th.IntegerType),
        description="Group profiles: the data group ids to read (Project Settings → Group "
        "Keys). Required when the group_profiles stream is selected.",
    ),
    # --- typed property columns (profiles, group_profiles, cohort_members) ---
    th.Property(
        "property_columns",
        th.StringType,
        default="all",
        allowed_values=list(PROPERTY_COLUMN_MODES),
        description="all: every property of Mixpanel's property schema is also a typed "
        "column (a value of another type is null there; the properties JSON keeps every "
        "property); none: only the properties JSON column.",
    ),
    th.Property(
        "property_columns_only",
        th.ArrayType(th.StringType),
        description="Typed columns for these property names only (unset: every property "
        "the property schema lists, up to property_columns_max).",
    ),
    th.Property(
        "property_columns_max",
        th.IntegerType,
        default=500,
        description="At most this many typed columns per stream, the most common properties "
        "first (a column once created stays); the rest are in the properties JSON only.",
    ),
    th.Property(
        "property_schema_max_age_hours",
        th.NumberType,
        default=24,
        description="Reuse the cached property schema while younger than this (discovery "
        "then needs no request).",
    ),
    th.Property(
        "property_schema_refresh",
        th.BooleanType,
        default=False,
        description="Ask Mixpanel for the property schema on this run even if the cached "
        "one is fresh.",
    ),
    th.Property(
        "property_schema_cache_dir",
        th.StringType,
        description="Directory of the property schema cache (one file per project, region "
        "and data group); default $XDG_CACHE_HOME/tap-mixpanel-profiles or "
        "~/.cache/tap-mixpanel-profiles.",
    ),
    # --- events stream (raw Export API); used only when `events` is selected ---
    th.Property(
        "start_date",
        th.StringType,
        description="Events: first day to export on the first sync (YYYY-MM-DD, in "
        "project_timezone). Required when the events stream is selected.",
    ),
    th.Property(
        "end_date",
        th.StringType,
        description="Events: last day to export (YYYY-MM-DD); default today in "
        "project_timezone. Never later than today.",
    ),
    th.Property(
        "project_timezone",
        th.StringType,
        default="UTC",
        description="Events: IANA timezone of the project (e.g. America/Los_Angeles): "
        "what 'today' and the export dates mean.",
    ),
    th.Property(
        "events_chunk_days",
        th.IntegerType,
        default=7,
        description="Events: days per Export API request (one chunk; chunks are fetched "
        "in parallel and are the unit of resume).",
    ),
    th.Property(
        "events_max_workers",
        th.IntegerType,
        default=10,
        description="Events: chunks fetched in parallel (the Export API allows 100 "
        "concurrent queries: larger values are capped to 100).",
    ),
    th.Property(
        "events_lookback_days",
        th.IntegerType,
        default=2,
        description="Events: after a completed sync, re-read this many days before the "
        "last synced day (late-arriving events; the last day is always re-read).",
    ),
    th.Property(
        "event_names",
        th.ArrayType(th.StringType),
        description="Events: only these event names (sent as the Export API's `event`).",
    ),
    th.Property(
        "events_where",
        th.StringType,
        description='Events: Export API filter expression, e.g. properties["$os"] == "iOS".',
    ),
    th.Property(
        "events_primary_key",
        th.StringType,
        default="event_id",
        allowed_values=list(EVENT_KEYS),
        description="Events: the table's key. event_id: Mixpanel's identity (name, "
        "distinct_id, time and $insert_id), so events Mixpanel counts as two are two rows; "
        "insert_id: the key of tables loaded before event_id existed (such events become one).",
    ),
    th.Property(
        "events_queries_per_hour",
        th.IntegerType,
        default=60,
        description="Events: client-side Export API budget per quota window (Mixpanel: 60 "
        "per hour; 3 per second is always enforced).",
    ),
    th.Property(
        "export_api_url",
        th.StringType,
        description="Events: Export API base URL override (a proxy, or the local "
        "simulator); default from region (data[-eu|-in].mixpanel.com).",
    ),
).to_dict()
