"""Splitting a pass when Engage sessions expire: `$last_seen` ranges that fit one session.

Mixpanel does not document how long a session lives. When one is rejected (or
is older than `session_max_age_seconds` on resume), its segment is replaced by
disjoint `$last_seen` ranges, each small enough to be read within one session
and one quota window, plus `not defined` for profiles without `$last_seen`. The
cuts come from a sample of the `$last_seen` values already seen (halves by
profile count), or from time when there are too few.
"""

from __future__ import annotations

import math
import random
import typing as t

from tap_mixpanel_profiles.profiles.passes import (
    PassState,
    Segment,
    Session,
    boundaries_for,
    split_whole,
    utc_now_text,
)

#: At most this many ranges replace a whole pass at once.
MAX_RANGES = 64


class Reservoir:
    """A uniform sample of at most `size` values from a stream of any length.

    Values come in batches; after the first `size`, Li's "Algorithm L" draws how
    many values to skip before the next replacement, so the work per batch is the
    number of replacements (rare once the stream is long), not its length.
    """

    def __init__(self, size: int, rng: random.Random | None = None) -> None:
        self.size = size
        self.values: list[str] = []
        self._rng = rng or random.Random()
        self._seen = 0
        self._weight = 1.0
        self._next = 0

    def extend(self, values: t.Sequence[str]) -> None:
        """Offer a batch of values."""
        room = self.size - len(self.values)
        if room > 0:
            self.values.extend(values[:room])
            self._seen += min(room, len(values))
            values = values[room:]
            if len(self.values) < self.size:
                return
            self._weight = math.exp(math.log(self._random()) / self.size)
            self._next = self._seen + self._skip()
        end = self._seen + len(values)
        while self._next < end:
            self.values[self._rng.randrange(self.size)] = values[self._next - self._seen]
            self._weight *= math.exp(math.log(self._random()) / self.size)
            self._next += self._skip() + 1
        self._seen = end

    def _skip(self) -> int:
        return math.floor(math.log(self._random()) / math.log(max(1e-300, 1 - self._weight)))

    def _random(self) -> float:
        return self._rng.random() or 1e-300  # log(0) is undefined


class Splitter:
    """Decides how far a pass is split; learns how many pages a session served."""

    def __init__(self, queries_per_hour: int) -> None:
        self.queries_per_hour = queries_per_hour
        self.learned_session_pages: int | None = None

    def target_pages(self) -> int:
        """Pages one session can be trusted to serve (learned, else the hourly budget)."""
        # A range should fit in one quota window (with room for its neighbours' page 0),
        # so that a paused run never leaves a half-read range to an expiring session.
        budget = max(1, self.queries_per_hour // 2)
        if self.learned_session_pages:
            # Sessions expire by age, not page count: keep a margin below what one served.
            return max(1, min(budget, self.learned_session_pages * 2 // 3))
        return budget

    def too_big(self, segment: Segment, session: Session, sample: t.Sequence[str]) -> bool:
        """A range larger than a session (or a quota window) can serve is split at once."""
        return (
            segment.kind == "range"
            and session.pages > self.target_pages()
            and segment.split(utc_now_text(), sample) is not None
        )

    def replacement(
        self,
        pass_: PassState,
        segment: Segment,
        old: Session | None,
        fetched: int | None,
        sample: t.Sequence[str],
    ) -> list[Segment] | None:
        """The segments that replace `segment` whose session `old` is gone.

        `fetched`: pages the session served before it was rejected (None when it
        was not tried: too old, or too big). None: keep the segment and start a
        fresh session (it is small enough); []: it cannot be split any further.
        """
        if fetched is not None:
            self.learned_session_pages = min(self.learned_session_pages or fetched, fetched)
        if fetched is None and old is not None and old.pages <= self.target_pages():
            return None
        if segment.kind == "whole":
            pages = old.pages if old else self.target_pages()
            pieces = min(MAX_RANGES, max(2, math.ceil(pages / self.target_pages())))
            return split_whole(
                boundaries_for(pieces, list(sample), pass_.bookmark_at_start, pass_.started_at)
            )
        return segment.split(utc_now_text(), sample) or []
