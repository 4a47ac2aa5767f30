"""One profiles sync: page 0, then the other pages in parallel, STATE as it goes.

Runs on the writer thread (it is the body of `ProfilesStream.get_records`).
HTTP happens on the fetcher's workers, except each segment's page 0, which
must come first anyway (it yields the session and the page count).

Outcomes (see `passes` for the state it keeps):
* every page delivered → the pass is complete; the bookmark advances;
* hourly budget spent with on_quota_exhausted=stop → paused: STATE says what
  is left, the run exits 0 (a pause by design is not a failure);
* some pages failed after their retries → every other page is delivered, the
  failed ones are named, the stream reports failure (the tap exits 1);
* SIGTERM/SIGINT → STATE is written, the run ends with Interrupted.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import time
import typing as t

from tap_mixpanel_profiles.profiles.engage import (
    LAST_SEEN_RE,
    EngageApi,
    EngagePage,
    combine_where,
    last_seen_clause,
)
from tap_mixpanel_profiles.errors import (
    Cancelled,
    Interrupted,
    TapError,
    PartitionFailed,
    QuotaExhausted,
    SessionExpired,
)
from tap_mixpanel_profiles.engine.fetcher import PartitionedFetcher
from tap_mixpanel_profiles.profiles.passes import (
    PassState,
    Segment,
    Session,
    boundaries_for,
    quantiles,
    split_whole,
    utc_now_text,
)
from tap_mixpanel_profiles.engine.lifecycle import StreamSync

if t.TYPE_CHECKING:
    from tap_mixpanel_profiles.profiles.stream import ProfilesStream

SAMPLE_SIZE = 2000
LOOKAHEAD_PROFILES = 20_000
MAX_RANGES = 64


class ProfilesSync(StreamSync):
    """Drives one run of the profiles stream; yields records to the SDK."""

    def __init__(self, stream: ProfilesStream) -> None:
        super().__init__(stream, stream.tap_engine.engage_client(), unit="page")
        self.api = EngageApi(self.client, self.settings)
        self.paused_until: float | None = None
        self.failed_pages: list[t.Any] = []
        self.served_total = 0
        self.bad_last_seen = 0
        self.sample: list[str] = []
        self._seen = 0
        self.learned_session_pages: int | None = None
        self._pages_since_state = 0

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> dict[str, t.Any]:
        return self.stream.stream_state

    def write_state(self, pass_: PassState | None, *, final: bool = False) -> None:
        """Put the pass into the stream's bookmark and emit STATE now.

        Intermediate STATE is held back until this run has emitted a record:
        target-duckdb re-emits the *first* STATE it received when it loaded no
        rows, so an early "pass in progress" STATE would be what Meltano saves
        for an empty incremental run. The final STATE is always written.
        """
        if not final and self.progress.rows == 0:
            return
        if pass_ is None:
            # null, not a removed key: Meltano deep-merges partial STATEs (e.g. under
            # --full-refresh), and a merge cannot express a deleted key.
            self.state["pass"] = None
        else:
            pass_.sample = quantiles(self.sample)
            self.state["pass"] = pass_.to_dict()
        self.state["fingerprint"] = self.settings.fingerprint()
        self.stream.emit_state()
        self._pages_since_state = 0

    def load_pass(self) -> PassState:
        """Resume a saved pass, or start one (incremental from the bookmark when set)."""
        fingerprint = self.settings.fingerprint()
        saved_fp = self.state.get("fingerprint")
        if saved_fp is not None and saved_fp != fingerprint:
            saved_fp = saved_fp if isinstance(saved_fp, dict) else {}
            changed = sorted(k for k in fingerprint if fingerprint.get(k) != saved_fp.get(k))
            self.log.warning(
                "Saved STATE was written with different settings (%s); ignoring it "
                "and reading every profile.",
                ", ".join(changed) or "unknown",
            )
            for key in ("pass", "replication_key_value"):
                self.state[key] = None  # null rather than removed: see write_state
        saved = self.state.get("pass")
        if saved:
            try:
                pass_ = PassState.from_dict(saved)
                if pass_.fingerprint == fingerprint:
                    self.log.info(
                        "Resuming the pass begun at %s (scheme: %s, %d rows so far).",
                        pass_.started_at,
                        pass_.scheme,
                        pass_.rows,
                    )
                    return pass_
            except (KeyError, TypeError, ValueError) as exc:
                self.log.warning("Ignoring unreadable pass in STATE (%s).", exc)
        bookmark = self.state.get("replication_key_value")
        if bookmark and not LAST_SEEN_RE.match(str(bookmark)):
            self.log.warning(
                "Ignoring unreadable bookmark %r in STATE: reading every profile.",
                str(bookmark)[:40],
            )
            bookmark = None
        where = self.settings.where
        if bookmark:
            where = combine_where(where, last_seen_clause(">=", str(bookmark)[:19]))
            self.log.info("Incremental sync: profiles with $last_seen >= %s.", str(bookmark)[:19])
        else:
            self.log.info(
                "Full sync: every profile%s.", " matching the configured where" if where else ""
            )
        return PassState.new(fingerprint, where, str(bookmark)[:19] if bookmark else None)

    # ------------------------------------------------------------------- run
    def run(self) -> t.Iterator[dict[str, t.Any]]:
        """Sync every pending segment of the pass; yields records in page order."""
        pass_ = self.load_pass()
        self.sample = list(pass_.sample)
        attempted: set[int] = set()
        try:
            while self.paused_until is None:
                segment = next((s for s in pass_.pending() if id(s) not in attempted), None)
                if segment is None:
                    break
                attempted.add(id(segment))
                yield from self.sync_segment(pass_, segment)
        except Cancelled:
            self.write_state(pass_, final=True)
            self.finish(pass_, status="interrupted")
            raise Interrupted(
                "Interrupted: STATE written; the next run resumes where this one stopped.",
                self.engine.signal_received or 15,
            ) from None
        except TapError as exc:
            # A rejected query (400), no access (401/403) or no Engage on the plan (402):
            # this stream fails, the others still sync; the tap raises it at the end.
            self.write_state(pass_, final=True)
            self.log.error("profiles: %s", exc)
            self.finish(pass_, status="failed", error=exc)
            return
        finally:
            self.client.close()
        self.finish(pass_)

    def finish(
        self, pass_: PassState, status: str | None = None, error: BaseException | None = None
    ) -> None:
        """Settle the bookmark, write final STATE, log the summary."""
        if status is None and self.paused_until is not None:
            status = "paused"
            self.write_state(pass_, final=True)
            resume = dt.datetime.fromtimestamp(self.paused_until, tz=dt.timezone.utc)
            left = sum(len(s.session.remaining()) if s.session else 1 for s in pass_.pending())
            self.log.warning(
                "Hourly query budget spent (on_quota_exhausted=stop): pausing with "
                "resumable STATE; about %d queries left; the next run can start "
                "after %s UTC.",
                left,
                resume.strftime("%Y-%m-%d %H:%M:%S"),
            )
        elif status is None and pass_.pending():
            status = "failed"
            self.write_state(pass_, final=True)
        elif status is None:
            status = "complete"
            bookmark = pass_.next_bookmark()
            if bookmark:
                self.state["replication_key"] = self.stream.replication_key
                self.state["replication_key_value"] = bookmark + "+00:00"
            self.write_state(None, final=True)
            if (
                pass_.scheme == "session"
                and self.served_total
                and pass_.rows == self.progress.rows != self.served_total
            ):
                self.log.warning(
                    "Received %d profiles but page 0 reported %d: profiles changed "
                    "during the sync.",
                    self.progress.rows,
                    self.served_total,
                )
        if self.bad_last_seen:
            self.log.warning(
                "%d profiles had a $last_seen that is not YYYY-MM-DDTHH:MM:SS; "
                "their last_seen column is null (properties keep the raw value).",
                self.bad_last_seen,
            )
        self.stream.report_outcome(status, self.failed_pages, error)
        self.progress.emit_summary(
            status=status,
            failed_page_indices=self.failed_pages,
            scheme=pass_.scheme,
            **self.request_stats(),
        )

    # --------------------------------------------------------------- segments
    def sync_segment(self, pass_: PassState, segment: Segment) -> t.Iterator[dict[str, t.Any]]:
        """Fetch one segment: page 0 if needed, then the remaining pages in parallel."""
        where = combine_where(pass_.where, segment.clause())
        label = "" if segment.kind == "whole" else f"[{segment.describe()}] "
        session = segment.session
        if session and time.time() - session.created_at > self.settings.session_max_age_seconds:
            self.log.info(
                "%sSaved session is older than session_max_age_seconds (%d s); not reusing it.",
                label,
                self.settings.session_max_age_seconds,
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
            try:
                page0 = self.api.fetch_page(where, 0, label=f"{label}page 0")
            except QuotaExhausted as exc:
                self.paused_until = exc.resume_at
                return
            except PartitionFailed as exc:
                self.log.error("%s", exc)
                self.failed_pages.append(self.page_id(segment, 0))
                return
            session = self.start_session(segment, page0)
            yield from self.emit(pass_, page0)
            self.progress.partition_done(
                f"{label}page 1/{session.pages} (page 0)", len(page0.records)
            )
            self.write_state(pass_)
            if self.too_big(segment, session):
                self.log.info(
                    "%s%d pages is more than one session is likely to serve; splitting.",
                    label,
                    session.pages,
                )
                if self.replace_expired(pass_, segment, None):
                    return
        yield from self.fetch_pages(pass_, segment, session, where, label)

    def start_session(self, segment: Segment, page0: EngagePage) -> Session:
        pages = page0.page_count(self.settings.page_size)
        served = page0.served_page_size(self.settings.page_size)
        if served < self.settings.page_size:
            self.log.info(
                "Server serves %d profiles per page (requested %d).",
                served,
                self.settings.page_size,
            )
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
        if pages > self.settings.queries_per_hour and segment.kind == "whole":
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
        self, pass_: PassState, segment: Segment, session: Session, where: str | None, label: str
    ) -> t.Iterator[dict[str, t.Any]]:
        """Pages 1..N-1 through the fetcher; records leave in page order."""
        remaining = session.remaining()
        fetched_before = session.pages - len(remaining)
        expired = False

        def fetch(page: int, emit: t.Callable[[list[t.Any]], None]) -> None:
            result = self.api.fetch_page(where, page, session.id, label=f"{label}page {page}")
            emit([result])

        workers = self.settings.max_workers
        # Pages held ahead of the writer: up to 2 per worker, fewer for very large pages,
        # so memory stays near LOOKAHEAD_PROFILES parsed profiles whatever the page size.
        lookahead = max(workers, min(2 * workers, LOOKAHEAD_PROFILES // session.page_size))
        fetcher = PartitionedFetcher(
            fetch,
            workers=workers,
            lookahead=lookahead,
            cancel=self.cancel,
            name="engage",
            logger=self.log,
        )
        for chunk in fetcher.run(remaining):
            if chunk.records is not None:
                page: EngagePage = chunk.records[0]
                if page.page < session.pages - 1 and len(page.records) < session.page_size:
                    self.log.warning(
                        "%spage %d returned %d profiles, expected %d (profiles "
                        "may have changed during the sync).",
                        label,
                        page.page,
                        len(page.records),
                        session.page_size,
                    )
                yield from self.emit(pass_, page)
                self.progress.partition_done(
                    f"{label}page {page.page + 1}/{session.pages}", len(page.records)
                )
                continue
            error = chunk.error
            if error is None:
                session.mark_done(chunk.partition)
                self._pages_since_state += 1
                if self._pages_since_state >= self.settings.state_every_pages:
                    self.write_state(pass_)
            elif isinstance(error, QuotaExhausted):
                self.paused_until = max(self.paused_until or 0.0, error.resume_at)
                fetcher.stop_submitting()
            elif isinstance(error, SessionExpired):
                if not expired:
                    self.log.warning("%s", error)
                expired = True
                fetcher.stop_submitting()
            elif isinstance(error, PartitionFailed):
                self.log.error("%s", error)
                self.failed_pages.append(self.page_id(segment, chunk.partition))
                self.progress.fail(chunk.partition)
            else:
                raise error
            if self.cancel.is_set():
                raise Cancelled
        if expired:
            done_now = session.pages - len(session.remaining()) - fetched_before
            self.replace_expired(pass_, segment, fetched=max(1, done_now + fetched_before))
        elif session.complete:
            segment.done = True
            segment.session = None
        self.write_state(pass_)

    def emit(self, pass_: PassState, page: EngagePage) -> t.Iterator[dict]:
        """Hand records to the SDK (which writes them), tracking the pass's max $last_seen."""
        records = page.records
        self.bad_last_seen += page.bad_last_seen
        for record in records:
            last_seen = record["last_seen"]
            if last_seen is not None:
                pass_.see(last_seen)
                self._sample(last_seen)
            yield record
        pass_.rows += len(records)
        self.progress.rows += len(records)

    def _sample(self, value: str) -> None:
        """Reservoir sample of $last_seen values: cut points for range splitting."""
        self._seen += 1
        if len(self.sample) < SAMPLE_SIZE:
            self.sample.append(value)
        else:
            slot = random.randrange(self._seen)
            if slot < SAMPLE_SIZE:
                self.sample[slot] = value

    # ------------------------------------------------------------ expiry
    def target_pages(self) -> int:
        """Pages one session can be trusted to serve (learned, else the hourly budget)."""
        # A range should fit in one quota window (with room for its neighbours' page 0),
        # so that a paused run never leaves a half-read range to an expiring session.
        budget = max(1, self.settings.queries_per_hour // 2)
        if self.learned_session_pages:
            # Sessions expire by age, not page count: keep a margin below what one served.
            return max(1, min(budget, self.learned_session_pages * 2 // 3))
        return budget

    def too_big(self, segment: Segment, session: Session) -> bool:
        """A range larger than a session (or a quota window) can serve is split at once."""
        return (
            segment.kind == "range"
            and session.pages > self.target_pages()
            and segment.split(utc_now_text(), self.sample) is not None
        )

    def replace_expired(self, pass_: PassState, segment: Segment, fetched: int | None) -> bool:
        """The segment's session is gone: split it into smaller $last_seen segments.

        Returns False when the segment should simply start again with a fresh
        session (it is small enough), True when it was replaced or given up for this run.
        """
        old = segment.session
        if fetched is not None:
            self.learned_session_pages = min(self.learned_session_pages or fetched, fetched)
        segment.session = None
        if fetched is None and old is not None and old.pages <= self.target_pages():
            # Small enough to finish in one fresh session: just start it again.
            self.write_state(pass_)
            return False
        if segment.kind == "whole":
            pages = old.pages if old else self.target_pages()
            pieces = min(MAX_RANGES, max(2, math.ceil(pages / self.target_pages())))
            children = split_whole(
                boundaries_for(pieces, self.sample, pass_.bookmark_at_start, pass_.started_at)
            )
        else:
            children = segment.split(utc_now_text(), self.sample) or []
        if not children:
            self.log.error(
                "%s: session expired and the range cannot be split further; it will "
                "be retried by the next run.",
                segment.describe(),
            )
            self.failed_pages.append(self.page_id(segment, "expired"))
            self.write_state(pass_)
            return True
        pass_.replace(segment, children)
        self.log.warning(
            "Session not usable%s: using the '$last_seen ranges' scheme "
            "(%s split into %d segments, aiming at <= %d pages each).",
            f" after {fetched} pages" if fetched else "",
            segment.describe(),
            len(children),
            self.target_pages(),
        )
        self.write_state(pass_)
        return True

    @staticmethod
    def page_id(segment: Segment, page: t.Any) -> t.Any:
        """A failed page's name: its index, prefixed by the range once the pass is split."""
        return page if segment.kind == "whole" else f"{segment.describe()} page {page}"
