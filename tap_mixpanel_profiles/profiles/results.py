"""How Engage results are decoded on the worker threads: `$properties` kept as bytes.

A record's `properties` column is the bytes Mixpanel served (msgspec writes a `Raw` as it
is), so a profile's properties are decoded into Python objects and encoded again only
when a typed column or a member filter needs them (`properties_of`): about 4x less CPU
for decode, record and encode together (a realistic profile: 15 -> 3.5 µs). msgspec still
parses the bytes to find their end, so broken JSON fails the page (retried); UTF-8, which
a Raw's strings skip, is checked once per body (`check_utf8`).
"""

from __future__ import annotations

import itertools
import typing as t

import msgspec

from tap_mixpanel_profiles.engine.client import BadResponse
from tap_mixpanel_profiles.profiles.pages import PageParser, check_utf8

#: Bytes read from the socket at a time.
READ_BYTES = 256 * 1024


class Result(msgspec.Struct):
    """One Engage result: its `$distinct_id`, and its `$properties` as the bytes served."""

    distinct_id: t.Any = msgspec.field(name="$distinct_id", default=None)
    properties: msgspec.Raw = msgspec.field(name="$properties", default=msgspec.Raw(b"null"))


class _Page(msgspec.Struct):
    """An Engage body: its results, and the keys read from page 0."""

    results: list[Result] | None = None
    page: t.Any = msgspec.UNSET
    page_size: t.Any = msgspec.UNSET
    session_id: t.Any = msgspec.UNSET
    status: t.Any = msgspec.UNSET
    total: t.Any = msgspec.UNSET


class _LastSeen(msgspec.Struct):
    last_seen: t.Any = msgspec.field(name="$last_seen", default=None)


page_decoder = msgspec.json.Decoder(_Page)
RESULTS_DECODER = msgspec.json.Decoder(list[Result])
_last_seen_decoder = msgspec.json.Decoder(_LastSeen)
_decoder = msgspec.json.Decoder()
EMPTY = msgspec.Raw(b"{}")


def last_seen_of(properties: msgspec.Raw) -> tuple[msgspec.Raw, t.Any]:
    """(the properties, their `$last_seen`) of properties kept as bytes: the other keys are
    skipped, not decoded. `null` properties are `{}`; anything else but an object is a
    BadResponse (the decode into a struct is the type check: no second look at the bytes)."""
    try:
        return properties, _last_seen_decoder.decode(properties).last_seen
    except msgspec.ValidationError:
        if bytes(properties) == b"null":  # (msgspec strips whitespace around a Raw value)
            return EMPTY, None
        raise BadResponse("a result's $properties is not an object") from None


def properties_of(value: t.Any) -> dict[str, t.Any]:
    """A record's `properties` as a dict (decoded when it is the served bytes)."""
    if type(value) is msgspec.Raw:
        return t.cast("dict[str, t.Any]", _decoder.decode(value))
    return t.cast("dict[str, t.Any]", value)


def read_whole(
    body: bytes, deliver: t.Callable[[list[t.Any]], None], raw: bool = True
) -> dict[str, t.Any]:
    """A body that arrived within WHOLE_PAGE_BYTES: one msgspec call (`raw`: properties
    kept as bytes, see `results`)."""
    if not raw:
        return _whole_decoded(body, deliver)
    check_utf8(body)
    try:
        document = page_decoder.decode(body)
    except msgspec.ValidationError as exc:
        what = "a result is not an object" if "$.results[" in str(exc) else "not an Engage page"
        raise BadResponse(f"{what} ({exc})") from exc
    except msgspec.DecodeError as exc:
        raise BadResponse(f"not valid JSON ({type(exc).__name__})") from exc
    if document.results is None:
        raise BadResponse("no 'results' list")
    deliver(document.results)
    return {
        key: value
        for key in ("page", "page_size", "session_id", "status", "total")
        if (value := getattr(document, key)) is not msgspec.UNSET
    }


def _whole_decoded(body: bytes, deliver: t.Callable[[list[t.Any]], None]) -> dict[str, t.Any]:
    """`read_whole` with every result decoded into Python objects."""
    try:
        document = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise BadResponse(f"not valid JSON ({type(exc).__name__})") from exc
    if not isinstance(document, dict):
        raise BadResponse("body is not a JSON object")
    results = document.pop("results", None)
    if not isinstance(results, list):
        raise BadResponse("no 'results' list")
    deliver(results)
    return document


def read_streamed(
    head: list[bytes],
    blocks: t.Iterator[bytes],
    deliver: t.Callable[[list[t.Any]], None],
    raw: bool = True,
) -> dict[str, t.Any]:
    """A large body: parsed as it arrives, records delivered batch by batch (`head`: the
    blocks read before the page turned out large, each at most READ_BYTES)."""
    parser = PageParser(decoder=RESULTS_DECODER if raw else None)
    for block in itertools.chain(head, blocks):
        deliver(parser.feed(block))
    deliver(parser.close())
    return parser.meta
