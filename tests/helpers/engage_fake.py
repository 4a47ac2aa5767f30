"""A small, deterministic fake of Mixpanel's Engage query API for the unit tests.

One `EngageFake` answers Engage requests (page 0 opens a session, later pages
need its `session_id`), records every request it saw, and can inject faults
per page. It plugs into requests-mock (`install`) for in-process tests, or into
a loopback stdlib HTTP server (`serve_http`) for tests that run the console
script in a subprocess, which cannot see requests-mock.

Kept independent of the project's own simulator on purpose: the unit tests
should not depend on the code they are checking against.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import threading
import time
import typing as t
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BASE_URL = "https://mixpanel.com"
ENGAGE_PATH = "/api/query/engage"
ENGAGE_URL = BASE_URL + ENGAGE_PATH

SA_USER = "sa-user.test"
SA_SECRET = "SA-SECRET-7f3c9e1b"
API_SECRET = "API-SECRET-d41d8cd9"
SESSION_ID = "sess-1234567890"


def base_config(**overrides: t.Any) -> dict[str, t.Any]:
    """A valid tap config (service account auth) with fast retry settings."""
    config: dict[str, t.Any] = {
        "project_id": "4242",
        "service_account_username": SA_USER,
        "service_account_secret": SA_SECRET,
        "page_size": 10,
        "max_retries": 2,
        "backoff_base_seconds": 0.001,
        "backoff_max_seconds": 0.005,
        # Today's table: tests of typed columns set "all" (tests/profiles/test_typed_columns.py).
        "property_columns": "none",
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def make_profiles(n: int) -> list[dict[str, t.Any]]:
    """`n` profiles in a stable order: user-00000, user-00001, ..."""
    profiles = []
    for i in range(n):
        props: dict[str, t.Any] = {
            "$email": f"u{i}@example.com",
            "n": i,
            "nested": {"plan": "pro" if i % 2 else "free", "tags": [i]},
        }
        if i % 7 != 3:  # some profiles never had $last_seen
            props["$last_seen"] = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00"
        profiles.append({"$distinct_id": f"user-{i:05d}", "$properties": props})
    return profiles


@dataclasses.dataclass
class Reply:
    """A canned answer: status, body (dict → JSON, str → raw text), headers, delay."""

    status: int = 200
    body: t.Any = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0


@dataclasses.dataclass
class SeenRequest:
    """One request the fake received."""

    page: int
    form: dict[str, str]
    query: dict[str, str]
    authorization: str | None
    thread: int


class EngageFake:
    """Serves `len(profiles)` profiles, `served_page_size` per page at most.

    * `served_page_size`: the server-side cap on the page size (None: serve what is asked).
    * `delay`: seconds to sleep per request, or a callable page -> seconds.
    * `total_on_every_page`: echo `total` on later pages too (real Mixpanel: page 0 only).
    * `fail(page, *replies)`: the next requests for `page` get these replies, in order.
    * `fail_always(page, reply)`: every request for `page` gets `reply`.
    """

    def __init__(
        self,
        profiles: list[dict[str, t.Any]] | int = 0,
        *,
        served_page_size: int | None = None,
        session_id: str = SESSION_ID,
        delay: float | t.Callable[[int], float] = 0.0,
        total_on_every_page: bool = False,
        expected_auth: tuple[str, str] | None = (SA_USER, SA_SECRET),
    ) -> None:
        self.profiles = make_profiles(profiles) if isinstance(profiles, int) else profiles
        self.served_page_size = served_page_size
        self.session_id = session_id
        self.delay = delay
        self.total_on_every_page = total_on_every_page
        self.expected_auth = expected_auth
        self.requests: list[SeenRequest] = []
        self._faults: dict[int, list[Reply]] = {}
        self._always: dict[int, Reply] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------- set-up
    def fail(self, page: int, *replies: Reply) -> EngageFake:
        self._faults.setdefault(page, []).extend(replies)
        return self

    def fail_always(self, page: int, reply: Reply) -> EngageFake:
        self._always[page] = reply
        return self

    def install(self, mocker: t.Any, base_url: str = BASE_URL) -> EngageFake:
        """Answer POST {base_url}/api/query/engage through a requests-mock Mocker."""
        mocker.post(base_url + ENGAGE_PATH, content=self._requests_mock_callback)
        return self

    # -------------------------------------------------------------- queries
    def pages_requested(self) -> list[int]:
        with self._lock:
            return [r.page for r in self.requests]

    def requests_for(self, page: int) -> list[SeenRequest]:
        with self._lock:
            return [r for r in self.requests if r.page == page]

    @property
    def total(self) -> int:
        return len(self.profiles)

    def page_count(self, requested: int) -> int:
        size = self._served(requested)
        return max(1, -(-self.total // size))

    def expected_ids(self) -> list[str]:
        return [p["$distinct_id"] for p in self.profiles]

    # ------------------------------------------------------------- handling
    def _served(self, requested: int) -> int:
        return min(requested, self.served_page_size or requested)

    def handle(
        self, query: dict[str, str], form: dict[str, str], authorization: str | None
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one Engage request: (status, headers, body bytes)."""
        try:
            page = int(form.get("page", "0"))
        except ValueError:
            page = -1
        with self._lock:
            self.requests.append(
                SeenRequest(page, dict(form), dict(query), authorization, threading.get_ident())
            )
            reply = self._always.get(page)
            if reply is None and self._faults.get(page):
                reply = self._faults[page].pop(0)
        delay = self.delay(page) if callable(self.delay) else self.delay
        if delay:
            time.sleep(delay)
        if reply is not None:
            if reply.delay:
                time.sleep(reply.delay)
            return self._encode(reply)
        if self.expected_auth is not None and authorization != _basic(*self.expected_auth):
            return self._encode(Reply(401, {"error": "Invalid credentials"}))
        if not query.get("project_id"):
            return self._encode(Reply(400, {"error": "project_id is required"}))
        if page < 0:
            return self._encode(Reply(400, {"error": "invalid page"}))
        if page > 0 and form.get("session_id") != self.session_id:
            return self._encode(Reply(400, {"error": "session_id is required for page > 0"}))
        requested = int(form.get("page_size", "1000"))
        size = self._served(requested)
        rows = self.profiles[page * size : (page + 1) * size]
        body: dict[str, t.Any] = {
            "page": page,
            "page_size": size,
            "session_id": self.session_id,
            "status": "ok",
            "results": rows,
        }
        if page == 0 or self.total_on_every_page:
            body["total"] = self.total
        return self._encode(Reply(200, body))

    @staticmethod
    def _encode(reply: Reply) -> tuple[int, dict[str, str], bytes]:
        body = reply.body
        if body is None:
            data = b""
        elif isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
        return reply.status, {"Content-Type": "application/json", **reply.headers}, data

    def _requests_mock_callback(self, request: t.Any, context: t.Any) -> bytes:
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        raw = request.body or ""
        if isinstance(raw, bytes):
            raw = raw.decode()
        form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        status, headers, data = self.handle(query, form, request.headers.get("Authorization"))
        context.status_code = status
        context.headers.update(headers)
        return data


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def parse_form(text: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


@contextlib.contextmanager
def serve_http(fake: EngageFake) -> t.Iterator[str]:
    """Serve `fake` on a loopback port; yields the base URL (for `api_url`)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            parts = urlsplit(self.path)
            if parts.path != ENGAGE_PATH:
                self.send_error(404)
                return
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            status, headers, data = fake.handle(
                query, parse_form(body), self.headers.get("Authorization")
            )
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: t.Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
