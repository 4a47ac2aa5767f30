"""Date-range arithmetic of the events stream: chunks, today in the project timezone, windows."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from tap_mixpanel_profiles.events.dates import (
    DateRange,
    day_start_utc,
    split,
    sync_window,
    today_in,
)
from tap_mixpanel_profiles.settings import parse_date

D = dt.date


def labels(chunks: list[DateRange]) -> list[str]:
    return [c.label for c in chunks]


def assert_contiguous(chunks: list[DateRange], start: dt.date, end: dt.date) -> None:
    assert chunks[0].start == start and chunks[-1].end == end
    for before, after in itertools.pairwise(chunks):
        assert after.start == before.end + dt.timedelta(days=1)
    assert sum(c.days for c in chunks) == (end - start).days + 1


def test_one_day_is_one_chunk_whatever_the_chunk_size():
    for days in (1, 7, 365):
        assert split(D(2024, 3, 5), D(2024, 3, 5), days) == [
            DateRange(D(2024, 3, 5), D(2024, 3, 5))
        ]
    assert DateRange(D(2024, 3, 5), D(2024, 3, 5)).label == "2024-03-05"
    assert DateRange(D(2024, 3, 5), D(2024, 3, 5)).params() == {
        "from_date": "2024-03-05",
        "to_date": "2024-03-05",
    }


def test_month_end_and_leap_day():
    chunks = split(D(2024, 1, 29), D(2024, 3, 2), 7)
    assert labels(chunks) == [
        "2024-01-29..2024-02-04",
        "2024-02-05..2024-02-11",
        "2024-02-12..2024-02-18",
        "2024-02-19..2024-02-25",
        "2024-02-26..2024-03-02",
    ]
    assert_contiguous(chunks, D(2024, 1, 29), D(2024, 3, 2))
    # 2024 is a leap year: Feb 28 -> 29 -> Mar 1; 2023 is not.
    assert labels(split(D(2024, 2, 28), D(2024, 3, 1), 1)) == [
        "2024-02-28",
        "2024-02-29",
        "2024-03-01",
    ]
    assert labels(split(D(2023, 2, 28), D(2023, 3, 1), 1)) == ["2023-02-28", "2023-03-01"]
    assert labels(split(D(2024, 4, 30), D(2024, 5, 1), 2)) == ["2024-04-30..2024-05-01"]


def test_year_end():
    chunks = split(D(2023, 12, 30), D(2024, 1, 2), 3)
    assert labels(chunks) == ["2023-12-30..2024-01-01", "2024-01-02"]
    assert_contiguous(split(D(2019, 6, 1), D(2024, 6, 1), 30), D(2019, 6, 1), D(2024, 6, 1))


def test_last_chunk_is_shorter_and_exact_multiples_are_not_split_further():
    assert [c.days for c in split(D(2024, 1, 1), D(2024, 1, 10), 4)] == [4, 4, 2]
    assert [c.days for c in split(D(2024, 1, 1), D(2024, 1, 12), 4)] == [4, 4, 4]


def test_from_after_to_is_rejected():
    with pytest.raises(ValueError, match="after"):
        split(D(2024, 1, 2), D(2024, 1, 1), 7)
    with pytest.raises(ValueError, match="after"):
        DateRange(D(2024, 1, 2), D(2024, 1, 1))
    with pytest.raises(ValueError, match="chunk_days"):
        split(D(2024, 1, 1), D(2024, 1, 2), 0)


def test_parse_date():
    assert parse_date("2024-02-29") == D(2024, 2, 29)
    assert parse_date(" 2024-02-29 ") == D(2024, 2, 29)
    assert parse_date("2024-02-29T00:00:00Z") == D(2024, 2, 29)  # Meltano date_iso8601 values
    assert parse_date(dt.datetime(2024, 2, 29, 13)) == D(2024, 2, 29)
    for bad in (
        "2023-02-29",
        "2024-2-9",
        "20240229",
        "yesterday",
        "2024-02-29Tgarbage",
        20240229,
        None,
    ):
        with pytest.raises(ValueError):
            parse_date(bad)


def test_today_in_the_project_timezone():
    utc_evening = dt.datetime(2024, 3, 10, 23, 30, tzinfo=dt.timezone.utc)
    assert today_in("UTC", utc_evening) == D(2024, 3, 10)
    assert today_in("Europe/Berlin", utc_evening) == D(2024, 3, 11)
    assert today_in(
        "America/Los_Angeles", dt.datetime(2024, 3, 11, 5, 0, tzinfo=dt.timezone.utc)
    ) == D(2024, 3, 10)
    assert today_in("Asia/Kolkata", dt.datetime(2024, 12, 31, 19, 0)) == D(
        2025, 1, 1
    )  # naive = UTC


def test_day_start_in_utc_follows_daylight_saving():
    assert day_start_utc(D(2024, 7, 1), "Europe/Berlin").isoformat() == "2024-06-30T22:00:00+00:00"
    assert day_start_utc(D(2024, 1, 1), "Europe/Berlin").isoformat() == "2023-12-31T23:00:00+00:00"
    assert day_start_utc(D(2024, 1, 1), "UTC").isoformat() == "2024-01-01T00:00:00+00:00"


def test_first_sync_runs_from_start_date_to_today():
    window = sync_window(start_date=D(2024, 1, 1), end_date=None, today=D(2024, 2, 1))
    assert window == DateRange(D(2024, 1, 1), D(2024, 2, 1))


def test_never_a_to_date_after_today():
    window = sync_window(start_date=D(2024, 1, 1), end_date=D(2030, 1, 1), today=D(2024, 2, 1))
    assert window is not None and window.end == D(2024, 2, 1)
    assert sync_window(
        start_date=D(2024, 1, 1), end_date=D(2024, 1, 15), today=D(2024, 2, 1)
    ).end == D(2024, 1, 15)


def test_start_date_in_the_future_means_nothing_to_do():
    assert sync_window(start_date=D(2024, 3, 1), end_date=None, today=D(2024, 2, 1)) is None


def test_incremental_rereads_the_last_day_and_the_lookback():
    window = sync_window(
        start_date=D(2024, 1, 1),
        end_date=None,
        today=D(2024, 2, 10),
        last_date=D(2024, 2, 1),
        lookback_days=3,
    )
    assert window == DateRange(D(2024, 1, 29), D(2024, 2, 10))
    window = sync_window(
        start_date=D(2024, 1, 1),
        end_date=None,
        today=D(2024, 2, 10),
        last_date=D(2024, 2, 1),
        lookback_days=0,
    )
    assert window is not None and window.start == D(2024, 2, 1)
    # ... but never before start_date
    window = sync_window(
        start_date=D(2024, 1, 31),
        end_date=None,
        today=D(2024, 2, 10),
        last_date=D(2024, 2, 1),
        lookback_days=30,
    )
    assert window is not None and window.start == D(2024, 1, 31)


def test_resume_starts_at_the_first_unfinished_day_without_lookback():
    window = sync_window(
        start_date=D(2024, 1, 1),
        end_date=None,
        today=D(2024, 2, 10),
        resume_date=D(2024, 1, 15),
        last_date=D(2023, 12, 1),
        lookback_days=5,
    )
    assert window == DateRange(D(2024, 1, 15), D(2024, 2, 10))
    # A resume point past the end (the rest was done): nothing to do.
    assert (
        sync_window(
            start_date=D(2024, 1, 1),
            end_date=D(2024, 1, 10),
            today=D(2024, 2, 10),
            resume_date=D(2024, 1, 11),
        )
        is None
    )
