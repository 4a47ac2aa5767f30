"""The one stream lifecycle: how every stream's sync starts, runs, pauses, fails and ends.

A domain (profiles, events, ...) subclasses `StreamSync` and supplies only what
is its own: the settings that define its data (`fingerprint`), how it plans a
run from STATE (`start`), its partitions and how to fetch one (`sync`, usually
through `drain`), and what a finished partition does to its bookmark
(`partition_done`, `save_state`, `on_complete`). The protocol is here, once:

* STATE written under other settings (another fingerprint) is reset, with a warning;
* intermediate STATE is held back until the stream emitted a record: target-duckdb
  re-emits the *first* STATE it received when it loaded no rows, so an early "in
  progress" STATE would be what Meltano saves for an empty incremental run;
* the hourly budget spent with on_quota_exhausted=stop pauses the stream (exit 0,
  resumable STATE); a partition that failed after its retries is named, every
  other one is delivered (exit 1 at the end of the run);
* SIGTERM/SIGINT (the cancel event) ends the stream with STATE, then `Interrupted`;
* a fatal error (bad query, no access) ends this stream only: the run raises it
  after every selected stream synced;
* every way out writes a final STATE, and one SUMMARY line reports the run.

Runs on the writer thread (the body of the stream's `get_records`): only worker
threads of the fetcher do HTTP.
"""

from __future__ import annotations

import abc
import datetime as dt
import logging
import typing as t

from tap_mixpanel_profiles.engine.progress import Progress
from tap_mixpanel_profiles.errors import (
    Cancelled,
    Interrupted,
    PartitionFailed,
    QuotaExhausted,
    TapError,
)

if t.TYPE_CHECKING:
    from tap_mixpanel_profiles.engine.client import ApiClient
    from tap_mixpanel_profiles.engine.fetcher import PartitionedFetcher
    from tap_mixpanel_profiles.engine.runtime import Runtime

Record = dict[str, t.Any]
#: Records travel in batches (lists) through the sync's generators and are only taken
#: one by one by the stream's `get_records`: one generator step per batch, not per record.
Batch = list[Record]
P = t.TypeVar("P")


class SyncHost(t.Protocol):
    """What a stream sync needs from its stream (see `engine.stream.EngineStream`)."""

    @property
    def name(self) -> str: ...
    @property
    def logger(self) -> logging.Logger: ...
    @property
    def runtime(self) -> Runtime[t.Any]: ...
    @property
    def stream_state(self) -> dict[str, t.Any]: ...
    def emit_state(self) -> None: ...
    def report_outcome(
        self, status: str, failed: list[t.Any], error: BaseException | None = None
    ) -> None: ...


def tombstone(value: t.Any) -> t.Any:
    """`value` emptied for STATE, keeping its dicts: their leaves null, lists empty.

    Not deleted: Meltano deep-merges partial STATEs (under --full-refresh or
    `--state-strategy merge`), so a deleted key would come back from the state it
    stored before. Not a bare null for a dict either: its merge fails on a dict
    written later where null was stored ('NoneType' object has no attribute
    'setdefault'). A dict of nulls stays a dict, so what is written there next
    merges cleanly, and every leaf a reader looks at is empty.
    """
    if isinstance(value, dict):
        return {key: tombstone(item) for key, item in value.items()}
    return [] if isinstance(value, list) else None


class StreamSync(abc.ABC):
    """One run of one stream: the protocol above, around a domain's partitions."""

    #: What a partition is called in progress lines and the SUMMARY keys.
    unit: t.ClassVar[str] = "partition"
    #: SUMMARY key listing the partitions that failed.
    failed_key: t.ClassVar[str] = "failed_partitions"
    #: STATE keys (of the stream's bookmark) that belong to a fingerprint.
    state_keys: t.ClassVar[tuple[str, ...]] = ()
    #: How a run starts when saved STATE is ignored ("reading every profile").
    restart_hint: t.ClassVar[str] = "starting over"
    #: Where the next run resumes after an interruption (for the Interrupted line).
    resume_hint: t.ClassVar[str] = "the next run resumes where this one stopped"

    def __init__(self, host: SyncHost, client: ApiClient) -> None:
        self.host = host
        self.log = host.logger
        self.runtime = host.runtime
        self.cancel = self.runtime.cancel
        self.client = client
        self.limiter = client.limiter
        self.progress = Progress(
            host.name, self.log, unit=self.unit, budget=self.limiter.describe_budget
        )
        self.paused_until: float | None = None
        self.failed: list[t.Any] = []

    # ----------------------------------------------------------- the domain's part
    @abc.abstractmethod
    def fingerprint(self) -> dict[str, t.Any]:
        """The settings that define *which* data this stream reads (saved in STATE)."""

    @abc.abstractmethod
    def start(self) -> None:
        """Plan this run from the stream's STATE (already reset if its fingerprint changed)."""

    @abc.abstractmethod
    def sync(self) -> t.Iterator[Batch]:
        """Fetch every partition of the plan; yield batches of records in order."""

    @abc.abstractmethod
    def save_state(self, *, complete: bool) -> None:
        """Put this run's progress into `self.state` (complete: the whole plan was delivered)."""

    def partition_done(self, partition: t.Any, rows: int, result: t.Any) -> None:
        """A partition delivered all its records (`rows` of them; `result`: what its fetch
        returned). Its bookmark may advance."""
        return None

    def partition_error(
        self, partition: t.Any, error: BaseException, fetcher: PartitionedFetcher[t.Any] | None
    ) -> bool:
        """A domain-specific partition error; True when handled (default: none are)."""
        return False

    def partition_id(self, partition: t.Any) -> t.Any:
        """How a failed partition is named in the log, the SUMMARY and the exit line."""
        return partition

    def on_complete(self) -> None:
        """Every partition was delivered: settle the bookmark (before the final STATE)."""
        return None

    def incomplete(self) -> bool:
        """True when something of the plan is missing although the run was not paused."""
        return bool(self.failed)

    def left(self) -> str:
        """What a paused run leaves for the next one (for the pause line)."""
        return f"{max(0, self.progress.expected - self.progress.done)} {self.unit}s left"

    def report(self, status: str) -> None:
        """Log the domain's end-of-run findings (odd values seen, ranges that failed)."""
        return None

    def summary_extra(self) -> dict[str, t.Any]:
        """The domain's own SUMMARY fields."""
        return {}

    # ---------------------------------------------------------------- protocol
    @property
    def state(self) -> dict[str, t.Any]:
        """The stream's bookmark (`bookmarks.<stream>` of the tap's STATE)."""
        return self.host.stream_state

    def run(self) -> t.Iterator[Batch]:
        """The whole lifecycle; yields the stream's records in batches."""
        self.check_fingerprint()
        try:
            self.start()
            yield from self.sync()
        except Cancelled:
            self.finish("interrupted")
            raise Interrupted(
                f"Interrupted: STATE written; {self.resume_hint}.",
                self.runtime.signal_received or 15,
            ) from None
        except TapError as exc:
            # A rejected query (400), no access (401/403), no such API on the plan (402):
            # this stream fails, the others still sync; the run raises it at the end.
            self.log.error("%s: %s", self.host.name, exc)
            self.finish("failed", error=exc)
            return
        except Exception:
            self.write_state(final=True)  # keep what is done, then fail loudly
            raise
        finally:
            self.client.close()
        self.finish()

    def check_fingerprint(self) -> None:
        """Ignore STATE saved under settings that read other data (null its keys)."""
        fingerprint = self.fingerprint()
        saved = self.state.get("fingerprint")
        if saved is None or saved == fingerprint:
            return
        saved = saved if isinstance(saved, dict) else {}
        changed = sorted(k for k in fingerprint if fingerprint.get(k) != saved.get(k))
        self.log.warning(
            "Saved %s STATE was written with different settings (%s); ignoring it and %s.",
            self.host.name,
            ", ".join(changed) or "unknown",
            self.restart_hint,
        )
        for key in self.state_keys:
            self.state[key] = tombstone(self.state.get(key))

    def write_state(self, *, final: bool = False, complete: bool = False) -> None:
        """Emit STATE now; intermediate STATE waits for this stream's first record."""
        if not final and self.progress.rows == 0:
            return
        self.save_state(complete=complete)
        self.state["fingerprint"] = self.fingerprint()
        self.host.emit_state()

    def pause(self, resume_at: float) -> None:
        """The hourly budget is spent and on_quota_exhausted is stop."""
        self.paused_until = max(self.paused_until or 0.0, resume_at)

    def fail(self, partition: t.Any) -> None:
        """A partition could not be fetched: name it, go on with the others."""
        ident = self.partition_id(partition)
        self.failed.append(ident)
        self.progress.fail(ident)

    def handle_error(
        self,
        partition: t.Any,
        error: BaseException,
        fetcher: PartitionedFetcher[t.Any] | None = None,
    ) -> None:
        """Sort a partition's error into pause, failed partition, the domain's, or fatal."""
        if isinstance(error, QuotaExhausted):
            self.pause(error.resume_at)
            if fetcher is not None:
                fetcher.stop_submitting()
        elif isinstance(error, PartitionFailed):
            self.log.error("%s", error)
            self.fail(partition)
        elif not self.partition_error(partition, error, fetcher):
            raise error

    def drain(self, fetcher: PartitionedFetcher[P], partitions: t.Iterable[P]) -> t.Iterator[Batch]:
        """Run `partitions` through `fetcher`; yield their record batches in partition order.

        Records of a partition count for the progress line when its end arrives;
        the end (or error) of each partition goes to `partition_done` / `handle_error`.
        """
        rows = 0
        for item in fetcher.run(partitions):
            if item.records is not None:
                rows += len(item.records)
                yield self.accept(item.partition, item.records)
            else:
                if item.error is None:
                    self.partition_done(item.partition, rows, item.result)
                else:
                    self.handle_error(item.partition, item.error, fetcher)
                rows = 0
            if self.cancel.is_set():
                raise Cancelled

    def accept(self, partition: t.Any, records: Batch) -> Batch:
        """One batch on its way to the SDK (the domain may look at it); returns what to write."""
        self.progress.rows += len(records)
        return records

    def finish(self, status: str | None = None, error: BaseException | None = None) -> None:
        """Settle the status and the bookmark, write the final STATE, report, summarise."""
        if status is None:
            if self.paused_until is not None:
                status = "paused"
            elif self.incomplete():
                status = "failed"
            else:
                status = "complete"
        if status == "complete":
            self.on_complete()
        self.write_state(final=True, complete=status == "complete")
        if status == "paused" and self.paused_until is not None:
            resume = dt.datetime.fromtimestamp(self.paused_until, tz=dt.timezone.utc)
            self.log.warning(
                "%s budget spent (on_quota_exhausted=stop): pausing with resumable STATE; "
                "%s; the next run can start after %s UTC.",
                self.limiter.name,
                self.left(),
                resume.strftime("%Y-%m-%d %H:%M:%S"),
            )
        self.report(status)
        self.host.report_outcome(status, self.failed, error)
        self.progress.emit_summary(
            status=status,
            **{self.failed_key: self.failed},
            **self.summary_extra(),
            **self.request_stats(),
        )

    def request_stats(self) -> dict[str, int]:
        """The SUMMARY's request figures: this stream's requests, retries, 429s, peak in flight."""
        return {
            "queries": self.client.requests,
            "retries": self.client.retries,
            "rate_limited": self.client.rate_limited,
            "max_in_flight": self.limiter.max_in_flight_seen,
        }
