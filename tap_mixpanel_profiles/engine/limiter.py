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
  count (``61/60 queries ... in the last hour``) instead of guessing.

Every wait is sliced (``poll`` seconds) and checks the shared cancel event, so
SIGTERM interrupts a one-hour quota wait at once.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import logging
import threading
import time
import typing as t

from tap_mixpanel_profiles.errors import Cancelled, QuotaExhausted


@dataclasses.dataclass
class Window:
    """At most `limit` counted requests in any `seconds`-long sliding window.

    `stoppable` windows are quotas (hourly): with ``on_exhausted="stop"`` the
    limiter raises QuotaExhausted instead of waiting. Short pacing windows
    (per second) always wait.
    """

    limit: int
    seconds: float
    stoppable: bool = True


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
    ) -> None:
        self.max_in_flight = max_in_flight
        self.windows = list(windows)
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
        self._recover_after = recover_after
        self._next_recovery = 0.0
        self._last_decrease = float("-inf")
        self._entries: collections.deque[float] = collections.deque()
        self._waiting_logged = False
        self._closed = False
        # Observability (read by progress lines, the summary and tests).
        self.requests_counted = 0
        self.requests_uncounted = 0
        self.max_in_flight_seen = 0

    # ----------------------------------------------------------------- acquire
    @contextlib.contextmanager
    def slot(
        self, *, counted: bool = True, abort: threading.Event | None = None
    ) -> t.Iterator[None]:
        """Hold one in-flight slot for the duration of a request."""
        self.acquire(counted=counted, abort=abort)
        try:
            yield
        finally:
            self.release()

    def acquire(
        self, *, counted: bool = True, block: bool = True, abort: threading.Event | None = None
    ) -> bool:
        """Take a slot; wait (bounded slices) while the caps are reached.

        Returns False only with ``block=False`` when a slot is not free now.
        Raises QuotaExhausted in stop mode, Cancelled when the run is shutting down, the
        limiter is closed, or `abort` (one client's own stop: several streams' clients can
        share this limiter) is set.
        """
        with self._cond:
            while True:
                if self.cancel.is_set() or self._closed or (abort is not None and abort.is_set()):
                    raise Cancelled
                now = self._clock()
                self._maybe_recover(now)
                wait = self._window_wait(now) if counted else 0.0
                if wait > 0:
                    window = self._blocking_window(now)
                    if window is not None and window.stoppable and self.on_exhausted == "stop":
                        raise QuotaExhausted(resume_at=self._wall() + wait)
                    if window is not None and window.stoppable:
                        self._log_wait(wait)
                elif self._in_flight < self._cap:
                    self._take(now, counted)
                    return True
                if not block:
                    return False
                self._cond.wait(min(self._poll, wait) if wait > 0 else self._poll)

    def close(self) -> None:
        """The stream is done with this limiter: wake every waiter and refuse new slots.

        Workers left behind by a stream that ended early (a fatal error in the writer
        thread) must not wake up an hour later and spend quota on pages nobody reads.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def release(self) -> None:
        """Give the slot back (whatever the outcome of the request)."""
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def _take(self, now: float, counted: bool) -> None:
        self._in_flight += 1
        self.max_in_flight_seen = max(self.max_in_flight_seen, self._in_flight)
        if counted:
            self._entries.append(now)
            self.requests_counted += 1
        else:
            self.requests_uncounted += 1
        if self._waiting_logged:
            self._waiting_logged = False
            self._log.info("%s budget has room again; resuming.", self._name)

    # ------------------------------------------------------------------ windows
    def _margin(self, window: Window) -> float:
        # The server stamps a query when it arrives, we stamp it when we send:
        # keep a small margin so a slot we see as free is free on the server too.
        return min(0.02 * window.seconds, 2.0)

    def _count_since(self, since: float) -> int:
        count = 0
        for stamp in reversed(self._entries):
            if stamp <= since:
                break
            count += 1
        return count

    def _window_wait(self, now: float) -> float:
        """Seconds until every window has room for one more counted request."""
        longest = max((w.seconds + self._margin(w) for w in self.windows), default=0.0)
        while self._entries and self._entries[0] <= now - longest:
            self._entries.popleft()
        wait = 0.0
        for window in self.windows:
            span = window.seconds + self._margin(window)
            used = self._count_since(now - span)
            if used >= window.limit:
                # Room for one more once all but (limit - 1) entries have expired.
                oldest = self._entries[len(self._entries) - window.limit]
                wait = max(wait, oldest + span - now)
        return wait

    def _blocking_window(self, now: float) -> Window | None:
        for window in self.windows:
            if self._count_since(now - window.seconds - self._margin(window)) >= window.limit:
                return window
        return None

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
            lefts = [
                w.limit - self._count_since(now - w.seconds - self._margin(w))
                for w in self.windows
                if w.stoppable
            ]
            return max(0, min(lefts)) if lefts else 1 << 30

    def seconds_until_room(self) -> float:
        """How long until one more counted request is allowed (0 if now)."""
        with self._cond:
            return max(0.0, self._window_wait(self._clock()))

    def describe_budget(self) -> str:
        """e.g. '12/60 left (3600 s window)'."""
        now = self._clock()
        parts = [
            f"{max(0, w.limit - self._count_since(now - w.seconds - self._margin(w)))}/"
            f"{w.limit} left ({w.seconds:g} s window)"
            for w in self.windows
            if w.stoppable
        ]
        return ", ".join(parts) or "unlimited"

    # ------------------------------------------------------------- adaptation
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
            now = self._clock()
            ours = self._count_since(now - quota.seconds)
            missing = used - ours
            if missing <= 0:
                return
            step = quota.seconds / (missing + 1)
            synthetic = [now - quota.seconds + step * (i + 1) for i in range(missing)]
            self._entries = collections.deque(sorted([*self._entries, *synthetic]))
            self._log.warning(
                "Server reports %d/%d queries in the last window, %d more than this run sent: "
                "other clients share the project's quota; budget aligned (%d left).",
                used,
                limit,
                missing,
                max(0, quota.limit - used),
            )
