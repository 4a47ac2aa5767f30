"""The Engage query API: request forms, response validation, profile records.

Everything here runs on worker threads (HTTP + parsing only). A page is parsed
with msgspec (several times faster than the stdlib for large pages) and turned
into records before it is handed to the writer thread.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import typing as t

import msgspec
import requests

from tap_mixpanel_profiles.engine.client import ApiClient, BadResponse, ClientError, object_field
from tap_mixpanel_profiles.engine.limiter import Window
from tap_mixpanel_profiles.engine.runtime import ApiSpec
from tap_mixpanel_profiles.errors import ConfigError, SessionExpired
from tap_mixpanel_profiles.profiles.where import LAST_SEEN_RE

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


@dataclasses.dataclass
class EngagePage:
    """One parsed Engage page. `total`/`page_size`/`session_id` are trusted on page 0 only."""

    page: int
    records: list[dict[str, t.Any]]
    total: int | None = None
    page_size: int | None = None
    session_id: str | None = None
    bad_last_seen: int = 0

    def served_page_size(self, requested_page_size: int) -> int:
        """Profiles per page in this session.

        The served page size may be smaller than requested (servers cap it),
        so the echoed value wins over the request; without one, the size of
        page 0 itself. (A page 0 shorter than the echo while more pages follow
        is reported by the sync's short-page and total checks, not guessed at.)
        """
        return self.page_size or len(self.records) or requested_page_size

    def page_count(self, requested_page_size: int) -> int:
        """Pages in the session: ceil(total / served page size)."""
        total = self.total or 0
        if total <= 0:
            return 1
        return max(1, math.ceil(total / self.served_page_size(requested_page_size)))


def _is_calendar_time(text: str) -> bool:
    """True for a real date and time: the pattern alone lets 2024-02-30 or 25:61 through."""
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def to_record(item: t.Any) -> tuple[dict[str, t.Any], bool]:
    """Engage result → tap record; the flag says `$last_seen` was present but unusable."""
    if not isinstance(item, dict):
        raise BadResponse("a result is not an object")
    distinct_id = item.get("$distinct_id")
    if distinct_id is None or isinstance(distinct_id, (dict, list, bool)):
        raise BadResponse("a result has no usable $distinct_id")
    props = object_field(item, "$properties", "a result's $properties")
    raw = props.get("$last_seen")
    last_seen = None
    bad = False
    if (
        isinstance(raw, str)
        and len(raw) >= 19
        and LAST_SEEN_RE.match(raw)
        and _is_calendar_time(raw[:19])
    ):
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
    """Fetches Engage pages through the shared ApiClient."""

    def __init__(self, client: ApiClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def form(self, where: str | None, page: int, session_id: str | None) -> dict[str, t.Any]:
        """The form body of one Engage query."""
        s = self.settings
        form: dict[str, t.Any] = {"page_size": s.page_size}
        if where:
            form["where"] = where
        if s.cohort_id is not None:
            form["filter_by_cohort"] = json.dumps({"id": s.cohort_id})
            if s.include_all_users is not None:
                form["include_all_users"] = "true" if s.include_all_users else "false"
        if s.output_properties:
            form["output_properties"] = json.dumps(list(s.output_properties))
        if page > 0:
            form["page"] = page
            form["session_id"] = session_id
        return form

    def fetch_page(
        self,
        where: str | None,
        page: int,
        session_id: str | None = None,
        *,
        label: str | None = None,
    ) -> EngagePage:
        """Fetch and parse one page (retries, limits and waits included).

        Raises ConfigError for a 400 on page 0 (the query itself is invalid) and
        SessionExpired for a 400 on a later page (the session was rejected).
        """
        label = label or f"page {page}"
        counted = page == 0 or self.settings.session_pages_count_against_quota
        try:
            return self.client.request(
                "POST",
                self.settings.engage_url,
                label=label,
                params={"project_id": self.settings.project_id},
                data=self.form(where, page, session_id),
                counted=counted,
                handle=lambda response: self.parse(response, page),
            )
        except ClientError as exc:
            if page > 0:
                raise SessionExpired(f"{label}: session rejected (400): {exc}") from exc
            raise ConfigError(f"Mixpanel rejected the query (400): {exc}") from exc

    @staticmethod
    def parse(response: requests.Response, page: int) -> EngagePage:
        """Validate an Engage body; BadResponse (retried) for anything unusable."""
        try:
            body = _decoder.decode(response.content)
        except (msgspec.DecodeError, requests.RequestException) as exc:
            raise BadResponse(f"not valid JSON ({type(exc).__name__})") from exc
        if not isinstance(body, dict):
            raise BadResponse("body is not a JSON object")
        if body.get("status", "ok") != "ok":
            raise BadResponse(f"status {str(body.get('status'))[:40]!r}")
        results = body.get("results")
        if not isinstance(results, list):
            raise BadResponse("no 'results' list")
        records = []
        bad = 0
        for item in results:
            record, bad_last_seen = to_record(item)
            records.append(record)
            bad += bad_last_seen
        result = EngagePage(page=page, records=records, bad_last_seen=bad)
        if page == 0:
            total = _count(body.get("total"))
            if total is None:
                raise BadResponse("page 0 has no valid 'total'")
            size = _count(body.get("page_size"))
            result.total = total
            result.page_size = size if size else None
            session_id = body.get("session_id")
            result.session_id = str(session_id) if session_id else None
            if total > len(records) and not result.session_id:
                raise BadResponse("page 0 has more pages but no 'session_id'")
            if total > 0 and not records:
                raise BadResponse("page 0 reports profiles but returned none")
        return result
