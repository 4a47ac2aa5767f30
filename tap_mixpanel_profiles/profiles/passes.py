"""Resumable sync passes: what STATE records while a profiles sync is under way.

A *pass* reads every profile matching one effective `where` (the user's filter,
plus `$last_seen >= bookmark` when incremental). It is a list of *segments*,
each one Engage query: at first a single segment covering the whole pass. A
segment's *session* (session_id, served page size, total, pages emitted) lets a
later run fetch only the missing pages while Mixpanel still honours it.

Mixpanel does not document how long a session lives. When one is rejected (or
is older than `session_max_age_seconds` on resume), its segment is replaced by
disjoint `$last_seen` ranges, each small enough to finish within one session,
plus `not defined` for profiles without `$last_seen`. Every finished segment is
recorded, so each run makes progress; re-delivered profiles are harmless (the
target upserts on `distinct_id`), missing ones are not.

Everything here is plain data, stored under `bookmarks.profiles.pass`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import typing as t

from tap_mixpanel_profiles.profiles.where import combine_where, is_last_seen, last_seen_clause

TIME_FMT = "%Y-%m-%dT%H:%M:%S"
#: Bisection of an open-ended range starts here (Mixpanel was founded in 2009);
#: the lowest range stays open below, so older values are still covered.
FLOOR = "2009-01-01T00:00:00"


def utc_now_text() -> str:
    """Current UTC time in Mixpanel's $last_seen format."""
    return dt.datetime.now(dt.timezone.utc).strftime(TIME_FMT)


def _parse(text: str) -> dt.datetime:
    return dt.datetime.strptime(text[:19], TIME_FMT)


def midpoint(lo: str, hi: str) -> str | None:
    """The time halfway between lo and hi, or None if they are under 2 s apart."""
    a, b = _parse(lo), _parse(hi)
    if (b - a).total_seconds() < 2:
        return None
    return (a + (b - a) / 2).strftime(TIME_FMT)


@dataclasses.dataclass
class Session:
    """An Engage session: page 0 was fetched; pages below `next_page` are emitted."""

    id: str | None
    page_size: int
    total: int
    pages: int
    created_at: float
    next_page: int = 1
    done_pages: list[int] = dataclasses.field(default_factory=list)

    def remaining(self) -> list[int]:
        """Pages not yet emitted, in order."""
        done = set(self.done_pages)
        return [p for p in range(self.next_page, self.pages) if p not in done]

    def mark_done(self, page: int) -> None:
        """Record an emitted page; keep the 'all pages below k' watermark compact."""
        if page >= self.next_page and page not in self.done_pages:
            self.done_pages.append(page)
        done = set(self.done_pages)
        while self.next_page in done:
            done.discard(self.next_page)
            self.next_page += 1
        self.done_pages = sorted(done)

    @property
    def complete(self) -> bool:
        """True when every page of the session was emitted."""
        return not self.remaining()


@dataclasses.dataclass
class Segment:
    """One Engage query of a pass: the whole pass, a $last_seen range, or 'undefined'."""

    kind: str = "whole"  # whole | range | undefined
    lo: str | None = None  # $last_seen >= lo
    hi: str | None = None  # $last_seen < hi
    done: bool = False
    session: Session | None = None

    def clause(self) -> str | None:
        """The extra `where` this segment adds to the pass's where."""
        if self.kind == "undefined":
            return 'not defined (properties["$last_seen"])'
        if self.kind == "whole":
            return None
        return combine_where(
            last_seen_clause(">=", self.lo) if self.lo else None,
            last_seen_clause("<", self.hi) if self.hi else None,
        )

    def describe(self) -> str:
        """Human-readable label for logs."""
        if self.kind != "range":
            return self.kind
        return f"$last_seen in [{self.lo or '-inf'}, {self.hi or '+inf'})"

    def split(self, now: str, sample: t.Sequence[str] = ()) -> list[Segment] | None:
        """Two halves, or None when the range cannot shrink any further.

        The cut is the median of the sampled $last_seen values inside the range
        when there are enough of them (halves by profile count), else the
        midpoint in time.
        """
        if self.kind != "range":
            return None
        inside = sorted(
            v[:19]
            for v in sample
            if (not self.lo or v[:19] >= self.lo) and (not self.hi or v[:19] < self.hi)
        )
        mid = inside[len(inside) // 2] if len(inside) >= 8 else None
        if mid is None or mid == (self.lo or ""):
            lo = self.lo or (FLOOR if (self.hi or now) > FLOOR else "1970-01-01T00:00:00")
            mid = midpoint(lo, self.hi or now)
        if mid is None or (self.lo and mid <= self.lo) or (self.hi and mid >= self.hi):
            return None
        return [Segment("range", self.lo, mid), Segment("range", mid, self.hi)]


def split_whole(boundaries: list[str]) -> list[Segment]:
    """Replace a whole-pass segment with 'undefined' plus ranges cut at `boundaries`."""
    cuts = sorted(set(boundaries))
    segments = [Segment("undefined")]
    lo: str | None = None
    for cut in cuts:
        segments.append(Segment("range", lo, cut))
        lo = cut
    segments.append(Segment("range", lo, None))
    return segments


def quantiles(values: t.Sequence[str], count: int = 32) -> list[str]:
    """`count` evenly spaced order statistics of `values` (all of them if fewer)."""
    ordered = sorted(values)
    if len(ordered) <= count:
        return ordered
    return [ordered[len(ordered) * i // count] for i in range(count)]


def boundaries_for(pieces: int, sample: list[str], lo: str | None, hi: str) -> list[str]:
    """`pieces - 1` cut points: sample quantiles when there are enough values, else even times."""
    if pieces <= 1:
        return []
    values = sorted(v[:19] for v in sample if v)
    if len(values) >= pieces * 4:
        return sorted({values[len(values) * i // pieces] for i in range(1, pieces)})
    start, end = _parse(lo or FLOOR), _parse(hi)
    if end <= start:
        return []
    step = (end - start) / pieces
    return [(start + step * i).strftime(TIME_FMT) for i in range(1, pieces)]


@dataclasses.dataclass
class PassState:
    """A pass in progress (see module docstring)."""

    fingerprint: dict[str, t.Any]
    started_at: str
    where: str | None
    segments: list[Segment]
    bookmark_at_start: str | None = None
    max_last_seen: str | None = None
    rows: int = 0
    #: Quantiles of the $last_seen values seen so far: where to cut ranges in a later run.
    sample: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def new(
        cls, fingerprint: dict[str, t.Any], where: str | None, bookmark: str | None
    ) -> PassState:
        """A fresh pass: one segment for everything."""
        return cls(
            fingerprint=fingerprint,
            started_at=utc_now_text(),
            where=where,
            segments=[Segment()],
            bookmark_at_start=bookmark,
        )

    @property
    def scheme(self) -> str:
        """'session' while the pass is one query, 'ranges' once it was split."""
        return (
            "session" if len(self.segments) == 1 and self.segments[0].kind == "whole" else "ranges"
        )

    def pending(self) -> list[Segment]:
        """Segments still to be fetched, in order."""
        return [s for s in self.segments if not s.done]

    def replace(self, segment: Segment, children: list[Segment]) -> None:
        """Swap one segment for its children (same position: order stays stable)."""
        i = next(i for i, s in enumerate(self.segments) if s is segment)
        self.segments[i : i + 1] = children

    def see(self, last_seen: str | None) -> None:
        """Track the newest $last_seen emitted in this pass (for the next bookmark)."""
        if last_seen and (self.max_last_seen is None or last_seen > self.max_last_seen):
            self.max_last_seen = last_seen

    def next_bookmark(self) -> str | None:
        """Bookmark once the pass completed: never beyond the time the pass began."""
        if self.max_last_seen is None:
            return self.bookmark_at_start
        seen = self.max_last_seen[:19]
        candidate = min(seen, self.started_at)
        if self.bookmark_at_start and candidate < self.bookmark_at_start:
            return self.bookmark_at_start
        return candidate

    def to_dict(self) -> dict[str, t.Any]:
        """JSON-ready form for STATE."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: t.Mapping[str, t.Any]) -> PassState:
        """Inverse of to_dict; raises (KeyError, TypeError, ValueError) on malformed input."""
        segments = []
        for raw in data["segments"]:
            raw = dict(raw)
            session = raw.pop("session", None)
            segment = Segment(**raw)
            if session:
                # Numbers come back as Decimal when the SDK parses a --state file.
                segment.session = Session(
                    id=str(session["id"]) if session.get("id") else None,
                    page_size=int(session["page_size"]),
                    total=int(session["total"]),
                    pages=int(session["pages"]),
                    created_at=float(session["created_at"]),
                    next_page=int(session.get("next_page", 1)),
                    done_pages=[int(p) for p in session.get("done_pages", [])],
                )
            segments.append(segment)
        if not segments:
            raise ValueError("pass without segments")
        return cls(
            fingerprint=dict(data["fingerprint"]),
            started_at=str(data["started_at"]),
            where=data.get("where"),
            segments=segments,
            bookmark_at_start=data.get("bookmark_at_start"),
            max_last_seen=data.get("max_last_seen"),
            rows=int(data.get("rows", 0)),
            sample=[str(v) for v in data.get("sample") or []],
        )


def saved_pass(value: t.Any) -> t.Any:
    """The pass a bookmark's `"pass"` holds, or None.

    This version writes `[pass]` while a pass is under way and `[]` once it
    completed: a list, never a dict or null, because Meltano deep-merges the
    STATEs of a `--full-refresh` (or `--state-strategy merge`) run into the
    partial state it stored before, and its merge fails on a dict written where
    null was stored (`'NoneType' object has no attribute 'setdefault'`), while a
    list simply replaces whatever was there. Older versions wrote the pass as a
    bare dict and a finished one as null; both are still read. A dict without
    segments (emptied by a settings reset: `engine.lifecycle.tombstone`) is no pass.
    """
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict) and not value.get("segments"):
        return None
    return value


def pass_value(pass_: PassState | None) -> list[dict[str, t.Any]]:
    """What a bookmark's `"pass"` holds for `pass_` (None: completed); see `saved_pass`."""
    return [] if pass_ is None else [pass_.to_dict()]


def load_pass(
    state: t.Mapping[str, t.Any],
    fingerprint: dict[str, t.Any],
    where: str | None,
    log: logging.Logger,
    *,
    prefix: str = "",
    noun: str = "profile",
) -> PassState:
    """The pass saved in a stream's bookmark when it is readable and of these settings;
    else a new one: incremental (`$last_seen >= bookmark`) when the bookmark is usable.

    `prefix` starts the log lines (a keyed pass names its key), `noun` is what is read.
    """
    saved = saved_pass(state.get("pass"))
    if saved:
        try:
            pass_ = PassState.from_dict(saved)
            if pass_.fingerprint == fingerprint:
                log.info(
                    "%sResuming the pass begun at %s (scheme: %s, %d rows so far).",
                    prefix,
                    pass_.started_at,
                    pass_.scheme,
                    pass_.rows,
                )
                return pass_
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            log.warning("%sIgnoring unreadable pass in STATE (%s).", prefix, exc)
    bookmark = state.get("replication_key_value")
    if bookmark and not is_last_seen(str(bookmark)):
        log.warning(
            "%sIgnoring unreadable bookmark %r in STATE (not a $last_seen date-time "
            "YYYY-MM-DDTHH:MM:SS): reading every %s.",
            prefix,
            str(bookmark)[:40],
            noun,
        )
        bookmark = None
    since = str(bookmark)[:19] if bookmark else None
    if since:
        where = combine_where(where, last_seen_clause(">=", since))
        log.info("%sIncremental sync: %ss with $last_seen >= %s.", prefix, noun, since)
    else:
        scope = " matching the configured where" if where else ""
        log.info("%sFull sync: every %s%s.", prefix, noun, scope)
    return PassState.new(fingerprint, where, since)
