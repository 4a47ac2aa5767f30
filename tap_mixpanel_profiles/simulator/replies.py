"""What the simulator answers: :class:`Reply`, and :class:`PageBody` for Engage pages.

A page of 50 000 profiles is tens of megabytes. :class:`PageBody` never joins it into one
``bytes``: it knows its length from the profiles' pre-serialized parts (for ``Content-Length``)
and writes them in batches of about :data:`WRITE_BATCH` bytes, so a page costs the simulator one
list of references to the page's records plus one batch buffer.
"""

from __future__ import annotations

import copy
import json
import typing as t
from dataclasses import dataclass, field

if t.TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from .data import ProfileRecord

__all__ = ["WRITE_BATCH", "PageBody", "Reply", "error_reply", "server_error"]

WRITE_BATCH = 256 * 1024


class PageBody:
    """The JSON body of one Engage page: ``prefix``, the results separated by commas, ``suffix``.

    With ``keys`` (``output_properties``) each result is projected (serialized once, here);
    otherwise the records' stored parts are written as they are. ``limit`` cuts the body after
    that many bytes (the truncated-body fault).
    """

    def __init__(
        self,
        prefix: bytes,
        rows: Sequence[ProfileRecord],
        keys: list[str] | None,
        suffix: bytes,
        limit: int | None = None,
    ) -> None:
        self.prefix, self.suffix, self.limit = prefix, suffix, limit
        self._parts: Sequence[tuple[bytes, ...]] = (
            [record.parts for record in rows]
            if keys is None
            else [(record.projected_json(keys),) for record in rows]
        )
        self._full = (
            len(prefix)
            + sum(len(part) for parts in self._parts for part in parts)
            + max(0, len(self._parts) - 1)
            + len(suffix)
        )

    def __len__(self) -> int:
        return self._full if self.limit is None else min(self.limit, self._full)

    def cut(self, limit: int) -> PageBody:
        """The same body cut after ``limit`` bytes."""
        cut = copy.copy(self)
        cut.limit = limit
        return cut

    def chunks(self) -> Iterator[bytes]:
        """The body in batches of about WRITE_BATCH bytes (the last may be shorter)."""
        remaining = len(self)
        for batch in self._batches():
            if len(batch) >= remaining:
                yield batch[:remaining]
                return
            remaining -= len(batch)
            yield batch

    def _batches(self) -> Iterator[bytes]:
        buffer = bytearray(self.prefix)
        first = True
        for parts in self._parts:
            if not first:
                buffer += b","
            first = False
            for part in parts:
                buffer += part
            if len(buffer) >= WRITE_BATCH:
                yield bytes(buffer)
                buffer.clear()
        buffer += self.suffix
        yield bytes(buffer)


@dataclass
class Reply:
    """What to send back. ``action`` is "send", "reset" (abort the connection) or "truncate"."""

    status: int
    body: bytes | PageBody = b""
    headers: dict[str, str] = field(default_factory=dict)
    action: str = "send"
    content_type: str = "application/json"

    def chunks(self) -> Iterator[bytes]:
        """The body as it goes on the wire (one piece, or a page in batches)."""
        if isinstance(self.body, PageBody):
            yield from self.body.chunks()
        elif self.body:
            yield self.body

    def truncated(self) -> Reply:
        """A 200 whose body stops in the middle (``Content-Length`` matches the cut body)."""
        half = max(1, len(self.body) // 2)
        body = self.body.cut(half) if isinstance(self.body, PageBody) else self.body[:half]
        return Reply(self.status, body, dict(self.headers), "truncate", self.content_type)


def error_reply(status: int, message: str, **headers: str) -> Reply:
    """``{"error": message, "status": "error"}`` with ``status``."""
    body = json.dumps({"error": message, "status": "error"}).encode()
    return Reply(status, body, dict(headers))


def server_error(status: int) -> Reply:
    """A simulated 5xx answer (502 as a gateway's HTML page)."""
    if status == 502:  # gateways answer HTML, not JSON: the tap must not choke on it
        html = (
            b"<html><head><title>502 Bad Gateway</title></head><body>502 Bad Gateway</body></html>"
        )
        return Reply(502, html, content_type="text/html")
    return error_reply(status, f"Internal server error (simulated {status})")
