"""One profiles sync: page 0, then the other pages in parallel, STATE as it goes.

The lifecycle (STATE hold-back, pause, failed pages, cancellation, the final
STATE and SUMMARY) is the engine's `StreamSync`; this module supplies what is
Engage's own. A *pass* (see `passes`) reads every profile of one effective
`where`; it is a list of *segments*, each one Engage query: page 0 first (it yields the
session and the page count), then pages 1..N-1 through the partitioned fetcher. When a
session expires, its segment is split into `$last_seen` ranges that each fit one session.

A finished page is recorded in the pass (STATE every `state_every_pages`); the bookmark
moves to min(newest `$last_seen` delivered, pass start) once the whole pass completed;
records carry the stream's typed property columns too (`columns`, made on the workers).
"""

from __future__ import annotations

import operator
import time
import typing as t

from tap_mixpanel_profiles.engine.fetcher import PartitionedFetcher
from tap_mixpanel_profiles.engine.lifecycle import Batch, StreamSync
from tap_mixpanel_profiles.errors import SessionExpired
from tap_mixpanel_profiles.profiles.columns import with_columns
from tap_mixpanel_profiles.profiles.cost import plan_line
from tap_mixpanel_profiles.profiles.engage import (
    EngageApi,
    EngagePage,
    EngageQuery,
    SessionCounting,
    engage_api,
    to_record,
)
from tap_mixpanel_profiles.profiles.passes import (
    PassState,
    Segment,
    Session,
    load_pass,
    pass_value,
    quantiles,
)
from tap_mixpanel_profiles.profiles.property_schema import spent_queries
from tap_mixpanel_profiles.profiles.splitting import Reservoir, Splitter
from tap_mixpanel_profiles.profiles.typed_stream import PropertyColumnsStream
from tap_mixpanel_profiles.profiles.where import combine_where

if t.TYPE_CHECKING:
    from tap_mixpanel_profiles.engine.stream import EngineStream
    from tap_mixpanel_profiles.settings import Settings

SAMPLE_SIZE = 2000
_LAST_SEEN = operator.itemgetter("last_seen")
LOOKAHEAD_PROFILES = 5_000
QUEUE_BATCHES = 2  # batches (~0.5 MB of JSON each) a streamed page holds ahead, per worker


class ProfilesSync(StreamSync):
    """Drives one run of the profiles stream; yields records to the SDK."""

    unit = "page"
    failed_key = "failed_page_indices"
    state_keys: t.ClassVar[tuple[str, ...]] = ("pass", "replication_key_value")
    restart_hint = "reading every profile"
    record_noun: t.ClassVar[str] = "profile"  # in log lines (a keyed pass: "member", ...)

    def __init__(self, stream: EngineStream[Settings]) -> None:
        super().__init__(stream, stream.runtime.client(engage_api(stream.settings)))
        self.stream = stream
        self.settings = stream.settings
        self.columns = stream.column_plan if isinstance(stream, PropertyColumnsStream) else None
        self.api = EngageApi(self.client, self.settings, with_columns(to_record, self.columns))
        self.api.raw_properties = not self.columns
        self.pass_: PassState | None = None
        self.segment: Segment | None = None  # the segment being fetched (names failed pages)
        self.served_total = 0
        self.bad_last_seen = 0
        self.redelivered = 0  # records a failed attempt had emitted before its retry
        self.sample = Reservoir(SAMPLE_SIZE)  # $last_seen values: where to cut ranges
        self.splitter = Splitter(self.settings.queries_per_hour)
        self._pages_since_state = 0
        self._expired = False  # the current segment's session was rejected
        self.query = EngageQuery.profiles(self.settings)  # `where` is the pass's, per segment
        self.counting = SessionCounting(self.settings, self.limiter)

    # ------------------------------------------------------------------ state
    def fingerprint(self) -> dict[str, t.Any]:
        """The settings that define which profiles a pass reads."""
        return self.settings.fingerprint()

    @property
    def tap_state(self) -> dict[str, t.Any]:
        """The whole STATE (its top keys are shared by every stream)."""
        return t.cast("dict[str, t.Any]", self.stream.tap_state)

    def save_state(self, *, complete: bool) -> None:
        """The pass in progress (`"pass": [...]`, or `[]` once it completed) into the bookmark:
        not a removed key, which Meltano's merge of partial STATEs cannot express (`saved_pass`).
        """
        self._pages_since_state = 0
        self.counting.remember(self.tap_state)
        if complete:
            self.state["pass"] = pass_value(None)
        elif self.pass_ is not None:
            self.pass_.sample = quantiles(self.sample.values)
            self.state["pass"] = pass_value(self.pass_)

    def start(self) -> None:
        """Resume a saved pass, or start one (incremental from the bookmark when set)."""
        self.counting.recall(self.tap_state, self.log)
        self.pass_ = load_pass(self.state, self.fingerprint(), self.settings.where, self.log)
        self.sample.extend(self.pass_.sample)

    # ------------------------------------------------------------------- run
    def sync(self) -> t.Iterator[Batch]:
        """Every pending segment of the pass, once each; records in page order."""
        assert self.pass_ is not None
        attempted: set[int] = set()
        while self.paused_until is None:
            segment = next((s for s in self.pass_.pending() if id(s) not in attempted), None)
            if segment is None:
                break
            attempted.add(id(segment))
            yield from self.sync_segment(self.pass_, segment)

    def incomplete(self) -> bool:
        """Some segment of the pass is not done (a failed page, an unsplittable range)."""
        return self.pass_ is None or bool(self.pass_.pending())

    def on_complete(self) -> None:
        """The pass is complete: the bookmark advances."""
        assert self.pass_ is not None
        bookmark = self.pass_.next_bookmark()
        if bookmark:
            self.state["replication_key"] = self.stream.replication_key
            self.state["replication_key_value"] = bookmark + "+00:00"

    def left(self) -> str:
        """Queries the pass still needs: the pages of started sessions, one per other segment."""
        pending = self.pass_.pending() if self.pass_ else []
        left = sum(len(s.session.remaining()) if s.session else 1 for s in pending)
        return f"about {left} queries left"

    def report(self, status: str) -> None:
        """Profiles that changed under the sync; $last_seen values that are no date."""
        pass_ = self.pass_
        if (
            status == "complete"
            and pass_ is not None
            and pass_.scheme == "session"
            and self.served_total
            and pass_.rows == self.progress.rows
            and self.progress.rows - self.redelivered != self.served_total
        ):
            self.log.warning(
                "Received %d profiles but page 0 reported %d: profiles changed during the sync.",
                self.progress.rows - self.redelivered,
                self.served_total,
            )
        if self.bad_last_seen:
            self.log.warning(
                "%d profiles had a $last_seen that is not YYYY-MM-DDTHH:MM:SS; "
                "their last_seen column is null (properties keep the raw value).",
                self.bad_last_seen,
            )

    def key_prefix(self) -> str:
        """What the log lines of this pass start with (a keyed pass names its key)."""
        return ""

    def summary_extra(self) -> dict[str, t.Any]:
        """The pass's scheme ('session' or 'ranges'), rows a retried page delivered twice."""
        return {
            "scheme": self.pass_.scheme if self.pass_ else None,
            "redelivered_rows": self.redelivered,
            **self.counting.summary(),
        }

    # --------------------------------------------------------------- segments
    def sync_segment(self, pass_: PassState, segment: Segment) -> t.Iterator[Batch]:
        """Fetch one segment: page 0 if needed, then the remaining pages in parallel."""
        self.segment = segment
        query = self.query.narrowed(combine_where(pass_.where, segment.clause()))
        label = self.label(segment)
        session = segment.session
        max_age = self.settings.session_max_age_seconds
        if session and time.time() - session.created_at > max_age:
            self.log.info(
                "%sSaved session is older than session_max_age_seconds (%d s); not reusing it.",
                label,
                max_age,
            )
            if self.replace_expired(pass_, segment, fetched=None):
                return
            session = None
        if session is not None:
            self.progress.plan(len(session.remaining()))
            self.log.info(
                "%sResuming session %s: %d of %d pages left.",
                label,
                (session.id or "")[:8],
                len(session.remaining()),
                session.pages,
            )
        else:
            yield from self.first_page(segment, query)
            session = segment.session
            if session is None:
                return  # page 0 failed, or the budget is spent
            if self.too_big(segment, session):
                self.log.info(
                    "%s%d pages is more than one session is likely to serve; splitting.",
                    label,
                    session.pages,
                )
                if self.replace_expired(pass_, segment, None):
                    return
        yield from self.fetch_pages(pass_, segment, session, query)

    def label(self, segment: Segment) -> str:
        """Prefix of a segment's log lines (none while the pass is one query)."""
        return "" if segment.kind == "whole" else f"[{segment.describe()}] "

    def first_page(self, segment: Segment, query: EngageQuery) -> t.Iterator[Batch]:
        """Page 0, streamed like any page; its end (total, session) starts the session."""
        label = f"{self.label(segment)}page 0"
        fetcher: PartitionedFetcher[int] = PartitionedFetcher(
            lambda page, emit: self.api.fetch_page(query, page, emit=emit, label=label),
            workers=1,
            cancel=self.cancel,
            name="engage",
            logger=self.log,
        )
        yield from self.drain(fetcher, [0])

    def start_session(self, segment: Segment, page0: EngagePage) -> Session:
        """Page 0 arrived: the session, its served page size and its page count."""
        requested = self.settings.page_size
        pages = page0.page_count(requested)
        served = page0.served_page_size(requested)
        if served < requested:
            self.log.info("Server serves %d profiles per page (requested %d).", served, requested)
        session = Session(
            id=page0.session_id,
            page_size=served,
            total=page0.total or 0,
            pages=pages,
            created_at=time.time(),
        )
        segment.session = session
        self.served_total += session.total
        self.progress.plan(pages)
        s = self.settings
        counted = s.session_pages_count_against_quota
        counted = self.limiter.maybe_counted if counted is None else counted
        if segment.kind == "whole":
            args = (s.queries_per_hour, s.quota_window_seconds, f"{self.record_noun}s")
            line = plan_line(session.total, served, counted, *args, spent_queries(self.runtime))
            self.log.info("%s%s", self.key_prefix(), line)
        if pages > s.queries_per_hour and segment.kind == "whole" and counted is not False:
            self.log.warning(
                "%d pages to fetch but queries_per_hour is %d: the sync spans "
                "several quota windows (on_quota_exhausted=%s). A larger page_size "
                "spends fewer queries.",
                pages,
                self.settings.queries_per_hour,
                self.settings.on_quota_exhausted,
            )
        return session

    def fetch_pages(
        self, pass_: PassState, segment: Segment, session: Session, query: EngageQuery
    ) -> t.Iterator[Batch]:
        """Pages 1..N-1 through the fetcher; records leave in page order."""
        remaining = session.remaining()
        fetched_before = session.pages - len(remaining)
        label = self.label(segment)
        self._expired = False

        def fetch(page: int, emit: t.Callable[[list[t.Any]], None]) -> EngagePage:
            return self.api.fetch_page(
                query, page, session.id, emit=emit, label=f"{label}page {page}"
            )

        workers = self.settings.max_workers
        # Pages held ahead of the writer: one per worker (two for small pages), so memory
        # stays near LOOKAHEAD_PROFILES parsed profiles. More look-ahead does not help a
        # latency-bound sync and costs CPU at latency 0: records decoded long before they
        # are written have left the CPU caches (measured: 20 000 -> 5 000, 4 % fewer
        # CPU-seconds and 25 MB less peak RSS).
        lookahead = max(workers, min(2 * workers, LOOKAHEAD_PROFILES // session.page_size))
        fetcher: PartitionedFetcher[int] = PartitionedFetcher(
            fetch,
            workers=workers,
            lookahead=lookahead,
            queue_batches=QUEUE_BATCHES,
            cancel=self.cancel,
            name="engage",
            logger=self.log,
        )
        yield from self.drain(fetcher, remaining)
        if self._expired:
            done_now = session.pages - len(session.remaining()) - fetched_before
            self.replace_expired(pass_, segment, fetched=max(1, done_now + fetched_before))
        elif session.complete:
            segment.done = True
            segment.session = None
        self.write_state()

    def accept(self, partition: t.Any, records: Batch) -> Batch:
        """A batch on its way to the SDK: the pass's newest $last_seen and a sample of them."""
        pass_ = self.pass_
        assert pass_ is not None
        values = [v for v in map(_LAST_SEEN, records) if v is not None]
        if values:
            pass_.see(max(values))
            self.sample.extend(values)
        pass_.rows += len(records)
        self.progress.rows += len(records)
        return records

    def partition_done(self, partition: t.Any, rows: int, result: t.Any) -> None:
        """A page delivered: record it in the session; STATE every state_every_pages.

        Page 0's end starts the session (its total and session_id come with it).
        """
        page: EngagePage = result
        segment = self.segment
        assert segment is not None
        label = self.label(segment)
        self.bad_last_seen += page.bad_last_seen
        self.redelivered += page.redelivered
        if page.redelivered:
            self.log.info(
                "%spage %d: a retry delivered %d profiles a failed attempt had already "
                "delivered (the target keeps one row per distinct_id; nothing is lost).",
                label,
                partition,
                page.redelivered,
            )
        if partition == 0:
            started = self.start_session(segment, page)
            self.progress.partition_done(f"{label}page 1/{started.pages} (page 0)", page.rows)
            self.write_state()
            return
        session = segment.session
        assert session is not None
        rows = page.rows
        if partition < session.pages - 1 and rows < session.page_size:
            self.log.warning(
                "%spage %d returned %d profiles, expected %d (profiles may have changed "
                "during the sync).",
                label,
                partition,
                rows,
                session.page_size,
            )
        self.progress.partition_done(f"{label}page {partition + 1}/{session.pages}", rows)
        session.mark_done(partition)
        self._pages_since_state += 1
        if self._pages_since_state >= self.settings.state_every_pages:
            self.write_state()

    def partition_error(
        self, partition: t.Any, error: BaseException, fetcher: PartitionedFetcher[t.Any] | None
    ) -> bool:
        """An expired session: stop scheduling its pages; the segment is split afterwards."""
        if not isinstance(error, SessionExpired):
            return False
        if not self._expired:
            self.log.warning("%s", error)
        self._expired = True
        if fetcher is not None:
            fetcher.stop_submitting()
        return True

    def partition_id(self, partition: t.Any) -> t.Any:
        """A failed page's name: its index, prefixed by the range once the pass is split."""
        segment = self.segment
        if segment is None or segment.kind == "whole":
            return partition
        return f"{segment.describe()} page {partition}"

    # ------------------------------------------------------------ expiry
    def too_big(self, segment: Segment, session: Session) -> bool:
        """A range larger than a session (or a quota window) can serve is split at once."""
        return self.splitter.too_big(segment, session, self.sample.values)

    def replace_expired(self, pass_: PassState, segment: Segment, fetched: int | None) -> bool:
        """The segment's session is gone: split it into smaller $last_seen segments.

        Returns False when the segment should simply start again with a fresh
        session (it is small enough), True when it was replaced or given up for this run.
        """
        old = segment.session
        segment.session = None
        children = self.splitter.replacement(pass_, segment, old, fetched, self.sample.values)
        if children is None:
            # Small enough to finish in one fresh session: just start it again.
            self.write_state()
            return False
        if not children:
            self.log.error(
                "%s: session expired and the range cannot be split further; it will "
                "be retried by the next run.",
                segment.describe(),
            )
            self.fail("expired")
            self.write_state()
            return True
        pass_.replace(segment, children)
        self.log.warning(
            "Session not usable%s: using the '$last_seen ranges' scheme "
            "(%s split into %d segments, aiming at <= %d pages each).",
            f" after {fetched} pages" if fetched else "",
            segment.describe(),
            len(children),
            self.splitter.target_pages(),
        )
        self.write_state()
        return True
