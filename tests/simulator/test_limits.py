"""The simulator's rate limits (429), Retry-After, faults and session expiry, over real HTTP."""

from __future__ import annotations

import json
import re
import threading
import time
import typing as t

import pytest
import requests

from tap_mixpanel_profiles.simulator import MixpanelSimulator, SimulatorConfig
from tap_mixpanel_profiles.simulator.limits import RateLimiter

from .helpers import NOW, engage

LIMIT_RE = re.compile(
    r"Query rate limit exceeded for project_id: 12345\. (\d+)/(\d+) queries running concurrently "
    r"and (\d+)/(\d+) queries running in the last hour\. Please try again later\."
)


def parallel(sim: MixpanelSimulator, count: int, **data: t.Any) -> list[requests.Response]:
    """Fire ``count`` engage requests at once, each from its own thread and connection."""
    barrier = threading.Barrier(count)
    replies: list[requests.Response] = []
    lock = threading.Lock()

    def worker() -> None:
        with requests.Session() as http:
            barrier.wait()
            reply = engage(sim, http, **data)
            with lock:
                replies.append(reply)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return replies


def small(**kw: t.Any) -> MixpanelSimulator:
    return MixpanelSimulator(SimulatorConfig(profiles=50, now=NOW, **kw))


# ------------------------------------------------------------------------------------- limits
def test_concurrency_limit_answers_429_with_mixpanel_message() -> None:
    with small(latency=0.5, concurrency_limit=5, hourly_limit=0) as sim:
        replies = parallel(sim, 8, page_size=10)
        statuses = sorted(r.status_code for r in replies)
        assert statuses == [200] * 5 + [429] * 3
        for reply in (r for r in replies if r.status_code == 429):
            body = reply.json()
            assert body["status"] == "error"
            running, limit, _hourly, _hourly_limit = map(
                int, LIMIT_RE.fullmatch(body["error"]).groups()
            )
            assert (running, limit) == (6, 5)
            assert "Retry-After" not in reply.headers
        stats = sim.stats()
        assert stats["rate_limited_concurrent"] == 3 and stats["rate_limited_hourly"] == 0
        assert (
            stats["max_in_flight"] == 8
        )  # rejected requests are in flight too, as seen by the server
        assert stats["by_status"] == {"200": 5, "429": 3}
        assert stats["hourly_counted"] == 5  # count_rejected=False


def test_hourly_limit_sliding_window_and_retry_after() -> None:
    with small(hourly_limit=3, window_seconds=1.0, retry_after=2.5) as sim:
        assert [engage(sim).status_code for _ in range(3)] == [200, 200, 200]
        rejected = engage(sim)
        assert rejected.status_code == 429
        assert rejected.headers["Retry-After"] == "3"
        running, _, hourly, hourly_limit = map(
            int, LIMIT_RE.fullmatch(rejected.json()["error"]).groups()
        )
        assert (running, hourly, hourly_limit) == (1, 4, 3)
        stats = sim.stats()
        assert stats["rate_limited_hourly"] == 1 and stats["hourly_counted"] == 3
        time.sleep(1.05)
        assert engage(sim).status_code == 200


def test_count_rejected_keeps_the_window_full() -> None:
    with small(hourly_limit=2, window_seconds=0.6, count_rejected=True) as sim:
        codes = []
        for _ in range(4):
            codes.append(engage(sim).status_code)
            time.sleep(0.2)
        # the 3rd and 4th are rejected but still counted, so the window never drains below the limit
        assert codes == [200, 200, 429, 429]
        assert sim.stats()["hourly_counted"] == 4


def test_session_requests_can_be_exempt_from_the_hourly_limit() -> None:
    with small(hourly_limit=1, session_requests_exempt=True) as sim:
        first = engage(sim, page_size=10).json()
        for page in (1, 2, 3):
            assert (
                engage(sim, page=page, page_size=10, session_id=first["session_id"]).status_code
                == 200
            )
        assert engage(sim, page_size=10).status_code == 429
        sim.reset_limits()
        assert engage(sim, page_size=10).status_code == 200
    with small(hourly_limit=1) as strict:
        first = engage(strict, page_size=10).json()
        assert (
            engage(strict, page=1, page_size=10, session_id=first["session_id"]).status_code == 429
        )


def hour_count(reply: requests.Response) -> tuple[int, int]:
    """(N, LIMIT) of a 429's "N/LIMIT queries running in the last hour"."""
    assert reply.status_code == 429, reply.text
    match = LIMIT_RE.fullmatch(reply.json()["error"])
    assert match, reply.json()["error"]
    return int(match.group(3)), int(match.group(4))


@pytest.mark.parametrize("exempt", [True, False])
def test_session_pages_against_the_hourly_quota_in_both_modes(exempt: bool) -> None:
    """Page-0 queries always count; session pages count unless session_requests_exempt. The
    stats and every 429's hour count say which happened."""
    with small(hourly_limit=3, session_requests_exempt=exempt) as sim:
        first = engage(sim, page_size=10).json()
        sid = first["session_id"]
        pages = [engage(sim, page=p, page_size=10, session_id=sid) for p in (1, 2, 3)]
        stats = sim.stats()
        window = requests.get(sim.url + "/_stats", timeout=5).json()["hourly_window"]
        if exempt:
            assert [r.status_code for r in pages] == [200, 200, 200]
            assert (stats["hourly_counted"], stats["hourly_exempt"], window) == (1, 3, 1)
            assert [engage(sim, page_size=10).status_code for _ in range(2)] == [200, 200]
            assert hour_count(engage(sim, page_size=10)) == (4, 3)  # page 0 of a new query
            late = engage(sim, page=4, page_size=10, session_id=sid)
            assert late.status_code == 200, "session pages pass a full window"
            stats = sim.stats()
            assert (stats["hourly_counted"], stats["hourly_exempt"]) == (3, 4)
        else:
            assert [r.status_code for r in pages] == [200, 200, 429]
            assert hour_count(pages[2]) == (4, 3)
            assert (stats["hourly_counted"], stats["hourly_exempt"], window) == (3, 0, 3)
            assert hour_count(engage(sim, page_size=10)) == (4, 3)
        stats = sim.stats()
        assert stats["rate_limited_hourly"] == 1 + (not exempt)
        assert stats["hourly_window"] == 3


def test_an_exempt_request_reports_the_hour_count_without_itself() -> None:
    """A concurrency 429 for a session page under session_requests_exempt reports the window's
    count as it is (the page would not have counted); any other request includes itself."""
    cfg = SimulatorConfig(
        concurrency_limit=1, hourly_limit=5, session_requests_exempt=True, window_seconds=60
    )
    limiter = RateLimiter()
    holder = limiter.admit(cfg, has_session=False)
    assert holder.ok and holder.counted and (holder.concurrent, holder.hourly) == (1, 1)
    page = limiter.admit(cfg, has_session=True)
    assert (page.ok, page.cause, page.counted, page.exempt) == (False, "concurrent", False, True)
    assert "2/1 queries running concurrently and 1/5 queries running in the last hour" in (
        page.message(cfg)
    )
    query = limiter.admit(cfg, has_session=False)
    assert (query.ok, query.counted, query.exempt) == (False, False, False)
    assert "2/1 queries running concurrently and 2/5 queries running in the last hour" in (
        query.message(cfg)
    )
    limiter.release()
    assert limiter.admit(cfg, has_session=True).ok


# ------------------------------------------------------------------------------------- faults
def test_fault_5xx() -> None:
    with small(fault_5xx=1.0) as sim:
        codes = {engage(sim).status_code for _ in range(30)}
        assert codes == {500, 502, 503}
        assert sim.stats()["faults"]["5xx"] == 30
        assert requests.get(sim.url + "/_stats", timeout=5).status_code == 200  # never faulted


def test_fault_reset_closes_without_answer() -> None:
    with small(fault_reset=1.0) as sim:
        with pytest.raises(requests.ConnectionError):
            engage(sim)
        assert sim.stats()["faults"]["reset"] == 1
        assert sim.stats()["by_status"] == {}
        assert requests.get(sim.url + "/_stats", timeout=5).json()["requests"] == 1


def test_fault_truncated_body() -> None:
    with small(fault_truncated=1.0) as sim:
        reply = engage(sim)
        assert reply.status_code == 200
        assert int(reply.headers["Content-Length"]) == len(reply.content) > 0
        with pytest.raises(ValueError):
            json.loads(reply.content)
        assert sim.stats()["faults"]["truncated"] == 1 and sim.stats()["pages_served"] == 0


def test_fault_slow_and_quiet_client_disconnect(capfd: pytest.CaptureFixture[str]) -> None:
    with small(fault_slow=1.0, slow_seconds=0.4) as sim:
        with pytest.raises(requests.Timeout):
            engage(sim, timeout=0.1)
        time.sleep(0.5)  # let the server write into the closed connection
        sim.set_faults(fault_slow=0.0)
        assert engage(sim).status_code == 200
        assert sim.stats()["faults"]["slow"] == 1
    assert "Traceback" not in capfd.readouterr().err


def test_fault_rates_are_deterministic_and_partial() -> None:
    def run() -> list[int]:
        with small(fault_5xx=0.3) as sim:
            return [engage(sim).status_code for _ in range(40)]

    first = run()
    assert first == run()
    assert 0 < sum(code >= 500 for code in first) < 40


def test_fail_pages_always_answer_500() -> None:
    with small(fail_pages=frozenset({1})) as sim:
        first = engage(sim, page_size=10).json()
        for _ in range(2):
            assert (
                engage(sim, page=1, page_size=10, session_id=first["session_id"]).status_code == 500
            )
        assert engage(sim, page=2, page_size=10, session_id=first["session_id"]).status_code == 200


def test_session_expiry_only_on_later_pages() -> None:
    with small(session_max_age=0.3) as sim:
        first = engage(sim, page_size=10).json()
        assert engage(sim, page=1, page_size=10, session_id=first["session_id"]).status_code == 200
        time.sleep(0.35)
        expired = engage(sim, page=2, page_size=10, session_id=first["session_id"])
        assert expired.status_code == 400
        assert expired.json()["status"] == "error"
        assert "session_id" in expired.json()["error"] and "expired" in expired.json()["error"]
        assert sim.stats()["faults"]["expired"] == 1
        assert engage(sim, page_size=10).status_code == 200  # a fresh page 0 still works
