"""Rate limits, fault dice and counters of the Mixpanel simulator.

These are the parts the tap is benchmarked against, so they model what the tap must cope with:
Mixpanel's Query API allows 5 concurrent queries and 60 per hour per project and answers 429
with a message that states both usages. Everything here is thread-safe (one lock per object);
the HTTP server runs one thread per connection.
"""

from __future__ import annotations

import random
import threading
import time
import typing as t
from collections import Counter, deque
from dataclasses import dataclass

if t.TYPE_CHECKING:
    from .config import SimulatorConfig

__all__ = [
    "ENDPOINTS",
    "FAULT_KINDS",
    "Admission",
    "FaultDice",
    "FaultRates",
    "RateLimiter",
    "Stats",
]

FAULT_KINDS = ("5xx", "reset", "truncated", "slow", "expired")


@dataclass(frozen=True)
class Admission:
    """Outcome of :meth:`RateLimiter.admit`.

    ``concurrent`` includes the request itself; ``hourly`` is the window's count including the
    request unless it is exempt (a session page under ``session_requests_exempt``), so a 429's
    "N/LIMIT queries running in the last hour" tells a client whether session pages counted.
    """

    ok: bool
    cause: str | None  # None, "concurrent" or "hourly"
    concurrent: int
    hourly: int
    counted: bool  # whether the request was added to the sliding window
    exempt: bool  # a session request that the window ignores (session_requests_exempt)

    def message(self, cfg: SimulatorConfig) -> str:
        """The 429 error text, worded like Mixpanel's."""
        return (
            f"Query rate limit exceeded for project_id: {cfg.project_id}. "
            f"{self.concurrent}/{cfg.concurrency_limit} queries running concurrently and "
            f"{self.hourly}/{cfg.hourly_limit} queries running in the last hour. "
            "Please try again later."
        )


class RateLimiter:
    """Concurrency limit plus a sliding-window count (the 'hourly' limit, window configurable).

    A request holds a concurrency slot from admission until :meth:`release`; rejected requests
    never hold one. Which requests enter the window is configurable (``count_rejected``,
    ``session_requests_exempt``) because Mixpanel's exact accounting is undocumented and the
    tap must be robust to either choice.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._window: deque[float] = deque()

    def admit(self, cfg: SimulatorConfig, has_session: bool) -> Admission:
        """Admit or reject one Query API request. Requests without a session (page 0, cohorts
        list) always count; with ``session_requests_exempt`` those with one never do."""
        exempt = cfg.session_requests_exempt and has_session
        with self._lock:
            now = time.monotonic()
            cutoff = now - cfg.window_seconds
            window = self._window
            while window and window[0] <= cutoff:
                window.popleft()
            concurrent = self._running + 1
            hourly = len(window) + (0 if exempt else 1)
            cause = None
            if 0 < cfg.concurrency_limit < concurrent:
                cause = "concurrent"
            elif not exempt and 0 < cfg.hourly_limit < hourly:
                cause = "hourly"
            counted = not exempt and (cause is None or cfg.count_rejected)
            if counted:
                window.append(now)
            if cause is None:
                self._running += 1
            return Admission(cause is None, cause, concurrent, hourly, counted, exempt)

    def release(self) -> None:
        with self._lock:
            self._running -= 1

    def window_count(self, cfg: SimulatorConfig) -> int:
        with self._lock:
            cutoff = time.monotonic() - cfg.window_seconds
            return sum(1 for t in self._window if t > cutoff)

    def reset(self) -> None:
        """Forget the sliding window (running requests keep their slots)."""
        with self._lock:
            self._window.clear()


class FaultRates(t.Protocol):
    """The rates :meth:`FaultDice.draw` reads (a :class:`SimulatorConfig`, or export's view)."""

    @property
    def fault_5xx(self) -> float: ...
    @property
    def fault_reset(self) -> float: ...
    @property
    def fault_truncated(self) -> float: ...
    @property
    def fault_slow(self) -> float: ...


class FaultDice:
    """Deterministic fault draws: ``random.Random(seed)`` consumed in request-arrival order."""

    def __init__(self, seed: int) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed * 1_000_003 + 17)

    def draw(self, cfg: FaultRates) -> tuple[str | None, int, bool]:
        """``(fault, status_for_5xx, slow)``; fault is None, "5xx", "reset" or "truncated"."""
        with self._lock:
            r, pick, s = self._rng.random(), self._rng.randrange(3), self._rng.random()
        fault = None
        if r < cfg.fault_5xx:
            fault = "5xx"
        elif r < cfg.fault_5xx + cfg.fault_reset:
            fault = "reset"
        elif r < cfg.fault_5xx + cfg.fault_reset + cfg.fault_truncated:
            fault = "truncated"
        return fault, (500, 502, 503)[pick], s < cfg.fault_slow

    def uniform(self, high: float) -> float:
        """A draw in ``[0, high)``; 0.0 without consuming the dice when ``high <= 0``."""
        if high <= 0:
            return 0.0
        with self._lock:
            return self._rng.random() * high


ENDPOINTS = ("engage", "cohorts_list", "engage_properties", "export")


class Stats:
    """Counters served by ``GET /_stats``.

    ``requests`` counts Engage requests (user and group profiles); ``requests_by_endpoint`` has
    every endpoint. ``in_flight``/``max_in_flight`` gauge Query API requests (Engage and the
    cohorts list: they share the concurrency limit), ``export_*`` the Export API's own.
    ``hourly_counted`` requests entered the hourly window, ``hourly_exempt`` ones did not because
    they carried a session_id under ``session_requests_exempt``.
    """

    _COUNTERS = (
        "requests",
        "rate_limited_concurrent",
        "rate_limited_hourly",
        "hourly_counted",
        "hourly_exempt",
        "rows_served",
        "pages_served",
        "sessions_created",
        "page0_requests",
        # raw export (simulator.export): its own requests, limits and faults
        "export_requests",
        "export_served",
        "events_served",
        "export_client_errors",
        "export_rate_limited_concurrent",
        "export_rate_limited_hourly",
        "export_rate_limited_second",
        "export_fault_5xx",
        "export_fault_reset",
        "export_fault_truncated",
        "export_fault_slow",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._export_in_flight = 0
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._counters = dict.fromkeys(self._COUNTERS, 0)
            self._by_status: Counter[str] = Counter()
            self._faults = dict.fromkeys(FAULT_KINDS, 0)
            self._by_endpoint = dict.fromkeys(ENDPOINTS, 0)
            self._by_data_group: Counter[str] = Counter()
            self._max_in_flight = self._in_flight
            self._export_max_in_flight = self._export_in_flight

    def enter(self, endpoint: str = "engage") -> None:
        """A Query API request arrived (counted before auth and limits: concurrency as the server
        sees it). ``endpoint`` is "engage", "cohorts_list" or "engage_properties"."""
        with self._lock:
            if endpoint == "engage":
                self._counters["requests"] += 1
            self._by_endpoint[endpoint] += 1
            self._in_flight += 1
            if self._in_flight > self._max_in_flight:
                self._max_in_flight = self._in_flight

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def export_enter(self) -> None:
        """An export request arrived (own in-flight gauge: the Export API has its own limits)."""
        with self._lock:
            self._counters["export_requests"] += 1
            self._by_endpoint["export"] += 1
            self._export_in_flight += 1
            self._export_max_in_flight = max(self._export_max_in_flight, self._export_in_flight)

    def export_leave(self) -> None:
        with self._lock:
            self._export_in_flight -= 1

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] += n

    def data_group(self, data_group_id: str) -> None:
        """An Engage request named this data_group_id (as sent)."""
        with self._lock:
            self._by_data_group[data_group_id] += 1

    def status(self, code: int) -> None:
        with self._lock:
            self._by_status[str(code)] += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def served(self, rows: int) -> None:
        with self._lock:
            self._counters["pages_served"] += 1
            self._counters["rows_served"] += rows

    def snapshot(self) -> dict[str, t.Any]:
        with self._lock:
            return {
                **self._counters,
                "requests_by_endpoint": dict(self._by_endpoint),
                "data_group_requests": dict(self._by_data_group),
                "by_status": dict(self._by_status),
                "faults": dict(self._faults),
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "export_in_flight": self._export_in_flight,
                "export_max_in_flight": self._export_max_in_flight,
            }
