"""The Engage query API: request forms, response validation, profile records.

Everything here runs on worker threads (HTTP + parsing only). A page is read in
blocks: one that ends within `WHOLE_PAGE_BYTES` is decoded whole with msgspec
(the cheapest per profile); a larger one is parsed as it arrives (`pages`), and
its records are handed to the writer in batches while the rest is still on the
wire, so memory stays flat whatever `page_size` is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import typing as t

import msgspec
import requests

from tap_mixpanel_profiles.engine.client import ApiClient, BadResponse, ClientError, object_field
from tap_mixpanel_profiles.engine.limiter import QueryLimiter, Window
from tap_mixpanel_profiles.engine.runtime import ApiSpec
from tap_mixpanel_profiles.errors import ConfigError, SessionExpired
from tap_mixpanel_profiles.profiles.results import (
    READ_BYTES,
    Result,
    last_seen_of,
    read_streamed,
    read_whole,
)
from tap_mixpanel_profiles.profiles.where import is_last_seen

if t.TYPE_CHECKING:
    from tap_mixpanel_profiles.settings import Settings

_decoder = msgspec.json.Decoder()


def engage_api(settings: Settings) -> ApiSpec:
    """The Engage query API's limits: max_workers in flight, queries_per_hour per window.

    Every stream that queries Engage names the same key, so they share one limiter
    (Mixpanel's 5 concurrent / 60 an hour are per project, not per stream).
    """
    return ApiSpec(
        key="engage",
        name="Mixpanel Engage API",
        budget_name="Engage query",
        max_in_flight=settings.max_workers,
        windows=(Window(settings.queries_per_hour, settings.quota_window_seconds),),
    )


#: A body that ends within this many bytes is decoded in one msgspec call.
WHOLE_PAGE_BYTES = 2 * 1024 * 1024

Emit = t.Callable[[list[t.Any]], None]
#: Engage result item -> (the stream's record, whether its $last_seen was unusable).
MakeRecord = t.Callable[[t.Any], tuple[dict[str, t.Any], bool]]


@dataclasses.dataclass(frozen=True)
class EngageQuery:
    """What one Engage stream asks for (a sync adds segment clauses to `where`)."""

    where: str | None = None
    cohort_id: int | None = None
    include_all_users: bool | None = None
    output_properties: tuple[str, ...] | None = None
    data_group_id: int | None = None

    @classmethod
    def profiles(cls, settings: Settings) -> EngageQuery:
        """The profiles stream's query: the user's `where` and optional cohort filter."""
        return cls(
            where=settings.where,
            cohort_id=settings.cohort_id,
            include_all_users=settings.include_all_users,
            output_properties=settings.output_properties,
        )

    def narrowed(self, where: str | None) -> EngageQuery:
        """The same query with another `where`."""
        return dataclasses.replace(self, where=where)


@dataclasses.dataclass
class EngagePage:
    """What one page told: its row count, and (trusted on page 0 only) total, size, session.

    `records` holds the page's records only when no `emit` was given (tests, small reads);
    `redelivered` counts records an attempt emitted before it failed and was retried.
    """

    page: int
    rows: int = 0
    total: int | None = None
    page_size: int | None = None
    session_id: str | None = None
    bad_last_seen: int = 0
    redelivered: int = 0
    records: list[dict[str, t.Any]] | None = None

    def served_page_size(self, requested_page_size: int) -> int:
        """Profiles per page in this session.

        The served page size may be smaller than requested (servers cap it),
        so the echoed value wins over the request; without one, the size of
        page 0 itself. (A page 0 shorter than the echo while more pages follow
        is reported by the sync's short-page and total checks, not guessed at.)
        """
        return self.page_size or self.rows or requested_page_size

    def page_count(self, requested_page_size: int) -> int:
        """Pages in the session: ceil(total / served page size)."""
        total = self.total or 0
        if total <= 0:
            return 1
        return max(1, math.ceil(total / self.served_page_size(requested_page_size)))


def to_record(item: t.Any) -> tuple[dict[str, t.Any], bool]:
    """Engage result → tap record; the flag says `$last_seen` was present but unusable.

    A `Result` (how pages are decoded) keeps its properties as the served bytes; a dict (a
    result decoded whole) keeps them as a dict.
    """
    props: t.Any
    if type(item) is Result:
        distinct_id = item.distinct_id
        props, raw = last_seen_of(item.properties)
    elif isinstance(item, dict):
        distinct_id = item.get("$distinct_id")
        props = object_field(item, "$properties", "a result's $properties")
        raw = props.get("$last_seen")
    else:
        raise BadResponse("a result is not an object")
    if distinct_id is None or isinstance(distinct_id, (dict, list, bool)):
        raise BadResponse("a result has no usable $distinct_id")
    last_seen = None
    bad = False
    if isinstance(raw, str) and is_last_seen(raw):
        # Mixpanel serves UTC without an offset; say so explicitly downstream.
        last_seen = raw[:19] + "+00:00"
    elif raw is not None:
        bad = True
    return {"distinct_id": str(distinct_id), "last_seen": last_seen, "properties": props}, bad


def _count(value: t.Any) -> int | None:
    """A non-negative integer from JSON: 250, 250.0 or "250"; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and value >= 0 else None


class EngageApi:
    """Fetches Engage pages through the stream's ApiClient."""

    def __init__(
        self, client: ApiClient, settings: Settings, make_record: MakeRecord | None = None
    ) -> None:
        self.client = client
        self.settings = settings
        self.make_record = make_record  # how results become records (None: to_record)
        #: Keep `$properties` as the served bytes (`results`); False where the records need
        #: them decoded anyway (typed columns, member filters): one decode, not two.
        self.raw_properties = True

    def form(self, query: EngageQuery, page: int, session_id: str | None) -> dict[str, t.Any]:
        """The form body of one Engage query."""
        form: dict[str, t.Any] = {"page_size": self.settings.page_size}
        if query.where:
            form["where"] = query.where
        if query.data_group_id is not None:
            form["data_group_id"] = query.data_group_id
        if query.cohort_id is not None:
            form["filter_by_cohort"] = json.dumps({"id": query.cohort_id})
            if query.include_all_users is not None:
                form["include_all_users"] = "true" if query.include_all_users else "false"
        if query.output_properties is not None:
            form["output_properties"] = json.dumps(list(query.output_properties))
        if page > 0:
            form["page"] = page
            form["session_id"] = session_id
        return form

    def fetch_page(
        self,
        query: EngageQuery,
        page: int,
        session_id: str | None = None,
        *,
        emit: Emit | None = None,
        label: str | None = None,
        make_record: MakeRecord | None = None,
    ) -> EngagePage:
        """Fetch one page into `emit` (retries, limits and waits included).

        Raises ConfigError for a 400 on page 0 (the query itself is invalid) and
        SessionExpired for a 400 on a later page (the session was rejected).
        """
        label = label or f"page {page}"
        # Page 0 always counts; a session page counts as configured (None: maybe, see
        # engine/quota.py: the limiter learns it from the server's answers).
        counted = True if page == 0 else self.settings.session_pages_count_against_quota
        emitted = 0

        def deliver(records: list[t.Any]) -> None:
            nonlocal emitted
            emitted += len(records)
            if emit is not None:
                emit(records)

        def handle(response: requests.Response) -> EngagePage:
            before = emitted
            convert = make_record or self.make_record
            result = self.read(
                response, page, deliver if emit else None, convert, self.raw_properties
            )
            result.redelivered = before
            return result

        try:
            return self.client.request(
                "POST",
                self.settings.engage_url,
                label=label,
                params={"project_id": self.settings.project_id},
                data=self.form(query, page, session_id),
                counted=counted,
                stream=True,
                handle=handle,
            )
        except ClientError as exc:
            if page > 0:
                raise SessionExpired(f"{label}: session rejected (400): {exc}") from exc
            raise ConfigError(f"Mixpanel rejected the query (400): {exc}") from exc

    @staticmethod
    def read(
        response: requests.Response,
        page: int,
        emit: Emit | None = None,
        make_record: MakeRecord | None = None,
        raw_properties: bool = True,
    ) -> EngagePage:
        """Read and validate an Engage body; BadResponse (retried) for anything unusable.

        Records go to `emit` in batches as they are decoded; without `emit` they are
        collected in the result's `records`. `raw_properties`: see `results`.
        """
        result = EngagePage(page=page, records=None if emit else [])
        convert = make_record or to_record

        def deliver(items: list[t.Any]) -> None:
            if not items:
                return
            records = []
            bad = 0
            for item in items:
                record, bad_last_seen = convert(item)
                records.append(record)
                bad += bad_last_seen
            result.rows += len(records)
            result.bad_last_seen += bad
            if emit is not None:
                emit(records)
            else:
                assert result.records is not None
                result.records.extend(records)

        blocks = response.iter_content(READ_BYTES)
        head: list[bytes] = []  # joined once, at its size (no growing buffer, no copy of it)
        size = 0
        for block in blocks:
            head.append(block)
            size += len(block)
            if size > WHOLE_PAGE_BYTES:
                meta = read_streamed(head, blocks, deliver, raw_properties)
                break
        else:
            meta = read_whole(b"".join(head), deliver, raw_properties)
        _check_meta(result, meta)
        return result


def _check_meta(result: EngagePage, meta: dict[str, t.Any]) -> None:
    """The page's own keys: status, and on page 0 the total, page size and session."""
    if meta.get("status", "ok") != "ok":
        raise BadResponse(f"status {str(meta.get('status'))[:40]!r}")
    if result.page != 0:
        return
    total = _count(meta.get("total"))
    if total is None:
        raise BadResponse("page 0 has no valid 'total'")
    size = _count(meta.get("page_size"))
    result.total = total
    result.page_size = size if size else None
    session_id = meta.get("session_id")
    result.session_id = str(session_id) if session_id else None
    if total > result.rows and not result.session_id:
        raise BadResponse("page 0 has more pages but no 'session_id'")
    if total > 0 and not result.rows:
        raise BadResponse("page 0 reports profiles but returned none")


class SessionCounting:
    """Whether Engage session pages count against the hourly quota: a fact about the project.

    With `session_pages_count_against_quota: auto` the shared Engage limiter learns it
    from Mixpanel's answers (see engine/quota.py). What it learned is kept at the top of
    STATE (every Engage stream shares it), so the next run starts from it; that run's
    own answers still re-check it.
    """

    STATE_KEY = "engage_quota"

    def __init__(self, settings: Settings, limiter: QueryLimiter) -> None:
        self.settings = settings
        self.limiter = limiter

    def recall(self, tap_state: t.Mapping[str, t.Any], log: logging.Logger) -> bool | None:
        """Start the limiter from an earlier run's finding (auto only); what it was."""
        if self.settings.session_pages_count_against_quota is not None:
            return None
        fact = tap_state.get(self.STATE_KEY)
        if not isinstance(fact, dict) or str(fact.get("project_id")) != self.settings.project_id:
            return None
        counted = fact.get("session_pages_counted")
        if not isinstance(counted, bool):
            return None
        self.limiter.assume(counted)
        log.info(
            "An earlier run (%s) learned that session pages %s against the hourly quota; "
            "starting from that (this run's answers re-check it).",
            fact.get("learned_at", "?"),
            "count" if counted else "do not count",
        )
        return counted

    def remember(self, tap_state: t.MutableMapping[str, t.Any]) -> None:
        """Keep what this run learned (auto only) for the next run."""
        if self.settings.session_pages_count_against_quota is None and self.limiter.maybe_learned:
            tap_state[self.STATE_KEY] = {
                "project_id": self.settings.project_id,
                "session_pages_counted": self.limiter.maybe_counted,
                "learned_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            }

    def summary(self) -> dict[str, t.Any]:
        """SUMMARY fields: whether session pages counted, and how that is known."""
        configured = self.settings.session_pages_count_against_quota
        if configured is not None:
            return {"session_pages_counted": configured, "session_pages_counted_from": "setting"}
        known = self.limiter.maybe_counted
        source = "learned" if self.limiter.maybe_learned else "earlier run"
        return {
            "session_pages_counted": "unknown" if known is None else known,
            "session_pages_counted_from": "unknown" if known is None else source,
        }
