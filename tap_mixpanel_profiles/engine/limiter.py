"""One query limiter shared by every worker thread of a stream.

Mixpanel's limits belong to the whole project: at most N queries in flight and
at most M queries in any sliding window (5 and 60/hour for the Engage query API;
100 in flight, 3/second and 60/hour for the raw export). The limiter enforces
both on the client side so the tap never *causes* a 429, counts every request it
lets through (retries included), and adapts when the server says other clients
are spending the same limits:

* a 429 for concurrency lowers the in-flight cap to what the server reports as
  free, then raises it one step at a time after quiet periods that double each
  time the server pushes back again (no thundering retries);
* a 429 for the hourly quota aligns the client-side window with the server's
  count (``61/60 queries ... in the last hour``) instead of guessing;
* requests that may or may not count (`counted=None`, see `quota`) are learned
  about with at most one probe beyond the counted budget.

Every wait is sliced (``poll`` seconds) and checks the shared cancel event, so
SIGTERM interrupts a one-hour quota wait at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import threading
import time
import typing as t

from tap_mixpanel_profiles.engine.quota import Counting, Ledger, Window
from tap_mixpanel_profiles.errors import Cancelled, QuotaExhausted

__all__ = ["Grant", "QueryLimiter", "Window"]


@dataclasses.dataclass
class Grant:
    """One slot held for one request.

    `counting`: how it counts as far as is known; `requested`: as asked (maybe or not);
    `probe`: it was let past a budget full only of maybes, to learn whether they count.
    """

    counting: Counting
    requested: Counting
    probe: bool = False


_COUNTING: dict[bool | None, Counting] = {True: "counted", False: "uncounted", None: "maybe"}


class QueryLimiter:
    """Thread-safe in-flight cap plus sliding-window budgets."""

    def __init__(
        self,
        *,
        max_in_flight: int,
        windows: t.Sequence[Window],
        on_exhausted: str = "wait",
        cancel: threading.Event | None = None,
        clock: t.Callable[[], float] = time.monotonic,
        wall_clock: t.Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
        poll: float = 0.25,
        recover_after: float = 30.0,
        name: str = "queries",
        slow_start: bool = False,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.on_exhausted = on_exhausted
        self.cancel = cancel or threading.Event()
        self._clock = clock
        self._wall = wall_clock
        self._log = logger or logging.getLogger("tap-mixpanel-profiles")
        self._poll = poll
        self._name = name
        self._cond = threading.Condition()
        self._in_flight = 0
        self._cap = max_in_flight
        # Slow start: one request at a time until the server admitted one, so that a run
        # begun while the project's quota is still spent meets one 429, not max_in_flight.
        self._admitted = not slow_start
        self._recover_after = recover_after
        self._next_recovery = 0.0
        self._last_decrease = float("-inf")
        self._ledger = Ledger(windows)
        self._waiting_logged = False
        self._closed = False
        # Observability (read by progress lines, the summary and tests).
        self.requests_counted = 0
        self.requests_uncounted = 0
        self.requests_maybe = 0
        self.max_in_flight_seen = 0

    # ----------------------------------------------------------------- acquire
    @property
    def windows(self) -> list[Window]:
        """The sliding windows (quota limits may be lowered by the server's word)."""
        return self._ledger.windows

    @contextlib.contextmanager
    def slot(
        self, *, counted: bool | None = True, abort: threading.Event | None = None
    ) -> t.Iterator[Grant]:
        """Hold one in-flight slot for the duration of a request.

        `counted`: True (counts against the windows), False (never), None (may count:
        see `quota`). A probe not settled by `learn` before the slot is released is
        simply over (its answer taught nothing: a 5xx, a network error).
        """
        grant = self._acquire(_COUNTING[counted], True, abort)
        assert grant is not None
        try:
            yield grant
        finally:
            self.release(grant)

    def acquire(
        self,
        *,
        counted: bool | None = True,
        block: bool = True,
        abort: threading.Event | None = None,
    ) -> bool:
        """Take a slot; wait (bounded slices) while the caps are reached.

        Returns False only with ``block=False`` when a slot is not free now.
        Raises QuotaExhausted in stop mode, Cancelled when the run is shutting down, the
        limiter is closed, or `abort` (one client's own stop: several streams' clients can
        share this limiter) is set.
        """
        return self._acquire(_COUNTING[counted], block, abort) is not None

    def _acquire(
        self, counting: Counting, block: bool, abort: threading.Event | None
    ) -> Grant | None:
        with self._cond:
            while True:
                if self.cancel.is_set() or self._closed or (abort is not None and abort.is_set()):
                    raise Cancelled
                now = self._clock()
                self._maybe_recover(now)
                kind = self._ledger.counting(counting)
                wait = 0.0 if kind == "uncounted" else self._ledger.wait(now)
                if wait > 0 and self._ledger.can_probe(now):
                    # The probe goes alone, once every earlier request was answered: then
                    # the server has counted all of them, and a 200 proves maybes exempt.
                    if self._in_flight == 0:
                        self._ledger.probing = True
                        self._take(now, kind)
                        return Grant(kind, counting, probe=True)
                    wait = 0.0  # wait for the requests in flight to be answered
                elif wait > 0 and self._ledger.awaiting_probe(now):
                    pass  # the probe's answer decides whether the budget is spent
                elif wait > 0:
                    window = self._ledger.blocking(now)
                    if window is not None and window.stoppable and self.on_exhausted == "stop":
                        raise QuotaExhausted(resume_at=self._wall() + wait)
                    if window is not None and window.stoppable:
                        self._log_wait(wait)
                elif self._in_flight < self._effective_cap():
                    self._take(now, kind)
                    return Grant(kind, counting)
                if not block:
                    return None
                self._cond.wait(min(self._poll, wait) if wait > 0 else self._poll)

    def close(self) -> None:
        """The stream is done with this limiter: wake every waiter and refuse new slots.

        Workers left behind by a stream that ended early (a fatal error in the writer
        thread) must not wake up an hour later and spend quota on pages nobody reads.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def release(self, grant: Grant | None = None) -> None:
        """Give the slot back (whatever the outcome of the request)."""
        with self._cond:
            self._in_flight -= 1
            if grant is not None and grant.probe:
                self._ledger.probing = False
            self._cond.notify_all()

    def _take(self, now: float, kind: Counting) -> None:
        self._in_flight += 1
        self.max_in_flight_seen = max(self.max_in_flight_seen, self._in_flight)
        self._ledger.record(now, kind)
        if kind == "counted":
            self.requests_counted += 1
        elif kind == "maybe":
            self.requests_maybe += 1
        else:
            self.requests_uncounted += 1
        if self._waiting_logged:
            self._waiting_logged = False
            self._log.info("%s budget has room again; resuming.", self._name)

    def spent_earlier(self, seconds_ago: float) -> None:
        """A counted request another process sent `seconds_ago` (e.g. Meltano's discovery of
        this run): in the windows as if this limiter had sent it, so the budget stays what the
        server counts."""
        with self._cond:
            self._ledger.record_earlier(self._clock() - max(0.0, seconds_ago))

    # ------------------------------------------------------------------ windows
    def _log_wait(self, wait: float) -> None:
        if self._waiting_logged:
            return
        self._waiting_logged = True
        until = dt.datetime.fromtimestamp(self._wall() + wait, tz=dt.timezone.utc)
        self._log.warning(
            "%s budget spent (%s); waiting %.0f s until %s UTC. Use on_quota_exhausted=stop "
            "to pause with resumable STATE instead.",
            self._name,
            self.describe_budget(),
            wait,
            until.strftime("%H:%M:%S"),
        )

    def budget_left(self) -> int:
        """Requests the stoppable (quota) windows still allow right now."""
        with self._cond:
            now = self._clock()
            lefts = [self._ledger.left(now, w) for w in self.windows if w.stoppable]
            return min(lefts) if lefts else 1 << 30

    def seconds_until_room(self) -> float:
        """How long until one more counted request is allowed (0 if now)."""
        with self._cond:
            return max(0.0, self._ledger.wait(self._clock()))

    def describe_budget(self) -> str:
        """e.g. '12/60 left (3600 s window)'."""
        with self._cond:
            now = self._clock()
            parts = [
                f"{self._ledger.left(now, w)}/{w.limit} left ({w.seconds:g} s window)"
                for w in self.windows
                if w.stoppable
            ]
        return ", ".join(parts) or "unlimited"

    # ------------------------------------------------------- requests that may count
    @property
    def maybe_counted(self) -> bool | None:
        """Whether requests sent with counted=None count (None: not known yet)."""
        return self._ledger.maybe_counted

    @property
    def maybe_learned(self) -> bool:
        """True when this run's own answers (not an assumption) decided `maybe_counted`."""
        return self._ledger.learned

    def assume(self, counted: bool | None) -> None:
        """Start from what an earlier run learned; this run's answers still decide."""
        with self._cond:
            self._ledger.assume(counted)

    def learn(self, counted: bool, evidence: str) -> None:
        """The server showed whether maybe requests count (`evidence` says how)."""
        with self._cond:
            if self._ledger.learn(counted):
                self._log.warning(
                    "%s: requests that may count against the quota %s (%s).",
                    self._name,
                    "DO count" if counted else "do NOT count: counting the others only",
                    evidence,
                )
            self._cond.notify_all()

    # ------------------------------------------------------------- adaptation
    def _effective_cap(self) -> int:
        return self._cap if self._admitted else 1

    def admitted(self) -> None:
        """The server answered a request with 200: end the slow start."""
        if not self._admitted:
            with self._cond:
                self._admitted = True
                self._cond.notify_all()

    def on_success(self) -> None:
        """A request succeeded: nothing to learn, but wake waiters promptly."""
        with self._cond:
            self._cond.notify_all()

    def now(self) -> float:
        """The limiter's clock (callers stamp request starts with it)."""
        return self._clock()

    def on_concurrency_limited(
        self, running: int | None, limit: int | None, *, started_at: float | None = None
    ) -> None:
        """The server said too many queries run at once (ours plus other clients').

        Call it while still holding the rejected request's slot. `running`
        counts the rejected query too. Requests sent before the last decrease
        are ignored: the decrease already accounts for them (one reaction per
        round trip, as in TCP congestion control), so a burst of 429s from one
        wave of requests does not collapse parallelism to 1.
        """
        with self._cond:
            if started_at is not None and started_at < self._last_decrease:
                return
            ours = self._in_flight
            if running is not None and limit is not None:
                others = max(0, running - ours)
                new_cap = max(1, min(self.max_in_flight, limit - others))
                if new_cap >= self._cap:
                    new_cap = max(1, self._cap - 1)
            else:
                new_cap = max(1, min(self._cap, ours) - 1)
            if new_cap < self._cap and self._last_decrease != float("-inf"):
                # Pushed back again: probe upwards less often (capped at 10 minutes).
                self._recover_after = min(self._recover_after * 2, 600.0)
            if new_cap != self._cap:
                self._log.warning(
                    "Server reports %s/%s queries running concurrently (we had %d in flight): "
                    "lowering parallelism %d -> %d; will probe upwards after %.0f s.",
                    running if running is not None else "?",
                    limit if limit is not None else "?",
                    ours,
                    self._cap,
                    new_cap,
                    self._recover_after,
                )
            self._cap = new_cap
            self._last_decrease = self._clock()
            self._next_recovery = self._last_decrease + self._recover_after

    def _maybe_recover(self, now: float) -> None:
        if self._cap < self.max_in_flight and now >= self._next_recovery:
            self._cap += 1
            self._next_recovery = now + self._recover_after
            self._log.info("Raising parallelism to %d after a quiet period.", self._cap)

    @property
    def name(self) -> str:
        """What this limiter's budget is called in log lines (e.g. 'Engage query')."""
        return self._name

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self._closed

    @property
    def concurrency_cap(self) -> int:
        """The current in-flight cap (may be below max_in_flight after 429s)."""
        return self._cap

    def align_with_server(self, used: int, limit: int) -> None:
        """The server reported `used`/`limit` queries in its quota window.

        Other clients spent part of the budget. Assume their queries were spread
        evenly over the window (the server does not say when they ran) and pad
        our window so that our count matches the server's.
        """
        with self._cond:
            quota = next((w for w in self.windows if w.stoppable), None)
            if quota is None or limit <= 0:  # no window to align, or "N/0": no usable limit
                return
            if limit < quota.limit:
                self._log.warning(
                    "Server quota is %d per window; lowering client budget from %d.",
                    limit,
                    quota.limit,
                )
                quota.limit = limit
            missing = self._ledger.pad(self._clock(), quota, used)
            if missing <= 0:
                return
            self._log.warning(
                "Server reports %d/%d queries in the last window, %d more than this run sent: "
                "other clients share the project's quota; budget aligned (%d left).",
                used,
                limit,
                missing,
                max(0, quota.limit - used),
            )
