"""Sharing the Engage budget between the Engage streams of one run.

profiles, cohorts, cohort_members and group_profiles spend one hourly budget (Mixpanel
counts per project, and the run has one Engage limiter). The SDK syncs streams in name
order: cohort_members, cohorts, group_profiles, profiles. With `on_quota_exhausted: stop`
a stream early in that order could spend every run's whole budget on its own work
(cohort_members starts a new round of snapshots in every run), and the streams after it
would never get a query: their work would never finish, however many runs follow.

The rule: while a stream synced *later* in the run waits for budget (its bookmark holds
unfinished work: a paused or failed pass, or a round under way), a stream takes at most its
fair share of the run, `queries_per_hour // selected Engage streams` queries (at least 1),
and then pauses with resumable STATE. So each waiting stream gets at least its share in
every run, and once nobody waits every stream runs at full speed again. Wait mode needs
none of this: there a run waits for the window and completes everything.
"""

from __future__ import annotations

import time
import typing as t

from tap_mixpanel_profiles.profiles.passes import saved_pass

if t.TYPE_CHECKING:
    from singer_sdk import Tap

    from tap_mixpanel_profiles.engine.lifecycle import StreamSync
    from tap_mixpanel_profiles.engine.stream import EngineStream
    from tap_mixpanel_profiles.settings import Settings

P = t.TypeVar("P")

#: Every stream that spends the Engage budget.
ENGAGE_STREAMS = frozenset({"cohort_members", "cohorts", "group_profiles", "profiles"})


def waits_for_budget(bookmark: t.Any) -> bool:
    """True when an Engage stream's bookmark holds unfinished work for its next run."""
    if not isinstance(bookmark, dict):
        return False
    if saved_pass(bookmark.get("pass")) or bookmark.get("round"):  # profiles; cohort_members
        return True
    return any(  # a key's pass: group_profiles, cohort_members
        isinstance(parts, dict)
        and any(isinstance(part, dict) and saved_pass(part.get("pass")) for part in parts.values())
        for parts in (bookmark.get("data_groups"), bookmark.get("cohorts"))
    )


class FairShare:
    """How many queries one stream may start in this run (see the module docstring)."""

    def __init__(self, sync: StreamSync, stream: EngineStream[Settings]) -> None:
        self.sync = sync
        self.stream = stream
        self.limit: int | None = None
        self.admitted = 0
        self._decided = False

    def decide(self) -> int | None:
        """This run's share, or None (no limit): wait mode, or nobody after us waits."""
        settings = self.stream.settings
        if settings.on_quota_exhausted != "stop":
            return None
        tap = t.cast("Tap", self.stream.owner)
        names = [n for n, s in tap.streams.items() if n in ENGAGE_STREAMS and s.selected]
        if self.stream.name not in names:
            return None
        bookmarks = (tap.state or {}).get("bookmarks") or {}
        later = names[names.index(self.stream.name) + 1 :]  # the SDK's sync order
        waiting = [n for n in later if waits_for_budget(bookmarks.get(n))]
        if not waiting:
            return None
        share = max(1, settings.queries_per_hour // len(names))
        self.sync.log.info(
            "%s: %s wait%s for Engage budget: this stream takes at most %d of the %d queries "
            "of this run (on_quota_exhausted=stop).",
            self.stream.name,
            ", ".join(waiting),
            "s" if len(waiting) == 1 else "",
            share,
            settings.queries_per_hour,
        )
        return share

    def admit(self, partitions: t.Iterable[P]) -> t.Iterator[P]:
        """`partitions` (each one query) while the share lasts; then pause the stream."""
        if not self._decided:
            self.limit = self.decide()
            self._decided = True
        for partition in partitions:
            if self.limit is not None and self.admitted >= self.limit:
                if self.sync.paused_until is None:
                    self.sync.log.info(
                        "%s: its share of the Engage budget (%d queries) is spent; pausing "
                        "with resumable STATE, the rest of this run's budget is the others'.",
                        self.stream.name,
                        self.limit,
                    )
                    self.sync.pause(time.time())
                return
            self.admitted += 1
            yield partition
