"""QueryLimiter: in-flight cap, sliding windows, stop mode, cancel, 429 adaptation.

Most tests drive the limiter with a fake clock and `acquire(block=False)`, so
nothing sleeps; one test hammers `slot()` from real threads.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from tap_mixpanel_profiles.engine.limiter import QueryLimiter, Window
from tap_mixpanel_profiles.errors import Cancelled, QuotaExhausted


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


WALL = 1_700_000_000.0


def make(
    max_in_flight: int = 5,
    limit: int = 3,
    seconds: float = 100.0,
    *,
    clock: FakeClock | None = None,
    **kwargs,
) -> tuple[QueryLimiter, FakeClock]:
    clock = clock or FakeClock()
    limiter = QueryLimiter(
        max_in_flight=max_in_flight,
        windows=[Window(limit, seconds)],
        clock=clock,
        wall_clock=lambda: WALL,
        poll=0.01,
        **kwargs,
    )
    return limiter, clock


def take(limiter: QueryLimiter, n: int, *, counted: bool = True) -> None:
    for _ in range(n):
        assert limiter.acquire(counted=counted, block=False)


def test_in_flight_cap() -> None:
    limiter, _ = make(max_in_flight=2, limit=100)
    take(limiter, 2)
    assert limiter.acquire(block=False) is False
    limiter.release()
    assert limiter.acquire(block=False) is True
    assert limiter.acquire(block=False) is False
    assert limiter.max_in_flight_seen == 2


def test_window_cap_counts_requests_not_concurrency() -> None:
    limiter, clock = make(max_in_flight=5, limit=3, seconds=100)
    for _ in range(3):
        take(limiter, 1)
        limiter.release()
    # Nothing in flight, but the window holds 3 requests.
    assert limiter.acquire(block=False) is False
    assert limiter.budget_left() == 0
    assert limiter.requests_counted == 3
    clock.advance(50)
    assert limiter.acquire(block=False) is False


def test_sliding_expiry_includes_safety_margin() -> None:
    limiter, clock = make(limit=2, seconds=100)  # margin = min(0.02 * 100, 2) = 2 s
    take(limiter, 1)  # A at t=0
    limiter.release()
    clock.advance(10)
    take(limiter, 1)  # B at t=10
    limiter.release()
    assert limiter.acquire(block=False) is False
    assert limiter.seconds_until_room() == pytest.approx(92)  # A + 100 + 2 - 10
    clock.advance(90)  # t=100: A is a full window old...
    assert limiter.acquire(block=False) is False  # ...but the margin keeps it counted
    clock.advance(1.99)  # t=101.99
    assert limiter.acquire(block=False) is False
    clock.advance(0.01)  # t=102: A has left the window
    assert limiter.acquire(block=False) is True  # C at t=102
    limiter.release()
    assert limiter.acquire(block=False) is False  # B (t=10) and C still count
    assert limiter.seconds_until_room() == pytest.approx(10)
    clock.advance(10)
    assert limiter.acquire(block=False) is True


def test_margin_is_capped_at_two_seconds() -> None:
    limiter, clock = make(limit=1, seconds=3600)
    take(limiter, 1)
    limiter.release()
    assert limiter.seconds_until_room() == pytest.approx(3602)
    clock.advance(3601.9)
    assert limiter.acquire(block=False) is False
    clock.advance(0.1)
    assert limiter.acquire(block=False) is True


def test_uncounted_requests_skip_the_window_but_not_the_in_flight_cap() -> None:
    limiter, _ = make(max_in_flight=2, limit=1)
    take(limiter, 1)
    limiter.release()
    assert limiter.acquire(block=False) is False  # window full for counted requests
    take(limiter, 2, counted=False)  # uncounted ones still go
    assert limiter.acquire(counted=False, block=False) is False  # in-flight cap holds
    assert limiter.requests_counted == 1
    assert limiter.requests_uncounted == 2


def test_retries_are_counted_like_any_request() -> None:
    """Every acquire counts: a retry of the same page spends budget too."""
    limiter, _ = make(limit=3)
    for _attempt in range(3):  # one page, two retries
        with limiter.slot():
            pass
    assert limiter.requests_counted == 3
    assert limiter.budget_left() == 0
    assert limiter.acquire(block=False) is False


def test_stop_mode_raises_quota_exhausted_with_resume_time() -> None:
    limiter, clock = make(limit=2, seconds=100, on_exhausted="stop")
    take(limiter, 2)
    clock.advance(30)
    with pytest.raises(QuotaExhausted) as info:
        limiter.acquire(block=False)
    # Room when the oldest request leaves the window: 100 s + 2 s margin after it.
    assert info.value.resume_at == pytest.approx(WALL + 72)
    with pytest.raises(QuotaExhausted):  # blocking acquires do not wait in stop mode either
        limiter.acquire()


def test_stop_mode_still_waits_on_in_flight_cap() -> None:
    limiter, _ = make(max_in_flight=1, limit=10, on_exhausted="stop")
    take(limiter, 1)
    assert limiter.acquire(block=False) is False  # concurrency is not a quota: no raise


def test_stop_mode_waits_on_non_stoppable_pacing_windows() -> None:
    clock = FakeClock()
    limiter = QueryLimiter(
        max_in_flight=5,
        windows=[Window(3, 1.0, stoppable=False), Window(60, 3600)],
        on_exhausted="stop",
        clock=clock,
        wall_clock=lambda: WALL,
    )
    take(limiter, 3)
    assert limiter.acquire(block=False) is False  # per-second pacing: wait, never stop
    clock.advance(1.09)  # a 1 s window keeps a stamp 1 s + the 0.1 s margin floor
    assert limiter.acquire(block=False) is False
    clock.advance(0.01)
    assert limiter.acquire(block=False) is True
    assert limiter.budget_left() == 56


def test_wait_mode_logs_when_budget_is_spent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tap-mixpanel-profiles")
    limiter, clock = make(limit=1, seconds=100)
    take(limiter, 1)
    limiter.release()
    assert limiter.acquire(block=False) is False
    assert any(
        "budget spent" in r.getMessage() and "waiting 102 s" in r.getMessage()
        for r in caplog.records
    )
    clock.advance(103)
    assert limiter.acquire(block=False) is True
    assert any("room again" in r.getMessage() for r in caplog.records)


def test_cancel_event_raises_cancelled() -> None:
    limiter, _ = make()
    limiter.cancel.set()
    with pytest.raises(Cancelled):
        limiter.acquire(block=False)


def test_cancel_wakes_a_blocked_waiter() -> None:
    cancel = threading.Event()
    limiter = QueryLimiter(max_in_flight=1, windows=[Window(100, 3600)], cancel=cancel, poll=0.01)
    limiter.acquire()
    outcome: list[BaseException | str] = []

    def waiter() -> None:
        try:
            limiter.acquire()
            outcome.append("acquired")
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    time.sleep(0.05)
    assert not outcome, "the waiter must be blocked on the in-flight cap"
    cancel.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Cancelled)


def test_release_wakes_a_blocked_waiter() -> None:
    limiter = QueryLimiter(max_in_flight=1, windows=[Window(100, 3600)], poll=5.0)
    limiter.acquire()
    acquired = threading.Event()
    thread = threading.Thread(target=lambda: (limiter.acquire(), acquired.set()), daemon=True)
    thread.start()
    assert not acquired.wait(0.05)
    limiter.release()
    assert acquired.wait(2.0), "release() must notify waiters, not leave them to the poll"
    thread.join(timeout=2)


def test_concurrency_429_lowers_cap_to_what_the_server_reports_free() -> None:
    limiter, _ = make(max_in_flight=5, limit=100)
    take(limiter, 2)
    # 5 of 5 running at the server, 2 of them ours: others use 3, so 2 are ours to use.
    limiter.on_concurrency_limited(running=5, limit=5)
    assert limiter.concurrency_cap == 2
    assert limiter.acquire(block=False) is False
    limiter.release()
    assert limiter.acquire(block=False) is True


def test_concurrency_429_always_lowers_by_at_least_one_and_never_below_one() -> None:
    limiter, _ = make(max_in_flight=5, limit=100)
    take(limiter, 5)
    limiter.on_concurrency_limited(running=5, limit=5)  # no other clients: still back off
    assert limiter.concurrency_cap == 4
    limiter.on_concurrency_limited(running=50, limit=5)
    assert limiter.concurrency_cap == 1
    limiter.on_concurrency_limited(running=None, limit=None)
    assert limiter.concurrency_cap == 1


def test_concurrency_429_without_numbers_steps_down() -> None:
    limiter, _ = make(max_in_flight=5, limit=100)
    take(limiter, 3)
    limiter.on_concurrency_limited(running=None, limit=None)
    assert limiter.concurrency_cap == 2


def test_concurrency_cap_recovers_one_step_after_quiet_period() -> None:
    limiter, clock = make(max_in_flight=5, limit=100, recover_after=10.0)
    take(limiter, 4)
    limiter.on_concurrency_limited(running=5, limit=5)  # others: 1 -> cap 4 - 1 = ... see below
    cap = limiter.concurrency_cap
    assert cap < 5
    for _ in range(4):
        limiter.release()
    take(limiter, cap)
    assert limiter.acquire(block=False) is False
    # Recovery happens only after a quiet period, one step at a time.
    clock.advance(5)
    assert limiter.acquire(block=False) is False
    clock.advance(600)
    assert limiter.acquire(block=False) is True
    assert limiter.concurrency_cap == cap + 1
    assert limiter.acquire(block=False) is False, "only +1 per quiet period"


def test_quiet_period_doubles_when_the_server_pushes_back_again() -> None:
    limiter, clock = make(max_in_flight=5, limit=100, recover_after=10.0)
    take(limiter, 5)
    limiter.on_concurrency_limited(running=None, limit=None)  # 5 -> 4
    assert limiter.concurrency_cap == 4
    first_recovery = limiter._next_recovery - clock()
    limiter.on_concurrency_limited(running=None, limit=None)  # again: 4 -> 3
    assert limiter.concurrency_cap == 3
    second_recovery = limiter._next_recovery - clock()
    assert second_recovery == pytest.approx(2 * first_recovery)
    for _ in range(5):
        limiter.release()
    clock.advance(second_recovery - 0.1)
    take(limiter, 1)
    limiter.release()
    assert limiter.concurrency_cap == 3
    clock.advance(0.1)
    take(limiter, 1)
    limiter.release()
    assert limiter.concurrency_cap == 4


def test_align_with_server_pads_the_window() -> None:
    limiter, clock = make(max_in_flight=5, limit=60, seconds=3600)
    for _ in range(10):
        take(limiter, 1)
        limiter.release()
        clock.advance(1)
    assert limiter.budget_left() == 50
    # The server counted 61/60 in its last hour: other clients spent the rest.
    limiter.align_with_server(used=61, limit=60)
    assert limiter.budget_left() == 0
    assert limiter.acquire(block=False) is False
    wait = limiter.seconds_until_room()
    assert 0 < wait <= 3602
    clock.advance(wait)
    assert limiter.acquire(block=False) is True
    assert limiter.requests_counted == 11, "synthetic entries are not our requests"


def test_align_with_server_accounts_for_our_own_requests() -> None:
    limiter, _ = make(max_in_flight=5, limit=60, seconds=3600)
    for _ in range(20):
        take(limiter, 1)
        limiter.release()
    limiter.align_with_server(used=30, limit=60)  # 10 from other clients
    assert limiter.budget_left() == 30
    limiter.align_with_server(used=15, limit=60)  # the server saw fewer than we sent: no-op
    assert limiter.budget_left() == 30


def test_align_with_server_lowers_a_smaller_server_limit() -> None:
    limiter, _ = make(max_in_flight=5, limit=60, seconds=3600)
    limiter.align_with_server(used=0, limit=40)
    assert limiter.budget_left() == 40


def test_describe_budget() -> None:
    limiter, _ = make(limit=60, seconds=3600)
    for _ in range(12):
        take(limiter, 1)
        limiter.release()
    text = limiter.describe_budget()
    assert "48" in text and "60" in text


def test_real_threads_never_exceed_max_in_flight() -> None:
    limiter = QueryLimiter(max_in_flight=3, windows=[Window(10_000, 3600)], poll=0.01)
    lock = threading.Lock()
    held = 0
    peak = 0
    errors: list[BaseException] = []

    def hammer() -> None:
        nonlocal held, peak
        try:
            for _ in range(25):
                with limiter.slot():
                    with lock:
                        held += 1
                        peak = max(peak, held)
                    time.sleep(0.0005)
                    with lock:
                        held -= 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert not any(thread.is_alive() for thread in threads)
    assert peak <= 3
    assert peak >= 2, "the test must actually create contention"
    assert limiter.max_in_flight_seen == peak or limiter.max_in_flight_seen <= 3
    assert limiter.requests_counted == 20 * 25
    assert held == 0


def test_one_reaction_per_round_trip() -> None:
    """429s for requests sent before the last decrease do not lower the cap again."""
    limiter, clock = make(max_in_flight=5, limit=100)
    take(limiter, 5)
    sent = limiter.now()
    clock.advance(1)
    limiter.on_concurrency_limited(running=5, limit=5, started_at=sent)
    assert limiter.concurrency_cap == 4
    for _ in range(3):  # the rest of the same wave comes back rejected too
        limiter.on_concurrency_limited(running=5, limit=5, started_at=sent)
    assert limiter.concurrency_cap == 4
    clock.advance(1)
    limiter.on_concurrency_limited(running=5, limit=5, started_at=limiter.now())
    assert limiter.concurrency_cap == 3, "a request sent after the decrease still counts"


def test_close_wakes_waiters_and_refuses_new_slots() -> None:
    limiter = QueryLimiter(max_in_flight=1, windows=[Window(100, 3600)], poll=5.0)
    limiter.acquire()
    raised: list[BaseException] = []

    def waiter() -> None:
        try:
            limiter.acquire()
        except Cancelled as exc:
            raised.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    limiter.close()
    thread.join(timeout=2)  # woken by close(), not by its 5 s poll
    assert not thread.is_alive() and len(raised) == 1
    with pytest.raises(Cancelled):
        limiter.acquire(block=False)


def test_budget_lines_are_safe_while_workers_take_slots() -> None:
    """Progress lines read the budget on the writer thread while workers record requests.

    Reading the windows without the lock raised "deque mutated during iteration" at
    latency 0 (seen in a page-size benchmark run); it must never raise.
    """
    limiter = QueryLimiter(max_in_flight=4, windows=[Window(1_000_000, 3600)], poll=0.001)
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        while not stop.is_set():
            with limiter.slot():
                pass

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(3000):
            try:
                limiter.describe_budget()
                limiter.budget_left()
            except RuntimeError as exc:  # pragma: no cover - the regression
                errors.append(exc)
                break
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
    assert errors == []
