"""The fast record path and the buffered writer produce what the SDK would, in the same order."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import sys
import typing as t

import pytest
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.singerlib import RecordMessage, StateMessage

from tap_mixpanel_profiles.engine import records as fast_records
from tap_mixpanel_profiles.engine.records import (
    BufferedMsgSpecWriter,
    FastRecordsStream,
    _write_all,
    conformance_is_identity,
    record_framing,
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


_TIME_EXTRACTED = re.compile(rb',"time_extracted":"[^"]*"')


def _lines(stream: t.Any, records: list[dict], out: _Stdout) -> list[bytes]:
    """The RECORD lines `stream` writes for `records`, without their time_extracted."""
    out.buffer.seek(0)
    out.buffer.truncate()
    stream.new_batch()
    for record in records:
        stream._write_record_message(json.loads(json.dumps(record)))
    stream.owner.message_writer.flush()
    return [_TIME_EXTRACTED.sub(b"", line) for line in out.buffer.getvalue().splitlines()]


def test_fast_path_writes_the_sdk_paths_bytes(
    config: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _Stdout()
    monkeypatch.setattr(sys, "stdout", out)
    records = [to_record(p)[0] for p in make_profiles(50)]
    records.append({"distinct_id": "x", "last_seen": None, "properties": {"f": 1.5, "n": None}})
    records.append({"distinct_id": 'é"record":{}', "last_seen": None, "properties": {}})
    fast = TapMixpanelProfiles(config=config).streams["profiles"]
    slow = TapMixpanelProfiles(config=config).streams["profiles"]
    slow.fast_record_path = False
    fast_lines, slow_lines = _lines(fast, records, out), _lines(slow, records, out)
    assert len(fast_lines) == len(records) and fast_lines == slow_lines
    assert fast._fast_keys is not None and slow._fast_keys is None


def test_a_deselected_column_is_dropped_on_the_fast_path_as_the_sdk_would(
    config: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _Stdout()
    monkeypatch.setattr(sys, "stdout", out)
    tap = TapMixpanelProfiles(config=config)
    catalog = tap.catalog_dict
    for entry in catalog["streams"]:
        for meta in entry["metadata"]:
            if meta["breadcrumb"] == ["properties", "properties"]:
                meta["metadata"]["selected"] = False
    stream = TapMixpanelProfiles(config=config, catalog=catalog).streams["profiles"]
    slow = TapMixpanelProfiles(config=config, catalog=catalog).streams["profiles"]
    slow.fast_record_path = False
    records = [to_record(p)[0] for p in make_profiles(20)]
    lines = _lines(stream, records, out)
    assert lines == _lines(slow, records, out) and len(lines) == 20
    record = json.loads(lines[0])["record"]
    assert "properties" not in record and record["distinct_id"]
    assert stream._fast_keys == {"distinct_id", "last_seen"}, "(columns only: still fast)"


def test_a_stream_without_children_builds_no_child_contexts(config: dict) -> None:
    stream = TapMixpanelProfiles(config=config).streams["profiles"]
    assert not stream.child_streams
    assert list(stream.generate_child_contexts({"distinct_id": "a"}, None)) == []


def test_writer_flushes_records_before_state(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _Stdout()
    monkeypatch.setattr(sys, "stdout", out)
    writer = BufferedMsgSpecWriter()
    framing = record_framing("profiles", None, dt.datetime.now(dt.timezone.utc))
    for i in range(3):
        writer.write_message(RecordMessage(stream="profiles", record={"distinct_id": str(i)}))
        writer.write_record(framing, {"distinct_id": f"{i}b"})
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


@pytest.mark.parametrize("stream", ["s", 'odd "record":{} name', "ü"])
def test_writer_bytes_equal_the_sdk_writers_time_extracted_included(
    monkeypatch: pytest.MonkeyPatch, stream: str
) -> None:
    out = _Stdout()
    monkeypatch.setattr(sys, "stdout", out)
    writer = BufferedMsgSpecWriter()
    same = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)
    later = dt.datetime(2024, 5, 6, 9, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    messages = [
        RecordMessage(stream=stream, record={"a": i, "b": {"c": "é"}}, time_extracted=when)
        for i, when in enumerate([same, same, later, None, same])
    ] + [RecordMessage(stream=stream, record={"a": 9}, version=1700000000, time_extracted=same)]
    framed = [
        (None, {"a": 1, "é": [1.5, None], "record": {}}),
        (1700000000, {"a": 2}),
        (None, {}),
    ]
    for message in messages:
        writer.write_message(message)
    for version, record in framed:
        writer.write_record(record_framing(stream, version, same), record)
    writer.flush()
    as_sdk = [
        RecordMessage(stream=stream, record=record, version=version, time_extracted=same)
        for version, record in framed
    ]
    expected = b"".join(bytes(MsgSpecWriter().serialize_message(m)) for m in messages + as_sdk)
    assert out.buffer.getvalue() == expected


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
                config={
                    "project_id": "1",
                    "api_secret": "fast-records-secret",
                    "property_columns": "none",
                }
            ).streams["profiles"]
        ),
        FastRecordsStream,
    )
