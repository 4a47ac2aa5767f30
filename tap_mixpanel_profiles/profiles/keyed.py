"""One Engage pass per key: the profiles engine run once per data group, or once per cohort.

`ProfilesSync` reads every profile of one query in a resumable pass: page 0, then the
other pages in parallel, sessions resumed by the next run, expired sessions split into
`$last_seen` ranges, the bookmark advanced only once the pass completed. Group profiles
need exactly that once per data group, cohort members once per cohort. `KeyedPasses`
runs the same pass for each key in turn, each with its own query, record maker and part
of the stream's bookmark::

    bookmarks.<stream> = {"fingerprint": {...},             # the stream's settings
                          "<container>": {"<key>": {"pass": ..., "replication_key_value": ...},
                                          ...}}

While a key syncs, `state` *is* that key's part, so every method of `ProfilesSync` reads
and writes its own pass and bookmark unchanged; between keys it is the stream's bookmark.
A key whose pass is not finished (paused, a failed page) keeps it and the next run
resumes it; a key the server refuses for good (a 4xx other than 401/402/403) is named and
skipped, and the other keys are still delivered.

Every Engage stream spends the same hourly budget; with `on_quota_exhausted: stop` a keyed
stream takes at most its fair share of a run while a stream synced after it waits for
budget (see `budget`).
"""

from __future__ import annotations

import abc
import typing as t

from typing_extensions import override

from tap_mixpanel_profiles.errors import ConfigError, FatalResponseError
from tap_mixpanel_profiles.profiles.budget import FairShare
from tap_mixpanel_profiles.profiles.columns import with_columns
from tap_mixpanel_profiles.profiles.passes import load_pass
from tap_mixpanel_profiles.profiles.splitting import Reservoir
from tap_mixpanel_profiles.profiles.sync import SAMPLE_SIZE, ProfilesSync

if t.TYPE_CHECKING:
    from tap_mixpanel_profiles.engine.fetcher import PartitionedFetcher
    from tap_mixpanel_profiles.engine.lifecycle import Batch
    from tap_mixpanel_profiles.engine.stream import EngineStream
    from tap_mixpanel_profiles.profiles.engage import EngageQuery, MakeRecord
    from tap_mixpanel_profiles.profiles.passes import Segment
    from tap_mixpanel_profiles.settings import Settings

P = t.TypeVar("P")

#: How a key's run ended: its pass completed, is left for the next run, or was refused.
COMPLETE, UNFINISHED, REFUSED = "complete", "unfinished", "refused"


class KeyedPasses(ProfilesSync):
    """Runs `ProfilesSync`'s pass once per key of `plan`, each in its own part of the bookmark."""

    #: The bookmark's key holding one part per key (e.g. "data_groups").
    container: t.ClassVar[str] = "keys"
    #: What a key is called in log lines and failed-partition names (e.g. "data group").
    noun: t.ClassVar[str] = "key"

    def key_prefix(self) -> str:
        """'data group 1: ', 'cohort 101: ' ... (nothing between keys)."""
        return "" if self.key is None else f"{self.noun} {self.key}: "

    def __init__(self, stream: EngineStream[Settings]) -> None:
        super().__init__(stream)
        self.key: int | None = None
        self.plan: list[int] = []
        self.outcomes: dict[int, str] = {}
        self.refused = False  # the current key was refused for good (see partition_error)
        self.fatal: BaseException | None = None  # raised at the end of the run (exit code)
        self.share = FairShare(self, stream)

    # ------------------------------------------------------------ the domain's part
    @abc.abstractmethod
    def query_for(self, key: int) -> EngageQuery:
        """The Engage query that reads key `key`."""

    @abc.abstractmethod
    def record_maker(self, key: int) -> MakeRecord:
        """How key `key`'s results become records (called once its pass is loaded)."""

    @abc.abstractmethod
    def key_fingerprint(self, key: int) -> dict[str, t.Any]:
        """The settings that define what one key's pass reads (beside the stream's)."""

    def stream_fingerprint(self) -> dict[str, t.Any]:
        """The settings that define the whole stream's bookmark."""
        return {"project_id": self.settings.project_id}

    def key_settled(self, key: int, outcome: str) -> None:
        """Key `key` is done for this run's plan: its pass completed, or it was refused.

        Called while `state` is the key's part, before the STATE that records it."""

    def key_refused(self, key: int, error: BaseException) -> None:
        """The server refused key `key` for good (logged and named by default)."""
        self.log.error("%s: %s %s skipped: %s", self.host.name, self.noun, key, error)

    # ----------------------------------------------------------------- the parts
    def part(self, key: int) -> dict[str, t.Any]:
        """Key `key`'s part of the bookmark (created empty when missing)."""
        root = self.host.stream_state
        parts = root.get(self.container)
        if not isinstance(parts, dict):
            parts = root[self.container] = {}
        part = parts.get(str(key))
        if not isinstance(part, dict):
            part = parts[str(key)] = {}
        return part

    @property
    @override
    def state(self) -> dict[str, t.Any]:
        """The current key's part while a key syncs, else the stream's bookmark."""
        return self.host.stream_state if self.key is None else self.part(self.key)

    @override
    def fingerprint(self) -> dict[str, t.Any]:
        """The stream's settings, plus the current key's while a key syncs."""
        fingerprint = self.stream_fingerprint()
        if self.key is not None:
            fingerprint.update(self.key_fingerprint(self.key))
        return fingerprint

    # ----------------------------------------------------------------------- run
    @override
    def start(self) -> None:
        """What an earlier run learned about session pages (auto); the domain plans its keys."""
        self.counting.recall(self.tap_state, self.log)

    @override
    def sync(self) -> t.Iterator[Batch]:
        """Each key of the plan in turn; after a pause the rest are left for the next run."""
        for key in self.plan:
            if self.paused_until is not None:
                self.outcomes[key] = UNFINISHED
                continue
            yield from self.sync_key(key)
        self.key = None
        self.pass_ = None

    @override
    def drain(self, fetcher: PartitionedFetcher[P], partitions: t.Iterable[P]) -> t.Iterator[Batch]:
        """Every query of the stream (list, page 0s, pages) within its share of the run."""
        return super().drain(fetcher, self.share.admit(partitions))

    def sync_key(self, key: int) -> t.Iterator[Batch]:
        """One key's pass: load (resume) it, run it, settle it."""
        self.enter(key)
        yield from super().sync()
        self.leave(key)

    def enter(self, key: int) -> None:
        """Make `key` current: its query, its pass (resumed when saved), its record maker."""
        self.key = key
        self.refused = False
        self.segment = None
        self.served_total = 0
        self.query = self.query_for(key)
        self.sample = Reservoir(SAMPLE_SIZE)  # $last_seen values of this key's profiles
        self.pass_ = load_pass(
            self.state,
            self.fingerprint(),
            self.query.where,
            self.log,
            prefix=self.key_prefix(),
            noun=self.record_noun,
        )
        self.sample.extend(self.pass_.sample)
        self.api.make_record = with_columns(self.record_maker(key), self.columns)

    def leave(self, key: int) -> None:
        """Settle the current key (bookmark, pass) in its part, then emit STATE."""
        pass_ = self.pass_
        if self.refused:
            outcome = REFUSED
        elif pass_ is not None and not pass_.pending():
            outcome = COMPLETE
            super().on_complete()  # the key's bookmark advances (incremental keys)
        else:
            outcome = UNFINISHED
        self.outcomes[key] = outcome
        # Into the part now, not only when STATE is emitted (held back until a record).
        super().save_state(complete=outcome != UNFINISHED)
        if outcome != UNFINISHED:
            self.pass_ = None  # settled: no later save_state may write it back
            self.key_settled(key, outcome)
        self.write_state()
        self.key = None

    @override
    def save_state(self, *, complete: bool) -> None:
        """The current key's pass (keys already left saved theirs in `leave`)."""
        if self.key is None:
            self._pages_since_state = 0
            self.counting.remember(self.tap_state)
        else:
            super().save_state(complete=False)

    @override
    def on_complete(self) -> None:
        """Every key completed: each one's bookmark advanced when it did (`leave`)."""

    @override
    def incomplete(self) -> bool:
        """A key left unfinished or refused, or another named failure."""
        return bool(self.failed) or any(o != COMPLETE for o in self.outcomes.values())

    @override
    def left(self) -> str:
        """The keys the next run finishes."""
        left = [str(k) for k, o in self.outcomes.items() if o == UNFINISHED]
        return f"{len(left)} {self.noun}s to finish ({', '.join(left) or 'none'})"

    @override
    def summary_extra(self) -> dict[str, t.Any]:
        """How each key ended, and the rows a retried page delivered twice."""
        return {
            self.container: {str(k): o for k, o in self.outcomes.items()},
            "redelivered_rows": self.redelivered,
            **self.counting.summary(),
        }

    @override
    def finish(self, status: str | None = None, error: BaseException | None = None) -> None:
        """As every stream ends; a key refused as a configuration error sets the exit code."""
        super().finish(status, error or self.fatal)

    # -------------------------------------------------------------- naming, errors
    @override
    def label(self, segment: Segment) -> str:
        """Prefix of a key's log lines: the key, then the range once its pass is split."""
        inner = super().label(segment)
        return inner if self.key is None else f"{self.noun} {self.key} {inner}"

    @override
    def partition_id(self, partition: t.Any) -> t.Any:
        """A failure is named by its key: 'cohort 101 page 3', 'data group 1: expired'."""
        if self.key is None or (isinstance(partition, str) and partition.startswith(self.noun)):
            return partition
        ident = super().partition_id(partition)
        return f"{self.noun} {self.key} {'page ' if isinstance(ident, int) else ''}{ident}"

    @override
    def partition_error(
        self, partition: t.Any, error: BaseException, fetcher: PartitionedFetcher[t.Any] | None
    ) -> bool:
        """A 4xx answer for one key (400, 404 ...): name it, skip it, go on with the others.

        401/402/403 stay fatal for the whole stream (they concern every key)."""
        if super().partition_error(partition, error, fetcher):
            return True
        if self.key is None or not isinstance(error, (ConfigError, FatalResponseError)):
            return False
        if not self.refused:
            self.refused = True
            self.key_refused(self.key, error)
            self.fail(f"{self.noun} {self.key}")
        if fetcher is not None:
            fetcher.stop_submitting()
        return True
