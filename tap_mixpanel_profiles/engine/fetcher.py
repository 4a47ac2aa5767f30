"""The partitioned fetcher: parallel I/O on worker threads, ordered output on one.

Both streams are "a list of partitions fetched in parallel": Engage pages for
profiles, date ranges for events. Workers run `fetch(partition, emit)`, which
does HTTP and parsing and hands batches of records to `emit`. The caller's
thread (the only one that writes Singer messages) iterates `run()` and receives
the batches strictly in partition order, followed by one end marker per
partition carrying its error, if any.

Memory stays flat: at most `lookahead` partitions are scheduled beyond the one
being emitted, and each partition's hand-over queue holds at most
`queue_batches` batches (a streaming fetch blocks in `emit` until the writer
catches up). Every wait is sliced and checks the cancel event, and leaving the
iterator early (an exception in the writer, SIGTERM) stops the workers.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import threading
import typing as t

from tap_mixpanel_profiles.errors import Cancelled

P = t.TypeVar("P")
R = t.TypeVar("R")

Emit = t.Callable[[list[t.Any]], None]
#: fetch(partition, emit) -> the partition's result (handed over with its end).
FetchFn = t.Callable[[t.Any, Emit], t.Any]

_END = object()

#: A partition's hand-over queue: record batches, then (_END, error, result).
Channel = queue.Queue[t.Any]
#: The work queue: (partition, its channel), or None to stop a worker.
WorkQueue = queue.Queue[tuple[t.Any, Channel] | None]


@dataclasses.dataclass
class Chunk(t.Generic[P]):
    """One item of `run()`: a batch of records, or (`done`) the partition's end.

    At the end, `error` is what the fetch raised, else `result` what it returned
    (e.g. a page's total and session, known only once its body was read).
    """

    partition: P
    records: list[t.Any] | None = None
    done: bool = False
    error: BaseException | None = None
    result: t.Any = None


class _Abort(Exception):
    """Raised in a worker's `emit` when the consumer has gone away."""


class PartitionedFetcher(t.Generic[P]):
    """Fetch partitions on `workers` threads; yield their batches in order."""

    def __init__(
        self,
        fetch: FetchFn,
        *,
        workers: int,
        cancel: threading.Event,
        lookahead: int | None = None,
        queue_batches: int = 4,
        poll: float = 0.2,
        name: str = "fetch",
        logger: logging.Logger | None = None,
    ) -> None:
        self._fetch = fetch
        self._workers = max(1, workers)
        self._lookahead = max(self._workers, lookahead or 2 * self._workers)
        self._queue_batches = queue_batches
        self._poll = poll
        self._cancel = cancel
        self._name = name
        self._log = logger or logging.getLogger("tap-mixpanel-profiles")
        self._stop_submitting = threading.Event()
        self._abort = threading.Event()

    def stop_submitting(self) -> None:
        """Schedule no more partitions; those already scheduled still run to the end."""
        self._stop_submitting.set()

    def run(self, partitions: t.Iterable[P]) -> t.Iterator[Chunk[P]]:
        """Yield Chunks in partition order. Unscheduled partitions are simply not yielded.

        On cancellation, batches already handed over are still yielded, then
        Cancelled is raised instead of waiting for requests still in flight.
        """
        self._abort = threading.Event()
        self._stop_submitting = threading.Event()
        work: WorkQueue = queue.Queue()
        threads = [
            threading.Thread(
                target=self._worker, args=(work,), daemon=True, name=f"{self._name}-{i}"
            )
            for i in range(self._workers)
        ]
        for thread in threads:
            thread.start()
        pending: collections.deque[tuple[P, Channel]] = collections.deque()
        source = iter(partitions)
        exhausted = False
        try:
            while True:
                while (
                    not exhausted
                    and len(pending) < self._lookahead
                    and not self._stop_submitting.is_set()
                ):
                    try:
                        partition = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    channel: Channel = queue.Queue(maxsize=self._queue_batches)
                    pending.append((partition, channel))
                    work.put((partition, channel))
                if not pending:
                    return
                partition, channel = pending[0]
                item = self._get(channel)
                if isinstance(item, tuple) and item and item[0] is _END:
                    pending.popleft()
                    yield Chunk(partition, done=True, error=item[1], result=item[2])
                else:
                    yield Chunk(partition, records=item)
        finally:
            self._abort.set()
            for _ in threads:
                work.put(None)
            for thread in threads:
                thread.join(timeout=self._poll * 2)

    def _get(self, channel: Channel) -> t.Any:
        """Wait for the head partition's next item, in bounded slices."""
        while True:
            try:
                return channel.get(timeout=self._poll)
            except queue.Empty:
                if self._abort.is_set() or self._cancel.is_set():
                    raise Cancelled from None

    def _worker(self, work: WorkQueue) -> None:
        while not self._abort.is_set():
            try:
                job = work.get(timeout=self._poll)
            except queue.Empty:
                continue
            if job is None:
                return
            partition, channel = job
            error: BaseException | None = None
            result: t.Any = None

            def emit(records: list[t.Any], _channel: Channel = channel) -> None:
                self._put(_channel, records)

            try:
                if self._cancel.is_set():
                    raise Cancelled
                result = self._fetch(partition, emit)
            except _Abort:
                return
            except BaseException as exc:  # noqa: BLE001 - handed to the writer thread
                error = exc
            try:
                self._put(channel, (_END, error, result))
            except _Abort:
                return

    def _put(self, channel: Channel, item: t.Any) -> None:
        while True:
            try:
                channel.put(item, timeout=self._poll)
                return
            except queue.Full:
                if self._abort.is_set():
                    raise _Abort from None
