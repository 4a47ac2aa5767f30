"""A faster record path for streams whose records are already conformant.

Profiling the tap at latency 0 (`bench/run.py --only 3`) showed the main thread
spending most of its time in three SDK steps per record, none of which change
a profile record:

* `pop_deselected_record_properties` walks every nested key of `properties`
  (about 30 per profile) looking each up in the selection mask — with nothing
  deselected it removes nothing;
* `conform_record_data_types` rebuilds the record and the `properties` dict;
  for a schema without booleans, arrays or declared nested properties, and
  values that are str/int/bool/None/dict/list, it returns an equal dict;
* the message writer does a `write` + `flush` system call per message.

And the cyclic garbage collector, at its default gen-0 threshold of 700, ran
every few hundred allocations while workers decoded 1 MB pages, re-scanning
the pages in flight: about a quarter of the process's CPU. Records are acyclic
JSON trees, freed by reference counting; `relaxed_gc` raises the threshold
while a stream syncs.

`FastRecordsStream` skips the first two only when that is provably a no-op
(decided once per stream, checked per record), and otherwise falls back to the
SDK's own record path (the hook itself is in `sdk_hooks`). A fast record is
written as one `encode_into` between bytes made once per batch
(`record_framing`): no message object, message dict or timestamp encoding per
record, and the SDK's bytes. `BufferedMsgSpecWriter` writes the same bytes as
`MsgSpecWriter`, but flushes stdout every ~64 KB and before/with every
non-RECORD message, so a STATE line is never on stdout before the records it
covers. Together with the SDK's per-record child-context work skipped for a
stream without children, these took the writer thread from about 5.5 to 3.6 µs
a profile beyond decoding (`bench/run.py --only 3`: 1.85 -> 1.67 CPU-s for
100 000 realistic profiles, back to back).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import gc
import sys
import typing as t

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecWriter, encoder
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib import RecordMessage
from typing_extensions import override

from tap_mixpanel_profiles.engine.sdk_hooks import (
    StreamHooks,
    schema_is_boolean,
    schema_is_list,
    schema_is_object,
)

if t.TYPE_CHECKING:
    from singer_sdk.singerlib.encoding.simple import Message

#: Top-level value types that the SDK's conformance returns unchanged (given a
#: schema that passes `conformance_is_identity`). Floats are left out on purpose
#: (NaN/inf become null), as are datetimes, dates, bytes, Decimals.
_PLAIN_TYPES: frozenset[type] = frozenset({str, int, bool, type(None), dict, list, msgspec.Raw})
#: The same with floats, for a stream with typed columns: their producer's floats come from
#: a JSON decode (msgspec rejects NaN and infinities), which conformance passes unchanged.
_TYPED_TYPES: frozenset[type] = _PLAIN_TYPES | {float}

_DECODER = msgspec.json.Decoder()

#: Gen-0 threshold of the cyclic GC while a stream syncs (Python's default: 700).
SYNC_GC_THRESHOLD = 100_000


@contextlib.contextmanager
def relaxed_gc(threshold0: int = SYNC_GC_THRESHOLD) -> t.Iterator[None]:
    """Run the cyclic GC less often inside the block (never more often than before)."""
    old = gc.get_threshold()
    gc.set_threshold(max(threshold0, old[0]), *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def _property_is_plain(schema: dict[str, t.Any], typed: bool = False) -> bool:
    """True when conformance passes a str/int/bool/None/dict/list value through as is.

    `typed`: the property is a typed column whose producer gives it only values of its
    own JSON type (a boolean column only bools and None, which conformance keeps).
    """
    if schema_is_list(schema):
        return False  # list items are conformed one by one
    if schema_is_boolean(schema):
        return typed  # ints become bools: only a typed column's bools are safe
    if "anyOf" in schema:
        return False  # not worth reasoning about
    if schema_is_object(schema) and "properties" in schema:
        # Declared nested properties are conformed recursively (and undeclared ones
        # dropped) unless there are none and everything is allowed through.
        return schema["properties"] == {} and bool(schema.get("additionalProperties"))
    return True


def conformance_is_identity(
    schema: dict[str, t.Any], typed: t.Collection[str] = frozenset()
) -> bool:
    """Whether `conform_record_data_types` leaves plain records of this schema unchanged
    (`typed`: the properties that are typed columns, see `_property_is_plain`)."""
    properties = schema.get("properties")
    return isinstance(properties, dict) and all(
        isinstance(p, dict) and _property_is_plain(p, name in typed)
        for name, p in properties.items()
    )


#: What the record of a framing's template message encodes to (it is replaced by the record).
_RECORD_SLOT = b'"record":{}'


def record_framing(stream: str, version: int | None, extracted: dt.datetime) -> tuple[bytes, bytes]:
    """The bytes of a RECORD line before and after its record (for one stream, version, time).

    Made from the SDK's own message for an empty record, so a fast line is
    `head + encode(record) + tail`: the SDK's bytes, with the message dict,
    the message object and the `time_extracted` encoding made once per batch
    instead of once per record (tests/engine/test_records.py compares them).
    """
    message = RecordMessage(stream=stream, record={}, version=version, time_extracted=extracted)
    line = encoder.encode(message.to_dict())
    # Exactly once: a stream name holding the slot's text would have its quotes escaped.
    assert line.count(_RECORD_SLOT) == 1, line
    at = line.index(_RECORD_SLOT) + len(_RECORD_SLOT) - 2
    return line[:at], line[at + 2 :] + b"\n"


class FastRecordsStream(StreamHooks):
    """A stream whose RECORD messages skip pruning and conformance when those are no-ops.

    The fast path applies when all of these hold (checked once per stream):
    the schema in force is the stream's own and passes `conformance_is_identity`;
    nothing nested is deselected in the catalog (a deselected top-level column is dropped
    from each record, exactly what the SDK's pruning does); the only stream map is the SDK's default
    pass-through without flattening. Per record it also checks that every key is
    in the schema and every value is a plain JSON type; any other record takes the
    SDK's path, so the output is the same either way.
    """

    #: Class-wide switches (the benchmark turns them off to measure the SDK path).
    fast_record_path: t.ClassVar[bool] = True
    relax_gc: t.ClassVar[bool] = True
    _fast_keys: frozenset[str] | None = None
    _fast_checked = False
    _fast_types: frozenset[type] = _PLAIN_TYPES
    _fast_drop: tuple[str, ...] = ()
    _framing: tuple[bytes, bytes] | None = None
    _writer: BufferedMsgSpecWriter
    extracted_at: dt.datetime | None = None

    def gc_policy(self) -> t.ContextManager[None]:
        """What the record loop runs under: the relaxed cyclic GC (see `relaxed_gc`)."""
        return relaxed_gc() if self.relax_gc else contextlib.nullcontext()

    def fast_path_reason(self) -> str | None:
        """None when the fast path is safe for this stream; else why not."""
        if not self.fast_record_path:
            return "disabled"
        if self.fast_writer() is None:
            return "the message writer is not the tap's buffered writer"
        if self.effective_schema != self.schema:
            return "the catalog's schema differs from the stream's"
        if not conformance_is_identity(self.schema, self.typed_columns()):
            return "the schema needs type conformance"
        nested = [crumb for crumb, selected in self.mask.items() if len(crumb) > 2 and not selected]
        if nested:
            return "nested properties are deselected"
        maps = self.stream_maps
        if (
            len(maps) != 1
            or type(maps[0]) is not SameRecordTransform
            or maps[0].flattening_enabled
            or maps[0].stream_alias != self.name
        ):
            return "stream maps or flattening are configured"
        return None

    @override
    def generate_child_contexts(
        self, record: dict[str, t.Any], context: t.Mapping[str, t.Any] | None
    ) -> t.Iterable[t.Mapping[str, t.Any] | None]:
        """No contexts when the stream has no child streams.

        The SDK would otherwise build a context per record, copy it and hand it
        to a `_sync_children` that has no child to sync: about 0.5 µs a record.
        """
        if not self.child_streams:
            return ()
        return super().generate_child_contexts(record, context)

    def fast_writer(self) -> BufferedMsgSpecWriter | None:
        """The tap's message writer, when it can write framed records (else the SDK path)."""
        return None

    @override
    def sdk_record(self, record: dict[str, t.Any]) -> dict[str, t.Any]:
        """`record` for the SDK's own path: JSON still encoded (msgspec.Raw) decoded, since
        stream maps and conformance want Python values."""
        if any(type(v) is msgspec.Raw for v in record.values()):
            return {
                k: _DECODER.decode(v) if type(v) is msgspec.Raw else v for k, v in record.items()
            }
        return record

    def typed_columns(self) -> frozenset[str]:
        """Columns whose values the stream's producer guarantees to be exactly of their JSON
        type (bools in a boolean column, finite numbers in a number one ...): conformance
        returns them unchanged, so they keep the fast path."""
        return frozenset()

    def new_batch(self) -> None:
        """The next records share a new extraction time (one clock read per batch)."""
        self.extracted_at = dt.datetime.now(dt.timezone.utc)
        self._framing = None

    def extraction_time(self) -> dt.datetime:
        """When the batch being written was handed over."""
        return self.extracted_at or dt.datetime.now(dt.timezone.utc)

    @override
    def write_fast_record(self, record: dict[str, t.Any]) -> bool:
        """Write `record`'s RECORD line directly when it takes the fast path."""
        if not self.takes_fast_path(record):
            return False
        framing = self._framing
        if framing is None:
            framing = record_framing(self.name, self.stream_version(), self.extraction_time())
            self._framing = framing
        self._writer.write_record(framing, record)
        return True

    def takes_fast_path(self, record: dict[str, t.Any]) -> bool:
        """True when pruning and conformance would return `record` unchanged."""
        if not self._fast_checked:
            reason = self.fast_path_reason()
            # Deselected top-level columns are dropped here, as the SDK's pruning would.
            self._fast_drop = tuple(
                key
                for key in self.schema["properties"]
                if not self.mask[("properties", key)]  # (unlisted: as its parent, the SDK's rule)
            )
            selected = frozenset(self.schema["properties"]) - frozenset(self._fast_drop)
            self._fast_keys = None if reason else selected
            self._fast_types = _TYPED_TYPES if self.typed_columns() else _PLAIN_TYPES
            writer = self.fast_writer()
            if writer is not None:
                self._writer = writer
            self._fast_checked = True
            self.logger.info(
                "Record path: %s.",
                f"SDK ({reason})"
                if reason
                else "fast (selection and conformance are no-ops for this schema)",
            )
        keys = self._fast_keys
        for key in self._fast_drop:
            record.pop(key, None)
        return (  # (no per-record type checks beyond these two set operations, both in C)
            keys is not None
            and keys.issuperset(record)
            and self._fast_types.issuperset(map(type, record.values()))
        )


def _write_all(out: t.BinaryIO, data: bytearray) -> None:
    """Write every byte of `data`, even when a signal interrupts a blocked write.

    With PYTHONUNBUFFERED=1 (or `python -u`) `sys.stdout.buffer` is a raw
    FileIO, one write(2) per call: a write to a full pipe that a signal
    (SIGTERM) interrupts returns a short count, and ignoring it would drop the
    rest of the buffer, leaving a torn RECORD line. A BufferedWriter retries by
    itself; the loop is harmless there.
    """
    view = memoryview(data)
    try:
        while view:
            written = out.write(view)
            view = view[written if written is not None else 0 :]
    finally:
        view.release()


class BufferedMsgSpecWriter(MsgSpecWriter):
    """`MsgSpecWriter` bytes, fewer system calls: one write+flush per ~64 KB of RECORDs.

    Every non-RECORD message (SCHEMA, STATE, ...) is appended to the buffer and
    the buffer is flushed at once, so STATE always follows the records it covers
    on stdout and is never held back. Whatever is left is flushed at exit.
    """

    flush_bytes: t.ClassVar[int] = 64 * 1024

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()
        atexit.register(self._flush_at_exit)

    def write_message(self, message: Message) -> None:
        """Buffer one message; flush at a non-RECORD message or when the buffer is full."""
        encoder.encode_into(message.to_dict(), self._buffer, -1)
        self._buffer += b"\n"
        if not isinstance(message, RecordMessage) or len(self._buffer) >= self.flush_bytes:
            self.flush()

    def write_record(self, framing: tuple[bytes, bytes], record: dict[str, t.Any]) -> None:
        """Buffer one RECORD line: `framing` (see `record_framing`) around the record."""
        buffer = self._buffer
        buffer += framing[0]
        encoder.encode_into(record, buffer, -1)
        buffer += framing[1]
        if len(buffer) >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        """Write out what is buffered and flush stdout."""
        if self._buffer:
            _write_all(sys.stdout.buffer, self._buffer)
            self._buffer.clear()
        sys.stdout.flush()

    def _flush_at_exit(self) -> None:
        # stdout closed or a broken pipe: nothing left to save.
        with contextlib.suppress(OSError, ValueError):
            self.flush()
