"""Mixpanel's raw Export API: one request per date range, streamed and parsed line by line.

`GET {export base}/api/2.0/export?project_id=..&from_date=..&to_date=..[&event=..][&where=..]`
answers JSON lines, one event each: ``{"event": ..., "properties": {"time": <epoch s>,
"distinct_id": ..., "$insert_id": ..., ...}}``. A chunk can hold millions of
events, so the body is never held whole: it is read in 64 KB pieces, split on
newlines, decoded, turned into records and handed to `emit` in batches of
`BATCH_RECORDS`; `emit` blocks while the writer thread is behind (the fetcher's
bounded queue), which in turn stops the reading (TCP flow control).

Everything here runs on worker threads, inside the limiter slot of the request
(`ApiClient.request(..., stream=True)`). A line that is not JSON — typically the
last one of a body cut short — raises BadResponse, so the client retries the
whole chunk. Events emitted by the failed attempt are emitted again: duplicates
are harmless (the key is `insert_id`, the target upserts), gaps would not be.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import typing as t

import msgspec

from tap_mixpanel_profiles.engine.client import ApiClient, BadResponse, ClientError, object_field
from tap_mixpanel_profiles.engine.limiter import Window
from tap_mixpanel_profiles.engine.runtime import ApiSpec
from tap_mixpanel_profiles.errors import ConfigError

if t.TYPE_CHECKING:
    import requests

    from tap_mixpanel_profiles.events.dates import DateRange
    from tap_mixpanel_profiles.settings import Settings

#: Records per batch handed to the writer (bounded queue of batches per chunk).
BATCH_RECORDS = 500
#: Bytes read from the socket at a time.
READ_BYTES = 64 * 1024
#: `time` values above this are milliseconds, not seconds (1e11 s is the year 5138).
_MS_THRESHOLD = 100_000_000_000

#: Export API limits per project: 3 queries per second (pacing: always waited for).
EXPORT_QUERIES_PER_SECOND = 3

_decoder = msgspec.json.Decoder()


def export_api(settings: Settings) -> ApiSpec:
    """The raw Export API's limits: its own limiter, the same design as Engage's.

    events_max_workers in flight (Mixpanel: 100), events_queries_per_hour per quota
    window (stoppable, like Engage's) and 3 per second (pacing: always waits).
    """
    return ApiSpec(
        key="export",
        name="Mixpanel Export API",
        budget_name="Export",
        max_in_flight=settings.events_max_workers,
        windows=(
            Window(settings.events_queries_per_hour, settings.quota_window_seconds),
            Window(EXPORT_QUERIES_PER_SECOND, 1.0, stoppable=False),
        ),
    )


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def derived_insert_id(event: t.Any, properties: t.Any) -> str:
    """A deterministic id for an event served without `$insert_id`.

    sha1 (hex) of the canonical JSON of ``{"event": <name>, "properties": <properties>}``:
    keys sorted, no whitespace (separators ``,`` and ``:``), non-ASCII kept as UTF-8.
    The same event served twice gets the same id (the target keeps one row); two
    events that differ in any property (time, distinct_id, ...) get different ids.
    """
    canonical = json.dumps(
        {"event": event, "properties": properties},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha1(canonical.encode("utf-8"), usedforsecurity=False).hexdigest()


_identity = msgspec.json.Encoder()


def event_id(event: t.Any, distinct_id: t.Any, time: t.Any, insert_id: str) -> str:
    """The events table's key: Mixpanel's identity of an event.

    Mixpanel counts two exported events as one only when the event name, `distinct_id`,
    `time` and `$insert_id` are all equal (docs: event deduplication), so the key is the
    sha1 (hex) of the JSON array ``[name, distinct_id, time, insert_id]`` of the values as
    served (`insert_id` as the record carries it: served, or derived when missing). A
    repeat of an event gets its id again (one row); two events that share an `$insert_id`
    but differ in name, distinct_id or time get two. Never null, even when the served
    name, distinct_id or time is.
    """
    identity = _identity.encode([event, distinct_id, time, insert_id])
    return hashlib.sha1(identity, usedforsecurity=False).hexdigest()


class _TimeFormatter:
    """Epoch seconds → 'YYYY-MM-DDTHH:MM:SS+00:00', with a per-day cache (hot path)."""

    def __init__(self) -> None:
        self._days: dict[int, str] = {}

    def __call__(self, value: t.Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if abs(value) >= _MS_THRESHOLD:
            value = value / 1000
        if isinstance(value, float):
            if value != value or abs(value) > 1e11:  # NaN, inf
                return None
            if not value.is_integer():
                try:
                    return (_EPOCH + dt.timedelta(seconds=value)).isoformat()
                except OverflowError:
                    return None
            value = int(value)
        day, second = divmod(value, 86_400)
        prefix = self._days.get(day)
        if prefix is None:
            try:
                prefix = (_EPOCH + dt.timedelta(days=day)).strftime("%Y-%m-%dT")
            except OverflowError:
                return None
            self._days[day] = prefix
        return f"{prefix}{second // 3600:02d}:{second % 3600 // 60:02d}:{second % 60:02d}+00:00"


_format_time = _TimeFormatter()


def to_record(item: t.Any) -> tuple[dict[str, t.Any], bool, bool]:
    """One exported event → the stream's record.

    Returns (record, insert_id_was_derived, time_was_unusable). Raises BadResponse
    for a line that is JSON but not an event object.
    """
    if not isinstance(item, dict):
        raise BadResponse("a line is not a JSON object")
    if "event" not in item and "properties" not in item:
        # e.g. {"error": "..."} in a 200 body: not an event, never a record
        raise BadResponse(f"a line is not an event: {str(item.get('error', sorted(item)))[:200]}")
    props = object_field(item, "properties", "an event's properties")
    event = item.get("event")
    if event is not None and not isinstance(event, str):
        event = json.dumps(event) if isinstance(event, (dict, list)) else str(event)
    distinct_id = props.get("distinct_id")
    if distinct_id is not None and not isinstance(distinct_id, str):
        distinct_id = (
            json.dumps(distinct_id) if isinstance(distinct_id, (dict, list)) else str(distinct_id)
        )
    insert_id = props.get("$insert_id")
    derived = insert_id is None or insert_id == ""
    if derived:
        insert_id = derived_insert_id(item.get("event"), props)
    elif not isinstance(insert_id, str):
        insert_id = str(insert_id)
    raw_time = props.get("time")
    time = _format_time(raw_time)
    return (
        {
            "event_id": event_id(item.get("event"), props.get("distinct_id"), raw_time, insert_id),
            "event": event,
            "distinct_id": distinct_id,
            "time": time,
            "insert_id": insert_id,
            "properties": props,
        },
        derived,
        time is None and raw_time is not None,
    )


def iter_lines(response: requests.Response) -> t.Iterator[bytes]:
    """The body's non-empty lines, read READ_BYTES at a time (never the whole body).

    A last line without a trailing newline is yielded too (the decoder then
    decides whether it is a complete event or a truncated one).
    """
    pending: list[bytes] = []  # pieces of a line longer than one read (joined once)
    for piece in response.iter_content(READ_BYTES):
        if b"\n" not in piece:
            if piece:
                pending.append(piece)
            continue
        lines = piece.split(b"\n")
        if pending:
            pending.append(lines[0])
            lines[0] = b"".join(pending)
            pending = []
        tail = lines.pop()
        if tail:
            pending.append(tail)
        for line in lines:
            if line and not line.isspace():
                yield line
    line = b"".join(pending)
    if line and not line.isspace():
        yield line


class ExportStats:
    """Thread-safe counters across all chunks (attempts included)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.derived_insert_ids = 0
        self.bad_times = 0

    def add(self, derived: int, bad_times: int) -> None:
        with self._lock:
            self.derived_insert_ids += derived
            self.bad_times += bad_times


class ExportApi:
    """Fetches date ranges from the Export API through the shared ApiClient."""

    def __init__(
        self, client: ApiClient, settings: Settings, batch_records: int = BATCH_RECORDS
    ) -> None:
        self.client = client
        self.settings = settings
        self.batch_records = batch_records
        self.stats = ExportStats()

    def params(self, chunk: DateRange) -> dict[str, str]:
        """Query parameters of one export request."""
        s = self.settings
        params = {"project_id": s.project_id, **chunk.params()}
        if s.event_names:
            params["event"] = json.dumps(list(s.event_names))
        if s.events_where:
            params["where"] = s.events_where
        return params

    def fetch(
        self, chunk: DateRange, emit: t.Callable[[list[t.Any]], None], *, label: str | None = None
    ) -> int:
        """Stream one date range into `emit` (retries, limits and waits included).

        Returns the number of events of the attempt that succeeded. Raises
        ClientError for a 400 that names `to_date` (the caller may retry with an
        earlier day), ConfigError for any other 400, and whatever
        ApiClient.request raises.
        """
        label = label or f"events {chunk.label}"
        try:
            return self.client.request(
                "GET",
                self.settings.export_url,
                label=label,
                params=self.params(chunk),
                stream=True,
                handle=lambda response: self.stream_events(response, emit),
            )
        except ClientError as exc:
            if "to_date" in str(exc).lower():
                raise
            raise ConfigError(f"Mixpanel rejected the export query (400): {exc}") from exc

    def stream_events(
        self, response: requests.Response, emit: t.Callable[[list[t.Any]], None]
    ) -> int:
        """Parse the body line by line; emit records in batches as they are parsed."""
        batch: list[dict[str, t.Any]] = []
        rows = derived = bad_times = 0
        size = self.batch_records
        try:
            for number, line in enumerate(iter_lines(response), start=1):
                try:
                    item = _decoder.decode(line)
                except msgspec.DecodeError:
                    raise BadResponse(f"line {number} is not JSON (truncated body?)") from None
                record, was_derived, bad_time = to_record(item)
                derived += was_derived
                bad_times += bad_time
                batch.append(record)
                if len(batch) >= size:
                    rows += len(batch)
                    emit(batch)
                    batch = []
            if batch:
                rows += len(batch)
                emit(batch)
        finally:
            self.stats.add(derived, bad_times)
        return rows
