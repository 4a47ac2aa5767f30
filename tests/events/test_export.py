"""The Export API client: request form, line-by-line parsing, retries, and flat memory.

In-process with requests-mock; the streaming test feeds a lazily generated body
through the real ApiClient + PartitionedFetcher with a slow consumer and checks,
structurally, that the parser is never more than the fetcher's queue bound ahead
of the writer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import threading
import time
import typing as t
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tap_mixpanel_profiles.engine.client import BadResponse
from tap_mixpanel_profiles.engine.fetcher import PartitionedFetcher
from tap_mixpanel_profiles.engine.runtime import Runtime
from tap_mixpanel_profiles.errors import ConfigError, PartitionFailed
from tap_mixpanel_profiles.events.dates import DateRange
from tap_mixpanel_profiles.events.export import (
    ExportApi,
    derived_insert_id,
    event_id,
    export_api,
    iter_lines,
    to_record,
)
from tap_mixpanel_profiles.settings import Settings
from tests.helpers.engage_fake import base_config

LOG = logging.getLogger("test-export")
EXPORT_URL = "https://data.mixpanel.com/api/2.0/export"
JAN = DateRange(dt.date(2024, 1, 1), dt.date(2024, 1, 7))


def make_api(batch_records: int = 500, **config: t.Any) -> ExportApi:
    settings = Settings.from_config(base_config(**config), LOG)
    return ExportApi(
        Runtime(settings, LOG).client(export_api(settings)), settings, batch_records=batch_records
    )


def line(i: int, **props: t.Any) -> bytes:
    event = {
        "event": "Page View",
        "properties": {
            "time": 1704067200 + i,
            "distinct_id": f"u{i}",
            "$insert_id": f"id-{i}",
            **props,
        },
    }
    return json.dumps(event, ensure_ascii=False).encode() + b"\n"


def collect(api: ExportApi, chunk: DateRange = JAN) -> list[dict[str, t.Any]]:
    out: list[dict[str, t.Any]] = []
    api.fetch(chunk, out.extend)
    return out


# ------------------------------------------------------------------------------ records
def test_record_shape_and_time_in_utc():
    record, derived, bad_time = to_record(
        {
            "event": "Purchase",
            "properties": {
                "time": 1709251199,
                "distinct_id": "user-1",
                "$insert_id": "abc",
                "amount": 9.5,
            },
        }
    )
    assert record == {
        "event_id": event_id("Purchase", "user-1", 1709251199, "abc"),
        "event": "Purchase",
        "distinct_id": "user-1",
        "time": "2024-02-29T23:59:59+00:00",
        "insert_id": "abc",
        "properties": {
            "time": 1709251199,
            "distinct_id": "user-1",
            "$insert_id": "abc",
            "amount": 9.5,
        },
    }
    assert list(record) == ["event_id", "event", "distinct_id", "time", "insert_id", "properties"]
    assert not derived and not bad_time


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, "1970-01-01T00:00:00+00:00"),
        (1704067200.0, "2024-01-01T00:00:00+00:00"),
        (1704067200.25, "2024-01-01T00:00:00.250000+00:00"),
        (1704067200123, "2024-01-01T00:00:00.123000+00:00"),  # milliseconds
        ("1704067200", None),
        (True, None),
        (None, None),
        (float("nan"), None),
    ],
)
def test_time_values(raw: t.Any, expected: str | None):
    record, _, bad_time = to_record({"event": "e", "properties": {"time": raw, "$insert_id": "x"}})
    assert record["time"] == expected
    assert bad_time == (expected is None and raw is not None)


def test_distinct_ids_and_names_become_strings():
    record, _, _ = to_record({"event": 7, "properties": {"distinct_id": 12345, "$insert_id": 99}})
    assert (record["event"], record["distinct_id"], record["insert_id"]) == ("7", "12345", "99")
    record, _, _ = to_record({"event": "e", "properties": {"$insert_id": "x"}})
    assert record["distinct_id"] is None and record["time"] is None


def test_derived_insert_id_is_the_documented_sha1_of_canonical_json():
    props = {"time": 1, "distinct_id": "ü", "b": [1, {"y": 2, "x": 1}], "a": None}
    record, derived, _ = to_record({"event": "Añadir", "properties": props})
    canonical = (
        '{"event":"Añadir","properties":'
        '{"a":null,"b":[1,{"x":1,"y":2}],"distinct_id":"ü","time":1}}'
    )
    assert derived
    assert record["insert_id"] == hashlib.sha1(canonical.encode()).hexdigest()
    assert record["insert_id"] == derived_insert_id("Añadir", dict(reversed(list(props.items()))))
    assert derived_insert_id("Añadir", {**props, "time": 2}) != record["insert_id"]
    assert to_record({"event": "e", "properties": {"$insert_id": ""}})[1], "empty counts as missing"


def test_event_id_is_mixpanels_identity_of_an_event():
    """Name, distinct_id, time and $insert_id all equal: one event (Mixpanel's dedup rule)."""
    base = {"time": 1709251199, "distinct_id": "user-1", "$insert_id": "order-7", "amount": 1}

    def key(event: t.Any, **changes: t.Any) -> str:
        return str(to_record({"event": event, "properties": {**base, **changes}})[0]["event_id"])

    same = key("Order Placed")
    assert key("Order Placed", amount=2) == same, "a repeat (other property values) is one row"
    assert key("Order Paid") != same, "another name with the same $insert_id: two events"
    assert key("Order Placed", distinct_id="user-2") != same
    assert key("Order Placed", time=1709251200) != same
    assert key("Order Placed", **{"$insert_id": "order-8"}) != same
    canonical = '["Order Placed","user-1",1709251199,"order-7"]'
    assert same == hashlib.sha1(canonical.encode()).hexdigest(), "the documented form"
    bare = to_record({"event": None, "properties": {}})[0]
    assert bare["event_id"] and bare["distinct_id"] is None, "never null"


@pytest.mark.parametrize(
    "item",
    [
        [1, 2],
        "text",
        3,
        {"event": "e", "properties": [1]},
        {"error": "export terminated early"},
        {},
    ],
)
def test_lines_that_are_not_events_are_bad_responses(item: t.Any):
    with pytest.raises(BadResponse):
        to_record(item)


# ------------------------------------------------------------------------------ lines
class Pieces:
    """A stand-in response whose body arrives in the given pieces."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def iter_content(self, size: int) -> t.Iterator[bytes]:
        return iter(self.pieces)


def test_lines_split_across_reads_and_long_lines():
    body = line(1) + line(2, blob="x" * 200_000) + b"\r\n\n  \n" + line(3).rstrip(b"\n")
    for size in (1, 7, 4096, len(body)):
        pieces = [body[i : i + size] for i in range(0, len(body), size)]
        lines = list(iter_lines(t.cast("requests.Response", Pieces(pieces))))
        assert [json.loads(x)["properties"]["distinct_id"] for x in lines] == ["u1", "u2", "u3"]


# ------------------------------------------------------------------------- requests
def test_request_form(requests_mock: t.Any):
    requests_mock.get(EXPORT_URL, content=line(1) + line(2))
    api = make_api(event_names=["Sign Up", "Ünï"], events_where='properties["$os"] == "iOS"')
    assert [r["insert_id"] for r in collect(api)] == ["id-1", "id-2"]
    sent = requests_mock.last_request
    assert sent.method == "GET"
    query = {k: v[0] for k, v in parse_qs(urlsplit(sent.url).query).items()}
    assert query == {
        "project_id": "4242",
        "from_date": "2024-01-01",
        "to_date": "2024-01-07",
        "event": '["Sign Up", "\\u00dcn\\u00ef"]',
        "where": 'properties["$os"] == "iOS"',
    }
    assert json.loads(query["event"]) == ["Sign Up", "Ünï"]
    assert sent.headers["Authorization"].startswith("Basic ")


def test_region_and_override_choose_the_export_host():
    assert (
        Settings.from_config(base_config(region="eu"), LOG).export_url
        == "https://data-eu.mixpanel.com/api/2.0/export"
    )
    assert (
        Settings.from_config(base_config(region="in"), LOG).export_url
        == "https://data-in.mixpanel.com/api/2.0/export"
    )
    assert (
        Settings.from_config(base_config(export_api_url="http://127.0.0.1:9/x/"), LOG).export_url
        == "http://127.0.0.1:9/x/api/2.0/export"
    )


def test_empty_body_is_an_empty_chunk(requests_mock: t.Any):
    requests_mock.get(EXPORT_URL, content=b"")
    assert collect(make_api()) == []


def test_truncated_last_line_is_retried_and_the_whole_chunk_redelivered(requests_mock: t.Any):
    good = line(1) + line(2) + line(3)
    requests_mock.get(
        EXPORT_URL,
        [
            {"content": line(1) + line(2) + line(3)[:25]},
            {"content": b"<html>oops</html>\n"},
            {"content": good},
        ],
    )
    api = make_api(batch_records=1)
    records = collect(api)
    assert requests_mock.call_count == 3 and api.client.retries == 2
    # The failed attempts' events were emitted before the cut: re-delivered, never lost.
    assert [r["insert_id"] for r in records] == ["id-1", "id-2", "id-1", "id-2", "id-3"]


def test_5xx_and_network_errors_retried(requests_mock: t.Any):
    requests_mock.get(
        EXPORT_URL,
        [
            {"status_code": 502, "text": "<html>bad gateway</html>"},
            {"exc": requests.exceptions.ChunkedEncodingError},
            {"exc": requests.ConnectionError},
            {"content": line(1)},
        ],
    )
    assert len(collect(make_api(max_retries=3))) == 1


def test_retries_exhausted_fail_the_chunk(requests_mock: t.Any):
    requests_mock.get(EXPORT_URL, status_code=500, json={"error": "boom"})
    with pytest.raises(PartitionFailed, match=r"2024-01-01\.\.2024-01-07"):
        collect(make_api(max_retries=1))


def test_a_400_is_a_config_error_naming_the_server_text(requests_mock: t.Any):
    requests_mock.get(EXPORT_URL, status_code=400, json={"error": "bad where: ¿?"})
    with pytest.raises(ConfigError, match="bad where"):
        collect(make_api())


# ---------------------------------------------------------------- streaming, flat memory
class LazyBody(io.RawIOBase):
    """A body of `total` event lines generated on demand; counts the lines handed out."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.produced = 0
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: t.Any) -> int:
        while len(self._buffer) < len(buffer) and self.produced < self.total:
            self._buffer += line(self.produced)
            self.produced += 1
        n = min(len(buffer), len(self._buffer))
        buffer[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def test_a_huge_chunk_streams_with_bounded_look_ahead(requests_mock: t.Any, monkeypatch: t.Any):
    """The parser never runs more than the fetcher's queue bound ahead of a slow writer."""
    monkeypatch.setattr("tap_mixpanel_profiles.events.export.READ_BYTES", 4096)
    total, batch, queue_batches = 60_000, 200, 3
    bodies: list[LazyBody] = []

    def respond(request: t.Any, context: t.Any) -> LazyBody:
        bodies.append(LazyBody(total))
        return bodies[-1]

    requests_mock.get(EXPORT_URL, body=respond)
    api = make_api(batch_records=batch)
    fetcher = PartitionedFetcher(
        api.fetch, workers=1, cancel=threading.Event(), queue_batches=queue_batches, poll=0.05
    )
    consumed = ahead_max = batches = 0
    line_bytes = len(line(total))
    for item in fetcher.run([JAN]):
        if item.records is None:
            assert item.error is None
            continue
        batches += 1
        consumed += len(item.records)
        ahead_max = max(ahead_max, bodies[0].produced - consumed)
        if batches % 25 == 0:
            time.sleep(0.02)  # a slow writer: the worker must block, not buffer
    assert consumed == total and batches == total // batch
    # queued batches + the batch in the worker's hands + one read of lines not yet batched
    bound = (queue_batches + 2) * batch + 4096 // line_bytes + 2 + 8192 // line_bytes
    assert ahead_max <= bound, (ahead_max, bound)
    assert bound < total / 20, "the bound must be far below the chunk size"
