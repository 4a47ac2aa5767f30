"""The simulator's HTTP server and :class:`MixpanelSimulator` (the command line: :mod:`.cli`).

Standard library only, loopback only. It reproduces what makes the real API hard to extract from:
page-0 sessions, a page-size cap, 5-concurrent / 60-per-hour limits answered with 429, flaky
answers (5xx, connection resets, truncated bodies, slow answers, expiring sessions) and awkward
data. See ``SimulatorConfig`` for every knob and ``EngageEngine`` (:mod:`.engage`) for the
request semantics.

Python::

    with MixpanelSimulator(SimulatorConfig(profiles=5000, latency=0.1)) as sim:
        requests.post(sim.url + "/api/query/engage", params={"project_id": "12345"},
                      auth=("sim-user", "sim-secret"), data={"page_size": 500})

Shell::

    python -m tap_mixpanel_profiles.simulator --profiles 50000 --latency 0.5

Endpoints (GET or POST; parameters in the query string or a form body):

* ``/api/query/engage``, legacy ``/api/2.0/engage``: user profiles, or with ``data_group_id``
  a data group's profiles; ``filter_by_cohort`` for a cohort's members (see :mod:`.engage`).
* ``/api/query/cohorts/list``, legacy ``/api/2.0/cohorts/list``: every cohort, one JSON array
  (see :mod:`.cohorts`); a Query API call with Engage's auth, limits, latency and faults.
* ``GET /api/2.0/export``: Mixpanel's raw export, streamed JSON lines of deterministic events
  whose distinct_ids are the simulated profiles; own limits and faults (see :mod:`.export`).
* ``GET /_stats``, ``POST /_stats/reset`` and ``POST /_faults`` (JSON object of runtime fields,
  like ``set_faults``): the simulator's own controls; none of them need auth.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import socket
import struct
import sys
import threading
import typing as t
from collections.abc import Callable
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .cohorts import MissingDatagroup
from .config import SimulatorConfig
from .data import TS_FORMAT, ProfileRecord, format_ts, gc_paused, now_utc_str, parse_now
from .engage import EngageEngine
from .export import EXPORT_PATH, ExportEngine
from .properties import PROPERTIES_PATHS, property_listing
from .replies import Reply, error_reply
from .users import generate_profiles

__all__ = ["COHORTS_LIST_PATHS", "ENGAGE_PATHS", "MixpanelSimulator", "SimulatorConfig"]

ENGAGE_PATHS = frozenset({"/api/query/engage", "/api/2.0/engage"})
COHORTS_LIST_PATHS = frozenset({"/api/query/cohorts/list", "/api/2.0/cohorts/list"})


class _Server(ThreadingHTTPServer):
    """Threaded server that tracks open connections so ``stop`` can sever keep-alive clients."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], engine: EngageEngine, verbose: bool) -> None:
        super().__init__(address, _Handler)
        self.engine = engine
        self.verbose = verbose
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        self.export: ExportEngine | None = None

    def process_request(self, request: t.Any, client_address: t.Any) -> None:
        # http.server writes headers and body separately: without TCP_NODELAY, Nagle and
        # delayed ACKs hold every response ~40 ms on loopback (real APIs do not).
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: t.Any) -> None:
        with self.conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: t.Any, client_address: t.Any) -> None:
        """Clients that hang up (timeouts, resets) are routine here: no tracebacks for them."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, OSError)):
            return
        super().handle_error(request, client_address)

    def sever_connections(self) -> None:
        with self.conn_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """Thin HTTP layer: parse the request, delegate to the engine, write the reply."""

    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: the tap reuses connections per worker thread
    server_version = "MixpanelSimulator/1.0"
    timeout = 120  # idle keep-alive connections eventually free their thread

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def log_message(self, format: str, *args: t.Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        try:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        except (ValueError, OSError):
            self.close_connection = True
            return
        engine = self.server.engine
        if path in ENGAGE_PATHS or path in COHORTS_LIST_PATHS or path in PROPERTIES_PATHS:
            endpoint, answer = (
                ("engage", engine.engage)
                if path in ENGAGE_PATHS
                else ("cohorts_list", engine.cohorts_list)
                if path in COHORTS_LIST_PATHS
                else ("engage_properties", engine.engage_properties)
            )
            engine.stats.enter(endpoint)
            try:
                self._query_api(answer, method, url.query, body)
            finally:
                engine.stats.leave()
        elif path == EXPORT_PATH and self.server.export is not None:
            self.server.export.serve(self, method, url.query)
        elif path == "/_stats" and method == "GET":
            self._json(200, self.server.engine.stats_snapshot())
        elif path == "/_stats/reset" and method == "POST":
            engine.stats.reset()
            self._json(200, {"status": "ok"})
        elif path == "/_faults" and method == "POST":
            try:
                changes = json.loads(body or b"{}")
                self.server.engine.set_config(**changes)
            except (ValueError, TypeError) as exc:
                self.send_reply(error_reply(400, str(exc)))
            else:
                self._json(200, {"status": "ok"})
        else:
            self.send_reply(error_reply(404, f"no such endpoint: {method} {path}"))

    def _query_api(
        self,
        answer: Callable[[dict[str, str], str | None], Reply],
        method: str,
        query: str,
        body: bytes,
    ) -> None:
        """Parameters from the query string and (POST) the form body, then ``answer``."""
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        if method == "POST" and body:
            try:
                form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            except UnicodeDecodeError:
                self.server.engine.stats.status(400)
                self.send_reply(error_reply(400, "request body is not valid UTF-8"))
                return
            params.update({k: v[0] for k, v in form.items()})
        self.send_reply(answer(params, self.headers.get("Authorization")))

    def _json(self, status: int, payload: t.Any) -> None:
        self.send_reply(Reply(status, json.dumps(payload).encode()))

    def send_reply(self, reply: Reply) -> None:
        """Write ``reply`` (or abort the connection for a reset fault)."""
        if reply.action == "reset":
            self.abort()
            return
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", f"{reply.content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            for chunk in reply.chunks():
                self.wfile.write(chunk)
        except (ConnectionError, TimeoutError, OSError):
            self.close_connection = True

    def abort(self) -> None:
        """Close with RST (SO_LINGER 0) and no answer: the client sees a connection reset."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


class MixpanelSimulator:
    """Owns the data set, the engine and the server thread. Usable as a context manager."""

    def __init__(
        self, config: SimulatorConfig | None = None, *, verbose: bool = False, **overrides: t.Any
    ) -> None:
        # replace() re-runs validation and gives us a private copy the caller cannot mutate.
        self._config = dataclasses.replace(config or SimulatorConfig(), **overrides)
        cfg = self._config
        self.now = format_ts(parse_now(cfg.now))
        records = generate_profiles(
            cfg.profiles, cfg.seed, parse_now(self.now), cfg.realistic, cfg.wide_properties
        )
        self.engine = EngageEngine(cfg, records, parse_now(self.now))
        self.export = ExportEngine(self.engine)
        self.verbose = verbose
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._touch_calls: dict[int | None, int] = {}

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> MixpanelSimulator:
        if self._server is not None:
            return self
        cfg = self.engine.config
        self._server = _Server((cfg.host, cfg.port), self.engine, self.verbose)
        self._server.export = self.export
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="mixpanel-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.sever_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> MixpanelSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------------------- accessors
    @property
    def config(self) -> SimulatorConfig:
        """The configuration currently in force (a copy; use ``set_faults`` to change it)."""
        return dataclasses.replace(self.engine.config)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.engine.config.host}:{self.port}"

    @property
    def profiles(self) -> list[dict[str, t.Any]]:
        """Every profile exactly as served (fresh copies decoded from the served JSON), in order.

        Decoded in one ``json.loads`` with the cyclic GC paused: ~3x faster on 100 000+ profiles.
        """
        return _decode(self.engine.records)

    def group_profiles(self, data_group_id: int) -> list[dict[str, t.Any]]:
        """Every profile of a data group as Engage serves it with ``data_group_id``, in order.

        Raises KeyError for a data_group_id that is not configured (``data_groups``).
        """
        dataset = self.engine.dataset(data_group_id)
        if dataset is None:
            raise KeyError(
                f"no data group {data_group_id} (data_groups={self._config.data_groups!r})"
            )
        return _decode(dataset.records)

    def property_listing(self, data_group_id: int | None = None) -> list[tuple[str, int, str]]:
        """(name, count, type) of every property, as the property-schema endpoint lists them."""
        dataset = self.engine.dataset(data_group_id)
        if dataset is None:
            raise KeyError(f"no data group {data_group_id}")
        return property_listing(dataset.records)

    def cohorts(self) -> list[dict[str, t.Any]]:
        """The cohorts list exactly as ``/api/query/cohorts/list`` serves it."""
        listing: list[dict[str, t.Any]] = json.loads(
            json.dumps(self.engine.cohorts.listing(self.engine.config.project_id))
        )
        return listing

    def cohort_members(
        self, cohort_id: int, include_all_users: bool = True
    ) -> list[dict[str, t.Any]]:
        """A cohort's members as Engage serves them with ``filter_by_cohort``, in order.

        Raises KeyError for an unknown cohort or one whose data group is missing (404).
        """
        spec = self.engine.cohorts.get(cohort_id)
        if spec is None:
            raise KeyError(f"no cohort {cohort_id}")
        try:
            return _decode(self.engine.cohorts.members(spec, include_all_users))
        except MissingDatagroup as exc:
            raise KeyError(str(exc)) from None

    def stats(self) -> dict[str, t.Any]:
        return self.engine.stats_snapshot()

    def reset_stats(self) -> None:
        self.engine.stats.reset()

    def reset_limits(self) -> None:
        """Empty the sliding 'hourly' windows (e.g. between benchmark runs)."""
        self.engine.limiter.reset()
        self.export.limits.reset()

    def events(
        self, from_date: str | date, to_date: str | date, **filters: t.Any
    ) -> list[dict[str, t.Any]]:
        """Every distinct event ``/api/2.0/export`` serves for the days (filters: event, where)."""
        return self.export.events(from_date, to_date, **filters)

    def set_faults(self, **changes: t.Any) -> None:
        """Change runtime fields (fault rates, limits, latency, page sizes...) while running."""
        self.engine.set_config(**changes)

    def touch_profiles(
        self,
        n: int,
        when: str | datetime | None = None,
        *,
        data_group_id: int | None = None,
        properties: dict[str, t.Any] | None = None,
    ) -> list[str]:
        """Set ``$last_seen`` of ``n`` deterministically chosen profiles; return their distinct_ids.

        ``when`` defaults to the current UTC time, but never earlier than the data set's ``now``,
        so touched profiles are always the most recently seen (what incremental tests need).
        Successive calls choose different (seeded) samples. Open sessions keep their snapshots.
        ``data_group_id`` touches that data group's profiles instead of the user profiles;
        ``properties`` are set on the touched profiles too (a property new to the project, say).
        """
        if isinstance(when, datetime):
            if when.tzinfo is not None:
                when = when.astimezone(timezone.utc).replace(tzinfo=None)
            when = when.strftime(TS_FORMAT)
        stamp = when or max(now_utc_str(), self.now)
        dataset = self.engine.dataset(data_group_id)
        if dataset is None:
            raise KeyError(f"no data group {data_group_id}")
        calls = self._touch_calls.get(data_group_id, 0)
        self._touch_calls[data_group_id] = calls + 1
        label = "" if data_group_id is None else f"group:{data_group_id}:"
        rng = random.Random(f"{self._config.seed}:touch:{label}{calls}")
        records = dataset.records
        chosen = sorted(rng.sample(range(len(records)), min(n, len(records))))
        changes = {**(properties or {}), "$last_seen": stamp}
        updated = [records[i].with_properties(**changes) for i in chosen]
        self.engine.replace_records(updated, data_group_id)
        return [r.distinct_id for r in updated]


def _decode(records: list[ProfileRecord]) -> list[dict[str, t.Any]]:
    """The records' served JSON, decoded in one ``json.loads`` with the cyclic GC paused."""
    blob = b"[" + b",".join(record.json for record in records) + b"]"
    with gc_paused():
        decoded: list[dict[str, t.Any]] = json.loads(blob)
    return decoded
