"""One events sync: date chunks through the shared fetcher, STATE per finished chunk.

Runs on the writer thread (it is the body of `EventsStream.get_records`). The
days to export are split into chunks of `events_chunk_days`; workers stream
each chunk's export into bounded batches; records leave in chunk order.

State, inside `bookmarks.events`:
* `resume_date` while a sync is unfinished: every day before it is done ("all
  chunks up to date D done"); an interrupted, paused or failed run resumes there;
* `last_date` once a sync completed: the next run starts at that day (always
  re-read: it may have been today, still filling) minus `events_lookback_days`;
  `replication_key_value` is the UTC instant that day began, for readers of STATE;
* `fingerprint`: the settings that define which events are read; state saved
  under other settings is ignored with a warning.
The bookmark advances only over a prefix of chunks that all succeeded.

Outcomes, as for profiles: complete; paused (quota spent with
on_quota_exhausted=stop: resumable STATE, exit 0); failed (date ranges named in
one line, the tap exits 1 after every stream ran); interrupted (SIGTERM: STATE,
then Interrupted).
"""

from __future__ import annotations

import datetime as dt
import threading
import typing as t

from tap_mixpanel_profiles.events.dates import (
    ONE_DAY,
    DateRange,
    day_start_utc,
    parse_date,
    split,
    sync_window,
    today_in,
)
from tap_mixpanel_profiles.engine.client import ClientError
from tap_mixpanel_profiles.errors import (
    Cancelled,
    ConfigError,
    Interrupted,
    PartitionFailed,
    QuotaExhausted,
    TapError,
)
from tap_mixpanel_profiles.events.export import ExportApi
from tap_mixpanel_profiles.engine.fetcher import PartitionedFetcher
from tap_mixpanel_profiles.engine.lifecycle import StreamSync

if t.TYPE_CHECKING:
    from tap_mixpanel_profiles.events.stream import EventsStream


class EventsSync(StreamSync):
    """Drives one run of the events stream; yields records to the SDK."""

    def __init__(self, stream: EventsStream, *, today: dt.date | None = None) -> None:
        super().__init__(stream, stream.tap_engine.export_client(), unit="chunk")
        self.api = ExportApi(self.client, self.settings)
        self.today = today or today_in(self.settings.project_timezone)
        self.window: DateRange | None = None
        self.paused_until: float | None = None
        self.failed: list[DateRange] = []
        self.blocked = False  # a chunk failed or paused: the done prefix stops here
        self._ends: dict[DateRange, dt.date] = {}  # chunks shortened by a to_date 400
        self._ends_lock = threading.Lock()

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> dict[str, t.Any]:
        return self.stream.stream_state

    def write_state(self, *, final: bool = False) -> None:
        """Emit STATE now. Intermediate STATE waits for this stream's first record.

        target-duckdb re-emits the *first* STATE it received when it loaded no
        rows, so an early "in progress" STATE would be what Meltano saves for an
        empty run; the final STATE is always written.
        """
        if not final and self.progress.rows == 0:
            return
        self.state["fingerprint"] = self.settings.events_fingerprint()
        self.stream.emit_state()

    def _saved_date(self, key: str) -> dt.date | None:
        value = self.state.get(key)
        if value is None:
            return None
        try:
            return parse_date(value)
        except ValueError:
            self.log.warning("Ignoring unreadable %s in the events STATE: %r.", key, value)
            return None

    def plan(self) -> DateRange | None:
        """The days this run exports (resume, incremental with lookback, or first sync)."""
        s = self.settings
        fingerprint = s.events_fingerprint()
        saved = self.state.get("fingerprint")
        if saved is not None and saved != fingerprint:
            saved = saved if isinstance(saved, dict) else {}
            changed = sorted(k for k in fingerprint if fingerprint.get(k) != saved.get(k))
            self.log.warning(
                "Saved events STATE was written with different settings (%s); "
                "ignoring it and starting at start_date.",
                ", ".join(changed) or "unknown",
            )
            # null, not deleted: Meltano merges STATE messages and would keep a deleted key
            for key in ("resume_date", "last_date", "replication_key", "replication_key_value"):
                self.state[key] = None
        resume, last = self._saved_date("resume_date"), self._saved_date("last_date")
        assert s.start_date is not None  # require_events_settings ran first
        window = sync_window(
            start_date=s.start_date,
            end_date=s.end_date,
            today=self.today,
            resume_date=resume,
            last_date=last,
            lookback_days=s.events_lookback_days,
        )
        if window is None:
            self.log.info(
                "Events: nothing to export (from %s, end %s, today %s in %s).",
                resume or last or s.start_date,
                s.end_date or "today",
                self.today,
                s.project_timezone,
            )
        elif resume is not None:
            self.log.info("Events: resuming the unfinished sync at %s.", resume)
        elif last is not None:
            self.log.info(
                "Events: incremental from %s (last synced day %s, %d lookback days).",
                window.start,
                last,
                s.events_lookback_days,
            )
        else:
            self.log.info("Events: first sync from start_date %s.", window.start)
        return window

    # -------------------------------------------------------------------- run
    def run(self) -> t.Iterator[dict[str, t.Any]]:
        """Export every chunk of the window; yields records in chunk order."""
        self.settings.require_events_settings()
        try:
            self.window = self.plan()
            if self.window is not None:
                yield from self.fetch_all(self.window)
        except Cancelled:
            self.write_state(final=True)
            self.finish(status="interrupted")
            raise Interrupted(
                "Interrupted: STATE written; the next run resumes at the first "
                "unfinished date chunk.",
                self.engine.signal_received or 15,
            ) from None
        except TapError as exc:
            # A rejected query (400) or no Export API access: this stream fails, the
            # others still sync; the tap raises the error (and its exit code) at the end.
            self.write_state(final=True)
            self.log.error("events: %s", exc)
            self.finish(status="failed", error=exc)
            return
        except Exception:
            self.write_state(final=True)  # keep the chunks that are done, then fail loudly
            raise
        finally:
            self.client.close()
        self.finish()

    def fetch_all(self, window: DateRange) -> t.Iterator[dict[str, t.Any]]:
        """The chunks through the partitioned fetcher; STATE after each finished chunk."""
        s = self.settings
        chunks = split(window.start, window.end, s.events_chunk_days)
        self.progress.plan(len(chunks))
        self.state["resume_date"] = window.start.isoformat()
        self.log.info(
            "Events: exporting %s (%d days) in %d chunks of up to %d days, %d workers; "
            "Export API budget %s.",
            window.label,
            window.days,
            len(chunks),
            s.events_chunk_days,
            s.events_max_workers,
            self.limiter.describe_budget(),
        )
        if len(chunks) > s.events_queries_per_hour:
            self.log.warning(
                "%d chunks to fetch but events_queries_per_hour is %d: the sync "
                "spans several quota windows (on_quota_exhausted=%s). A larger "
                "events_chunk_days spends fewer queries.",
                len(chunks),
                s.events_queries_per_hour,
                s.on_quota_exhausted,
            )
        number = {chunk: i for i, chunk in enumerate(chunks, start=1)}
        fetcher: PartitionedFetcher[DateRange] = PartitionedFetcher(
            self.fetch,
            workers=s.events_max_workers,
            cancel=self.cancel,
            name="export",
            logger=self.log,
        )
        rows = 0
        for item in fetcher.run(chunks):
            if item.records is not None:
                rows += len(item.records)
                self.progress.rows += len(item.records)
                yield from item.records
                if self.cancel.is_set():
                    raise Cancelled
                continue
            chunk, error = item.partition, item.error
            label = f"chunk {number[chunk]}/{len(chunks)} {chunk.label}"
            if error is None:
                self.chunk_done(chunk)
                self.progress.partition_done(label, rows)
            elif isinstance(error, QuotaExhausted):
                self.paused_until = max(self.paused_until or 0.0, error.resume_at)
                self.blocked = True
                fetcher.stop_submitting()
            elif isinstance(error, PartitionFailed):
                self.log.error("%s", error)
                self.failed.append(chunk)
                self.progress.fail(chunk.label)
                self.blocked = True
            else:
                raise error
            rows = 0
            if self.cancel.is_set():
                raise Cancelled

    def fetch(self, chunk: DateRange, emit: t.Callable[[list[t.Any]], None]) -> None:
        """On a worker: export one chunk into `emit`.

        A 400 naming to_date on the chunk that ends today means Mixpanel's
        "today" (the project's timezone) is behind ours: export through the day
        before instead, and say which setting to fix.
        """
        try:
            self.api.fetch(chunk, emit, label=f"events {chunk.label}")
        except ClientError as exc:
            if chunk.end != self.today:
                raise ConfigError(f"Mixpanel rejected the export query (400): {exc}") from exc
            earlier = chunk.end - ONE_DAY
            self.log.warning(
                "Export API rejected to_date %s (%s): the project's today is still "
                "%s. Exporting through %s; set project_timezone to the project's "
                "timezone (now %s).",
                chunk.end,
                exc,
                earlier,
                earlier,
                self.settings.project_timezone,
            )
            with self._ends_lock:
                self._ends[chunk] = earlier
            if earlier >= chunk.start:
                self.api.fetch(
                    DateRange(chunk.start, earlier), emit, label=f"events {chunk.start}..{earlier}"
                )

    def chunk_done(self, chunk: DateRange) -> None:
        """A chunk delivered all its events: advance the done prefix and write STATE."""
        if self.blocked:
            return
        with self._ends_lock:
            end = self._ends.get(chunk, chunk.end)
        self.state["resume_date"] = (end + ONE_DAY).isoformat()
        self.write_state()

    # ----------------------------------------------------------------- finish
    def finish(self, status: str | None = None, error: TapError | None = None) -> None:
        """Settle the bookmark, write final STATE, log the summary."""
        labels = [chunk.label for chunk in self.failed]
        if status is None and self.paused_until is not None:
            status = "paused"
            resume = dt.datetime.fromtimestamp(self.paused_until, tz=dt.timezone.utc)
            self.log.warning(
                "Export API budget spent (on_quota_exhausted=stop): pausing with "
                "resumable STATE at %s; %d chunks left; the next run can start "
                "after %s UTC.",
                self.state.get("resume_date"),
                self.progress.expected - self.progress.done,
                resume.strftime("%Y-%m-%d %H:%M:%S"),
            )
            self.write_state(final=True)
        elif status is None and self.failed:
            status = "failed"
            self.write_state(final=True)
        elif status is None:
            status = "complete"
            if self.window is not None:
                self.complete(self.window)
            self.write_state(final=True)
        if labels:
            self.log.error(
                "events: %d date ranges failed: %s. Rerun with the last STATE to fetch "
                "them (every day from %s is read again).",
                len(labels),
                ", ".join(labels),
                self.state.get("resume_date"),
            )
        if self.api.stats.derived_insert_ids:
            self.log.info(
                "%d events had no $insert_id: their insert_id is derived from their "
                "content (sha1 of canonical JSON).",
                self.api.stats.derived_insert_ids,
            )
        if self.api.stats.bad_times:
            self.log.warning(
                "%d events had an unusable properties.time: their time column is "
                "null (properties keep the raw value).",
                self.api.stats.bad_times,
            )
        self.stream.report_outcome(status, labels, error)
        window = self.window
        self.progress.emit_summary(
            status=status,
            failed_date_ranges=labels,
            from_date=window.start.isoformat() if window else None,
            to_date=window.end.isoformat() if window else None,
            **self.request_stats(),
        )

    def complete(self, window: DateRange) -> None:
        """Every chunk is done: the bookmark becomes the window's last day."""
        with self._ends_lock:
            last = min(self._ends.values(), default=window.end)
        self.state["resume_date"] = None  # null, not deleted: Meltano merges STATE messages
        self.state["last_date"] = last.isoformat()
        self.state["replication_key"] = self.stream.replication_key
        self.state["replication_key_value"] = day_start_utc(
            last, self.settings.project_timezone
        ).isoformat()
