"""Date-range arithmetic for the events stream (Mixpanel's raw Export API).

The Export API takes inclusive `from_date`/`to_date` days (`YYYY-MM-DD`) in the
project's timezone and answers 400 for a `to_date` later than the project's
today. A sync splits its range into consecutive chunks of `chunk_days` days:
the partitions that the fetcher runs in parallel and that STATE counts as done.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

ONE_DAY = dt.timedelta(days=1)


@dataclasses.dataclass(frozen=True, order=True)
class DateRange:
    """Days `start`..`end`, both included (one Export API request)."""

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.start > self.end:
            msg = f"from_date {self.start} is after to_date {self.end}"
            raise ValueError(msg)

    @property
    def days(self) -> int:
        """Number of days in the range."""
        return (self.end - self.start).days + 1

    @property
    def label(self) -> str:
        """'YYYY-MM-DD..YYYY-MM-DD' (one day: just the date)."""
        if self.start == self.end:
            return self.start.isoformat()
        return f"{self.start.isoformat()}..{self.end.isoformat()}"

    def params(self) -> dict[str, str]:
        """The Export API's `from_date`/`to_date` parameters."""
        return {"from_date": self.start.isoformat(), "to_date": self.end.isoformat()}


def today_in(timezone: str, now: dt.datetime | None = None) -> dt.date:
    """Today's date in `timezone` (an IANA name) at `now` (default: the current time)."""
    moment = now or dt.datetime.now(dt.timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(zoneinfo.ZoneInfo(timezone)).date()


def day_start_utc(day: dt.date, timezone: str) -> dt.datetime:
    """The instant `day` begins in `timezone`, as an aware UTC datetime."""
    local = dt.datetime.combine(day, dt.time(), tzinfo=zoneinfo.ZoneInfo(timezone))
    return local.astimezone(dt.timezone.utc)


def split(start: dt.date, end: dt.date, chunk_days: int) -> list[DateRange]:
    """Consecutive chunks of `chunk_days` days covering start..end (the last may be shorter).

    Raises ValueError when start > end or chunk_days < 1.
    """
    if chunk_days < 1:
        msg = f"chunk_days must be >= 1 (got {chunk_days})"
        raise ValueError(msg)
    if start > end:
        msg = f"from_date {start} is after to_date {end}"
        raise ValueError(msg)
    chunks = []
    step = dt.timedelta(days=chunk_days - 1)
    day = start
    while day <= end:
        last = min(day + step, end)
        chunks.append(DateRange(day, last))
        day = last + ONE_DAY
    return chunks


def sync_window(
    *,
    start_date: dt.date,
    end_date: dt.date | None,
    today: dt.date,
    resume_date: dt.date | None = None,
    last_date: dt.date | None = None,
    lookback_days: int = 0,
) -> DateRange | None:
    """The days one run exports, or None when there is nothing to ask for yet.

    * an unfinished pass resumes at its first unfinished day (`resume_date`);
    * otherwise, after a completed pass, the run starts at the last synced day
      (always re-read: it may have been a day still filling) minus `lookback_days`;
    * otherwise at `start_date`; never before `start_date`;
    * it ends at `end_date` (default today), never after `today` (the API's 400).
    """
    if resume_date is not None:
        first = resume_date
    elif last_date is not None:
        first = last_date - dt.timedelta(days=lookback_days)
    else:
        first = start_date
    first = max(first, start_date)
    last = min(end_date or today, today)
    if first > last:
        return None
    return DateRange(first, last)
