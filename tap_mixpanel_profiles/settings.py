"""Settings: a validated, typed view of the config (its schema is `config_schema`).

`Settings.from_config` turns a raw config mapping into a frozen dataclass and
rejects anything unusable with one line naming the setting, before any request
is made: a scheduler should learn about a typo in seconds, not after a
60-query-an-hour budget has been spent.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import typing as t
import zoneinfo
from urllib.parse import urlparse

from tap_mixpanel_profiles.config_schema import (
    CONFIG_SCHEMA,
    EVENT_KEYS,
    EXPORT_HOSTS,
    EXPORT_MAX_CONCURRENCY,
    MIXPANEL_MAX_CONCURRENCY,
    PROPERTY_COLUMN_MODES,
    QUOTA_MODES,
    REGION_HOSTS,
)
from tap_mixpanel_profiles.errors import ConfigError
from tap_mixpanel_profiles.setting_values import (
    as_counting,
    as_date,
    as_id_list,
    as_positive_int,
    as_positive_number,
    as_text,
    parse_date,
)

__all__ = ["CONFIG_SCHEMA", "Settings", "parse_date"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Validated tap settings (see CONFIG_SCHEMA for what each means)."""

    project_id: str
    auth_username: str
    auth_password: str
    auth_method: str
    base_url: str
    where: str | None
    cohort_id: int | None
    output_properties: tuple[str, ...] | None
    include_all_users: bool | None
    page_size: int
    max_workers: int
    queries_per_hour: int
    quota_window_seconds: float
    request_timeout: float
    max_retries: int
    max_rate_limit_wait_seconds: float
    backoff_base_seconds: float
    backoff_max_seconds: float
    on_quota_exhausted: str
    #: True: session pages count; False: they do not; None ("auto"): learn it from the server.
    session_pages_count_against_quota: bool | None
    session_max_age_seconds: int
    state_every_pages: int
    # Events stream (see CONFIG_SCHEMA); defaults keep direct construction in tests short.
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    project_timezone: str = "UTC"
    events_chunk_days: int = 7
    events_max_workers: int = 10
    events_lookback_days: int = 2
    event_names: tuple[str, ...] | None = None
    events_where: str | None = None
    events_queries_per_hour: int = 60
    events_primary_key: str = "event_id"
    export_base_url: str = EXPORT_HOSTS["us"]
    # cohorts, cohort_members, group_profiles (Engage streams, see CONFIG_SCHEMA).
    cohort_members_properties: tuple[str, ...] = ()
    cohort_members_cohort_ids: tuple[int, ...] | None = None
    data_group_ids: tuple[int, ...] | None = None
    # Typed property columns (see CONFIG_SCHEMA and profiles.property_schema).
    property_columns: str = "none"
    property_columns_only: tuple[str, ...] | None = None
    property_columns_max: int = 500
    property_schema_max_age_hours: float = 24.0
    property_schema_refresh: bool = False
    property_schema_cache_dir: str | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in logs or error messages."""
        return tuple(
            s
            for s in (
                self.auth_password,
                self.auth_username if self.auth_method == "api_secret" else "",
            )
            if s
        )

    @property
    def engage_url(self) -> str:
        """Full URL of the Engage query endpoint."""
        return f"{self.base_url}/api/query/engage"

    @property
    def export_url(self) -> str:
        """Full URL of the raw Export API endpoint."""
        return f"{self.export_base_url}/api/2.0/export"

    def events_fingerprint(self) -> dict[str, t.Any]:
        """The user settings that define *which* events a sync reads (saved in STATE)."""
        return {
            "project_id": self.project_id,
            "event_names": list(self.event_names) if self.event_names else None,
            "events_where": self.events_where,
            "project_timezone": self.project_timezone,
        }

    def require_events_settings(self) -> None:
        """Settings the events stream cannot run without (checked when it is selected)."""
        if self.start_date is None:
            raise ConfigError(
                "Setting 'start_date' is required when the events stream is "
                "selected (YYYY-MM-DD: the first day to export)."
            )

    def require_group_settings(self) -> None:
        """Settings the group_profiles stream cannot run without (checked when it is selected)."""
        if not self.data_group_ids:
            raise ConfigError(
                "Setting 'data_group_ids' is required when the group_profiles stream is "
                "selected (the ids of Project Settings → Group Keys, e.g. [1, 2])."
            )

    def fingerprint(self) -> dict[str, t.Any]:
        """The user settings that define *which* profiles a sync reads.

        Saved in STATE: a resume under different settings would mix two data sets.
        """
        return {
            "project_id": self.project_id,
            "where": self.where,
            "cohort_id": self.cohort_id,
            "output_properties": list(self.output_properties) if self.output_properties else None,
            "include_all_users": self.include_all_users,
            "page_size": self.page_size,
        }

    @classmethod
    def from_config(
        cls, config: t.Mapping[str, t.Any], logger: logging.Logger | None = None
    ) -> Settings:
        """Validate `config`; raise ConfigError naming the first bad setting."""
        logger = logger or logging.getLogger("tap-mixpanel-profiles")
        defaults = {k: v.get("default") for k, v in CONFIG_SCHEMA["properties"].items()}
        cfg = {
            k: (config.get(k) if config.get(k) is not None else defaults.get(k)) for k in defaults
        }

        project_id = as_text(cfg, "project_id")
        if not project_id:
            raise ConfigError("Setting 'project_id' is required.")
        auth_method, username, password = _auth(cfg)
        base_url = _base_url(cfg)
        max_workers = as_positive_int(cfg, "max_workers")
        if max_workers > MIXPANEL_MAX_CONCURRENCY:
            logger.warning(
                "Setting 'max_workers'=%d is above Mixpanel's limit of %d concurrent "
                "queries; using %d.",
                max_workers,
                MIXPANEL_MAX_CONCURRENCY,
                MIXPANEL_MAX_CONCURRENCY,
            )
            max_workers = MIXPANEL_MAX_CONCURRENCY
        output_properties = cfg.get("output_properties")
        if output_properties is not None and (
            not isinstance(output_properties, list)
            or not all(isinstance(p, str) and p for p in output_properties)
        ):
            raise ConfigError("Setting 'output_properties' must be a list of property names.")
        cohort_id = cfg.get("cohort_id")
        if cohort_id is not None and (
            isinstance(cohort_id, bool) or not isinstance(cohort_id, int) or cohort_id < 0
        ):
            raise ConfigError("Setting 'cohort_id' must be a non-negative integer.")
        include_all_users = cfg.get("include_all_users")
        if include_all_users is not None and not isinstance(include_all_users, bool):
            raise ConfigError("Setting 'include_all_users' must be true or false.")
        if include_all_users is not None and cohort_id is None:
            raise ConfigError("Setting 'include_all_users' only applies with 'cohort_id'.")
        mode = cfg.get("on_quota_exhausted")
        if mode not in QUOTA_MODES:
            raise ConfigError(
                f"Setting 'on_quota_exhausted' must be one of {', '.join(QUOTA_MODES)}."
            )
        events = _events_settings(cfg, logger)
        engage_streams = _engage_stream_settings(cfg)
        columns = _column_settings(cfg)
        return cls(
            project_id=project_id,
            auth_username=username,
            auth_password=password,
            auth_method=auth_method,
            base_url=base_url,
            where=as_text(cfg, "where") or None,
            cohort_id=cohort_id,
            output_properties=tuple(output_properties) if output_properties else None,
            include_all_users=include_all_users,
            page_size=as_positive_int(cfg, "page_size"),
            max_workers=max_workers,
            queries_per_hour=as_positive_int(cfg, "queries_per_hour"),
            quota_window_seconds=as_positive_number(cfg, "quota_window_seconds"),
            request_timeout=as_positive_number(cfg, "request_timeout"),
            max_retries=as_positive_int(cfg, "max_retries", minimum=0),
            max_rate_limit_wait_seconds=as_positive_number(cfg, "max_rate_limit_wait_seconds"),
            backoff_base_seconds=as_positive_number(cfg, "backoff_base_seconds", allow_zero=True),
            backoff_max_seconds=as_positive_number(cfg, "backoff_max_seconds", allow_zero=True),
            on_quota_exhausted=mode,
            session_pages_count_against_quota=as_counting(cfg, "session_pages_count_against_quota"),
            session_max_age_seconds=as_positive_int(cfg, "session_max_age_seconds", minimum=0),
            state_every_pages=as_positive_int(cfg, "state_every_pages"),
            **events,
            **engage_streams,
            **columns,
        )


def _auth(cfg: t.Mapping[str, t.Any]) -> tuple[str, str, str]:
    """Exactly one auth method: a service account (user + secret) or a legacy api_secret."""
    user = as_text(cfg, "service_account_username")
    secret = as_text(cfg, "service_account_secret")
    api_secret = as_text(cfg, "api_secret")
    if (user or secret) and api_secret:
        raise ConfigError(
            "Settings 'service_account_username'/'service_account_secret' and "
            "'api_secret' are both set: configure exactly one auth method."
        )
    if api_secret:
        return "api_secret", api_secret, ""
    if user and secret:
        return "service_account", user, secret
    if user:
        raise ConfigError(
            "Setting 'service_account_secret' is required with 'service_account_username'."
        )
    if secret:
        raise ConfigError(
            "Setting 'service_account_username' is required with 'service_account_secret'."
        )
    raise ConfigError(
        "No credentials: set 'service_account_username' and "
        "'service_account_secret' (or the legacy 'api_secret')."
    )


def _base_url(
    cfg: t.Mapping[str, t.Any], name: str = "api_url", hosts: t.Mapping[str, str] = REGION_HOSTS
) -> str:
    region = cfg.get("region")
    if region not in hosts:
        raise ConfigError(f"Setting 'region' must be one of {', '.join(hosts)} (got {region!r}).")
    api_url = as_text(cfg, name)
    if not api_url:
        return hosts[str(region)]
    parsed = urlparse(api_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"Setting '{name}' must be an http(s) URL such as {hosts['eu']}.")
    if parsed.username or parsed.password:
        raise ConfigError(f"Setting '{name}' must not embed credentials.")
    return api_url.rstrip("/")


def _events_settings(cfg: t.Mapping[str, t.Any], logger: logging.Logger) -> dict[str, t.Any]:
    """The events stream's settings (validated even when the stream is not selected)."""
    start, end = as_date(cfg, "start_date"), as_date(cfg, "end_date")
    if start and end and end < start:
        raise ConfigError(f"Setting 'end_date' ({end}) must not be before 'start_date' ({start}).")
    timezone = as_text(cfg, "project_timezone") or "UTC"
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"Setting 'project_timezone' must be an IANA timezone name such as "
            f"UTC or America/Los_Angeles (got {timezone!r})."
        ) from None
    workers = as_positive_int(cfg, "events_max_workers")
    if workers > EXPORT_MAX_CONCURRENCY:
        logger.warning(
            "Setting 'events_max_workers'=%d is above the Export API's limit of %d "
            "concurrent queries; using %d.",
            workers,
            EXPORT_MAX_CONCURRENCY,
            EXPORT_MAX_CONCURRENCY,
        )
        workers = EXPORT_MAX_CONCURRENCY
    names = cfg.get("event_names")
    if names is not None and (
        not isinstance(names, list) or not all(isinstance(n, str) and n for n in names)
    ):
        raise ConfigError("Setting 'event_names' must be a list of event names.")
    return {
        "start_date": start,
        "end_date": end,
        "project_timezone": timezone,
        "events_chunk_days": as_positive_int(cfg, "events_chunk_days"),
        "events_max_workers": workers,
        "events_lookback_days": as_positive_int(cfg, "events_lookback_days", minimum=0),
        "event_names": tuple(names) if names else None,
        "events_where": as_text(cfg, "events_where") or None,
        "events_queries_per_hour": as_positive_int(cfg, "events_queries_per_hour"),
        "events_primary_key": _choice(cfg, "events_primary_key", EVENT_KEYS),
        "export_base_url": _base_url(cfg, "export_api_url", EXPORT_HOSTS),
    }


def _engage_stream_settings(cfg: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """Settings of cohort_members and group_profiles (validated even when not selected)."""
    names = cfg.get("cohort_members_properties")
    if names is not None and (
        not isinstance(names, list) or not all(isinstance(n, str) and n for n in names)
    ):
        raise ConfigError("Setting 'cohort_members_properties' must be a list of property names.")
    cohort_ids = as_id_list(cfg, "cohort_members_cohort_ids", minimum=1)
    if cohort_ids == ():
        raise ConfigError(
            "Setting 'cohort_members_cohort_ids' is an empty list: leave it unset for every "
            "cohort, or list the cohort ids to read."
        )
    return {
        "cohort_members_properties": tuple(dict.fromkeys(names or ())),
        "cohort_members_cohort_ids": cohort_ids,
        "data_group_ids": as_id_list(cfg, "data_group_ids", minimum=0) or None,
    }


def _choice(cfg: t.Mapping[str, t.Any], name: str, choices: t.Sequence[str]) -> str:
    value = cfg.get(name)
    if value not in choices:
        raise ConfigError(f"Setting '{name}' must be one of {', '.join(choices)} (got {value!r}).")
    return str(value)


def _column_settings(cfg: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """Settings of the typed property columns (validated even when no Engage stream runs)."""
    mode = _choice(cfg, "property_columns", PROPERTY_COLUMN_MODES)
    only = cfg.get("property_columns_only")
    if only is not None and (
        not isinstance(only, list) or not all(isinstance(n, str) and n for n in only)
    ):
        raise ConfigError("Setting 'property_columns_only' must be a list of property names.")
    refresh = cfg.get("property_schema_refresh")
    if isinstance(refresh, str) and refresh.strip().lower() in ("true", "false"):
        refresh = refresh.strip().lower() == "true"
    if not isinstance(refresh, bool):
        raise ConfigError("Setting 'property_schema_refresh' must be true or false.")
    return {
        "property_columns": mode,
        "property_columns_only": tuple(dict.fromkeys(only)) if only is not None else None,
        "property_columns_max": as_positive_int(cfg, "property_columns_max", minimum=0),
        "property_schema_max_age_hours": as_positive_number(
            cfg, "property_schema_max_age_hours", allow_zero=True
        ),
        "property_schema_refresh": refresh,
        "property_schema_cache_dir": as_text(cfg, "property_schema_cache_dir") or None,
    }
