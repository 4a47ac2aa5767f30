"""The fast record path and the buffered writer produce what the SDK would, in the same order."""

from __future__ import annotations

import datetime as dt
import io
import json
import sys
import typing as t

import pytest
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.singerlib import RecordMessage, StateMessage

from tap_mixpanel_profiles.engine import records as fast_records
from tap_mixpanel_profiles.engine.records import (
    BufferedMsgSpecWriter,
    FastRecordsStream,
    RecordLine,
    _write_all,
    conformance_is_identity,
)
from tap_mixpanel_profiles.profiles.engage import to_record
from tap_mixpanel_profiles.profiles.stream import PROFILE_SCHEMA
from tap_mixpanel_profiles.tap import TapMixpanelProfiles
from tests.helpers.engage_fake import make_profiles


class _Stdout:
    """sys.stdout stand-in with a binary buffer."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def flush(self) -> None:
        pass

    def lines(self) -> list[dict[str, t.Any]]:
        return [json.loads(line) for line in self.buffer.getvalue().splitlines()]


def test_profile_schema_conformance_is_identity() -> None:
    assert conformance_is_identity(PROFILE_SCHEMA)
    with_bool = {"properties": {"flag": {"type": ["boolean", "null"]}}}
    assert not conformance_is_identity(with_bool)
    nested = {"properties": {"p": {"type": "object", "properties": {"a": {"type": "string"}}}}}
    assert not conformance_is_identity(nested)


def _messages(stream: t.Any, records: list[dict]) -> list[dict]:
    out = []
    for record in records:
        for message in stream._generate_record_messages(json.loads(json.dumps(record))):
            data = message.to_dict()
            data.pop("time_extracted", None)
            out.append(data)
    return out


def test_fast_path_equals_the_sdk_path(config: dict) -> None:
    records = [to_record(p)[0] for p in make_profiles(50)]
    records.append({"distinct_id": "x", "last_seen": None, "properties": {"f": 1.5, "n": None}})
    fast = TapMixpanelProfiles(config=config).streams["profiles"]
    slow = TapMixpanelProfiles(config=config).streams["profiles"]
    slow.fast_record_path = False
    assert _messages(fast, records) == _messages(slow, records)
    assert fast._fast_keys is not None and slow._fast_keys is None


def test_deselected_property_falls_back_to_the_sdk_path(config: dict) -> None:
    tap = TapMixpanelProfiles(config=config)
    catalog = tap.catalog_dict
    for entry in catalog["streams"]:
        for meta in entry["metadata"]:
            if meta["breadcrumb"] == ["properties", "properties"]:
                meta["metadata"]["selected"] = False
    stream = TapMixpanelProfiles(config=config, catalog=catalog).streams["profiles"]
    record = to_record(make_profiles(1)[0])[0]
    [message] = list(stream._generate_record_messages(record))
    assert "properties" not in message.record and message.record["distinct_id"]
    assert stream._fast_keys is None


def test_writer_flushes_records_before_state(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _Stdout()
    monkeypatch.setattr(sys, "stdout", out)
    writer = BufferedMsgSpecWriter()
    now = dt.datetime.now(dt.timezone.utc)
    for i in range(3):
        writer.write_message(RecordMessage(stream="profiles", record={"distinct_id": str(i)}))
        writer.write_message(RecordLine.make("profiles", {"distinct_id": f"{i}b"}, None, now))
    assert out.buffer.getvalue() == b"", "small RECORD batches stay buffered"
    writer.write_message(StateMessage(value={"bookmarks": {"profiles": {"n": 3}}}))
    assert [m["type"] for m in out.lines()] == ["RECORD"] * 6 + ["STATE"]
    assert [m["record"]["distinct_id"] for m in out.lines()[:6]] == [
        "0",
        "0b",
        "1",
        "1b",
        "2",
        "2b",
    ]


def test_writer_bytes_equal_the_sdk_writers_time_extracted_included(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = _Stdout()
    monkeypatch.setattr(sys, "stdout", out)
    writer = BufferedMsgSpecWriter()
    same = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)
    later = dt.datetime(2024, 5, 6, 9, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    messages = [
        RecordMessage(stream="s", record={"a": i, "b": {"c": "é"}}, time_extracted=when)
        for i, when in enumerate([same, same, later, None, same])
    ] + [RecordMessage(stream="s", record={"a": 9}, version=1700000000, time_extracted=same)]
    lines = [
        RecordLine.make("s", {"a": 1, "é": [1.5, None]}, None, same),
        RecordLine.make("s", {"a": 2}, 1700000000, same),
    ]
    for message in [*messages, *lines]:
        writer.write_message(message)
    writer.flush()
    as_sdk = [
        RecordMessage(stream=m.stream, record=m.record, version=m.version, time_extracted=same)
        for m in lines
    ]
    expected = b"".join(bytes(MsgSpecWriter().serialize_message(m)) for m in messages + as_sdk)
    assert out.buffer.getvalue() == expected
    assert lines[0].to_dict() == as_sdk[0].to_dict() and lines[0].type == as_sdk[0].type


def test_writer_flushes_when_the_buffer_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _Stdout()
    monkeypatch.setattr(sys, "stdout", out)
    writer = BufferedMsgSpecWriter()
    big = "x" * 1000
    for i in range(BufferedMsgSpecWriter.flush_bytes // 1000 + 2):
        writer.write_message(
            RecordMessage(stream="profiles", record={"distinct_id": str(i), "v": big})
        )
    assert len(out.lines()) > 0
    writer.flush()
    assert len(out.lines()) == BufferedMsgSpecWriter.flush_bytes // 1000 + 2


def test_write_all_survives_short_writes() -> None:
    class Short:
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, view: memoryview) -> int:
            chunk = bytes(view[:7])  # at most 7 bytes per call, like an interrupted pipe write
            self.data += chunk
            return len(chunk)

    sink = Short()
    payload = bytearray(b'{"type":"RECORD"}\n' * 100)
    _write_all(sink, payload)  # type: ignore[arg-type]
    assert bytes(sink.data) == bytes(payload)


def test_relaxed_gc_restores_the_threshold() -> None:
    import gc

    before = gc.get_threshold()
    with fast_records.relaxed_gc(50_000):
        assert gc.get_threshold()[0] >= 50_000
    assert gc.get_threshold() == before
    assert issubclass(
        type(
            TapMixpanelProfiles(
                config={"project_id": "1", "api_secret": "fast-records-secret"}
            ).streams["profiles"]
        ),
        FastRecordsStream,
    )
