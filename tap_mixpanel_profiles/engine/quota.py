"""What a run has spent of its quotas, and what the server taught it about counting.

A `Ledger` keeps the send times of the requests that count against the sliding
windows (60 an hour, 3 a second ...) and answers: how long until one more is
allowed, how much is left, which window blocks.

Some requests may or may not count. Mixpanel does not document whether Engage
pages fetched with a `session_id` count against the 60 queries an hour; its
own client assumes they do, users report support saying they do not. Such a
request is a *maybe*: it counts in the windows until the server shows
otherwise. When the budget counting every maybe is spent but the requests that
surely count still leave room, one request is let through as a *probe*: an
answer beyond the counted budget proves maybes are exempt (they leave the
windows); an hourly 429 proves they count. So learning costs at most one 429.
The probe goes alone, once every earlier request was answered, so the server
has counted all of them when it decides.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import heapq
import typing as t

#: How a request counts: always, never, or "maybe" (unknown until learned).
Counting = t.Literal["counted", "uncounted", "maybe"]


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


def margin(window: Window) -> float:
    """Extra seconds a stamp stays in `window`.

    The server stamps a query when it arrives, we stamp it when we send: keep a
    small margin so a slot we see as free is free on the server too (2 % of the
    window, at least 0.1 s for short windows such as 3 a second, at most 2 s).
    """
    return min(max(0.02 * window.seconds, 0.1), 2.0)


class Ledger:
    """Send times of counted (and maybe-counted) requests, per sliding window.

    Not thread-safe on its own: the limiter calls it under its lock.
    """

    def __init__(self, windows: t.Iterable[Window]) -> None:
        self.windows = list(windows)
        self._counted: collections.deque[float] = collections.deque()
        self._maybe: collections.deque[float] = collections.deque()
        #: Whether maybe requests count: None until the server showed it (or it was assumed).
        self.maybe_counted: bool | None = None
        self.learned = False  # True once this run's answers (not an assumption) decided it
        self.probing = False

    # ---------------------------------------------------------------- recording
    def counting(self, counting: Counting) -> Counting:
        """How a request of this kind counts, given what is known."""
        if counting != "maybe" or self.maybe_counted is None:
            return counting
        return "counted" if self.maybe_counted else "uncounted"

    def record(self, now: float, counting: Counting) -> None:
        """A request of this (effective) kind is being sent now."""
        if counting == "counted":
            self._counted.append(now)
        elif counting == "maybe":
            self._maybe.append(now)

    def record_earlier(self, at: float) -> None:
        """A counted request sent at `at` (before requests already recorded, maybe)."""
        bisect.insort(self._counted, at)

    def assume(self, counted: bool | None) -> None:
        """Start from what an earlier run learned (re-checked by this run's answers)."""
        if self.maybe_counted is None and counted is not None:
            self._settle(counted)

    def learn(self, counted: bool) -> bool:
        """The server showed whether maybes count; True when that is news."""
        self.probing = False
        news = self.maybe_counted is not counted or not self.learned
        self._settle(counted)
        self.learned = True
        return news

    def _settle(self, counted: bool) -> None:
        if counted:
            self._counted = collections.deque(heapq.merge(self._counted, self._maybe))
        self._maybe.clear()
        self.maybe_counted = counted

    # ------------------------------------------------------------------ windows
    def _stamps(self, definite: bool) -> t.Sequence[float]:
        if definite or not self._maybe:
            return self._counted
        return list(heapq.merge(self._counted, self._maybe))

    def prune(self, now: float) -> None:
        """Forget stamps older than every window."""
        longest = max((w.seconds + margin(w) for w in self.windows), default=0.0)
        for stamps in (self._counted, self._maybe):
            while stamps and stamps[0] <= now - longest:
                stamps.popleft()

    @staticmethod
    def _count_since(stamps: t.Sequence[float], since: float) -> int:
        count = 0
        for stamp in reversed(stamps):
            if stamp <= since:
                break
            count += 1
        return count

    def wait(self, now: float, *, definite: bool = False) -> float:
        """Seconds until every window has room for one more counted request.

        `definite`: count only requests that surely count (not the maybes).
        """
        self.prune(now)
        stamps = self._stamps(definite)
        wait = 0.0
        for window in self.windows:
            span = window.seconds + margin(window)
            if self._count_since(stamps, now - span) >= window.limit:
                # Room for one more once all but (limit - 1) stamps have expired.
                oldest = stamps[len(stamps) - window.limit]
                wait = max(wait, oldest + span - now)
        return wait

    def blocking(self, now: float) -> Window | None:
        """The first window that is full now."""
        stamps = self._stamps(False)
        for window in self.windows:
            if self._count_since(stamps, now - window.seconds - margin(window)) >= window.limit:
                return window
        return None

    def can_probe(self, now: float) -> bool:
        """Full only because of maybes, nothing known yet, no probe out: one may go."""
        return (
            self.maybe_counted is None
            and bool(self._maybe)
            and not self.probing
            and self.wait(now, definite=True) == 0
        )

    def awaiting_probe(self, now: float) -> bool:
        """A probe is out and only maybes fill the budget: wait for its answer, do not stop."""
        return self.probing and self.wait(now, definite=True) == 0

    def left(self, now: float, window: Window) -> int:
        """Requests `window` still allows now."""
        used = self._count_since(self._stamps(False), now - window.seconds - margin(window))
        return max(0, window.limit - used)

    def pad(self, now: float, window: Window, used: int) -> int:
        """The server counts `used` in `window`: add what other clients spent; how many."""
        ours = self._count_since(self._stamps(False), now - window.seconds)
        missing = used - ours
        if missing <= 0:
            return 0
        step = window.seconds / (missing + 1)
        synthetic = [now - window.seconds + step * (i + 1) for i in range(missing)]
        self._counted = collections.deque(sorted([*self._counted, *synthetic]))
        return missing
