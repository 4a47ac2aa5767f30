"""Engage pages parsed as they arrive: the same records as a whole decode, whatever the blocks.

The body is cut into blocks of every awkward size (1 byte, primes, a block
boundary inside a string, inside an escape, inside a multi-byte UTF-8
character); the parser must hand back exactly what `json.loads` sees, read
`total`/`session_id` wherever they are, release records before the body ends,
and reject a body that is cut short.
"""

from __future__ import annotations

import json
import random
import typing as t

import pytest
import requests

from tap_mixpanel_profiles.engine.client import BadResponse
from tap_mixpanel_profiles.profiles import engage, pages
from tap_mixpanel_profiles.profiles.engage import EngageApi
from tap_mixpanel_profiles.profiles.pages import UTF8_SLICE, PageParser, check_utf8

AWKWARD = {
    "$last_seen": "2024-05-06T07:08:09",
    "brace": 'a}, {"$distinct_id": "fake"}',  # a separator-look-alike inside a string
    "escapes": 'quote " backslash \\ } ] , {\n\t\u2028',
    "unicode": "São Paulo 😀 日本",  # 2-, 4- and 3-byte UTF-8
    "nested": {"list": [{"a": 1}, {"b": [{"c": "}]"}]}], "empty": {}},
    "objects_list": [{"$distinct_id": "not a result"}, {}],  # a nested look-alike
    "n": 1.5e3,
}


def results(n: int) -> list[dict[str, t.Any]]:
    return [
        {"$distinct_id": f"user-{i}", "$properties": {**AWKWARD, "i": i}}
        if i % 3
        else {"$properties": {"i": i}, "$distinct_id": i}  # the other key order
        for i in range(n)
    ]


def body(items: list[t.Any], *, meta_after: bool = False, indent: int | None = None) -> bytes:
    meta = {"page": 0, "page_size": 100, "session_id": "s-1", "status": "ok", "total": len(items)}
    document = {"results": items, **meta} if meta_after else {**meta, "results": items}
    return json.dumps(document, ensure_ascii=False, indent=indent).encode()


def parse(data: bytes, sizes: t.Iterable[int], batch_bytes: int = 64) -> tuple[list[t.Any], dict]:
    parser = PageParser(batch_bytes=batch_bytes)
    out: list[t.Any] = []
    pos = 0
    for size in sizes:
        if pos >= len(data):
            break
        out += parser.feed(data[pos : pos + size])
        pos += size
    if pos < len(data):
        out += parser.feed(data[pos:])
    out += parser.close()
    return out, parser.meta


@pytest.mark.parametrize("block", [1, 2, 3, 5, 7, 13, 64, 1000, 1 << 20])
@pytest.mark.parametrize("meta_after", [False, True])
def test_every_block_size_gives_the_whole_decode(block: int, meta_after: bool) -> None:
    items = results(40)
    data = body(items, meta_after=meta_after)
    out, meta = parse(data, iter(lambda: block, None))
    assert out == items
    assert meta == {"page": 0, "page_size": 100, "session_id": "s-1", "status": "ok", "total": 40}


def test_random_cuts_and_whitespace() -> None:
    rng = random.Random(7)
    items = results(60)
    for indent in (None, 2):
        data = body(items, indent=indent)
        for _ in range(20):
            sizes = [rng.randint(1, 300) for _ in range(len(data))]
            assert parse(data, sizes, batch_bytes=rng.choice([1, 50, 4000]))[0] == items


def test_block_boundaries_inside_an_escape_and_a_multibyte_character() -> None:
    data = body(results(4))
    escape = data.index(b"\\\\")  # the escaped backslash
    emoji = data.index("😀".encode())
    for cut in (escape + 1, emoji + 1, emoji + 2, emoji + 3):
        out, _ = parse(data, [cut, len(data)])
        assert out == results(4), cut


def test_records_are_released_before_the_body_ends() -> None:
    items = results(300)
    data = body(items)
    parser = PageParser(batch_bytes=4096)
    early = parser.feed(data[: len(data) // 2])
    assert 0 < len(early) < 300, "a batch left while half the page was still on the wire"
    assert early == items[: len(early)]
    rest = parser.feed(data[len(data) // 2 :]) + parser.close()
    assert early + rest == items


def test_total_after_results_is_read() -> None:
    out, meta = parse(body(results(5), meta_after=True), [10] * 1000)
    assert meta["total"] == 5 and meta["session_id"] == "s-1" and len(out) == 5


def test_empty_results_and_an_unusual_top_level_value() -> None:
    data = b'{"computed_at": {"t": [1, {"x": "}"}]}, "results": [ ], "total": 0}'
    out, meta = parse(data, [3] * 100)
    assert out == [] and meta == {"computed_at": {"t": [1, {"x": "}"}]}, "total": 0}


@pytest.mark.parametrize("fraction", [0.01, 0.3, 0.5, 0.9, 0.999])
def test_a_truncated_body_is_a_bad_response(fraction: float) -> None:
    data = body(results(30))
    with pytest.raises(BadResponse):
        parse(data[: int(len(data) * fraction)], [17] * 10_000)


@pytest.mark.parametrize(
    "data",
    [
        b"[]",
        b'"ok"',
        b'{"status": "ok", "total": 3}',  # no results
        b'{"results": {"a": 1}}',
        b'{"results": [1, 2,, 3]}',
        b'{"results": [{"a": 1}] "total": 1}',
        b'{"results": [{"a": 1}]} trailing',
        b'{"total": tru}',
        b"<html>Bad gateway</html>",
    ],
)
def test_malformed_bodies_are_bad_responses(data: bytes) -> None:
    with pytest.raises(BadResponse):
        parse(data, [4] * 100)


def test_one_profile_larger_than_a_batch() -> None:
    huge = [{"$distinct_id": "big", "$properties": {"blob": "x" * 300_000}}, *results(3)]
    assert parse(body(huge), [4096] * 1000, batch_bytes=1024)[0] == huge


def fake_response(data: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response._content = data
    response._content_consumed = True
    return response


def test_engage_read_streams_large_pages_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engage, "WHOLE_PAGE_BYTES", 2048)
    monkeypatch.setattr(engage, "READ_BYTES", 1024)
    monkeypatch.setattr(pages, "BATCH_BYTES", 4096)
    items = [{"$distinct_id": f"u{i}", "$properties": AWKWARD} for i in range(200)]
    batches: list[list[t.Any]] = []
    page = EngageApi.read(fake_response(body(items, meta_after=True)), 0, batches.append)
    assert len(batches) > 1, "more than one batch for a page beyond WHOLE_PAGE_BYTES"
    assert [r["distinct_id"] for b in batches for r in b] == [f"u{i}" for i in range(200)]
    assert page.rows == 200 and page.total == 200 and page.session_id == "s-1"
    assert page.records is None, "nothing collected when records are emitted"


def test_engage_read_decodes_small_pages_whole() -> None:
    items = [{"$distinct_id": f"u{i}", "$properties": {}} for i in range(5)]
    batches: list[list[t.Any]] = []
    page = EngageApi.read(fake_response(body(items)), 0, batches.append)
    assert len(batches) == 1 and len(batches[0]) == 5 and page.rows == 5


# ------------------------------------------------------------------------ check_utf8
def test_check_utf8_accepts_characters_cut_by_its_slices() -> None:
    for shift in range(5):  # a 4-byte character across the slice boundary, at every offset
        body = b"a" * (UTF8_SLICE - shift) + "😀 São 日本".encode() * 3
        check_utf8(body)
        check_utf8(bytearray(body))


@pytest.mark.parametrize(
    "body",
    [
        b"x" * UTF8_SLICE + b"\xff" + b"y" * 10,  # a byte that is never UTF-8, in slice 2
        "é".encode() + b"\x80",  # a lone continuation byte
        b"a" * (UTF8_SLICE - 1) + "😀".encode()[:2],  # cut at the end of the body
        b"ok" + b"\xed\xa0\x80",  # an encoded surrogate
    ],
    ids=["0xff", "continuation", "truncated", "surrogate"],
)
def test_check_utf8_refuses_what_python_refuses(body: bytes) -> None:
    with pytest.raises(UnicodeDecodeError):
        str(body, "utf-8")
    with pytest.raises(BadResponse, match="not UTF-8"):
        check_utf8(body)


def test_check_utf8_agrees_with_a_whole_decode_on_random_bytes() -> None:
    rng = random.Random(7)
    alphabet = [b"a", b"\n", "é".encode(), "日".encode(), "😀".encode(), b"\xff", b"\x80"]
    for _ in range(300):
        body = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        body = b"z" * rng.choice((0, UTF8_SLICE - 2)) + body
        try:
            str(body, "utf-8")
            valid = True
        except UnicodeDecodeError:
            valid = False
        try:
            check_utf8(body)
            checked = True
        except BadResponse:
            checked = False
        assert checked == valid
