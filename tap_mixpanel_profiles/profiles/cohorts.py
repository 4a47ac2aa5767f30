"""The `cohorts` stream's sync: Mixpanel's cohorts list, one record per cohort, the full table.

`POST /api/query/cohorts/list` (`project_id` as for Engage) answers every cohort at once, as
a JSON array, no paging. It is a Query API call: it goes through the Engage limiter and
counts against the same hourly budget as every Engage query. The list is read defensively:
an item may carry fields we do not know (ignored), lack `data_group_id` (a cohort of user
profiles), serve `is_visible` as 0/1 or numbers as text; an item without a usable `id`
cannot be keyed and is skipped with a warning.

`cohort_members` plans its queries from the same list; when both streams run, the list read
by the first is reused by the other (`shared_list`), so a run spends one query on it, not two.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t
import weakref

import msgspec
from typing_extensions import override

from tap_mixpanel_profiles.engine.client import ApiClient, BadResponse, ClientError
from tap_mixpanel_profiles.engine.fetcher import PartitionedFetcher
from tap_mixpanel_profiles.engine.lifecycle import Batch, StreamSync
from tap_mixpanel_profiles.errors import ConfigError
from tap_mixpanel_profiles.profiles.engage import engage_api

if t.TYPE_CHECKING:
    import requests

    from tap_mixpanel_profiles.engine.runtime import Runtime
    from tap_mixpanel_profiles.profiles.engage_streams import CohortsStream
    from tap_mixpanel_profiles.settings import Settings

#: The one partition of a cohorts-list read (also its name when it fails).
LIST = "cohorts list"

_decoder = msgspec.json.Decoder()


@dataclasses.dataclass
class CohortList:
    """One read of the cohorts list: the records, and what could not be used."""

    records: list[dict[str, t.Any]]
    skipped: int = 0  # items without a usable id
    bad_created: int = 0  # `created` values that are no date-time (their column is null)


def _integer(value: t.Any) -> int | None:
    """An integer from JSON: 101, 101.0 or "101"; None for anything else (booleans too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return value if isinstance(value, int) else None


def _flag(value: t.Any) -> bool | None:
    """A boolean from JSON: true/false, 0/1, "true"/"false"/"0"/"1"; None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "0", "1"):
        return value.strip().lower() in ("true", "1")
    return None


def _text(value: t.Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else str(value)


def _created(value: t.Any) -> tuple[str | None, bool]:
    """'YYYY-MM-DD HH:MM:SS' (or any ISO date-time) in ISO form; (None, True) when unusable."""
    if value is None or value == "":
        return None, False
    if not isinstance(value, str):
        return None, True
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None, True
    return parsed.isoformat(), False


def parse_cohorts(items: list[t.Any]) -> CohortList:
    """The cohorts list's items as records (see the module docstring for what is tolerated)."""
    listing = CohortList(records=[])
    seen: set[int] = set()
    for item in items:
        cohort_id = _integer(item.get("id")) if isinstance(item, dict) else None
        if cohort_id is None or cohort_id in seen:
            listing.skipped += 1
            continue
        seen.add(cohort_id)
        created, bad = _created(item.get("created"))
        listing.bad_created += bad
        listing.records.append(
            {
                "id": cohort_id,
                "name": _text(item.get("name")),
                "description": _text(item.get("description")),
                "count": _integer(item.get("count")),
                "is_visible": _flag(item.get("is_visible")),
                "created": created,
                "project_id": _integer(item.get("project_id")),
                "data_group_id": _integer(item.get("data_group_id")),
            }
        )
    return listing


def fetch_cohorts(client: ApiClient, settings: Settings) -> CohortList:
    """On a worker: one query of the cohorts list (retries, limits and waits included)."""

    def handle(response: requests.Response) -> CohortList:
        try:
            body = _decoder.decode(response.content)
        except msgspec.DecodeError as exc:
            raise BadResponse(f"cohorts list is not valid JSON ({type(exc).__name__})") from exc
        items = body.get("results") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise BadResponse("the cohorts list is not a JSON array")
        return parse_cohorts(items)

    try:
        return client.request(
            "POST",
            f"{settings.base_url}/api/query/cohorts/list",
            label=LIST,
            params={"project_id": settings.project_id},
            handle=handle,
        )
    except ClientError as exc:
        raise ConfigError(f"Mixpanel rejected the cohorts list query (400): {exc}") from exc


def list_fetcher(
    sync: StreamSync, settings: Settings, *, emit_records: bool
) -> PartitionedFetcher[str]:
    """A fetcher for the one `LIST` partition: its result is the CohortList; with
    `emit_records` the records also go to the writer (the cohorts stream's own)."""

    def fetch(_: str, emit: t.Callable[[list[t.Any]], None]) -> CohortList:
        listing = fetch_cohorts(sync.client, settings)
        if emit_records and listing.records:
            emit([dict(r) for r in listing.records])
        return listing

    return PartitionedFetcher(fetch, workers=1, cancel=sync.cancel, name="cohorts", logger=sync.log)


#: The list each run read (by its Runtime), for cohort_members after cohorts.
_LISTS: weakref.WeakKeyDictionary[Runtime[t.Any], CohortList] = weakref.WeakKeyDictionary()


def remember_list(runtime: Runtime[t.Any], listing: CohortList) -> None:
    """Keep this run's cohorts list for the other streams of the run."""
    _LISTS[runtime] = listing


def shared_list(runtime: Runtime[t.Any]) -> CohortList | None:
    """The cohorts list this run already read, if any."""
    return _LISTS.get(runtime)


def report_list(sync: StreamSync, listing: CohortList) -> None:
    """Warn about items that could not be used as served."""
    if listing.skipped:
        sync.log.warning(
            "%d items of the cohorts list have no usable (or a repeated) id: skipped.",
            listing.skipped,
        )
    if listing.bad_created:
        sync.log.warning(
            "%d cohorts have a 'created' that is no date-time: their created column is null.",
            listing.bad_created,
        )


class CohortsSync(StreamSync):
    """One query of the cohorts list; its records are the stream's."""

    unit = "query"
    failed_key = "failed_queries"
    restart_hint = "reading the cohorts list"

    def __init__(self, stream: CohortsStream) -> None:
        super().__init__(stream, stream.runtime.client(engage_api(stream.settings)))
        self.settings = stream.settings
        self.listing: CohortList | None = None

    @override
    def fingerprint(self) -> dict[str, t.Any]:
        return {"project_id": self.settings.project_id}

    @override
    def start(self) -> None:
        """Nothing to plan: the whole list, every run."""
        self.progress.plan(1)

    @override
    def sync(self) -> t.Iterator[Batch]:
        """The list cohort_members read in this run (no second query), else one query."""
        listing = shared_list(self.runtime)
        if listing is None:
            yield from self.drain(list_fetcher(self, self.settings, emit_records=True), [LIST])
            return
        self.log.info("cohorts: the cohorts list was read by cohort_members in this run.")
        self.listing = listing
        records = self.accept(LIST, [dict(r) for r in listing.records])
        self.progress.partition_done(LIST, len(records))
        yield records

    @override
    def partition_done(self, partition: t.Any, rows: int, result: t.Any) -> None:
        self.listing = result
        remember_list(self.runtime, result)
        self.progress.partition_done(LIST, rows)
        report_list(self, result)

    @override
    def save_state(self, *, complete: bool) -> None:
        """A full table: nothing to resume (the bookmark holds only the fingerprint)."""

    @override
    def summary_extra(self) -> dict[str, t.Any]:
        return {"cohorts": len(self.listing.records) if self.listing else None}
