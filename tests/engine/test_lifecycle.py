"""The one stream lifecycle, on a toy domain: every way a stream's sync can end.

No HTTP: the toy domain's partitions are lists of numbers fetched by the real
`PartitionedFetcher`; its errors are the engine's own exception types.
"""

from __future__ import annotations

import contextlib
import json
import logging
import typing as t

import pytest

from tap_mixpanel_profiles.engine.fetcher import PartitionedFetcher
from tap_mixpanel_profiles.engine.lifecycle import Record, StreamSync, tombstone
from tap_mixpanel_profiles.engine.limiter import Window
from tap_mixpanel_profiles.engine.runtime import ApiSpec, Runtime
from tap_mixpanel_profiles.errors import (
    AuthError,
    Cancelled,
    Interrupted,
    PartitionFailed,
    QuotaExhausted,
)
from tap_mixpanel_profiles.settings import Settings
from tests.helpers.engage_fake import base_config

LOG = logging.getLogger("tap-mixpanel-profiles")
SPEC = ApiSpec("toy", "Toy API", "Toy query", 3, (Window(100, 3600),))


class Host:
    """A stream as the lifecycle sees it (SyncHost)."""

    name = "toy"
    logger = LOG

    def __init__(self, state: dict[str, t.Any] | None = None) -> None:
        self.runtime: Runtime[Settings] = Runtime(Settings.from_config(base_config()), LOG)
        self.stream_state: dict[str, t.Any] = state if state is not None else {}
        self.emitted: list[dict[str, t.Any]] = []

    def emit_state(self) -> None:
        self.emitted.append(dict(self.stream_state))

    def report_outcome(
        self, status: str, failed: list[t.Any], error: BaseException | None = None
    ) -> None:
        self.runtime.outcome.record(self.name, status, failed, error)


class ToySync(StreamSync):
    """Partitions 0..n-1 of 3 records each; `faults` maps a partition to what it raises."""

    unit = "piece"
    failed_key = "failed_pieces"
    state_keys = ("done",)

    def __init__(self, host: Host, n: int = 4, faults: dict[int, BaseException] | None = None):
        super().__init__(host, host.runtime.client(SPEC))
        self.n = n
        self.faults = faults or {}
        self.done: list[int] = []
        self.completed = False

    def fingerprint(self) -> dict[str, t.Any]:
        return {"toy": 1}

    def start(self) -> None:
        self.done = list(self.state.get("done") or [])

    def fetch(self, part: int, emit: t.Callable[[list[t.Any]], None]) -> None:
        if part in self.faults:
            raise self.faults[part]
        emit([{"id": part * 10 + i} for i in range(3)])

    def sync(self) -> t.Iterator[Record]:
        fetcher: PartitionedFetcher[int] = PartitionedFetcher(
            self.fetch, workers=2, cancel=self.cancel, poll=0.01
        )
        todo = [p for p in range(self.n) if p not in self.done]
        self.progress.plan(len(todo))
        yield from self.drain(fetcher, todo)

    def partition_done(self, partition: t.Any, rows: int, result: t.Any) -> None:
        self.done.append(partition)
        self.write_state()

    def save_state(self, *, complete: bool) -> None:
        self.state["done"] = None if complete else sorted(self.done)

    def on_complete(self) -> None:
        self.completed = True


def run(sync: ToySync) -> list[Record]:
    return [record for batch in sync.run() for record in batch]


def test_complete_run_delivers_in_order_and_settles_the_bookmark(caplog: t.Any) -> None:
    host = Host()
    sync = ToySync(host)
    records = run(sync)
    assert [r["id"] for r in records] == [0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 31, 32]
    assert sync.completed
    assert host.emitted[-1] == {"done": None, "fingerprint": {"toy": 1}}
    assert host.runtime.outcome.streams["toy"].status == "complete"
    host.runtime.outcome.raise_for_status()


def test_no_intermediate_state_before_the_first_record() -> None:
    host = Host()
    sync = ToySync(host, n=2, faults={0: PartitionFailed("piece 0 gave up")})
    # Partition 0 fails before any record: its end writes nothing; partition 1 then does.
    sync.write_state()
    assert host.emitted == []
    run(sync)
    assert all(s["done"] == [1] for s in host.emitted)


def test_final_state_is_written_even_with_no_record() -> None:
    host = Host()
    run(ToySync(host, n=0))
    assert host.emitted == [{"done": None, "fingerprint": {"toy": 1}}]


def test_state_of_other_settings_is_reset_with_a_warning(caplog: t.Any) -> None:
    host = Host({"done": [0, 1], "fingerprint": {"toy": 2}})
    with caplog.at_level(logging.WARNING):
        records = run(ToySync(host))
    assert len(records) == 12, "every partition read again"
    assert any("different settings (toy)" in r.getMessage() for r in caplog.records)


def test_state_of_the_same_settings_resumes() -> None:
    host = Host({"done": [0, 1], "fingerprint": {"toy": 1}})
    assert [r["id"] for r in run(ToySync(host))] == [20, 21, 22, 30, 31, 32]


def test_failed_partition_is_named_the_others_delivered_and_the_run_raises_at_the_end() -> None:
    host = Host()
    sync = ToySync(host, faults={1: PartitionFailed("piece 1: HTTP 500; gave up")})
    assert [r["id"] // 10 for r in run(sync)] == [0, 0, 0, 2, 2, 2, 3, 3, 3]
    assert not sync.completed
    assert host.emitted[-1]["done"] == [0, 2, 3]
    outcome = host.runtime.outcome
    assert outcome.streams["toy"].status == "failed" and outcome.streams["toy"].failed == [1]
    with pytest.raises(Exception, match="not fetched: toy: 1"):
        outcome.raise_for_status()


def test_quota_pause_stops_scheduling_and_exits_paused(caplog: t.Any) -> None:
    host = Host()
    sync = ToySync(host, n=8, faults={2: QuotaExhausted(resume_at=2_000_000_000.0)})
    with caplog.at_level(logging.WARNING):
        records = run(sync)
    assert {r["id"] // 10 for r in records} >= {0, 1}
    assert host.runtime.outcome.streams["toy"].status == "paused"
    host.runtime.outcome.raise_for_status()  # a pause by design is not a failure
    assert any("Toy query budget spent" in r.getMessage() for r in caplog.records)
    assert 2 not in host.emitted[-1]["done"]


def test_cancel_writes_state_then_raises_interrupted() -> None:
    host = Host()
    sync = ToySync(host, faults={1: Cancelled()})
    host.runtime.signal_received = 15
    host.runtime.cancel.set()
    with pytest.raises(Interrupted) as info:
        run(sync)
    assert info.value.exit_code == 143
    assert host.emitted, "final STATE written"
    assert host.runtime.outcome.streams["toy"].status == "interrupted"


def test_a_fatal_error_ends_this_stream_only_and_is_raised_at_the_end() -> None:
    host = Host()
    sync = ToySync(host, faults={0: AuthError("Toy API rejected the credentials (401)")})
    assert run(sync) == [], "the generator ends normally: the next stream still syncs"
    assert host.emitted[-1]["fingerprint"] == {"toy": 1}
    with pytest.raises(AuthError):
        host.runtime.outcome.raise_for_status()


def test_an_unexpected_error_still_writes_the_final_state() -> None:
    host = Host()
    sync = ToySync(host, faults={2: KeyError("bug")})
    with pytest.raises(KeyError):
        run(sync)
    assert host.emitted[-1]["done"] == [0, 1]


@pytest.mark.parametrize("fault", [None, PartitionFailed("x"), AuthError("y"), KeyError("z")])
def test_the_client_is_closed_on_every_way_out(fault: BaseException | None) -> None:
    host = Host()
    sync = ToySync(host, faults={0: fault} if fault else {})
    with contextlib.suppress(KeyError):
        run(sync)
    with pytest.raises(Cancelled):
        sync.client.limiter.acquire(abort=sync.client._closed)
    assert not sync.client.limiter.closed, "the limiter stays open for other streams"


def test_a_settings_reset_leaves_state_that_meltanos_merge_accepts() -> None:
    """STATE from other settings is emptied, not nulled: a dict written later where null was
    stored would fail Meltano's deep merge of partial states (--full-refresh)."""
    old = {
        "cohorts": {"101": {"pass": {"segments": [{"kind": "whole"}]}, "settled": "r1"}},
        "pass": [{"segments": []}],
        "round": "r1",
    }
    emptied = {key: tombstone(value) for key, value in old.items()}
    assert emptied == {
        "cohorts": {"101": {"pass": {"segments": []}, "settled": None}},
        "pass": [],
        "round": None,
    }
    merge = pytest.importorskip("meltano.core.utils").merge
    stored = merge(emptied, json.loads(json.dumps(old)))
    later = {"cohorts": {"101": {"pass": [{"segments": []}], "settled": None}, "102": {}}}
    assert merge(later, stored)["cohorts"]["101"]["pass"] == [{"segments": []}]
