"""Splitting a pass whose session expired: ranges that each fit one session."""

from __future__ import annotations

import itertools
import random

from tap_mixpanel_profiles.profiles.passes import PassState, Segment, Session
from tap_mixpanel_profiles.profiles.splitting import Reservoir, Splitter

NOW = "2024-06-01T00:00:00"


def session(pages: int) -> Session:
    return Session(id="s", page_size=100, total=pages * 100, pages=pages, created_at=0.0)


def test_target_pages_is_half_the_hourly_budget_until_a_session_expired() -> None:
    splitter = Splitter(queries_per_hour=60)
    assert splitter.target_pages() == 30
    pass_ = PassState.new({}, None, None)
    splitter.replacement(pass_, pass_.segments[0], session(100), fetched=12, sample=[])
    assert splitter.target_pages() == 8, "2/3 of the 12 pages the expired session served"


def test_a_small_segment_just_starts_a_fresh_session() -> None:
    splitter = Splitter(queries_per_hour=60)
    pass_ = PassState.new({}, None, None)
    assert splitter.replacement(pass_, pass_.segments[0], session(10), None, []) is None


def test_a_whole_pass_becomes_undefined_plus_ranges_cut_at_sample_quantiles() -> None:
    splitter = Splitter(queries_per_hour=10)  # 5 pages per range
    pass_ = PassState.new({}, None, None)
    sample = [f"2024-0{m}-15T00:00:00" for m in range(1, 6) for _ in range(40)]
    children = splitter.replacement(pass_, pass_.segments[0], session(20), None, sample)
    assert children is not None
    assert children[0].kind == "undefined"
    ranges = children[1:]
    assert len(ranges) == 4 and ranges[0].lo is None and ranges[-1].hi is None
    assert all(a.hi == b.lo for a, b in itertools.pairwise(ranges))


def test_a_range_that_cannot_shrink_is_given_up_for_this_run() -> None:
    splitter = Splitter(queries_per_hour=60)
    pass_ = PassState.new({}, None, None)
    tiny = Segment("range", "2024-01-01T00:00:00", "2024-01-01T00:00:01")
    assert splitter.replacement(pass_, tiny, session(100), 3, []) == []


def test_reservoir_keeps_everything_until_full_then_a_uniform_sample() -> None:
    reservoir = Reservoir(1000, random.Random(3))
    reservoir.extend([f"{i:06d}" for i in range(600)])
    assert reservoir.values == [f"{i:06d}" for i in range(600)]
    rng = random.Random(4)
    start = 600
    while start < 200_000:
        size = rng.choice([1, 7, 400, 5000])
        reservoir.extend([f"{i:06d}" for i in range(start, min(start + size, 200_000))])
        start += size
    values = sorted(int(v) for v in reservoir.values)
    assert len(values) == 1000 and len(set(values)) == 1000
    deciles = [sum(1 for v in values if d * 20_000 <= v < (d + 1) * 20_000) for d in range(10)]
    assert all(70 <= n <= 130 for n in deciles), deciles  # 100 expected in each
