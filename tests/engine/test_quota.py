"""Requests that may count against the quota: the one probe, and what its answer teaches.

A fake clock drives the limiter; the client-level tests answer through requests-mock
with Mixpanel's own 429 text.
"""

from __future__ import annotations

import logging
import typing as t

import pytest

from tap_mixpanel_profiles.engine.limiter import QueryLimiter, Window
from tap_mixpanel_profiles.engine.quota import Ledger
from tap_mixpanel_profiles.engine.runtime import Runtime
from tap_mixpanel_profiles.errors import QuotaExhausted
from tap_mixpanel_profiles.settings import Settings
from tests.helpers.engage_fake import ENGAGE_URL, base_config

LOG = logging.getLogger("tap-mixpanel-profiles")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(limit: int = 3, on_exhausted: str = "stop") -> QueryLimiter:
    return QueryLimiter(
        max_in_flight=5,
        windows=[Window(limit, 3600)],
        on_exhausted=on_exhausted,
        clock=Clock(),
        poll=0.01,
    )


def full_of_maybes() -> QueryLimiter:
    """A limiter whose budget of 3 holds one counted request and two maybes, all answered."""
    lim = limiter()
    for kind in ("counted", "maybe", "maybe"):
        grant = lim._acquire(kind, True, None)
        assert grant is not None
        lim.release(grant)
    return lim


def test_a_ledger_counts_maybes_until_it_knows() -> None:
    ledger = Ledger([Window(3, 60)])
    assert ledger.counting("maybe") == "maybe"
    ledger.record(0.0, "counted")
    ledger.record(1.0, "maybe")
    ledger.record(2.0, "maybe")
    assert ledger.wait(3.0) > 0 and ledger.wait(3.0, definite=True) == 0
    assert ledger.can_probe(3.0)
    assert ledger.learn(False) is True
    assert ledger.counting("maybe") == "uncounted" and ledger.wait(3.0) == 0
    assert ledger.learn(False) is False, "no news the second time"
    other = Ledger([Window(3, 60)])
    other.record(0.0, "counted")
    other.record(1.0, "maybe")
    other.learn(True)
    assert other.counting("maybe") == "counted"
    assert other.left(2.0, other.windows[0]) == 1, "the maybe now counts"


def test_the_probe_goes_alone_once_earlier_requests_were_answered() -> None:
    lim = limiter()
    first = lim._acquire("counted", True, None)  # page 0
    assert first is not None
    lim.release(first)
    maybes = [lim._acquire("maybe", True, None) for _ in range(2)]  # the budget of 3 is full
    assert all(g is not None and not g.probe for g in maybes)
    assert lim._acquire("maybe", False, None) is None, "no probe while earlier ones fly"
    for grant in maybes:
        lim.release(grant)
    probe = lim._acquire("maybe", True, None)
    assert probe is not None and probe.probe
    assert lim._acquire("maybe", False, None) is None, "the others wait for its answer"
    assert lim._acquire("counted", False, None) is None
    lim.learn(False, "test: answered")
    lim.release(probe)
    assert lim.maybe_counted is False and lim.maybe_learned
    more = [lim._acquire("maybe", False, None) for _ in range(4)]
    assert all(g is not None and g.counting == "uncounted" for g in more), "parallel again"


def test_a_probe_answered_429_means_they_count_and_stop_mode_pauses() -> None:
    lim = full_of_maybes()
    probe = lim._acquire("maybe", True, None)
    assert probe is not None and probe.probe
    lim.learn(True, "test: 4/3")
    lim.release(probe)
    with pytest.raises(QuotaExhausted):
        lim.acquire(counted=None)
    assert lim.requests_counted + lim.requests_maybe == 4


def test_a_probe_that_taught_nothing_lets_the_next_one_go() -> None:
    lim = full_of_maybes()
    probe = lim._acquire("maybe", True, None)
    assert probe is not None and probe.probe
    lim.release(probe)  # a 5xx: nothing learned
    again = lim._acquire("maybe", False, None)
    assert again is not None and again.probe


def runtime_client(on_exhausted: str = "stop") -> t.Any:
    settings = Settings.from_config(
        base_config(session_pages_count_against_quota="auto", on_quota_exhausted=on_exhausted)
    )
    run = Runtime(settings, LOG)
    lim = QueryLimiter(
        max_in_flight=5, windows=[Window(2, 3600)], on_exhausted=on_exhausted, poll=0.01
    )
    return run.client_with(lim, "Mixpanel Engage API")


def send(client: t.Any, counted: bool | None) -> t.Any:
    return client.request(
        "POST", ENGAGE_URL, label="page", counted=counted, handle=lambda r: r.json()
    )


def test_client_learns_exemption_from_a_200_beyond_the_budget(requests_mock: t.Any) -> None:
    requests_mock.post(ENGAGE_URL, json={"status": "ok"})
    client = runtime_client()
    send(client, True)
    send(client, None)  # the budget of 2 is full, counting the maybe
    send(client, None)  # the probe: answered
    assert client.limiter.maybe_counted is False and client.limiter.maybe_learned
    for _ in range(5):
        send(client, None)
    assert requests_mock.call_count == 8 and client.rate_limited == 0


def test_client_learns_counting_from_the_probes_hourly_429(requests_mock: t.Any) -> None:
    body = {
        "error": "Query rate limit exceeded for project_id: 4242. 1/5 queries running "
        "concurrently and 3/2 queries running in the last hour."
    }
    requests_mock.post(
        ENGAGE_URL,
        [
            {"json": {"status": "ok"}},
            {"json": {"status": "ok"}},
            {"json": body, "status_code": 429},
        ],
    )
    client = runtime_client()
    send(client, True)
    send(client, None)
    with pytest.raises(QuotaExhausted):
        send(client, None)
    assert client.limiter.maybe_counted is True and client.rate_limited == 1
    with pytest.raises(QuotaExhausted):
        send(client, None)
    assert requests_mock.call_count == 3, "no second 429 spent"


def test_an_assumed_exemption_is_dropped_at_the_first_hourly_429(requests_mock: t.Any) -> None:
    body = {"error": "1/5 queries running concurrently and 2/2 queries running in the last hour"}
    requests_mock.post(ENGAGE_URL, [{"json": {"status": "ok"}}, {"json": body, "status_code": 429}])
    client = runtime_client()
    client.limiter.assume(False)  # what an earlier run found
    send(client, None)
    with pytest.raises(QuotaExhausted):
        send(client, None)
    assert client.limiter.maybe_counted is True and client.limiter.maybe_learned
