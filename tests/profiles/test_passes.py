"""Resumable pass state: session watermark, segments and splitting, bookmarks, round trips."""

from __future__ import annotations

import datetime as dt
import json
import typing as t

import pytest

from tap_mixpanel_profiles.profiles.passes import (
    FLOOR,
    PassState,
    Segment,
    Session,
    boundaries_for,
    midpoint,
    pass_value,
    saved_pass,
    split_whole,
    utc_now_text,
)
from tests.helpers.in_process import sync

NOW = "2025-06-01T00:00:00"


def session(pages: int = 10) -> Session:
    return Session(id="s1", page_size=100, total=pages * 100, pages=pages, created_at=1.0)


# --------------------------------------------------------------- sessions
def test_new_session_has_every_page_but_zero_remaining() -> None:
    s = session(5)
    assert s.remaining() == [1, 2, 3, 4]
    assert not s.complete


def test_mark_done_out_of_order_keeps_a_compact_watermark() -> None:
    s = session(10)
    s.mark_done(3)
    s.mark_done(2)
    assert (s.next_page, s.done_pages) == (1, [2, 3])
    assert s.remaining() == [1, 4, 5, 6, 7, 8, 9]
    s.mark_done(1)
    assert (s.next_page, s.done_pages) == (4, [])
    s.mark_done(6)
    s.mark_done(6)  # twice: no duplicate
    assert (s.next_page, s.done_pages) == (4, [6])
    s.mark_done(2)  # below the watermark: nothing changes
    assert (s.next_page, s.done_pages) == (4, [6])
    for page in (9, 8, 7, 5, 4):
        s.mark_done(page)
    assert s.remaining() == []
    assert s.complete
    assert (s.next_page, s.done_pages) == (10, [])


def test_single_page_session_is_complete() -> None:
    assert session(1).complete


# --------------------------------------------------------------- segments
def test_segment_clauses() -> None:
    assert Segment().clause() is None
    assert Segment("undefined").clause() == 'not defined (properties["$last_seen"])'
    assert (
        Segment("range", "2024-01-01T00:00:00", None).clause()
        == 'properties["$last_seen"] >= "2024-01-01T00:00:00"'
    )
    assert (
        Segment("range", None, "2024-02-01T00:00:00").clause()
        == 'properties["$last_seen"] < "2024-02-01T00:00:00"'
    )
    assert (
        Segment("range", "2024-01-01T00:00:00", "2024-02-01T00:00:00").clause()
        == '(properties["$last_seen"] >= "2024-01-01T00:00:00") and '
        '(properties["$last_seen"] < "2024-02-01T00:00:00")'
    )


def test_midpoint() -> None:
    assert midpoint("2024-01-01T00:00:00", "2024-01-03T00:00:00") == "2024-01-02T00:00:00"
    assert midpoint("2024-01-01T00:00:00", "2024-01-01T00:00:02") == "2024-01-01T00:00:01"
    assert midpoint("2024-01-01T00:00:00", "2024-01-01T00:00:01") is None


def test_split_halves_a_range_in_time() -> None:
    halves = Segment("range", "2024-01-01T00:00:00", "2024-01-03T00:00:00").split(NOW)
    assert halves is not None
    assert [(h.kind, h.lo, h.hi) for h in halves] == [
        ("range", "2024-01-01T00:00:00", "2024-01-02T00:00:00"),
        ("range", "2024-01-02T00:00:00", "2024-01-03T00:00:00"),
    ]


def test_split_stops_below_two_seconds() -> None:
    assert Segment("range", "2024-01-01T00:00:00", "2024-01-01T00:00:01").split(NOW) is None
    assert Segment("range", "2024-01-01T00:00:00", "2024-01-01T00:00:00").split(NOW) is None
    two = Segment("range", "2024-01-01T00:00:00", "2024-01-01T00:00:02").split(NOW)
    assert two is not None and two[0].hi == "2024-01-01T00:00:01"


def test_split_refuses_whole_and_undefined() -> None:
    assert Segment().split(NOW) is None
    assert Segment("undefined").split(NOW) is None


def test_split_open_ends_stay_open() -> None:
    below = Segment("range", None, "2024-01-01T00:00:00").split(NOW)
    assert below is not None
    assert below[0].lo is None, "the lowest range stays open: older values are still covered"
    assert FLOOR < below[0].hi < "2024-01-01T00:00:00"
    above = Segment("range", "2024-01-01T00:00:00", None).split(NOW)
    assert above is not None
    assert above[1].hi is None, "the highest range stays open: newer values are still covered"
    assert "2024-01-01T00:00:00" < above[0].hi < NOW


def test_split_halves_cover_the_range_exactly() -> None:
    seg = Segment("range", "2020-01-01T00:00:00", "2024-01-01T00:00:00")
    for _ in range(20):  # repeatedly split the lower half
        halves = seg.split(NOW)
        assert halves is not None
        assert halves[0].lo == seg.lo and halves[0].hi == halves[1].lo and halves[1].hi == seg.hi
        seg = halves[0]


def test_split_cuts_at_the_sample_median_when_there_are_enough_values() -> None:
    sample = [f"2024-01-01T00:00:{s:02d}" for s in range(10)] + ["2023-06-01T00:00:00"] * 3
    halves = Segment("range", "2024-01-01T00:00:00", "2024-12-01T00:00:00").split(NOW, sample)
    assert halves is not None
    assert halves[0].hi == "2024-01-01T00:00:05", "median of the 10 values inside the range"


def test_split_whole() -> None:
    segments = split_whole(["2024-03-01T00:00:00", "2024-01-01T00:00:00", "2024-03-01T00:00:00"])
    assert [(s.kind, s.lo, s.hi) for s in segments] == [
        ("undefined", None, None),
        ("range", None, "2024-01-01T00:00:00"),
        ("range", "2024-01-01T00:00:00", "2024-03-01T00:00:00"),
        ("range", "2024-03-01T00:00:00", None),
    ]
    assert [(s.kind, s.lo, s.hi) for s in split_whole([])] == [
        ("undefined", None, None),
        ("range", None, None),
    ]


def test_boundaries_from_sample_quantiles() -> None:
    sample = [f"2024-01-{d:02d}T00:00:00" for d in range(1, 21)] * 2  # 40 values
    cuts = boundaries_for(4, sample, None, NOW)
    assert cuts == ["2024-01-06T00:00:00", "2024-01-11T00:00:00", "2024-01-16T00:00:00"]


def test_boundaries_evenly_in_time_when_the_sample_is_small() -> None:
    cuts = boundaries_for(4, ["2024-01-01T00:00:00"], "2024-01-01T00:00:00", "2024-01-05T00:00:00")
    assert cuts == ["2024-01-02T00:00:00", "2024-01-03T00:00:00", "2024-01-04T00:00:00"]
    from_floor = boundaries_for(2, [], None, "2009-01-03T00:00:00")
    assert from_floor == ["2009-01-02T00:00:00"]


def test_boundaries_degenerate_cases() -> None:
    assert boundaries_for(1, ["2024-01-01T00:00:00"] * 100, None, NOW) == []
    assert boundaries_for(3, [], "2024-01-01T00:00:00", "2024-01-01T00:00:00") == []


# ------------------------------------------------------------ pass state
def test_new_pass_is_one_whole_segment() -> None:
    p = PassState.new({"project_id": "1"}, 'properties["a"] == 1', None)
    assert p.scheme == "session"
    assert [s.kind for s in p.pending()] == ["whole"]
    assert dt.datetime.strptime(p.started_at, "%Y-%m-%dT%H:%M:%S")
    assert p.started_at <= utc_now_text()


def test_replace_keeps_position_and_switches_scheme() -> None:
    p = PassState.new({}, None, None)
    whole = p.segments[0]
    p.replace(whole, split_whole(["2024-01-01T00:00:00"]))
    assert p.scheme == "ranges"
    p.segments[0].done = True
    middle = p.segments[1]
    p.replace(middle, middle.split(NOW) or [])
    assert [(s.kind, s.hi) for s in p.pending()][:2] == [
        ("range", p.segments[1].hi),
        ("range", "2024-01-01T00:00:00"),
    ]
    assert len(p.segments) == 4


def test_pass_state_round_trip() -> None:
    p = PassState.new({"project_id": "1", "where": None}, "w", "2024-01-01T00:00:00")
    p.replace(p.segments[0], split_whole(["2024-03-01T00:00:00"]))
    p.segments[0].done = True
    p.segments[1].session = Session(
        id="abc",
        page_size=250,
        total=2000,
        pages=8,
        created_at=1700000000.5,
        next_page=3,
        done_pages=[5, 6],
    )
    p.see("2024-04-01T10:00:00+00:00")
    p.rows = 1234
    data = json.loads(json.dumps(p.to_dict()))  # what STATE stores
    back = PassState.from_dict(data)
    assert back == p
    assert back.segments[1].session.remaining() == [3, 4, 7]


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"fingerprint": {}, "started_at": NOW, "segments": []},
        {"fingerprint": {}, "started_at": NOW, "segments": [{"kind": "whole", "colour": "red"}]},
    ],
)
def test_from_dict_rejects_malformed(bad: dict) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        PassState.from_dict(bad)


def test_see_tracks_the_newest_last_seen() -> None:
    p = PassState.new({}, None, None)
    for value in (
        "2024-01-02T00:00:00+00:00",
        None,
        "2024-03-01T00:00:00+00:00",
        "2024-02-01T00:00:00+00:00",
    ):
        p.see(value)
    assert p.max_last_seen == "2024-03-01T00:00:00+00:00"


def test_next_bookmark_is_the_newest_last_seen() -> None:
    p = PassState(
        fingerprint={},
        started_at="2025-01-01T00:00:00",
        where=None,
        segments=[Segment()],
        bookmark_at_start="2024-01-01T00:00:00",
    )
    p.see("2024-06-01T12:00:00+00:00")
    assert p.next_bookmark() == "2024-06-01T12:00:00"


def test_next_bookmark_never_beyond_the_pass_start() -> None:
    p = PassState(
        fingerprint={}, started_at="2025-01-01T00:00:00", where=None, segments=[Segment()]
    )
    p.see("2031-01-01T00:00:00+00:00")  # a clock-skewed profile from the future
    assert p.next_bookmark() == "2025-01-01T00:00:00"


def test_next_bookmark_never_goes_backwards() -> None:
    p = PassState(
        fingerprint={},
        started_at="2025-01-01T00:00:00",
        where=None,
        segments=[Segment()],
        bookmark_at_start="2024-06-01T00:00:00",
    )
    p.see("2024-01-01T00:00:00+00:00")
    assert p.next_bookmark() == "2024-06-01T00:00:00"


def test_next_bookmark_without_rows_keeps_the_old_one() -> None:
    p = PassState(
        fingerprint={},
        started_at="2025-01-01T00:00:00",
        where=None,
        segments=[Segment()],
        bookmark_at_start="2024-06-01T00:00:00",
    )
    assert p.next_bookmark() == "2024-06-01T00:00:00"
    fresh = PassState(
        fingerprint={}, started_at="2025-01-01T00:00:00", where=None, segments=[Segment()]
    )
    assert fresh.next_bookmark() is None


# ------------------------------------------------ STATE under Meltano's merge
def test_saved_pass_reads_this_versions_list_and_older_forms() -> None:
    data = PassState(
        fingerprint={"a": 1},
        started_at=NOW,
        where=None,
        segments=[Segment("whole")],
    ).to_dict()
    assert saved_pass([data]) == data and saved_pass([]) is None
    assert saved_pass(data) == data, "older versions wrote a bare dict"
    assert saved_pass(None) is None
    assert saved_pass({key: None for key in data}) is None, "emptied by a settings reset"
    assert saved_pass({**data, "segments": []}) is None
    assert pass_value(None) == [] and pass_value(PassState.from_dict(data)) == [data]


def test_full_refresh_runs_merge_into_meltanos_partial_state(
    engage: t.Callable[..., t.Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Meltano deep-merges each STATE of a --full-refresh run into the partial state it
    stored; its merge fails on a dict written where null was stored, as an older version
    stored a finished pass (`'NoneType' object has no attribute 'setdefault'`)."""
    merge = pytest.importorskip("meltano.core.utils").merge
    engage(25)
    older = {"pass": None, "replication_key_value": "2024-01-01T00:00:00+00:00"}
    stored: dict[str, t.Any] = {"singer_state": {"bookmarks": {"profiles": older}}}
    for _ in range(2):  # one full-refresh run after another
        run = sync(capsys, page_size=10, state_every_pages=1)
        assert run.error is None and len(run.ids) == 25
        assert any(state["bookmarks"]["profiles"]["pass"] for state in run.states)
        for state in run.states:
            stored = merge({"singer_state": state}, stored)
    bookmark = stored["singer_state"]["bookmarks"]["profiles"]
    assert bookmark["pass"] == [] and bookmark["replication_key_value"]
