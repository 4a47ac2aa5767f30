"""HTTP requests with Mixpanel-aware retries, shared by every stream.

Why not the SDK's request path: it is built for one thread (one
`requests.Session`, metrics counters without locks), retries only with a fixed
backoff that ignores `Retry-After`, and does not retry truncated JSON bodies.
Here each worker thread gets its own `requests.Session`, every attempt goes
through the shared `QueryLimiter`, and every status is sorted into exactly one
of: success, retry (5xx, network, bad body), wait (429, which does not spend
the retry budget), or fatal (400/401/402/403).
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
import typing as t

import requests

from tap_mixpanel_profiles.engine.limiter import Grant, QueryLimiter
from tap_mixpanel_profiles.errors import (
    AuthError,
    Cancelled,
    FatalResponseError,
    PartitionFailed,
    QuotaExhausted,
)

T = t.TypeVar("T")

USER_AGENT = "tap-mixpanel-profiles (+singer-sdk)"
#: A closed client's sleeping workers notice within this many seconds.
CLOSE_POLL_SECONDS = 0.25
_CONCURRENT_RE = re.compile(r"(\d+)\s*/\s*(\d+)\s+queries running concurrently", re.I)
_HOURLY_RE = re.compile(r"(\d+)\s*/\s*(\d+)\s+queries running in the last hour", re.I)


class BadResponse(Exception):
    """A 200 whose body is unusable (truncated, not JSON, wrong shape): retried."""


def object_field(item: dict[str, t.Any], key: str, what: str) -> dict[str, t.Any]:
    """`item[key]` as a dict ({} when absent or null); BadResponse when it is not an object."""
    value = item.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadResponse(f"{what} is not an object")
    return value


class ClientError(Exception):
    """A 400 answer; the caller decides whether it is a config error or an expired session."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def server_error_text(response: requests.Response, limit: int = 300) -> str:
    """The `error` field of a Mixpanel error body, or the start of the raw body."""
    try:
        body = response.json()
        text = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        text = None
    if not text:
        text = response.text.strip() or response.reason or ""
    text = " ".join(str(text).split())
    return text[:limit] + ("…" if len(text) > limit else "")


def retry_after_seconds(response: requests.Response) -> float | None:
    """Parse `Retry-After` (delta-seconds or an HTTP date); None when absent or invalid."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - time.time())


class ApiClient:
    """Runs requests for one API (one limiter) from any number of threads."""

    def __init__(
        self,
        *,
        limiter: QueryLimiter,
        auth: tuple[str, str],
        timeout: float,
        max_retries: int,
        max_rate_limit_wait: float,
        backoff_base: float,
        backoff_max: float,
        redact: t.Callable[[str], str],
        logger: logging.Logger,
        api_name: str = "Mixpanel",
    ) -> None:
        self.limiter = limiter
        self.cancel = limiter.cancel
        self._auth = auth
        self._timeout = timeout
        self._max_retries = max_retries
        self._max_rate_wait = max_rate_limit_wait
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._redact = redact
        self._log = logger
        self._api = api_name
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self._closed = threading.Event()
        # This client's own figures (the limiter may be shared with other streams' clients).
        self.retries = 0
        self.rate_limited = 0
        self.requests = 0
        self._stats_lock = threading.Lock()

    # ----------------------------------------------------------------- sessions
    def _session(self) -> requests.Session:
        """One requests.Session per thread: Session is not safe to share across threads."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.auth = self._auth
            session.headers["User-Agent"] = USER_AGENT
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        """This stream is done: its stragglers stop at their next wait, its sessions close.

        Workers left behind by a stream that ended early (a fatal error in the writer
        thread) must not wake up an hour later and spend quota on pages nobody reads.
        The limiter itself stays open for the other streams that share it.
        """
        self._closed.set()
        with self._sessions_lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()

    # ------------------------------------------------------------------ request
    def request(
        self,
        method: str,
        url: str,
        *,
        label: str,
        handle: t.Callable[[requests.Response], T],
        params: dict[str, t.Any] | None = None,
        data: dict[str, t.Any] | None = None,
        counted: bool | None = True,
        stream: bool = False,
    ) -> T:
        """Send until `handle(response)` succeeds on a 200, or the page has failed.

        `handle` runs inside the limiter slot (the body is read while the query
        still counts as running) and raises BadResponse for an unusable body.
        Raises PartitionFailed, QuotaExhausted, Cancelled, ClientError, AuthError,
        FatalResponseError.
        """
        failures = 0
        rate_waited = 0.0
        rate_attempt = 0
        while True:
            if self.cancel.is_set():
                raise Cancelled
            delay: float | None = None
            problem = ""
            rate_wait = 0.0
            try:
                with self.limiter.slot(counted=counted, abort=self._closed) as grant:
                    with self._stats_lock:
                        self.requests += 1
                    started = self.limiter.now()
                    response = self._session().request(
                        method, url, params=params, data=data, timeout=self._timeout, stream=stream
                    )
                    try:
                        if response.status_code == 200:
                            self.limiter.admitted()
                            if grant.probe:  # admitted beyond the budget counting every maybe
                                self.limiter.learn(
                                    False, "a query beyond the budget that counts them was answered"
                                )
                            result = handle(response)
                            self.limiter.on_success()
                            return result
                        # Error bodies are small: read them before the connection is
                        # released, also when streaming (they name the error).
                        _ = response.content
                        if response.status_code == 429:
                            # Still holding the slot: the limiter sees this request as ours.
                            rate_attempt += 1
                            rate_wait = self._on_rate_limited(
                                response, rate_attempt, started, grant
                            )
                    finally:
                        response.close()
            except BadResponse as exc:
                problem = f"unusable response body ({exc})"
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,
            ) as exc:
                problem = f"network error ({type(exc).__name__})"
            else:
                status = response.status_code
                if status == 429:
                    wait = rate_wait
                    if rate_waited + wait > self._max_rate_wait:
                        raise PartitionFailed(
                            f"{label}: still rate limited after waiting {rate_waited:.0f} s "
                            f"(max_rate_limit_wait_seconds={self._max_rate_wait:g})"
                        )
                    rate_waited += wait
                    self._sleep(wait)
                    continue
                if status >= 500:
                    problem = f"HTTP {status}: {self._redact(server_error_text(response))}"
                    delay = retry_after_seconds(response)
                    if delay is not None:  # honoured, but never beyond the rate-limit wait bound
                        delay = min(delay, self._max_rate_wait)
                else:
                    self._raise_client_error(response, label)
            failures += 1
            with self._stats_lock:
                self.retries += 1
            if failures > self._max_retries:
                raise PartitionFailed(f"{label}: {problem}; gave up after {failures} attempts")
            if delay is None:
                delay = self._backoff(failures)
            self._log.warning(
                "%s: %s; retry %d/%d in %.1f s", label, problem, failures, self._max_retries, delay
            )
            self._sleep(delay)

    def _raise_client_error(self, response: requests.Response, label: str) -> t.NoReturn:
        status = response.status_code
        text = self._redact(server_error_text(response))
        if status == 401:
            raise AuthError(f"{self._api} rejected the credentials (401): {text}")
        if status == 403:
            raise AuthError(f"{self._api} denied access to the project (403): {text}")
        if status == 402:
            raise AuthError(
                f"{self._api} answered 402: this API is not available on the "
                f"project's plan ({text})"
            )
        if status == 400:
            raise ClientError(status, text)
        raise FatalResponseError(f"{label}: unexpected HTTP {status}: {text}")

    def _on_rate_limited(
        self, response: requests.Response, attempt: int, started: float, grant: Grant
    ) -> float:
        """Learn from a 429 and return how long to wait before the next attempt."""
        with self._stats_lock:
            self.rate_limited += 1
        text = server_error_text(response, limit=500)
        retry_after = retry_after_seconds(response)
        hourly = _HOURLY_RE.search(text)
        concurrent = _CONCURRENT_RE.search(text)
        used, limit = (int(hourly.group(1)), int(hourly.group(2))) if hourly else (0, 0)
        assumed_exempt = self.limiter.maybe_counted is False and not self.limiter.maybe_learned
        if 0 < limit <= used and (grant.probe or (grant.requested == "maybe" and assumed_exempt)):
            # A probe (or a request an earlier run found exempt) met the hourly limit:
            # requests that may count do count. Learned before aligning, so that they
            # are in our own count.
            self.limiter.learn(True, f"the server counted {used}/{limit} in the last hour")
        if limit > 0:
            # Every 429 reports the hour's usage: align the budget, whatever the cause.
            self.limiter.align_with_server(used, limit)
        if 0 < limit <= used:
            room = self.limiter.seconds_until_room()
            if self.limiter.on_exhausted == "stop":
                raise QuotaExhausted(resume_at=time.time() + max(room, retry_after or 0.0))
            # Wait mode: the limiter now blocks until the aligned window has room;
            # only honour an explicit Retry-After here.
            return retry_after if retry_after is not None else min(self._backoff(attempt), 5.0)
        if concurrent:
            self.limiter.on_concurrency_limited(
                int(concurrent.group(1)), int(concurrent.group(2)), started_at=started
            )
        else:
            self.limiter.on_concurrency_limited(None, None, started_at=started)
        return retry_after if retry_after is not None else self._backoff(attempt)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter (spreads retries of parallel workers)."""
        ceiling = min(self._backoff_max, self._backoff_base * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)

    def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once on cancellation (SIGTERM) and soon after `close()`."""
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            if self._closed.is_set() or self.limiter.closed:
                raise Cancelled
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.cancel.wait(min(left, CLOSE_POLL_SECONDS)):
                raise Cancelled
