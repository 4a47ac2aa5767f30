"""Engage API: page arithmetic, request forms, response validation, record shape, 400 mapping."""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import typing as t

import msgspec
import pytest
import requests

from tap_mixpanel_profiles.engine.client import BadResponse
from tap_mixpanel_profiles.engine.limiter import QueryLimiter, Window
from tap_mixpanel_profiles.engine.runtime import Runtime
from tap_mixpanel_profiles.errors import ConfigError, SessionExpired
from tap_mixpanel_profiles.profiles.engage import (
    EngageApi,
    EngagePage,
    EngageQuery,
    to_record,
)
from tap_mixpanel_profiles.profiles.results import properties_of
from tap_mixpanel_profiles.profiles.where import combine_where, is_last_seen, last_seen_clause
from tap_mixpanel_profiles.settings import Settings
from tests.helpers.engage_fake import ENGAGE_URL, SESSION_ID, base_config, parse_form


def api(**overrides: t.Any) -> EngageApi:
    settings = Settings.from_config(base_config(**overrides))
    runtime = Runtime(settings, logging.getLogger("tap-mixpanel-profiles"))
    limiter = QueryLimiter(max_in_flight=5, windows=[Window(1000, 3600)], cancel=runtime.cancel)
    return EngageApi(runtime.client_with(limiter, "Mixpanel Engage API"), settings)


def response(body: t.Any, status: int = 200) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r._content_consumed = True
    return r


def form_of(
    engage: EngageApi, where: str | None, page: int, session: str | None
) -> dict[str, t.Any]:
    """The form of the profiles stream's query, narrowed to `where`."""
    return engage.form(EngageQuery.profiles(engage.settings).narrowed(where), page, session)


def query(engage: EngageApi, where: str | None = None) -> EngageQuery:
    return EngageQuery.profiles(engage.settings).narrowed(where)


def fetch(
    engage: EngageApi, where: str | None, page: int, session: str | None = None
) -> EngagePage:
    return engage.fetch_page(query(engage, where), page, session)


def page0(results: list[t.Any], **extra: t.Any) -> dict[str, t.Any]:
    body = {
        "page": 0,
        "page_size": 1000,
        "session_id": SESSION_ID,
        "status": "ok",
        "total": len(results),
        "results": results,
    }
    body.update(extra)
    return body


def profile(i: int, **props: t.Any) -> dict[str, t.Any]:
    return {"$distinct_id": f"u{i}", "$properties": {"$last_seen": "2024-05-06T07:08:09", **props}}


# -------------------------------------------------------------- page count
@pytest.mark.parametrize(
    ("total", "served", "rows", "requested", "pages"),
    [
        (0, 1000, 0, 1000, 1),  # nothing to fetch: page 0 only
        (None, 1000, 0, 1000, 1),  # (page > 0 objects carry no total)
        (5, 1000, 5, 1000, 1),  # everything on page 0
        (1000, 1000, 1000, 1000, 1),  # exactly one full page
        (3000, 1000, 1000, 1000, 3),  # exact multiple
        (3001, 1000, 1000, 1000, 4),  # short last page
        (2999, 1000, 1000, 1000, 3),
        (3000, 250, 250, 1000, 12),  # server serves fewer than requested: its size wins
        (1001, 250, 250, 1000, 5),
        (1001, None, 250, 1000, 5),  # no echoed page_size: the size of page 0
        (1001, None, 0, 100, 11),  # nothing to go by: the requested size
    ],
)
def test_page_count(
    total: int | None, served: int | None, rows: int, requested: int, pages: int
) -> None:
    page = EngagePage(page=0, rows=rows, total=total, page_size=served)
    assert page.page_count(requested) == pages


# ----------------------------------------------------------------- forms
def test_form_page_zero_minimal() -> None:
    form = form_of(api(page_size=250), None, 0, None)
    assert form == {"page_size": 250}


def test_form_later_pages_carry_page_and_session() -> None:
    form = form_of(api(), 'properties["plan"] == "pro"', 3, SESSION_ID)
    assert form["page"] == 3
    assert form["session_id"] == SESSION_ID
    assert form["where"] == 'properties["plan"] == "pro"'


def test_form_cohort_output_properties_and_include_all_users() -> None:
    form = form_of(
        api(cohort_id=77, include_all_users=True, output_properties=["$email", "$last_seen"]),
        None,
        0,
        None,
    )
    assert json.loads(form["filter_by_cohort"]) == {"id": 77}
    assert form["include_all_users"] == "true"
    assert json.loads(form["output_properties"]) == ["$email", "$last_seen"]
    assert "page" not in form and "session_id" not in form
    assert (
        form_of(api(cohort_id=77, include_all_users=False), None, 0, None)["include_all_users"]
        == "false"
    )
    assert "include_all_users" not in form_of(api(cohort_id=77), None, 0, None)


def test_fetch_page_posts_form_with_project_id_in_query(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, json=page0([profile(1)]))
    engage = api(
        where='properties["plan"] == "pro"',
        cohort_id=5,
        output_properties=["$email"],
        page_size=500,
    )
    result = engage.fetch_page(query(engage, engage.settings.where), 0)
    sent = requests_mock.last_request
    assert sent.method == "POST"
    assert sent.qs == {"project_id": ["4242"]}
    form = parse_form(sent.text)
    assert form == {
        "page_size": "500",
        "where": 'properties["plan"] == "pro"',
        "filter_by_cohort": '{"id": 5}',
        "output_properties": '["$email"]',
    }
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert result.total == 1 and result.session_id == SESSION_ID


def test_fetch_later_page_sends_session(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, json={"page": 2, "status": "ok", "results": [profile(9)]})
    result = fetch(api(), None, 2, SESSION_ID)
    form = parse_form(requests_mock.last_request.text)
    assert form["page"] == "2" and form["session_id"] == SESSION_ID
    assert result.page == 2 and result.total is None
    assert [r["distinct_id"] for r in result.records] == ["u9"]


def test_400_on_page_zero_is_config_error(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, status_code=400, json={"error": "invalid where: properties["})
    with pytest.raises(ConfigError) as info:
        fetch(api(), "properties[", 0)
    assert "invalid where" in str(info.value)
    assert requests_mock.call_count == 1


def test_400_on_later_page_is_session_expired(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, status_code=400, json={"error": "session expired"})
    with pytest.raises(SessionExpired) as info:
        fetch(api(), None, 4, SESSION_ID)
    assert "page 4" in str(info.value) and "session expired" in str(info.value)
    assert requests_mock.call_count == 1


def test_session_pages_can_be_uncounted(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, json={"page": 1, "status": "ok", "results": []})
    engage = api(session_pages_count_against_quota=False)
    fetch(engage, None, 1, SESSION_ID)
    requests_mock.post(ENGAGE_URL, json=page0([]))
    fetch(engage, None, 0)
    assert engage.client.limiter.requests_uncounted == 1
    assert engage.client.limiter.requests_counted == 1, "page 0 always counts"


# ----------------------------------------------------------------- parse
def test_parse_page_zero() -> None:
    body = page0([profile(1), profile(2)], total=4000, page_size=250)
    page = EngageApi.read(response(body), 0)
    assert (page.page, page.total, page.page_size, page.session_id) == (0, 4000, 250, SESSION_ID)
    assert [r["distinct_id"] for r in page.records] == ["u1", "u2"]
    assert page.page_count(1000) == 16


@pytest.mark.parametrize(
    "body",
    [
        page0([profile(1)], total=None),
        page0([profile(1)], total="twelve"),
        page0([profile(1)], total=-1),
        page0([profile(1)], total=True),
        {k: v for k, v in page0([profile(1)]).items() if k != "total"},
    ],
)
def test_page_zero_without_valid_total_is_bad(body: dict[str, t.Any]) -> None:
    with pytest.raises(BadResponse, match="total"):
        EngageApi.read(response(body), 0)


def test_later_pages_need_no_total_or_session() -> None:
    page = EngageApi.read(response({"status": "ok", "results": [profile(5)]}), 3)
    assert page.total is None and page.session_id is None
    assert len(page.records) == 1


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"status": "ok", "results": [{"$distinct_id": "a"', "JSON"),
        (b"<html>502</html>", "JSON"),
        (b"", "JSON"),
        (b"[1, 2]", "object"),
        (b'{"status": "error", "results": []}', "status"),
        (b'{"status": "ok"}', "results"),
        (b'{"status": "ok", "results": {"a": 1}}', "results"),
        (b'{"status": "ok", "results": [1]}', "not an object"),
        (b'{"status": "ok", "results": [{"$properties": {}}]}', "distinct_id"),
        (b'{"status": "ok", "results": [{"$distinct_id": null}]}', "distinct_id"),
        (b'{"status": "ok", "results": [{"$distinct_id": ["a"]}]}', "distinct_id"),
        (b'{"status": "ok", "results": [{"$distinct_id": "a", "$properties": [1]}]}', "properties"),
        (b'{"status": "ok", "results": [{"$distinct_id": "a", "$properties": "x"}]}', "properties"),
    ],
)
def test_unusable_bodies_are_bad_responses(body: bytes, words: str) -> None:
    with pytest.raises(BadResponse, match=words):
        EngageApi.read(response(body), 1)


def test_page_zero_with_more_pages_needs_a_session() -> None:
    with pytest.raises(BadResponse, match="session_id"):
        EngageApi.read(response(page0([profile(1)], total=5, session_id=None)), 0)
    # A single page needs none.
    page = EngageApi.read(response(page0([profile(1)], session_id=None)), 0)
    assert page.session_id is None and page.page_count(1000) == 1


def test_page_zero_reporting_profiles_but_returning_none_is_bad() -> None:
    with pytest.raises(BadResponse):
        EngageApi.read(response(page0([], total=10)), 0)


def test_missing_page_size_falls_back_to_page_zero_size() -> None:
    body = page0([profile(i) for i in range(250)], total=1001)
    del body["page_size"]
    page = EngageApi.read(response(body), 0)
    assert page.page_size is None
    assert page.page_count(1000) == 5


def test_bad_last_seen_becomes_null_and_is_counted() -> None:
    results = [
        profile(1),
        profile(2, **{"$last_seen": "yesterday"}),
        profile(3, **{"$last_seen": 1714979289}),
        {"$distinct_id": "u4", "$properties": {"plan": "pro"}},  # absent: null, not "bad"
        profile(5, **{"$last_seen": "2024-05-06"}),
    ]
    page = EngageApi.read(response(page0(results)), 0)
    assert [r["last_seen"] for r in page.records] == [
        "2024-05-06T07:08:09+00:00",
        None,
        None,
        None,
        None,
    ]
    assert page.bad_last_seen == 3
    assert properties_of(page.records[1]["properties"])["$last_seen"] == "yesterday", "kept"


# ---------------------------------------------------------------- records
def test_to_record_shape_and_properties_untouched() -> None:
    props = {
        "$last_seen": "2023-12-31T23:59:58",
        "$email": "a@b.c",
        "n": 1.5,
        "nested": {"deep": [1, {"x": None}]},
        "$name": "",
    }
    record, bad = to_record({"$distinct_id": "abc", "$properties": props})
    assert bad is False
    assert record == {
        "distinct_id": "abc",
        "last_seen": "2023-12-31T23:59:58+00:00",
        "properties": props,
    }
    assert record["properties"] == {
        "$last_seen": "2023-12-31T23:59:58",
        "$email": "a@b.c",
        "n": 1.5,
        "nested": {"deep": [1, {"x": None}]},
        "$name": "",
    }


def test_to_record_distinct_id_is_a_string() -> None:
    record, _ = to_record({"$distinct_id": 12345, "$properties": {}})
    assert record["distinct_id"] == "12345"
    assert record["last_seen"] is None


def test_null_properties_served_are_an_empty_object() -> None:
    body = b'{"status": "ok", "results": [{"$distinct_id": "a", "$properties":  null }]}'
    (record,) = EngageApi.read(response(body), 1).records or []
    assert bytes(record["properties"]) == b"{}" and record["last_seen"] is None


def test_to_record_missing_properties() -> None:
    record, bad = to_record({"$distinct_id": "a"})
    assert record == {"distinct_id": "a", "last_seen": None, "properties": {}}
    assert bad is False


def test_to_record_fractional_seconds_are_cut() -> None:
    record, bad = to_record(
        {"$distinct_id": "a", "$properties": {"$last_seen": "2024-01-02T03:04:05.678"}}
    )
    assert record["last_seen"] == "2024-01-02T03:04:05+00:00"
    assert bad is False


# ------------------------------------------------------------------ where
def test_where_helpers() -> None:
    assert (
        last_seen_clause(">=", "2024-01-01T00:00:00")
        == 'properties["$last_seen"] >= "2024-01-01T00:00:00"'
    )
    assert combine_where(None, "") is None
    assert combine_where("a == 1", None) == "a == 1"
    assert combine_where("a == 1 or b == 2", "c") == "(a == 1 or b == 2) and (c)"


@pytest.mark.parametrize(
    "raw",
    [
        "2024-02-30T00:00:00",
        "2023-02-29T12:00:00",
        "2024-01-01T25:00:00",
        "2024-01-01T10:61:00",
        "2024-13-01T00:00:00",
        "0000-01-01T00:00:00",
    ],
)
def test_last_seen_that_is_not_a_real_time_becomes_null(raw: str) -> None:
    """The shape alone is not enough: a date-time column must never get 2024-02-30."""
    record, bad = to_record({"$distinct_id": "a", "$properties": {"$last_seen": raw}})
    assert record["last_seen"] is None
    assert bad is True
    assert record["properties"]["$last_seen"] == raw


def test_leap_day_is_a_real_time() -> None:
    record, bad = to_record(
        {"$distinct_id": "a", "$properties": {"$last_seen": "2024-02-29T23:59:59"}}
    )
    assert record["last_seen"] == "2024-02-29T23:59:59+00:00" and bad is False


@pytest.mark.parametrize(
    "raw, expected",
    [
        (250, 250),
        (250.0, 250),
        ("250", 250),
        (" 7 ", 7),
        (0, 0),
        (-1, None),
        (True, None),
        ("x", None),
        (2.5, None),
        (None, None),
    ],
)
def test_counts_in_page_zero_are_read_leniently(raw: t.Any, expected: int | None) -> None:
    from tap_mixpanel_profiles.profiles.engage import _count

    assert _count(raw) == expected


# ----------------------------------------------------- properties kept as the served bytes
def test_properties_stay_the_served_bytes_and_decode_to_what_was_served() -> None:
    results = [profile(1, plan="pro", nested={"a": [1, None]}), {"$distinct_id": "u2"}]
    body = json.dumps(page0(results), ensure_ascii=False).encode()
    raw = EngageApi.read(response(body), 0)
    whole = EngageApi.read(response(body), 0, raw_properties=False)
    assert [type(r["properties"]) for r in raw.records] == [msgspec.Raw, msgspec.Raw]
    assert (
        [properties_of(r["properties"]) for r in raw.records]
        == [r["properties"] for r in whole.records]
        == [results[0]["$properties"], {}]
    )
    assert [r["last_seen"] for r in raw.records] == [r["last_seen"] for r in whole.records]
    line = msgspec.json.encode(raw.records[0])
    assert json.loads(line)["properties"] == results[0]["$properties"], "written as served"


@pytest.mark.parametrize("streamed", [False, True])
def test_a_body_that_is_not_utf8_is_a_bad_response(streamed: bool) -> None:
    """A Raw's strings are not checked by msgspec: the body is, or the target would choke."""
    padding = "x" * (3 * 1024 * 1024 if streamed else 10)
    results = [profile(i, pad=padding if i == 0 else "ok") for i in range(3)]
    body = json.dumps(page0(results)).encode().replace(b'"ok"', b'"\xff"', 1)
    with pytest.raises(BadResponse, match="UTF-8"):
        EngageApi.read(response(body), 0)


def test_is_last_seen_agrees_with_the_calendar() -> None:
    """The ranged pattern (and the calendar for days 29-31) accepts exactly the 19-character
    YYYY-MM-DDTHH:MM:SS prefixes that are real times: against datetime on random fields."""
    rng = random.Random(3)
    for _ in range(20_000):
        year = rng.choice(["0000", "0001", "1999", "2024", "2023", "9999"])
        fields = [rng.randint(0, 40) for _ in range(5)]
        month, day, hour, minute, second = (f"{f:02d}" for f in fields)
        value = f"{year}-{month}-{day}T{hour}:{minute}:{second}" + rng.choice(["", "Z", ".5"])
        try:
            dt.datetime(int(year), *map(int, (month, day, hour, minute, second)))
            real = True
        except ValueError:
            real = False
        assert is_last_seen(value) == real, value
    for odd in (
        "2024-01-01 00:00:00",
        "2024-1-01T00:00:00",
        "\uff12\uff10\uff12\uff14-01-30T00:00:00",  # digits, but not 0-9
        "2024-01-01",
    ):
        assert not is_last_seen(odd)
