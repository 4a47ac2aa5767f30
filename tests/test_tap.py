"""The tap end to end: in process on requests-mock, and the console script in a subprocess.

* In process: `TapMixpanelProfiles(config=...).run()` with stdout captured —
  page order under random delays, session_id on later pages, row counts, failed
  pages, STATE.
* Subprocess (exit codes, one-line errors, redaction): the console script
  against a loopback HTTP fake (a subprocess cannot see requests-mock).
* The SDK's standard tap tests on mocked responses (mocks at class scope).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import re
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest
import requests_mock as requests_mock_lib
from singer_sdk.testing import get_tap_test_class

from tap_mixpanel_profiles.errors import (
    EXIT_AUTH,
    EXIT_CONFIG,
    EXIT_INCOMPLETE,
    AuthError,
    ConfigError,
    IncompleteSyncError,
)
from tap_mixpanel_profiles.profiles.passes import PassState
from tap_mixpanel_profiles.tap import TapMixpanelProfiles
from tests.helpers.engage_fake import (
    API_SECRET,
    SA_SECRET,
    SESSION_ID,
    EngageFake,
    Reply,
    base_config,
    serve_http,
)
from tests.helpers.in_process import sync
from tests.helpers.tap_runner import select_streams

TAP = str(Path(sys.executable).with_name("tap-mixpanel-profiles"))


def jitter(page: int) -> float:
    return random.uniform(0, 0.015)


# ------------------------------------------------------------- in process
def test_records_leave_in_page_order_under_random_delays(
    engage: t.Callable, capsys: pytest.CaptureFixture
) -> None:
    fake = engage(237, delay=jitter)
    result = sync(capsys, page_size=10, max_workers=5)
    assert result.error is None
    assert result.ids == fake.expected_ids(), "every profile once, pages in order"
    assert result.summary["max_in_flight"] > 1, "pages were really fetched in parallel"
    assert result.summary["total_rows"] == 237
    assert result.summary["successful_pages"] == 24
    assert result.summary["failed_pages"] == 0
    assert result.summary["failed_page_indices"] == []


def test_session_id_on_every_later_page(engage: t.Callable, capsys: pytest.CaptureFixture) -> None:
    fake = engage(95, delay=jitter)
    result = sync(capsys, page_size=10)
    assert result.error is None
    assert sorted(fake.pages_requested()) == list(range(10)), "each page exactly once"
    first = fake.requests_for(0)[0]
    assert "session_id" not in first.form and "page" not in first.form
    for page in range(1, 10):
        (request,) = fake.requests_for(page)
        assert request.form["session_id"] == SESSION_ID
        assert request.form["page_size"] == "10"
    assert all(r.query["project_id"] == "4242" for r in fake.requests)


def test_served_page_size_smaller_than_requested(
    engage: t.Callable, capsys: pytest.CaptureFixture
) -> None:
    fake = engage(50, served_page_size=7)
    result = sync(capsys, page_size=10)
    assert result.error is None
    assert sorted(fake.pages_requested()) == list(range(8)), "ceil(50 / 7) pages"
    assert result.ids == fake.expected_ids()


@pytest.mark.parametrize(("profiles", "pages"), [(0, 1), (10, 1), (30, 3), (31, 4)])
def test_rows_equal_total(
    engage: t.Callable, capsys: pytest.CaptureFixture, profiles: int, pages: int
) -> None:
    fake = engage(profiles)
    result = sync(capsys, page_size=10)
    assert result.error is None
    assert len(fake.requests) == pages
    assert result.ids == fake.expected_ids()
    assert result.summary["total_rows"] == profiles
    assert result.summary["status"] == "complete"


def test_record_shape(engage: t.Callable, capsys: pytest.CaptureFixture) -> None:
    fake = engage(12)
    result = sync(capsys, page_size=10)
    for record, raw in zip(result.records, fake.profiles, strict=True):
        assert set(record) == {"distinct_id", "last_seen", "properties"}
        assert record["properties"] == raw["$properties"]
        last_seen = raw["$properties"].get("$last_seen")
        assert record["last_seen"] == (last_seen + "+00:00" if last_seen else None)
    schema = next(m for m in result.messages if m["type"] == "SCHEMA")
    assert schema["key_properties"] == ["distinct_id"]


def test_transient_faults_are_retried_and_nothing_is_lost(
    engage: t.Callable, capsys: pytest.CaptureFixture
) -> None:
    fake = engage(60, delay=jitter)
    fake.fail(0, Reply(503, {"error": "busy"}))
    fake.fail(
        2,
        Reply(500, "oops"),
        Reply(429, {"error": "slow down"}, {"Retry-After": "0"}),
        Reply(200, '{"page": 2, "results": [{"$distinct_id": "tru'),
    )
    fake.fail(4, Reply(502, "bad gateway"))
    result = sync(capsys, page_size=10, max_retries=2)
    assert result.error is None
    assert result.ids == fake.expected_ids()
    assert len(fake.requests_for(2)) == 4
    assert result.summary["retries"] == 4
    assert result.summary["rate_limited"] == 1
    assert result.summary["queries"] == len(fake.requests), "every request counted, retries too"


def test_sequential_with_one_worker(engage: t.Callable, capsys: pytest.CaptureFixture) -> None:
    fake = engage(55, delay=jitter)
    result = sync(capsys, page_size=10, max_workers=1)
    assert result.error is None
    assert result.ids == fake.expected_ids()
    assert result.summary["max_in_flight"] == 1


def test_progress_line_per_page_and_quota_warning(
    engage: t.Callable, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    fake = engage(95)
    caplog.set_level(logging.INFO)
    # 10 pages, 4 queries per (tiny) window: the run warns up front, then waits for room.
    result = sync(capsys, page_size=10, queries_per_hour=4, quota_window_seconds=0.05)
    assert result.error is None
    assert result.ids == fake.expected_ids()
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "10 pages" in m and "queries_per_hour is 4" in m for m in messages if "pages to fetch" in m
    )
    progress = [m for m in messages if re.search(r"page \d+/10\b", m)]
    assert len(progress) == 10
    assert all("budget" in m and "ETA" in m for m in progress)
    assert result.summary["queries"] == 10


def test_secrets_not_logged_during_a_sync(
    engage: t.Callable, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    fake = engage(30)
    fake.fail(1, Reply(500, {"error": f"backend saw secret {SA_SECRET}"}))
    fake.fail_always(2, Reply(503, {"error": f"still {SA_SECRET}"}))
    caplog.set_level(logging.DEBUG)
    result = sync(capsys, page_size=10, max_retries=1)
    assert isinstance(result.error, IncompleteSyncError)
    assert any("backend saw secret" in r.getMessage() for r in caplog.records)
    everything = caplog.text + result.stderr + json.dumps(result.messages) + str(result.error)
    assert SA_SECRET not in everything


def test_failed_page_is_named_and_every_other_page_delivered(
    engage: t.Callable, capsys: pytest.CaptureFixture
) -> None:
    fake = engage(95, delay=jitter)
    fake.fail_always(3, Reply(500, {"error": "internal error"}))
    result = sync(capsys, page_size=10, max_retries=1)
    assert isinstance(result.error, IncompleteSyncError)
    assert result.error.exit_code == EXIT_INCOMPLETE
    assert re.search(r"profiles: 3\b", str(result.error)), str(result.error)
    assert len(fake.requests_for(3)) == 2, "1 try + max_retries"
    expected = [i for n, i in enumerate(fake.expected_ids()) if not 30 <= n < 40]
    assert result.ids == expected, "every other page delivered, in order"
    assert result.summary["failed_page_indices"] == [3]
    assert result.summary["status"] == "failed"
    # The last STATE lets the next run fetch only page 3.
    bookmark = result.states[-1]["bookmarks"]["profiles"]
    pass_ = PassState.from_dict(bookmark["pass"][0])
    assert pass_.segments[0].session.remaining() == [3]
    assert "replication_key_value" not in bookmark, "no bookmark while a profile is missing"


def test_state_after_a_complete_sync(engage: t.Callable, capsys: pytest.CaptureFixture) -> None:
    fake = engage(40)
    result = sync(capsys, page_size=10)
    assert result.error is None
    assert result.states, "STATE was written"
    final = result.states[-1]["bookmarks"]["profiles"]
    assert not final.get("pass")
    newest = max(
        p["$properties"]["$last_seen"] for p in fake.profiles if "$last_seen" in p["$properties"]
    )
    assert final["replication_key_value"] == newest + "+00:00"
    assert final["replication_key"] == "last_seen"


def test_row_count_mismatch_is_logged(
    engage: t.Callable, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    fake = engage(22)
    first = fake.profiles[:10]
    fake.fail(
        0,
        Reply(
            200,
            {
                "page": 0,
                "page_size": 10,
                "session_id": SESSION_ID,
                "status": "ok",
                "total": 25,
                "results": first,
            },
        ),
    )
    with caplog.at_level(logging.WARNING):
        result = sync(capsys, page_size=10)
    assert result.error is None
    assert len(result.records) == 22
    assert any(
        "22" in r.getMessage() and "25" in r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING
    )


def test_auth_error_in_process(engage: t.Callable, capsys: pytest.CaptureFixture) -> None:
    engage(10).fail_always(0, Reply(401, {"error": "Invalid API secret"}))
    result = sync(capsys)
    assert isinstance(result.error, AuthError)
    assert result.error.exit_code == EXIT_AUTH
    assert "Invalid API secret" in str(result.error)
    assert result.records == []


def test_bad_where_is_a_config_error(engage: t.Callable, capsys: pytest.CaptureFixture) -> None:
    engage(10).fail_always(0, Reply(400, {"error": "invalid where: properties["}))
    result = sync(capsys, where="properties[")
    assert isinstance(result.error, ConfigError)
    assert result.error.exit_code == EXIT_CONFIG


def test_config_errors_raise_before_any_request(requests_mock: t.Any) -> None:
    with pytest.raises(ConfigError, match="'max_workers'"):
        TapMixpanelProfiles(config=base_config(max_workers=0))
    with pytest.raises(ConfigError, match="region"):
        TapMixpanelProfiles(config=base_config(region="mars"))
    assert requests_mock.call_count == 0


def test_schema_errors_do_not_echo_secret_values() -> None:
    with pytest.raises(ConfigError) as info:
        TapMixpanelProfiles(config={"project_id": "1", "api_secret": 987654321})
    assert "'api_secret'" in str(info.value)
    assert "987654321" not in str(info.value)


# -------------------------------------------------------------- subprocess
def run_cli(
    tmp_path: Path, config: dict[str, t.Any], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return subprocess.run(
        [TAP, "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def last_line(text: str) -> str:
    return [line for line in text.splitlines() if line.strip()][-1]


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        ({"project_id": "1", "api_secret": API_SECRET, "region": "mars"}, "'region'"),
        ({"api_secret": API_SECRET}, "'project_id'"),
        (
            {
                "project_id": "1",
                "service_account_username": "u",
                "service_account_secret": SA_SECRET,
                "api_secret": API_SECRET,
            },
            "'api_secret'",
        ),
        ({"project_id": "1", "api_secret": API_SECRET, "page_size": -1}, "'page_size'"),
    ],
)
def test_cli_config_error_exits_3_with_one_line(
    tmp_path: Path, config: dict[str, t.Any], setting: str
) -> None:
    proc = run_cli(tmp_path, config)
    assert proc.returncode == EXIT_CONFIG, proc.stderr
    assert "Traceback" not in proc.stderr
    assert setting in last_line(proc.stderr)
    assert len([line for line in proc.stderr.splitlines() if "ERROR" in line]) == 1
    assert proc.stdout == ""
    assert SA_SECRET not in proc.stderr and API_SECRET not in proc.stderr


@pytest.mark.parametrize(("status", "words"), [(401, "401"), (403, "403"), (402, "plan")])
def test_cli_auth_error_exits_2_without_leaking_secrets(
    tmp_path: Path, status: int, words: str
) -> None:
    fake = EngageFake(30)
    # A server that echoes the credentials back must not get them printed.
    fake.fail_always(0, Reply(status, {"error": f"Invalid secret {SA_SECRET}"}))
    with serve_http(fake) as url:
        proc = run_cli(tmp_path, base_config(api_url=url))
    assert proc.returncode == EXIT_AUTH, proc.stderr
    assert "Traceback" not in proc.stderr
    assert words in last_line(proc.stderr)
    assert SA_SECRET not in proc.stderr and SA_SECRET not in proc.stdout
    assert len(fake.requests) == 1, "auth errors are not retried"


def test_cli_failed_page_exits_1_naming_the_page(tmp_path: Path) -> None:
    fake = EngageFake(45)
    fake.fail_always(2, Reply(503, {"error": "unavailable"}))
    with serve_http(fake) as url:
        proc = run_cli(tmp_path, base_config(api_url=url, max_retries=1))
    assert proc.returncode == EXIT_INCOMPLETE, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "profiles: 2" in last_line(proc.stderr)
    summary = next(
        json.loads(line)
        for line in proc.stderr.splitlines()
        if line.startswith('{"type": "SUMMARY"')
    )
    assert summary["failed_page_indices"] == [2]
    ids = [
        m["record"]["distinct_id"]
        for m in map(json.loads, proc.stdout.splitlines())
        if m["type"] == "RECORD"
    ]
    assert ids == [i for n, i in enumerate(fake.expected_ids()) if not 20 <= n < 30]
    assert SA_SECRET not in proc.stderr


def test_cli_success_exits_0(tmp_path: Path) -> None:
    fake = EngageFake(45, delay=jitter)
    with serve_http(fake) as url:
        proc = run_cli(tmp_path, base_config(api_url=url))
    assert proc.returncode == 0, proc.stderr
    messages = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [
        m["record"]["distinct_id"] for m in messages if m["type"] == "RECORD"
    ] == fake.expected_ids()
    assert messages[-1]["type"] == "STATE"
    assert SA_SECRET not in proc.stderr


def test_cli_about_does_not_leak_secrets(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, base_config(), "--about", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    about = json.loads(proc.stdout)
    assert "service_account_secret" in json.dumps(about["settings"])
    assert SA_SECRET not in proc.stdout and SA_SECRET not in proc.stderr


# ------------------------------------------------------ SDK standard tests
SDK_PROFILES = 25


SDK_EVENTS = 12
SDK_START = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=3)).isoformat()


@pytest.fixture(scope="class")
def _engage_mock_for_sdk_tests() -> t.Iterator[EngageFake]:
    # The standard tests select every stream: events (the Export API) and the cohorts list
    # are mocked too; every Engage query (cohort members, a data group) gets the same fake.
    events = b"".join(
        json.dumps(
            {
                "event": "Sign Up",
                "properties": {
                    "time": 1704067200 + i,
                    "distinct_id": f"user-{i:05d}",
                    "$insert_id": f"ins-{i}",
                    "n": i,
                },
            }
        ).encode()
        + b"\n"
        for i in range(SDK_EVENTS)
    )
    with requests_mock_lib.Mocker() as mocker:
        mocker.get("https://data.mixpanel.com/api/2.0/export", content=events)
        mocker.post("https://mixpanel.com/api/query/cohorts/list", json=SDK_COHORTS)
        yield EngageFake(SDK_PROFILES).install(mocker)


SDK_COHORTS = [{"id": 7, "name": "Seven", "count": SDK_PROFILES, "is_visible": 1}]
SDK_CONFIG = base_config(start_date=SDK_START, events_chunk_days=30, data_group_ids=[3])
SDK_STREAMS = ["profiles", "events", "cohorts", "cohort_members", "group_profiles"]
# Only profiles is on by default: the standard tests run with a catalog that selects them all.
_StandardTests = get_tap_test_class(
    TapMixpanelProfiles,
    config=SDK_CONFIG,
    catalog=select_streams(TapMixpanelProfiles(config=SDK_CONFIG).catalog_dict, SDK_STREAMS),
)


@pytest.mark.usefixtures("_engage_mock_for_sdk_tests")
class TestSingerSDKStandard(_StandardTests):  # type: ignore[misc, valid-type]
    """singer_sdk.testing's tap and stream tests, run against the mocked Engage API."""

    def test_synced_every_mocked_profile(self, runner: t.Any) -> None:
        assert len(runner.records["profiles"]) == SDK_PROFILES

    def test_synced_every_mocked_event(self, runner: t.Any) -> None:
        assert [r["insert_id"] for r in runner.records["events"]] == [
            f"ins-{i}" for i in range(SDK_EVENTS)
        ]

    def test_synced_the_engage_streams(self, runner: t.Any) -> None:
        assert [r["id"] for r in runner.records["cohorts"]] == [7]
        assert runner.records["cohorts"][0]["is_visible"] is True
        members = runner.records["cohort_members"]
        assert {(r["cohort_id"], r["distinct_id"]) for r in members} == {
            (7, f"user-{i:05d}") for i in range(SDK_PROFILES)
        }
        groups = runner.records["group_profiles"]
        assert {(r["data_group_id"], r["distinct_id"]) for r in groups} == {
            (3, f"user-{i:05d}") for i in range(SDK_PROFILES)
        }
