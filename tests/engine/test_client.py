"""ApiClient: retry, wait and fatal paths against requests-mock, limiter accounting, redaction."""

from __future__ import annotations

import email.utils
import logging
import threading
import time
import typing as t
from unittest import mock

import pytest
import requests

from tap_mixpanel_profiles.engine.client import (
    ApiClient,
    BadResponse,
    ClientError,
    retry_after_seconds,
    server_error_text,
)
from tap_mixpanel_profiles.engine.limiter import QueryLimiter, Window
from tap_mixpanel_profiles.engine.runtime import Runtime
from tap_mixpanel_profiles.errors import (
    EXIT_AUTH,
    AuthError,
    Cancelled,
    FatalResponseError,
    PartitionFailed,
    QuotaExhausted,
)
from tap_mixpanel_profiles.profiles.engage import EngageApi, EngagePage
from tap_mixpanel_profiles.settings import Settings
from tests.helpers.engage_fake import API_SECRET, ENGAGE_URL, SA_SECRET, SA_USER, base_config

LOG = logging.getLogger("tap-mixpanel-profiles")
OK_BODY = {"status": "ok", "results": []}
HOURLY_429 = {
    "error": "Query rate limit exceeded for project_id: 4242. 1/5 queries running "
    "concurrently and 61/60 queries running in the last hour. Please retry."
}
CONCURRENT_429 = {
    "error": "Query rate limit exceeded for project_id: 4242. 5/5 queries running "
    "concurrently and 12/60 queries running in the last hour."
}


def make_client(
    *, limiter: QueryLimiter | None = None, sleeps: list[float] | None = None, **overrides: t.Any
) -> ApiClient:
    """A client as the tap builds it (Runtime: retry policy + redaction), sleeps recorded."""
    settings = Settings.from_config(base_config(**overrides))
    runtime = Runtime(settings, LOG)
    limiter = limiter or QueryLimiter(
        max_in_flight=settings.max_workers,
        windows=[Window(1000, 3600)],
        cancel=runtime.cancel,
        poll=0.01,
    )
    client = runtime.client_with(limiter, "Mixpanel Engage API")
    if sleeps is not None:

        def fake_sleep(seconds: float) -> None:
            sleeps.append(seconds)
            if client.cancel.is_set():
                raise Cancelled

        client._sleep = fake_sleep  # type: ignore[method-assign]
    return client


def post(
    client: ApiClient,
    handle: t.Callable[[requests.Response], t.Any] = lambda r: r.json(),
    **kwargs: t.Any,
) -> t.Any:
    return client.request(
        "POST",
        ENGAGE_URL,
        label="page 3",
        handle=handle,
        params={"project_id": "4242"},
        data={"page_size": 10},
        **kwargs,
    )


def ok(**extra: t.Any) -> dict[str, t.Any]:
    return {"status_code": 200, "json": OK_BODY, **extra}


# ------------------------------------------------------------------ helpers
def test_server_error_text() -> None:
    def response(status: int, body: bytes) -> requests.Response:
        r = requests.Response()
        r.status_code = status
        r._content = body
        r.reason = "Reason"
        return r

    assert (
        server_error_text(response(400, b'{"error": "bad  where\\n clause"}')) == "bad where clause"
    )
    assert (
        server_error_text(response(502, b"<html> Bad gateway </html>"))
        == "<html> Bad gateway </html>"
    )
    assert server_error_text(response(500, b"")) == "Reason"
    long = server_error_text(response(500, b"x" * 1000), limit=50)
    assert long.startswith("x" * 50) and len(long) == 51


def test_retry_after_parsing() -> None:
    def with_header(value: str | None) -> requests.Response:
        r = requests.Response()
        if value is not None:
            r.headers["Retry-After"] = value
        return r

    assert retry_after_seconds(with_header("7")) == 7.0
    assert retry_after_seconds(with_header("0.5")) == 0.5
    assert retry_after_seconds(with_header("-3")) == 0.0
    assert retry_after_seconds(with_header(None)) is None
    assert retry_after_seconds(with_header("soon")) is None
    future = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 < retry_after_seconds(with_header(future)) <= 121


# ------------------------------------------------------------ retry paths
def test_5xx_retried_then_success(requests_mock: t.Any) -> None:
    requests_mock.post(
        ENGAGE_URL,
        [
            {"status_code": 500, "json": {"error": "boom"}},
            {"status_code": 503, "text": "unavailable"},
            ok(),
        ],
    )
    sleeps: list[float] = []
    client = make_client(sleeps=sleeps)
    assert post(client) == OK_BODY
    assert requests_mock.call_count == 3
    assert client.retries == 2
    assert len(sleeps) == 2
    assert all(0 < s <= 0.005 for s in sleeps), "exponential backoff bounded by backoff_max"


def test_5xx_retry_after_is_honoured(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, [{"status_code": 503, "headers": {"Retry-After": "3"}}, ok()])
    sleeps: list[float] = []
    assert post(make_client(sleeps=sleeps)) == OK_BODY
    assert sleeps == [3.0]


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.ConnectionError,
        requests.exceptions.ReadTimeout,
        requests.exceptions.ConnectTimeout,
        requests.exceptions.ChunkedEncodingError,
    ],
)
def test_network_errors_retried(requests_mock: t.Any, exc: type[Exception]) -> None:
    requests_mock.post(ENGAGE_URL, [{"exc": exc}, {"exc": exc}, ok()])
    client = make_client(sleeps=[])
    assert post(client) == OK_BODY
    assert requests_mock.call_count == 3
    assert client.retries == 2


def test_truncated_or_non_json_200_retried_via_engage_parse(requests_mock: t.Any) -> None:
    good = {
        "status": "ok",
        "total": 1,
        "page": 0,
        "page_size": 10,
        "session_id": "s",
        "results": [{"$distinct_id": "a", "$properties": {}}],
    }
    requests_mock.post(
        ENGAGE_URL,
        [
            {"status_code": 200, "text": '{"status": "ok", "total": 1, "results": [{"$distin'},
            {"status_code": 200, "text": "<html>maintenance</html>"},
            {"status_code": 200, "json": {"status": "ok", "results": "nope"}},
            {"status_code": 200, "json": good},
        ],
    )
    client = make_client(sleeps=[], max_retries=3)
    page = post(client, handle=lambda r: EngageApi.read(r, 0))
    assert isinstance(page, EngagePage)
    assert page.total == 1 and page.records[0]["distinct_id"] == "a"
    assert requests_mock.call_count == 4
    assert client.retries == 3


def test_retries_exhausted_is_partition_failed(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, status_code=500, json={"error": "internal"})
    client = make_client(sleeps=[], max_retries=2)
    with pytest.raises(PartitionFailed) as info:
        post(client)
    assert requests_mock.call_count == 3, "1 try + max_retries retries"
    assert "page 3" in str(info.value)
    assert "500" in str(info.value)


def test_zero_retries_means_one_attempt(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, [{"exc": requests.exceptions.ConnectionError}, ok()])
    with pytest.raises(PartitionFailed):
        post(make_client(sleeps=[], max_retries=0))
    assert requests_mock.call_count == 1


def test_bad_bodies_count_against_max_retries(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, status_code=200, text="not json")
    with pytest.raises(PartitionFailed) as info:
        post(make_client(sleeps=[], max_retries=1), handle=lambda r: EngageApi.read(r, 0))
    assert requests_mock.call_count == 2
    assert "unusable response body" in str(info.value)


# ------------------------------------------------------------------ 429s
def test_429_retry_after_is_honoured(requests_mock: t.Any) -> None:
    requests_mock.post(
        ENGAGE_URL,
        [
            {"status_code": 429, "headers": {"Retry-After": "7"}, "json": {"error": "slow down"}},
            ok(),
        ],
    )
    sleeps: list[float] = []
    client = make_client(sleeps=sleeps)
    assert post(client) == OK_BODY
    assert sleeps == [7.0]
    assert client.rate_limited == 1


def test_429_without_retry_after_backs_off(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, [{"status_code": 429}, {"status_code": 429}, ok()])
    sleeps: list[float] = []
    post(make_client(sleeps=sleeps, backoff_base_seconds=0.001, backoff_max_seconds=1))
    assert len(sleeps) == 2
    assert 0.0005 <= sleeps[0] <= 0.001
    assert 0.001 <= sleeps[1] <= 0.002


def test_429s_do_not_spend_max_retries(requests_mock: t.Any) -> None:
    requests_mock.post(
        ENGAGE_URL, [{"status_code": 429, "headers": {"Retry-After": "0"}}] * 3 + [ok()]
    )
    client = make_client(sleeps=[], max_retries=1)
    assert post(client) == OK_BODY
    assert requests_mock.call_count == 4
    assert client.retries == 0
    assert client.rate_limited == 3


def test_429s_and_failures_are_budgeted_separately(requests_mock: t.Any) -> None:
    r429 = {"status_code": 429, "headers": {"Retry-After": "0"}}
    requests_mock.post(ENGAGE_URL, [{"status_code": 500}, r429, r429, r429, ok()])
    client = make_client(sleeps=[], max_retries=1)
    assert post(client) == OK_BODY
    assert client.retries == 1


def test_429_total_wait_is_bounded(requests_mock: t.Any) -> None:
    requests_mock.post(
        ENGAGE_URL,
        status_code=429,
        headers={"Retry-After": "4"},
        json={"error": "Too many requests"},
    )
    sleeps: list[float] = []
    client = make_client(sleeps=sleeps, max_rate_limit_wait_seconds=10)
    with pytest.raises(PartitionFailed) as info:
        post(client)
    assert sleeps == [4.0, 4.0], "a third wait would exceed 10 s in all"
    assert requests_mock.call_count == 3
    assert "rate limited" in str(info.value) and "page 3" in str(info.value)


def test_hourly_429_in_stop_mode_raises_quota_exhausted(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, status_code=429, json=HOURLY_429)
    limiter = QueryLimiter(max_in_flight=5, windows=[Window(60, 3600)], on_exhausted="stop")
    client = make_client(limiter=limiter, sleeps=[])
    before = time.time()
    with pytest.raises(QuotaExhausted) as info:
        post(client)
    assert requests_mock.call_count == 1
    assert info.value.resume_at > before + 30, "resume once the aligned window has room"
    assert limiter.budget_left() == 0, "the limiter learned the server's count"


def test_hourly_429_in_wait_mode_aligns_and_waits_for_the_window(
    requests_mock: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    requests_mock.post(ENGAGE_URL, [{"status_code": 429, "json": HOURLY_429}, ok()])
    now = [0.0]

    def clock() -> float:  # every look at the clock moves it one second on
        now[0] += 1.0
        return now[0]

    limiter = QueryLimiter(max_in_flight=5, windows=[Window(60, 3600)], clock=clock, poll=0.001)
    client = make_client(limiter=limiter, sleeps=[])
    with (
        mock.patch.object(limiter, "align_with_server", wraps=limiter.align_with_server) as align,
        caplog.at_level(logging.WARNING),
    ):
        assert post(client) == OK_BODY
    align.assert_called_once_with(61, 60)
    assert any("budget spent" in r.getMessage() for r in caplog.records), (
        "the second attempt waited for the quota window"
    )
    assert limiter.requests_counted == 2


def test_hourly_message_below_limit_is_treated_as_concurrency(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, [{"status_code": 429, "json": CONCURRENT_429}, ok()])
    limiter = QueryLimiter(max_in_flight=5, windows=[Window(60, 3600)], on_exhausted="stop")
    client = make_client(limiter=limiter, sleeps=[])
    assert post(client) == OK_BODY  # 12/60 in the hour is not a quota problem: no stop
    assert limiter.concurrency_cap < 5


def test_concurrency_429_lowers_the_limiter_cap(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, [{"status_code": 429, "json": CONCURRENT_429}, ok()])
    limiter = QueryLimiter(max_in_flight=5, windows=[Window(1000, 3600)])
    client = make_client(limiter=limiter, sleeps=[])
    assert post(client) == OK_BODY
    # 5 running at the server, 1 of them ours: 4 belong to others, 1 is left for us.
    assert limiter.concurrency_cap == 1


# ---------------------------------------------------------------- fatal
def test_400_is_client_error_not_retried(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, status_code=400, json={"error": "invalid where clause"})
    with pytest.raises(ClientError) as info:
        post(make_client(sleeps=[]))
    assert info.value.status == 400
    assert "invalid where clause" in str(info.value)
    assert requests_mock.call_count == 1


@pytest.mark.parametrize(
    ("status", "words"), [(401, "credentials"), (403, "denied access"), (402, "plan")]
)
def test_auth_statuses_are_fatal_with_server_text(
    requests_mock: t.Any, status: int, words: str
) -> None:
    requests_mock.post(ENGAGE_URL, status_code=status, json={"error": f"server says {status}"})
    with pytest.raises(AuthError) as info:
        post(make_client(sleeps=[]))
    assert info.value.exit_code == EXIT_AUTH
    assert f"server says {status}" in str(info.value)
    assert words in str(info.value)
    assert requests_mock.call_count == 1


def test_other_4xx_is_fatal(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, status_code=404, text="no such endpoint")
    with pytest.raises(FatalResponseError) as info:
        post(make_client(sleeps=[]))
    assert "404" in str(info.value) and "no such endpoint" in str(info.value)
    assert requests_mock.call_count == 1


def test_cancel_before_request(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, **ok())
    client = make_client()
    client.cancel.set()
    with pytest.raises(Cancelled):
        post(client)
    assert requests_mock.call_count == 0


def test_cancel_interrupts_a_backoff_wait(requests_mock: t.Any) -> None:
    client = make_client(max_retries=3)  # real _sleep: waits on the cancel event
    timers: list[threading.Timer] = []

    def unavailable(request: t.Any, context: t.Any) -> str:
        # Cancel shortly *after* the first answer, i.e. during the 600 s backoff wait.
        timers.append(threading.Timer(0.05, client.cancel.set))
        timers[-1].start()
        context.status_code = 503
        context.headers["Retry-After"] = "600"
        return ""

    requests_mock.post(ENGAGE_URL, text=unavailable)
    try:
        with pytest.raises(Cancelled):
            post(client)
    finally:
        for timer in timers:
            timer.cancel()
    assert requests_mock.call_count == 1


# ----------------------------------------------------------- accounting
def test_every_http_call_is_counted_by_the_limiter(requests_mock: t.Any) -> None:
    requests_mock.post(
        ENGAGE_URL,
        [
            {"status_code": 500},
            {"exc": requests.exceptions.ConnectionError},
            {"status_code": 429, "headers": {"Retry-After": "0"}},
            {"status_code": 200, "text": "{truncated"},
            ok(),
        ],
    )
    limiter = QueryLimiter(max_in_flight=5, windows=[Window(1000, 3600)])
    client = make_client(limiter=limiter, sleeps=[], max_retries=5)
    post(client, handle=lambda r: EngageApi.read(r, 1))
    assert requests_mock.call_count == 5
    assert limiter.requests_counted == 5
    assert limiter.requests_uncounted == 0
    assert limiter.budget_left() == 995


def test_uncounted_requests(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, [{"status_code": 502}, ok()])
    limiter = QueryLimiter(max_in_flight=5, windows=[Window(1000, 3600)])
    post(make_client(limiter=limiter, sleeps=[]), counted=False)
    assert limiter.requests_uncounted == 2
    assert limiter.requests_counted == 0


def test_slot_is_released_whatever_the_outcome(requests_mock: t.Any) -> None:
    limiter = QueryLimiter(max_in_flight=1, windows=[Window(1000, 3600)])
    client = make_client(limiter=limiter, sleeps=[], max_retries=0)
    for reply in (
        {"status_code": 500},
        {"status_code": 401},
        {"status_code": 400},
        {"exc": requests.exceptions.ConnectionError},
        {"status_code": 200, "text": "x"},
    ):
        requests_mock.post(ENGAGE_URL, **reply)
        with pytest.raises(Exception):  # noqa: B017 - any failure
            post(client, handle=lambda r: EngageApi.read(r, 0))
        assert limiter.acquire(block=False), f"slot leaked after {reply}"
        limiter.release()


# ---------------------------------------------------------------- secrets
@pytest.mark.parametrize("auth", ["service_account", "api_secret"])
def test_secrets_never_in_exceptions_or_logs(
    requests_mock: t.Any, auth: str, caplog: pytest.LogCaptureFixture
) -> None:
    overrides: dict[str, t.Any] = {}
    if auth == "api_secret":
        overrides = {
            "service_account_username": None,
            "service_account_secret": None,
            "api_secret": API_SECRET,
        }
    secret = SA_SECRET if auth == "service_account" else API_SECRET
    echo = {"error": f"invalid secret {secret} for user {SA_USER}"}
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []
    for replies, expected in [
        ([{"status_code": 500, "json": echo}] * 3, PartitionFailed),
        ([{"status_code": 401, "json": echo}], AuthError),
        ([{"status_code": 403, "text": f"forbidden: {secret}"}], AuthError),
        ([{"status_code": 402, "json": echo}], AuthError),
        ([{"status_code": 400, "json": echo}], ClientError),
        ([{"status_code": 418, "json": echo}], FatalResponseError),
    ]:
        requests_mock.post(ENGAGE_URL, replies)
        with pytest.raises(expected) as info:
            post(make_client(sleeps=[], **overrides))
        messages.append(str(info.value))
    assert any("***" in m for m in messages), "the echoed secret was redacted, not dropped"
    for text in [*messages, caplog.text]:
        assert secret not in text
    assert any("retry" in r.getMessage() for r in caplog.records), "retries were logged"


# --------------------------------------------------------------- sessions
def test_each_thread_gets_its_own_session(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, **ok())
    client = make_client(sleeps=[])
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()
    original = requests.Session.request

    def spy(self: requests.Session, *args: t.Any, **kwargs: t.Any) -> requests.Response:
        with lock:
            seen.append((threading.get_ident(), id(self)))
        return original(self, *args, **kwargs)

    barrier = threading.Barrier(4)

    def work() -> None:
        barrier.wait(timeout=5)  # all four threads alive at once: distinct idents
        for _ in range(3):
            post(client)

    with mock.patch.object(requests.Session, "request", spy):
        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert len(seen) == 12
    by_thread: dict[int, set[int]] = {}
    for ident, session in seen:
        by_thread.setdefault(ident, set()).add(session)
    assert len(by_thread) == 4
    assert all(len(sessions) == 1 for sessions in by_thread.values()), "reused within a thread"
    assert len({next(iter(s)) for s in by_thread.values()}) == 4, "never shared across threads"
    client.close()


def test_session_sends_basic_auth_and_user_agent(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, **ok())
    post(make_client(sleeps=[]))
    sent = requests_mock.last_request
    assert sent.headers["Authorization"].startswith("Basic ")
    assert "tap-mixpanel-profiles" in sent.headers["User-Agent"]
    assert sent.qs["project_id"] == ["4242"]


def test_bad_response_is_an_exception_type() -> None:
    assert issubclass(BadResponse, Exception)
