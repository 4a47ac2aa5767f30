"""The simulator's raw Export API: ``GET /api/2.0/export``, streamed JSON lines.

Semantics (after Mixpanel's): the same auth as engage; ``from_date``/``to_date`` inclusive
``YYYY-MM-DD`` days in the project timezone (``export_timezone``); 400 when one is missing or
malformed, when from > to, or when to_date is later than the project's today; optional ``event``
(JSON list of names) and ``where`` (the engage expression language, over event properties).
Its own limits (concurrent, per export window, per second: 429 with a Mixpanel-like message)
and faults (5xx, a stream reset mid-body, a body ending in a cut line, slow answers).

The data is deterministic: the events of a day depend only on (seed, day), so tests can compute
exactly what a range holds (:meth:`ExportEngine.events`). Each event's ``distinct_id`` is a
simulated profile's ``$distinct_id``; some events have no ``$insert_id``, some are served twice
(Mixpanel's export can repeat an event), some share their ``$insert_id``, ``distinct_id`` and
``time`` with an event of another name (two events to Mixpanel: ``export_insert_id_twins``);
values are awkward (unicode, quotes, newlines, nesting, big integers, nulls, a ~100 KB string
now and then).
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import math
import random
import threading
import time
import typing as t
import zoneinfo
from collections.abc import Iterator, Mapping
from urllib.parse import parse_qs

from .limits import FaultDice
from .replies import error_reply, server_error
from .request import authenticate
from .where import WhereError, compile_where

if t.TYPE_CHECKING:
    from .config import SimulatorConfig
    from .engage import EngageEngine
    from .server import _Handler

__all__ = ["EXPORT_PATH", "ExportEngine"]

EXPORT_PATH = "/api/2.0/export"
WRITE_BYTES = 64 * 1024
BIG_EVERY = 250  # events 7, 257, ... of a day carry a ~100 KB string (longer than one read)

_NAMES = [
    "Sign Up",
    "Page View",
    "Purchase",
    "Añadir al carrito 🛒",
    'Clicked "Buy"',
    "app\\open",
    "$mp_web_page_view",
    "Level Complete",
    "注文完了",
    "Search",
]
_OS = ["iOS", "Android", "Mac OS X", "Windows", "Linux", None]
_CITIES = ["Berlin", "São Paulo", "東京", "Zürich", "Москва", None]
_NOTES = [
    'says "hi"',
    "multi\nline",
    "tab\tsep",
    "emoji 🎉",
    "",
    "back\\slash",
    "null",
    "\u2028sep",
]


class _Limits:
    """Concurrent, per-window and per-second caps, decided atomically per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._window: collections.deque[float] = collections.deque()
        self._second: collections.deque[float] = collections.deque()

    def admit(self, cfg: SimulatorConfig) -> tuple[str | None, str]:
        """(None, "") when admitted (a slot is held until release), else (cause, 429 message)."""
        with self._lock:
            now = time.monotonic()
            for queue, span in ((self._window, cfg.export_window_seconds), (self._second, 1.0)):
                while queue and queue[0] <= now - span:
                    queue.popleft()
            running, hourly, second = (
                self._running + 1,
                len(self._window) + 1,
                len(self._second) + 1,
            )
            cause = None
            if 0 < cfg.export_concurrency_limit < running:
                cause = "concurrent"
            elif 0 < cfg.export_hourly_limit < hourly:
                cause = "hourly"
            elif 0 < cfg.export_per_second_limit < second:
                cause = "second"
            if cause is None:
                self._running += 1
                self._window.append(now)
                self._second.append(now)
            message = (
                f"Export rate limit exceeded for project_id: {cfg.project_id}. "
                f"{running}/{cfg.export_concurrency_limit} queries running concurrently, "
                f"{second}/{cfg.export_per_second_limit} queries in the last second and "
                f"{hourly}/{cfg.export_hourly_limit} queries running in the last hour."
            )
            return cause, message

    def release(self) -> None:
        with self._lock:
            self._running -= 1

    def reset(self) -> None:
        with self._lock:
            self._window.clear()
            self._second.clear()


class _BadRequest(Exception):
    pass


class ExportEngine:
    """Answers export requests for one simulated project (shares auth, config and stats)."""

    def __init__(self, engine: EngageEngine) -> None:
        self.engine = engine
        self.limits = _Limits()
        self.dice = FaultDice(engine.config.seed + 7)
        self.distinct_ids = [r.distinct_id for r in engine.records]

    # -------------------------------------------------------------------------------- data
    def today(self, cfg: SimulatorConfig | None = None) -> dt.date:
        """The project's today (``export_today``, else the current date in export_timezone)."""
        cfg = cfg or self.engine.config
        if cfg.export_today:
            return dt.date.fromisoformat(cfg.export_today)
        return dt.datetime.now(zoneinfo.ZoneInfo(cfg.export_timezone)).date()

    def day_events(
        self, day: dt.date, cfg: SimulatorConfig | None = None
    ) -> list[tuple[dict[str, t.Any], int]]:
        """The events of one day with how often each is served (1, or 2 for a repeat)."""
        cfg = cfg or self.engine.config
        today = self.today(cfg)
        if day > today or day < today - dt.timedelta(days=cfg.events_history_days):
            return []
        rng = random.Random(f"{cfg.seed}:events:{day.isoformat()}")
        per_day = cfg.events_per_day
        count = per_day if per_day < 4 else rng.randint(per_day * 3 // 4, per_day * 5 // 4)
        tz = zoneinfo.ZoneInfo(cfg.export_timezone)
        start = int(dt.datetime.combine(day, dt.time(), tzinfo=tz).timestamp())
        end = int(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=tz).timestamp())
        ids = self.distinct_ids
        out = []
        for i in range(count):
            props: dict[str, t.Any] = {
                "time": start + rng.randrange(end - start),
                "distinct_id": ids[rng.randrange(len(ids))]
                if ids
                else f"anon-{rng.randrange(1000)}",
            }
            if rng.random() >= cfg.export_missing_insert_id:
                props["$insert_id"] = f"{rng.getrandbits(128):032x}"
            props.update(
                {
                    "$os": _OS[rng.randrange(len(_OS))],
                    "$city": _CITIES[rng.randrange(len(_CITIES))],
                    "mp_processing_time_ms": props["time"] * 1000 + rng.randrange(86_400_000),
                    "seq": f"{day.isoformat()}#{i}",
                    "amount": round(rng.random() * 500, 2) if rng.random() < 0.5 else None,
                    "big_int": rng.getrandbits(62),
                    "flag": rng.random() < 0.5,
                    "note": _NOTES[rng.randrange(len(_NOTES))],
                    "items": [
                        {"sku": f"sku-{rng.randrange(100)}", "qty": rng.randrange(1, 4)}
                        for _ in range(rng.randrange(3))
                    ],
                    "nested": {"a": {"b": [1, "two", None]}, "empty": {}},
                }
            )
            if i % BIG_EVERY == 7:
                props["blob"] = ('ünïcödé "quoted" \\ 🎉 ' * 4000)[:100_000]
            name = rng.randrange(len(_NAMES))
            event = {"event": _NAMES[name], "properties": props}
            out.append((event, 2 if rng.random() < cfg.export_duplicates else 1))
            if "$insert_id" in props and rng.random() < cfg.export_insert_id_twins:
                # Another event with the same $insert_id, distinct_id and time (a server-side
                # import reusing an order id): Mixpanel counts it as a second event.
                twin = {**props, "seq": f"{day.isoformat()}#{i}b"}
                out.append(({"event": _NAMES[(name + 1) % len(_NAMES)], "properties": twin}, 1))
        return out

    def events(
        self,
        from_date: str | dt.date,
        to_date: str | dt.date,
        event: list[str] | None = None,
        where: str | None = None,
    ) -> list[dict[str, t.Any]]:
        """Every distinct event the export serves for the range (repeats not repeated)."""
        first, last = (
            d if isinstance(d, dt.date) else dt.date.fromisoformat(d) for d in (from_date, to_date)
        )
        predicate = compile_where(where)
        names = set(event) if event is not None else None
        return [
            json.loads(json.dumps(e))
            for day in _days(first, last)
            for e, _ in self.day_events(day)
            if (names is None or e["event"] in names)
            and (predicate is None or predicate(e["properties"]))
        ]

    # ---------------------------------------------------------------------------- requests
    def serve(self, handler: _Handler, method: str, query: str) -> None:
        """Answer one export request on `handler` (streams the body)."""
        stats = self.engine.stats
        stats.export_enter()
        try:
            self._serve(handler, method, query)
        finally:
            stats.export_leave()

    def _serve(self, handler: _Handler, method: str, query: str) -> None:
        cfg, stats = self.engine.config, self.engine.stats
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        if method != "GET":
            stats.add("export_client_errors")
            handler.send_reply(error_reply(405, "the export API answers GET only"))
            return
        denied = authenticate(cfg, params, handler.headers.get("Authorization"))
        if denied is not None:
            stats.add("export_client_errors")
            handler.send_reply(denied)
            return
        cause, message = self.limits.admit(cfg)
        if cause is not None:
            stats.add(f"export_rate_limited_{cause}")
            headers = (
                {"Retry-After": str(math.ceil(cfg.retry_after))}
                if cfg.retry_after is not None
                else {}
            )
            handler.send_reply(error_reply(429, message, **headers))
            return
        try:
            self._admitted(handler, cfg, params)
        finally:
            self.limits.release()

    def _admitted(self, handler: _Handler, cfg: SimulatorConfig, params: Mapping[str, str]) -> None:
        stats = self.engine.stats
        fault, status_5xx, slow = self.dice.draw(_FaultView(cfg))
        time.sleep(cfg.export_latency + (cfg.slow_seconds if slow else 0.0))
        if slow:
            stats.add("export_fault_slow")
        try:
            first, last, lines = self._query(cfg, params)
        except _BadRequest as exc:
            stats.add("export_client_errors")
            handler.send_reply(error_reply(400, str(exc)))
            return
        fail_dates = {d.strip() for d in cfg.export_fail_dates.split(",") if d.strip()}
        if fault == "5xx" or any(day.isoformat() in fail_dates for day in _days(first, last)):
            stats.add("export_fault_5xx")
            handler.send_reply(server_error(status_5xx if fault == "5xx" else 500))
            return
        self._stream(handler, lines, fault)

    def _query(
        self, cfg: SimulatorConfig, params: Mapping[str, str]
    ) -> tuple[dt.date, dt.date, Iterator[bytes]]:
        first, last = _date_param(params, "from_date"), _date_param(params, "to_date")
        if first > last:
            raise _BadRequest(f"from_date {first} is after to_date {last}")
        today = self.today(cfg)
        if last > today:
            raise _BadRequest(
                f"to_date {last} is later than today ({today} in the project timezone "
                f"{cfg.export_timezone})"
            )
        names = None
        if params.get("event"):
            try:
                names = json.loads(params["event"])
            except ValueError:
                names = None
            if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                raise _BadRequest("event must be a JSON array of event names")
        try:
            predicate = compile_where(params.get("where"))
        except WhereError as exc:
            raise _BadRequest(f"Invalid where expression: {exc}") from None
        wanted = set(names) if names is not None else None

        def lines() -> Iterator[bytes]:
            for day in _days(first, last):
                repeats = []
                for event, times in self.day_events(day, cfg):
                    if (wanted is None or event["event"] in wanted) and (
                        predicate is None or predicate(event["properties"])
                    ):
                        line = json.dumps(event, ensure_ascii=False).encode() + b"\n"
                        yield line
                        if times > 1:
                            repeats.append(line)
                yield from repeats  # Mixpanel's export can repeat an event, later in the body

        return first, last, lines()

    def _stream(self, handler: _Handler, lines: Iterator[bytes], fault: str | None) -> None:
        """Chunked JSON lines. With a fault, line ``cut_at`` (or the last one) is cut in half:
        a reset then aborts the connection, a truncation ends the body there cleanly."""
        stats = self.engine.stats
        cut_at = None
        if fault in ("reset", "truncated"):
            cut_at = 1 + int(self.dice.uniform(1.0) * 50)
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json; charset=utf-8")
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            buffer, served, previous = bytearray(), 0, None
            for line in lines:
                if previous is not None:
                    buffer += previous
                    served += 1
                    if len(buffer) >= WRITE_BYTES:
                        _write_chunk(handler, bytes(buffer))
                        buffer.clear()
                previous = line
                if cut_at is not None and served >= cut_at:
                    break
            if previous is not None and cut_at is not None:
                buffer += previous[: max(1, len(previous) // 2)]
                stats.add(f"export_fault_{fault}")
                if fault == "reset":
                    _write_chunk(handler, bytes(buffer))
                    handler.abort()
                    return
            elif previous is not None:
                buffer += previous
                served += 1
            stats.add("export_served")  # before the last bytes: a client may read stats at once
            stats.add("events_served", served)
            _write_chunk(handler, bytes(buffer))
            handler.wfile.write(b"0\r\n\r\n")
        except (ConnectionError, TimeoutError, OSError):
            handler.close_connection = True


class _FaultView:
    """The export fault rates under the names FaultDice reads."""

    def __init__(self, cfg: SimulatorConfig) -> None:
        self.fault_5xx, self.fault_reset = cfg.export_fault_5xx, cfg.export_fault_reset
        self.fault_truncated, self.fault_slow = cfg.export_fault_truncated, cfg.export_fault_slow


def _write_chunk(handler: _Handler, data: bytes) -> None:
    if data:
        handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


def _days(first: dt.date, last: dt.date) -> Iterator[dt.date]:
    day = first
    while day <= last:
        yield day
        day += dt.timedelta(days=1)


def _date_param(params: Mapping[str, str], name: str) -> dt.date:
    raw = params.get(name)
    if not raw:
        raise _BadRequest(f"{name} is required (YYYY-MM-DD)")
    try:
        if len(raw) != 10:
            raise ValueError
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be a date YYYY-MM-DD, got {raw!r}") from None
