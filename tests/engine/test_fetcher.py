"""PartitionedFetcher: ordered output, bounded look-ahead and buffering, errors, shutdown."""

from __future__ import annotations

import random
import threading
import time
import typing as t

import pytest

from tap_mixpanel_profiles.engine.fetcher import Chunk, PartitionedFetcher
from tap_mixpanel_profiles.errors import Cancelled


def fetcher(
    fetch: t.Callable[[t.Any, t.Callable], None],
    *,
    workers: int = 4,
    cancel: threading.Event | None = None,
    name: str = "test-fetch",
    **kwargs: t.Any,
) -> PartitionedFetcher:
    return PartitionedFetcher(
        fetch, workers=workers, cancel=cancel or threading.Event(), poll=0.01, name=name, **kwargs
    )


def threads_named(prefix: str) -> list[threading.Thread]:
    return [th for th in threading.enumerate() if th.name.startswith(prefix + "-")]


def wait_gone(prefix: str, timeout: float = 5.0) -> list[threading.Thread]:
    deadline = time.monotonic() + timeout
    while threads_named(prefix) and time.monotonic() < deadline:
        time.sleep(0.01)
    return threads_named(prefix)


def flatten(chunks: list[Chunk]) -> list[t.Any]:
    return [r for c in chunks if c.records is not None for r in c.records]


def test_output_in_partition_order_although_workers_finish_out_of_order() -> None:
    finished: list[int] = []
    lock = threading.Lock()

    def fetch(p: int, emit: t.Callable) -> None:
        time.sleep(0.002 * (4 - p % 5) + random.uniform(0, 0.002))
        emit([f"{p}-a", f"{p}-b"])
        emit([f"{p}-c"])
        with lock:
            finished.append(p)

    chunks = list(fetcher(fetch, workers=5, lookahead=10).run(range(30)))
    assert finished != sorted(finished), "workers really did finish out of order"
    assert flatten(chunks) == [f"{p}-{x}" for p in range(30) for x in "abc"]
    # Each partition: its batches, then exactly one end marker, before the next partition.
    order = [(c.partition, c.done) for c in chunks]
    assert order == [(p, done) for p in range(30) for done in (False, False, True)]
    assert all(c.error is None for c in chunks)


def test_empty_partition_list() -> None:
    assert list(fetcher(lambda p, emit: emit([p])).run([])) == []


def test_partition_emitting_nothing_still_ends() -> None:
    chunks = list(fetcher(lambda p, emit: None, workers=2).run([0, 1, 2]))
    assert [(c.partition, c.done) for c in chunks] == [(0, True), (1, True), (2, True)]


@pytest.mark.parametrize(("workers", "lookahead"), [(2, 3), (3, None), (1, 1)])
def test_look_ahead_is_bounded_while_the_consumer_is_slow(
    workers: int, lookahead: int | None
) -> None:
    started: list[int] = []
    lock = threading.Lock()

    def fetch(p: int, emit: t.Callable) -> None:
        with lock:
            started.append(p)
        emit([p])

    f = fetcher(fetch, workers=workers, lookahead=lookahead)
    bound = max(workers, lookahead or 2 * workers)
    furthest_ahead = 0
    for chunk in f.run(range(40)):
        time.sleep(0.003)  # slow writer: workers are free to run ahead, if allowed
        with lock:
            ahead = max(started) - chunk.partition
        furthest_ahead = max(furthest_ahead, ahead)
        assert ahead < bound, f"partition {max(started)} started while writing {chunk.partition}"
    assert sorted(started) == list(range(40))
    if bound > 1:
        assert furthest_ahead >= 1, "workers did run ahead of the writer"


def test_errors_are_delivered_per_partition_without_stopping_others() -> None:
    def fetch(p: int, emit: t.Callable) -> None:
        if p in (3, 7):
            raise ValueError(f"partition {p} broke")
        emit([p])

    chunks = list(fetcher(fetch, workers=3).run(range(10)))
    ends = {c.partition: c.error for c in chunks if c.done}
    assert sorted(ends) == list(range(10))
    assert isinstance(ends[3], ValueError) and "partition 3" in str(ends[3])
    assert isinstance(ends[7], ValueError)
    assert all(ends[p] is None for p in range(10) if p not in (3, 7))
    assert flatten(chunks) == [p for p in range(10) if p not in (3, 7)]


def test_error_after_some_batches_keeps_the_batches() -> None:
    def fetch(p: int, emit: t.Callable) -> None:
        emit([f"{p}-first"])
        if p == 1:
            raise RuntimeError("midway")
        emit([f"{p}-second"])

    chunks = list(fetcher(fetch, workers=2).run(range(3)))
    assert flatten(chunks) == ["0-first", "0-second", "1-first", "2-first", "2-second"]
    assert [isinstance(c.error, RuntimeError) for c in chunks if c.done] == [False, True, False]


def test_stop_submitting_schedules_nothing_more() -> None:
    started: set[int] = set()
    lock = threading.Lock()

    def fetch(p: int, emit: t.Callable) -> None:
        with lock:
            started.add(p)
        emit([p])

    f = fetcher(fetch, workers=2, lookahead=3)
    ended: list[int] = []
    for chunk in f.run(range(100)):
        if chunk.done:
            ended.append(chunk.partition)
            if chunk.partition == 2:
                f.stop_submitting()
    assert ended == list(range(len(ended))), "a contiguous prefix, in order"
    assert 3 <= len(ended) <= 2 + 1 + 3
    assert started == set(ended), "what was scheduled still ran to the end and was delivered"


def test_cancel_raises_cancelled_without_waiting_for_requests_in_flight() -> None:
    cancel = threading.Event()
    release = threading.Event()  # a request that ignores the cancel event (long timeout)

    def fetch(p: int, emit: t.Callable) -> None:
        if p == 0:
            emit([p])
            return
        release.wait(10)

    outcome: list[t.Any] = []

    def consume() -> None:
        got = []
        try:
            for chunk in fetcher(fetch, workers=2, cancel=cancel, name="t-cancel").run(range(5)):
                got.append(chunk)
                if chunk.done and chunk.partition == 0:
                    threading.Timer(0.05, cancel.set).start()
        except Cancelled:
            outcome.append(("cancelled", got))
        else:
            outcome.append(("finished", got))

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    try:
        consumer.join(timeout=5)
        assert not consumer.is_alive(), "the writer waited for a request in flight"
    finally:
        release.set()
    assert outcome and outcome[0][0] == "cancelled"
    assert [(c.partition, c.done) for c in outcome[0][1]] == [(0, False), (0, True)], (
        "what was handed over before the cancel was still delivered"
    )
    assert wait_gone("t-cancel") == []


def test_cancel_before_start_fetches_nothing() -> None:
    cancel = threading.Event()
    cancel.set()
    calls: list[int] = []
    chunks = []
    try:
        for chunk in fetcher(lambda p, emit: calls.append(p), cancel=cancel).run(range(5)):
            chunks.append(chunk)
    except Cancelled:
        pass
    assert calls == []
    assert chunks, "end markers tell the writer why"
    assert all(c.done and isinstance(c.error, Cancelled) for c in chunks)


def _endless(p: int, emit: t.Callable) -> None:
    for i in range(100_000):
        emit([(p, i)])


def test_breaking_out_of_the_iterator_stops_the_workers() -> None:
    gen = fetcher(_endless, workers=3, name="t-break").run(range(50))
    for chunk in gen:
        if chunk.records and chunk.records[0][1] >= 5:
            break
    gen.close()
    assert wait_gone("t-break") == []


def test_an_exception_in_the_consumer_stops_the_workers() -> None:
    class WriterFailed(Exception):
        pass

    def consume() -> None:
        for chunk in fetcher(_endless, workers=3, name="t-raise").run(range(50)):
            if chunk.records:
                raise WriterFailed

    with pytest.raises(WriterFailed):
        consume()
    assert wait_gone("t-raise") == []


def test_streaming_fetch_blocks_instead_of_buffering() -> None:
    produced = 0
    lock = threading.Lock()

    def fetch(p: int, emit: t.Callable) -> None:
        nonlocal produced
        for i in range(200):
            emit([i])
            with lock:
                produced += 1

    consumed = 0
    max_backlog = 0
    for chunk in fetcher(fetch, workers=1, queue_batches=4).run([0]):
        if chunk.records is None:
            continue
        consumed += 1
        if consumed % 20 == 0:
            time.sleep(0.01)  # let the producer fill the hand-over queue
        with lock:
            max_backlog = max(max_backlog, produced - consumed)
        assert chunk.records == [consumed - 1]
    assert consumed == 200
    # Returned emits ≤ taken batches + queue capacity (+1 for a put racing our read).
    assert max_backlog <= 4 + 1
    assert max_backlog >= 2, "the producer did run ahead up to the queue bound"


def test_workers_are_joined_after_normal_completion() -> None:
    list(fetcher(lambda p, emit: emit([p]), workers=4, name="t-done").run(range(10)))
    assert wait_gone("t-done") == []


def test_fetcher_can_run_twice() -> None:
    f = fetcher(lambda p, emit: emit([p]), workers=2)
    assert flatten(list(f.run(range(3)))) == [0, 1, 2]
    assert flatten(list(f.run(range(3, 6)))) == [3, 4, 5]
