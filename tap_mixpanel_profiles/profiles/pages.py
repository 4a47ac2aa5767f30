"""An Engage page body parsed as it arrives, so memory does not grow with `page_size`.

An Engage answer is one JSON object: ``{"page": .., "page_size": .., "session_id": ..,
"status": "ok", "total": .., "results": [{...}, {...}, ...]}``. At `page_size`
50 000 that is some 65 MB of JSON and several times that once decoded; five
pages in flight would hold gigabytes. `PageParser` is fed the body block by
block and hands back the `results` elements decoded so far, in batches, while
the rest of the page is still arriving. The other keys (`total`, `session_id`,
`page_size`, ...) are read wherever they appear, before or after `results`.

Decoding stays msgspec's, one call per batch: the parser only finds where a
run of complete elements ends. A cut candidate is a ``}`` followed by ``,``
or ``]`` (and ``{`` after a ``,``); the run is decoded as ``[`` + run + ``]``,
which succeeds only when the cut really is between two elements (a ``}``
inside a string or a nested object leaves the run unbalanced, and msgspec
rejects it), else the previous candidate is tried. Block boundaries inside
strings, escapes or multi-byte UTF-8 characters are therefore harmless: only
complete runs are ever decoded. A body that ends early (a truncated page) or is
not such an object raises BadResponse.
"""

from __future__ import annotations

import codecs
import re
import typing as t

import msgspec

from tap_mixpanel_profiles.engine.client import BadResponse

#: Decode a batch once at least this many bytes of elements are buffered.
BATCH_BYTES = 512 * 1024
#: Candidate cuts tried per batch before waiting for more data (nested lists of objects).
MAX_TRIES = 32

_decoder = msgspec.json.Decoder()
_WS = b" \t\r\n"
_KEY = re.compile(rb'[ \t\r\n]*"((?:[^"\\]|\\.)*)"[ \t\r\n]*:[ \t\r\n]*', re.S)
#: The end of one result and the start of the next (the ``}`` is the cut).
_SEPARATOR = re.compile(rb'\}[ \t\r\n]*,[ \t\r\n]*\{[ \t\r\n]*"\$(?:distinct_id|properties)"')
#: The end of the last result and of the list, then the page object goes on or ends.
_LIST_END = re.compile(rb"\}[ \t\r\n]*\][ \t\r\n]*[,}]")
_SCALAR = re.compile(rb'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null', re.S)

# States of the top-level object.
_START, _KEY_OR_END, _VALUE, _AFTER_VALUE, _RESULTS, _DONE = range(6)


#: Bytes of a body validated as UTF-8 at a time. Decoding a realistic 1.3 MB page whole
#: builds one string as wide as its widest character (an emoji: 4 bytes per character,
#: 5 MB, out of cache); 64 KB slices build small strings, most of them narrow: about 5x
#: less CPU (2.2 -> 0.45 ms a page), the same verdict.
UTF8_SLICE = 64 * 1024


def check_utf8(data: bytes | bytearray) -> None:
    """BadResponse unless `data` is UTF-8 (Raw properties pass on to the target unchecked)."""
    if data.isascii():
        return
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    offset = 0
    try:
        for offset in range(0, len(view), UTF8_SLICE):
            decoder.decode(view[offset : offset + UTF8_SLICE])
        decoder.decode(b"", True)
    except UnicodeDecodeError as exc:
        # (a character cut at a slice boundary is reported up to 3 bytes early)
        raise BadResponse(
            f"body is not UTF-8 ({exc.reason} near byte {offset + exc.start})"
        ) from None


class PageParser:
    """Incremental parser of one Engage body: `feed` blocks, then `close`."""

    def __init__(
        self, batch_bytes: int | None = None, decoder: msgspec.json.Decoder[t.Any] | None = None
    ) -> None:
        self.batch_bytes = batch_bytes or BATCH_BYTES
        #: Decodes a JSON array of elements (a typed one keeps `$properties` as bytes).
        self.decoder = decoder or _decoder
        self.meta: dict[str, t.Any] = {}
        self._buf = bytearray()
        self._pos = 0
        self._state = _START
        self._key = ""
        self._results_seen = False
        self._any_element = False

    def feed(self, data: bytes) -> list[t.Any]:
        """Add a block of the body; return the result elements completed by it (maybe none)."""
        self._buf += data
        return self._advance(final=False)

    def close(self) -> list[t.Any]:
        """The body ended: the last elements; BadResponse when it is not a complete page."""
        elements = self._advance(final=True)
        rest = bytes(self._buf[self._pos :]).strip(_WS)
        if self._state != _DONE or rest:
            raise BadResponse("body ends before the page is complete (truncated?)")
        if not self._results_seen:
            raise BadResponse("no 'results' list")
        return elements

    # ------------------------------------------------------------------ parsing
    def _advance(self, *, final: bool) -> list[t.Any]:
        out: list[t.Any] = []
        while True:
            progressed = self._step(out, final)
            if not progressed:
                break
        # Drop what is consumed so the buffer holds at most one batch and a partial element.
        if self._pos > 1 << 16 and self._pos > len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        return out

    def _skip_ws(self) -> int:
        buf, pos = self._buf, self._pos
        while pos < len(buf) and buf[pos] in _WS:
            pos += 1
        self._pos = pos
        return pos

    def _step(self, out: list[t.Any], final: bool) -> bool:
        """Consume one token or batch; False when more data is needed (or the page is done)."""
        state = self._state
        if state == _RESULTS:
            return self._elements(out, final)
        pos = self._skip_ws()
        if pos >= len(self._buf) or state == _DONE:
            return False
        char = self._buf[pos]
        if state == _START:
            if char != ord("{"):
                raise BadResponse("body is not a JSON object")
            self._pos, self._state = pos + 1, _KEY_OR_END
            return True
        if state == _KEY_OR_END:
            if char == ord("}") and not self.meta and not self._results_seen:
                self._pos, self._state = pos + 1, _DONE
                return True
            match = _KEY.match(self._buf, pos)
            if match is None:
                if char != ord('"') or final:
                    raise BadResponse("malformed object key")
                return False
            self._key = _decode(b'"' + match.group(1) + b'"')
            self._pos, self._state = match.end(), _VALUE
            return self._pos < len(self._buf) or final
        if state == _VALUE:
            return self._value(final)
        # _AFTER_VALUE
        if char == ord(","):
            self._pos, self._state = pos + 1, _KEY_OR_END
            return True
        if char == ord("}"):
            self._pos, self._state = pos + 1, _DONE
            return True
        raise BadResponse("malformed object (expected ',' or '}')")

    def _value(self, final: bool) -> bool:
        pos = self._skip_ws()
        if pos >= len(self._buf):
            return False
        char = self._buf[pos]
        if self._key == "results":
            if char != ord("["):
                raise BadResponse("no 'results' list")
            if self._results_seen:
                raise BadResponse("two 'results' lists")
            self._results_seen = True
            self._pos, self._state = pos + 1, _RESULTS
            return True
        if char in b"{[":
            end = self._container_end(pos)
            if end is None:
                if final:
                    raise BadResponse(f"'{self._key}' is cut short")
                return False
            self.meta[self._key] = _decode(bytes(self._buf[pos:end]))
            self._pos, self._state = end, _AFTER_VALUE
            return True
        match = _SCALAR.match(self._buf, pos)
        if match is None:
            if final:
                raise BadResponse(f"'{self._key}' is cut short or not a JSON value")
            if char == ord('"') or len(self._buf) - pos < 8:
                return False  # a string or literal still arriving
            raise BadResponse(f"'{self._key}' is not a JSON value")
        if match.end() == len(self._buf) and not final:
            return False  # a number touching the end of the buffer may still be growing
        self.meta[self._key] = _decode(match.group(0))
        self._pos, self._state = match.end(), _AFTER_VALUE
        return True

    def _container_end(self, pos: int) -> int | None:
        """End of the object/array value at `pos` (rare: Engage's other keys are scalars)."""
        closer = b"}" if self._buf[pos] == ord("{") else b"]"
        end = pos
        while True:
            end = self._buf.find(closer, end + 1)
            if end < 0:
                return None
            try:
                _decoder.decode(self._buf[pos : end + 1])
            except msgspec.DecodeError:
                continue
            return end + 1

    def _elements(self, out: list[t.Any], final: bool) -> bool:
        """Decode the run of complete elements buffered so far (one msgspec call)."""
        buf = self._buf
        start = self._skip_ws()
        if start < len(buf) and buf[start] == ord(","):
            if not out and not self._any_element:
                raise BadResponse("malformed 'results' list")
            self._pos = start + 1
            start = self._skip_ws()
        if start >= len(buf):
            return False
        if buf[start] == ord("]"):
            self._pos, self._state = start + 1, _AFTER_VALUE
            return True
        if not final and len(buf) - start < self.batch_bytes:
            return False
        for cut in self._cuts(start, final):
            run = b"[" + buf[start : cut + 1] + b"]"
            try:
                batch = self.decoder.decode(run)
            except msgspec.DecodeError:  # (a ValidationError is one too)
                continue
            if self.decoder is not _decoder:
                check_utf8(run)  # a typed decode leaves Raw strings unchecked
            out.extend(batch)
            self._any_element = True
            self._pos = cut + 1
            return True
        if final:
            raise BadResponse("body ends inside the 'results' list (truncated?)")
        # No complete element yet (one very large profile): wait for a bigger buffer.
        self.batch_bytes = max(self.batch_bytes, 2 * (len(buf) - start))
        return False

    def _cuts(self, start: int, final: bool) -> t.Iterator[int]:
        """Where a run of complete elements may end, most likely first (each is verified).

        Engage results are ``{"$distinct_id": .., "$properties": {..}}``: the last
        ``},{"$distinct_id"`` (or ``"$properties"``) separator is nearly always right,
        and once the whole body is in, so is the end of the list (while the body is
        still arriving, a ``}]`` near the end is as likely a nested list's: the last
        element waits for the next batch instead). Then any ``}`` before a ``,{`` or
        a ``]``, from the end.
        """
        buf = self._buf
        separator = None
        for match in _SEPARATOR.finditer(buf, start):
            separator = match.start()
        end = None
        if final:
            for match in _LIST_END.finditer(buf, separator if separator is not None else start):
                end = match.start()
        tried = [cut for cut in (end, separator) if cut is not None]
        yield from tried
        cut = len(buf)
        for _ in range(MAX_TRIES):
            cut = buf.rfind(b"}", start, cut)
            if cut < 0:
                return
            follow = _next_char(buf, cut + 1)
            if cut not in tried and (
                follow == ord("]") or (follow == ord(",") and _next_char_after_comma(buf, cut + 1))
            ):
                yield cut


def _next_char(buf: bytearray, pos: int) -> int | None:
    while pos < len(buf) and buf[pos] in _WS:
        pos += 1
    return buf[pos] if pos < len(buf) else None


def _next_char_after_comma(buf: bytearray, pos: int) -> bool:
    """True when the comma after `pos` is followed by the start of the next element."""
    comma = buf.find(b",", pos)
    return _next_char(buf, comma + 1) == ord("{")


def _decode(data: bytes) -> t.Any:
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise BadResponse(f"not valid JSON ({exc})") from None
