"""One events sync: date chunks through the shared fetcher, STATE per finished chunk.

The lifecycle (STATE hold-back, pause, failed partitions, cancellation, the
final STATE and SUMMARY) is the engine's `StreamSync`; this module supplies what
is the Export API's own. The days to export are split into chunks of
`events_chunk_days`; workers stream each chunk's export into bounded batches;
records leave in chunk order.

State, inside `bookmarks.events`:
* `resume_date` while a sync is unfinished: every day before it is done ("all
  chunks up to date D done"); an interrupted, paused or failed run resumes there;
* `last_date` once a sync completed: the next run starts at that day (always
  re-read: it may have been today, still filling) minus `events_lookback_days`;
  `replication_key_value` is the UTC instant that day began, for readers of STATE;
* `fingerprint`: the settings that define which events are read; state saved
  under other settings is ignored with a warning.
The bookmark advances only over a prefix of chunks that all succeeded.
"""

from __future__ import annotations

import datetime as dt
import threading
import typing as t

from tap_mixpanel_profiles.engine.client import ClientError
from tap_mixpanel_profiles.engine.fetcher import PartitionedFetcher
from tap_mixpanel_profiles.engine.lifecycle import Batch, StreamSync
from tap_mixpanel_profiles.errors import ConfigError
from tap_mixpanel_profiles.events.dates import (
    ONE_DAY,
    DateRange,
    day_start_utc,
    split,
    sync_window,
    today_in,
)
from tap_mixpanel_profiles.events.export import ExportApi, export_api
from tap_mixpanel_profiles.events.stream import KEY_FIELD
from tap_mixpanel_profiles.settings import parse_date

if t.TYPE_CHECKING:
    from tap_mixpanel_profiles.events.stream import EventsStream


class EventsSync(StreamSync):
    """Drives one run of the events stream; yields records to the SDK."""

    unit = "chunk"
    failed_key = "failed_date_ranges"
    state_keys = ("resume_date", "last_date", "replication_key", "replication_key_value")
    restart_hint = "starting at start_date"
    resume_hint = "the next run resumes at the first unfinished date chunk"

    def __init__(self, stream: EventsStream, *, today: dt.date | None = None) -> None:
        super().__init__(stream, stream.runtime.client(export_api(stream.settings)))
        self.stream = stream
        self.settings = stream.settings
        self.api = ExportApi(self.client, self.settings)
        self.today = today or today_in(self.settings.project_timezone)
        self.window: DateRange | None = None
        self.chunks: dict[DateRange, int] = {}  # chunk -> its number, for progress lines
        self.blocked = False  # a chunk failed or paused: the done prefix stops here
        self._ends: dict[DateRange, dt.date] = {}  # chunks shortened by a to_date 400
        self._ends_lock = threading.Lock()

    # ------------------------------------------------------------------ state
    def fingerprint(self) -> dict[str, t.Any]:
        """The settings that define which events a sync reads."""
        return self.settings.events_fingerprint()

    def save_state(self, *, complete: bool) -> None:
        """The bookmark is kept up to date as chunks finish (`chunk_done`, `on_complete`);
        here it only records the key the table is loaded with (see `stream.check_key`)."""
        self.state[KEY_FIELD] = self.settings.events_primary_key

    def _saved_date(self, key: str) -> dt.date | None:
        value = self.state.get(key)
        if value is None:
            return None
        try:
            return parse_date(value)
        except ValueError:
            self.log.warning("Ignoring unreadable %s in the events STATE: %r.", key, value)
            return None

    def start(self) -> None:
        """The days this run exports (resume, incremental with lookback, or first sync)."""
        s = self.settings
        s.require_events_settings()
        assert s.start_date is not None  # require_events_settings checked it
        resume, last = self._saved_date("resume_date"), self._saved_date("last_date")
        self.window = window = sync_window(
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

    # -------------------------------------------------------------------- run
    def sync(self) -> t.Iterator[Batch]:
        """The chunks through the partitioned fetcher; STATE after each finished chunk."""
        window = self.window
        if window is None:
            return
        s = self.settings
        chunks = split(window.start, window.end, s.events_chunk_days)
        self.chunks = {chunk: number for number, chunk in enumerate(chunks, start=1)}
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
        fetcher: PartitionedFetcher[DateRange] = PartitionedFetcher(
            self.fetch,
            workers=s.events_max_workers,
            cancel=self.cancel,
            name="export",
            logger=self.log,
        )
        yield from self.drain(fetcher, chunks)

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

    def partition_done(self, partition: t.Any, rows: int, result: t.Any) -> None:
        """A chunk delivered all its events: advance the done prefix and write STATE."""
        chunk: DateRange = partition
        label = f"chunk {self.chunks[chunk]}/{len(self.chunks)} {chunk.label}"
        self.progress.partition_done(label, rows)
        if self.blocked:
            return
        with self._ends_lock:
            end = self._ends.get(chunk, chunk.end)
        self.state["resume_date"] = (end + ONE_DAY).isoformat()
        self.write_state()

    def pause(self, resume_at: float) -> None:
        """Paused: the done prefix stops at the first chunk not delivered."""
        super().pause(resume_at)
        self.blocked = True

    def fail(self, partition: t.Any) -> None:
        """A chunk failed: the done prefix stops before it."""
        super().fail(partition)
        self.blocked = True

    def partition_id(self, partition: t.Any) -> t.Any:
        """A failed chunk is named by its dates."""
        return partition.label if isinstance(partition, DateRange) else partition

    # ----------------------------------------------------------------- finish
    def left(self) -> str:
        """Where the next run resumes and how many chunks are left."""
        return (
            f"resuming at {self.state.get('resume_date')}; "
            f"{self.progress.expected - self.progress.done} chunks left"
        )

    def on_complete(self) -> None:
        """Every chunk is done: the bookmark becomes the window's last day."""
        window = self.window
        if window is None:
            return
        with self._ends_lock:
            last = min(self._ends.values(), default=window.end)
        self.state["resume_date"] = None  # null, not deleted: Meltano merges STATE messages
        self.state["last_date"] = last.isoformat()
        self.state["replication_key"] = self.stream.replication_key
        self.state["replication_key_value"] = day_start_utc(
            last, self.settings.project_timezone
        ).isoformat()

    def report(self, status: str) -> None:
        """Failed ranges in one line; events without $insert_id or a usable time."""
        if self.failed:
            self.log.error(
                "events: %d date ranges failed: %s. Rerun with the last STATE to fetch "
                "them (every day from %s is read again).",
                len(self.failed),
                ", ".join(map(str, self.failed)),
                self.state.get("resume_date"),
            )
        stats = self.api.stats
        if stats.derived_insert_ids:
            self.log.info(
                "%d events had no $insert_id: their insert_id is derived from their "
                "content (sha1 of canonical JSON).",
                stats.derived_insert_ids,
            )
        if stats.bad_times:
            self.log.warning(
                "%d events had an unusable properties.time: their time column is "
                "null (properties keep the raw value).",
                stats.bad_times,
            )

    def summary_extra(self) -> dict[str, t.Any]:
        """The days this run covered."""
        window = self.window
        return {
            "from_date": window.start.isoformat() if window else None,
            "to_date": window.end.isoformat() if window else None,
        }
