"""What one run shares between streams: one limiter per API, clients of their own."""

from __future__ import annotations

import logging
import re
import threading
import time

import pytest

from tap_mixpanel_profiles.engine.limiter import Window
from tap_mixpanel_profiles.engine.runtime import ApiSpec, RunOutcome, Runtime
from tap_mixpanel_profiles.errors import Cancelled, ConfigError, IncompleteSyncError
from tap_mixpanel_profiles.settings import Settings
from tests.helpers.engage_fake import base_config

LOG = logging.getLogger("tap-mixpanel-profiles")


def spec(key: str, limit: int = 60) -> ApiSpec:
    return ApiSpec(key, f"{key} API", f"{key} query", 2, (Window(limit, 3600),))


def runtime() -> Runtime[Settings]:
    return Runtime(Settings.from_config(base_config()), LOG)


def test_streams_of_one_api_share_its_limiter_and_budget() -> None:
    run = runtime()
    a, b = run.client(spec("engage")), run.client(spec("engage"))
    other = run.client(spec("export"))
    assert a is not b and a.limiter is b.limiter
    assert other.limiter is not a.limiter
    a.limiter.acquire()
    a.limiter.release()
    assert b.limiter.budget_left() == 59, "one hourly budget for both streams"
    assert other.limiter.budget_left() == 60


def test_the_limiter_gets_its_own_copy_of_the_windows() -> None:
    run, s = runtime(), spec("engage")
    limiter = run.limiter(s)
    limiter.align_with_server(10, 30)  # lowers the client-side limit to the server's
    assert s.windows[0].limit == 60, "the spec is not mutated"
    assert limiter.windows[0].limit == 30


def test_closing_a_client_stops_its_waiters_not_the_shared_limiter() -> None:
    run = runtime()
    a, b = run.client(spec("engage", limit=1)), run.client(spec("engage", limit=1))
    a.limiter.acquire()
    a.limiter.release()  # the hourly budget (1) is spent: the next acquire waits
    failed: list[BaseException] = []

    def waiter() -> None:
        try:
            a.limiter.acquire(abort=a._closed)
        except Cancelled as exc:
            failed.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.1)
    a.close()
    thread.join(timeout=2)
    assert not thread.is_alive() and failed, "a's straggler stopped"
    assert not b.limiter.closed
    assert b.limiter.acquire(block=False) is False, "b still waits for the shared budget"
    run.close()
    assert b.limiter.closed


def test_outcome_raises_fatal_errors_first_then_incomplete_streams() -> None:
    outcome = RunOutcome()
    outcome.record("profiles", "complete", [], None)
    outcome.record("events", "paused", [], None)
    outcome.raise_for_status()
    outcome.record("events", "failed", ["2024-01-01..2024-01-07"], None)
    with pytest.raises(IncompleteSyncError, match=re.escape("events: 2024-01-01..2024-01-07")):
        outcome.raise_for_status()
    outcome.record("cohorts", "failed", [], ConfigError("bad"))
    with pytest.raises(ConfigError):
        outcome.raise_for_status()


def test_redact_removes_every_secret() -> None:
    run = runtime()
    secret = run.settings.auth_password
    assert secret not in run.redact(f"server said {secret}")
