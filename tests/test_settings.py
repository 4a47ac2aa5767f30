"""Settings.from_config: defaults, validation (one message naming the setting), caps, URLs."""

from __future__ import annotations

import dataclasses
import logging
import typing as t

import pytest

from tap_mixpanel_profiles.errors import EXIT_CONFIG, ConfigError
from tap_mixpanel_profiles.settings import CONFIG_SCHEMA, Settings
from tests.helpers.engage_fake import API_SECRET, SA_SECRET, SA_USER

SA = {"service_account_username": SA_USER, "service_account_secret": SA_SECRET}


def settings(**config: t.Any) -> Settings:
    base: dict[str, t.Any] = {"project_id": "4242", **SA}
    base.update(config)
    return Settings.from_config({k: v for k, v in base.items() if v is not None})


def error_for(config: dict[str, t.Any]) -> str:
    with pytest.raises(ConfigError) as info:
        Settings.from_config(config)
    assert info.value.exit_code == EXIT_CONFIG
    message = str(info.value)
    assert "\n" not in message, "one line"
    return message


def test_defaults() -> None:
    s = settings()
    assert s.project_id == "4242"
    assert s.auth_method == "service_account"
    assert (s.auth_username, s.auth_password) == (SA_USER, SA_SECRET)
    assert s.base_url == "https://mixpanel.com"
    assert s.engage_url == "https://mixpanel.com/api/query/engage"
    assert s.page_size == 1000
    assert s.max_workers == 5
    assert s.queries_per_hour == 60
    assert s.quota_window_seconds == 3600
    assert s.request_timeout == 120
    assert s.max_retries == 8
    assert s.on_quota_exhausted == "wait"
    assert s.where is None and s.cohort_id is None
    assert s.output_properties is None and s.include_all_users is None


def test_schema_defaults_match_the_documented_contract() -> None:
    props = CONFIG_SCHEMA["properties"]
    assert CONFIG_SCHEMA["required"] == ["project_id"]
    assert props["service_account_secret"].get("secret") is True
    assert props["api_secret"].get("secret") is True
    assert props["max_workers"]["default"] == 5
    assert "maximum" not in props["max_workers"], "above 5 is capped with a warning, not rejected"
    assert props["page_size"]["default"] == 1000


def test_api_secret_auth_is_basic_with_empty_password() -> None:
    s = Settings.from_config({"project_id": "1", "api_secret": API_SECRET})
    assert s.auth_method == "api_secret"
    assert (s.auth_username, s.auth_password) == (API_SECRET, "")
    assert s.secrets == (API_SECRET,)


def test_service_account_secret_is_the_secret() -> None:
    assert settings().secrets == (SA_SECRET,)


@pytest.mark.parametrize(
    ("region", "url"),
    [
        ("us", "https://mixpanel.com"),
        ("eu", "https://eu.mixpanel.com"),
        ("in", "https://in.mixpanel.com"),
    ],
)
def test_region_selects_base_url(region: str, url: str) -> None:
    s = settings(region=region)
    assert s.base_url == url
    assert s.engage_url == url + "/api/query/engage"


def test_api_url_overrides_region() -> None:
    s = settings(region="eu", api_url="http://127.0.0.1:8123/")
    assert s.base_url == "http://127.0.0.1:8123"
    assert s.engage_url == "http://127.0.0.1:8123/api/query/engage"


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        ({"service_account_username": SA_USER, "service_account_secret": SA_SECRET}, "project_id"),
        ({"project_id": "  ", **SA}, "project_id"),
        ({"project_id": "1"}, "service_account_username"),
        ({"project_id": "1", **SA, "api_secret": API_SECRET}, "api_secret"),
        ({"project_id": "1", "service_account_username": SA_USER}, "service_account_secret"),
        ({"project_id": "1", "service_account_secret": SA_SECRET}, "service_account_username"),
        (
            {"project_id": "1", "service_account_secret": SA_SECRET, "api_secret": API_SECRET},
            "api_secret",
        ),
        ({"project_id": "1", **SA, "region": "mars"}, "region"),
        ({"project_id": "1", **SA, "region": "EU "}, "region"),
        ({"project_id": "1", **SA, "api_url": "ftp://example.com"}, "api_url"),
        ({"project_id": "1", **SA, "api_url": "mixpanel.com"}, "api_url"),
        ({"project_id": "1", **SA, "api_url": "https://"}, "api_url"),
        ({"project_id": "1", **SA, "page_size": 0}, "page_size"),
        ({"project_id": "1", **SA, "page_size": -5}, "page_size"),
        ({"project_id": "1", **SA, "page_size": "1000"}, "page_size"),
        ({"project_id": "1", **SA, "page_size": 10.5}, "page_size"),
        ({"project_id": "1", **SA, "max_workers": 0}, "max_workers"),
        ({"project_id": "1", **SA, "max_workers": -1}, "max_workers"),
        ({"project_id": "1", **SA, "max_workers": True}, "max_workers"),
        ({"project_id": "1", **SA, "queries_per_hour": 0}, "queries_per_hour"),
        ({"project_id": "1", **SA, "queries_per_hour": -60}, "queries_per_hour"),
        ({"project_id": "1", **SA, "quota_window_seconds": 0}, "quota_window_seconds"),
        ({"project_id": "1", **SA, "request_timeout": 0}, "request_timeout"),
        ({"project_id": "1", **SA, "request_timeout": -1.5}, "request_timeout"),
        ({"project_id": "1", **SA, "request_timeout": float("inf")}, "request_timeout"),
        ({"project_id": "1", **SA, "max_retries": -1}, "max_retries"),
        (
            {"project_id": "1", **SA, "max_rate_limit_wait_seconds": 0},
            "max_rate_limit_wait_seconds",
        ),
        ({"project_id": "1", **SA, "backoff_base_seconds": -1}, "backoff_base_seconds"),
        ({"project_id": "1", **SA, "include_all_users": True}, "include_all_users"),
        (
            {"project_id": "1", **SA, "cohort_id": 7, "include_all_users": "yes"},
            "include_all_users",
        ),
        ({"project_id": "1", **SA, "cohort_id": -7}, "cohort_id"),
        ({"project_id": "1", **SA, "cohort_id": "7"}, "cohort_id"),
        ({"project_id": "1", **SA, "output_properties": "$email"}, "output_properties"),
        ({"project_id": "1", **SA, "output_properties": ["$email", ""]}, "output_properties"),
        ({"project_id": "1", **SA, "on_quota_exhausted": "later"}, "on_quota_exhausted"),
        (
            {"project_id": "1", **SA, "session_pages_count_against_quota": "no"},
            "session_pages_count_against_quota",
        ),
        ({"project_id": "1", **SA, "state_every_pages": 0}, "state_every_pages"),
    ],
)
def test_each_invalid_setting_is_named(config: dict[str, t.Any], setting: str) -> None:
    assert f"'{setting}'" in error_for(config)


def test_zero_retries_is_allowed() -> None:
    assert settings(max_retries=0).max_retries == 0


def test_numbers_accept_int_and_float() -> None:
    s = settings(request_timeout=2.5, quota_window_seconds=60, backoff_base_seconds=0)
    assert s.request_timeout == 2.5
    assert s.quota_window_seconds == 60.0
    assert s.backoff_base_seconds == 0.0


def test_include_all_users_with_cohort() -> None:
    s = settings(cohort_id=12, include_all_users=False, output_properties=["$email", "plan"])
    assert s.cohort_id == 12
    assert s.include_all_users is False
    assert s.output_properties == ("$email", "plan")


@pytest.mark.parametrize("workers", [6, 50])
def test_max_workers_above_five_is_capped_with_a_warning(
    workers: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        s = settings(max_workers=workers)
    assert s.max_workers == 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "max_workers" in warnings[0].getMessage()
    assert str(workers) in warnings[0].getMessage()


@pytest.mark.parametrize("workers", [1, 3, 5])
def test_max_workers_up_to_five_is_kept_silently(
    workers: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        s = settings(max_workers=workers)
    assert s.max_workers == workers
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    "config",
    [
        {"project_id": "1", **SA, "api_secret": API_SECRET},
        {"project_id": "1", "service_account_secret": SA_SECRET, "api_secret": API_SECRET},
        {"project_id": "1", "service_account_secret": SA_SECRET},
        {"project_id": "", **SA},
        {"project_id": "1", **SA, "api_url": f"https://{SA_USER}:{SA_SECRET}@proxy.example.com"},
        {
            "project_id": "1",
            "api_secret": API_SECRET,
            "api_url": f"https://{API_SECRET}@proxy.example.com",
        },
        {"project_id": "1", "api_secret": API_SECRET, "region": "mars"},
        {"project_id": "1", **SA, "page_size": -1},
    ],
)
def test_secrets_never_in_error_messages(config: dict[str, t.Any]) -> None:
    message = error_for(config)
    assert SA_SECRET not in message
    assert API_SECRET not in message


def test_api_url_with_credentials_is_rejected() -> None:
    message = error_for(
        {"project_id": "1", **SA, "api_url": f"https://u:{SA_SECRET}@proxy.example.com"}
    )
    assert "'api_url'" in message
    assert "credentials" in message


def test_fingerprint_covers_what_selects_profiles_only() -> None:
    s = settings(
        where='properties["plan"] == "pro"',
        cohort_id=5,
        include_all_users=True,
        output_properties=["$email"],
        page_size=500,
    )
    fp = s.fingerprint()
    assert fp == {
        "project_id": "4242",
        "where": 'properties["plan"] == "pro"',
        "cohort_id": 5,
        "output_properties": ["$email"],
        "include_all_users": True,
        "page_size": 500,
    }
    assert SA_SECRET not in repr(fp)
    # Settings that do not change *which* profiles are read keep the fingerprint.
    assert (
        settings(
            where='properties["plan"] == "pro"',
            cohort_id=5,
            include_all_users=True,
            output_properties=["$email"],
            page_size=500,
            max_workers=1,
            queries_per_hour=10,
            request_timeout=5,
        ).fingerprint()
        == fp
    )
    # Settings that do, change it.
    assert (
        settings(
            where='properties["plan"] == "free"',
            cohort_id=5,
            include_all_users=True,
            output_properties=["$email"],
            page_size=500,
        ).fingerprint()
        != fp
    )
    assert (
        settings(
            project_id="other",
            where='properties["plan"] == "pro"',
            cohort_id=5,
            include_all_users=True,
            output_properties=["$email"],
            page_size=500,
        ).fingerprint()
        != fp
    )


def test_settings_are_frozen() -> None:
    s = settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.page_size = 5  # type: ignore[misc]


def test_decimal_numbers_from_a_json_config_file() -> None:
    """The SDK parses JSON floats in --config files as Decimal."""
    from decimal import Decimal

    s = settings(request_timeout=Decimal("2.5"), backoff_base_seconds=Decimal("0.001"))
    assert s.request_timeout == 2.5 and isinstance(s.request_timeout, float)
    assert s.backoff_base_seconds == 0.001
    assert "'request_timeout'" in error_for(
        {"project_id": "1", **SA, "request_timeout": Decimal("-1")}
    )
    assert "'request_timeout'" in error_for(
        {"project_id": "1", **SA, "request_timeout": Decimal("NaN")}
    )


# ------------------------------------------------ cohorts, cohort_members, group_profiles
def test_engage_stream_settings_default_to_unset() -> None:
    s = settings()
    assert s.cohort_members_properties == ()
    assert s.cohort_members_cohort_ids is None and s.data_group_ids is None


def test_engage_stream_settings_are_kept_in_order_without_repeats() -> None:
    s = settings(
        cohort_members_properties=["$email", "plan", "$email"],
        cohort_members_cohort_ids=[102, 101, 102],
        data_group_ids=[2, 0, 2],
    )
    assert s.cohort_members_properties == ("$email", "plan")
    assert s.cohort_members_cohort_ids == (102, 101)
    assert s.data_group_ids == (2, 0)
    s.require_group_settings()


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        ({"cohort_members_properties": "$email"}, "cohort_members_properties"),
        ({"cohort_members_properties": ["ok", ""]}, "cohort_members_properties"),
        ({"cohort_members_cohort_ids": [101, "102"]}, "cohort_members_cohort_ids"),
        ({"cohort_members_cohort_ids": [0]}, "cohort_members_cohort_ids"),
        ({"cohort_members_cohort_ids": []}, "cohort_members_cohort_ids"),
        ({"cohort_members_cohort_ids": 101}, "cohort_members_cohort_ids"),
        ({"data_group_ids": [1, True]}, "data_group_ids"),
        ({"data_group_ids": [-1]}, "data_group_ids"),
    ],
)
def test_each_invalid_engage_stream_setting_is_named(
    config: dict[str, t.Any], setting: str
) -> None:
    assert f"'{setting}'" in error_for({"project_id": "1", **SA, **config})


@pytest.mark.parametrize("data_group_ids", [None, []])
def test_data_group_ids_are_required_only_by_group_profiles(data_group_ids: t.Any) -> None:
    s = settings(data_group_ids=data_group_ids)  # valid: group_profiles may be unselected
    with pytest.raises(ConfigError, match="'data_group_ids' is required") as info:
        s.require_group_settings()
    assert info.value.exit_code == EXIT_CONFIG
