"""Query API request handling of the simulator (Engage and the cohorts list), without HTTP.

:class:`EngageEngine` turns (parameters, Authorization header) into a :class:`Reply`. The HTTP
handler in :mod:`.server` only parses requests and writes replies, which keeps the Mixpanel
semantics (auth, limits, sessions, paging, faults) in one readable place; the stateless checks of
a request's credentials and parameters are in :mod:`.request`.

Order of checks, chosen to resemble a real API gateway: authentication (401/403/400) -> rate
limits (429) -> latency -> faults -> query validation (400/404) -> answer. Only admitted requests
hold a concurrency slot; latency is applied to every answer (it models network + server time).
Engage and the cohorts list share the concurrency limit and the hourly window.

What an Engage query selects (on page 0; later pages read the session's snapshot):

* the user profiles, or with ``data_group_id=K`` the profiles of data group K (400 if K is not
  configured or not an integer);
* with ``filter_by_cohort={"id": N}`` cohort N's members instead, in the cohort's data set
  (``data_group_id``, if given, must be the cohort's). ``include_all_users`` (default true)
  keeps the members without a profile (``{"$distinct_id": ..., "$properties": {}}``); false
  drops them. An unknown cohort answers 400, a cohort of a missing data group 404
  ``{"error": "Missing Datagroup"}``;
* then ``distinct_id``/``distinct_ids`` and ``where`` narrow it; ``output_properties`` projects
  every served page.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import time
import typing as t
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .cohorts import CohortSet, MissingDatagroup, parse_cohorts
from .config import RUNTIME_FIELDS
from .data import DataSet, ProfileRecord, parse_now
from .groups import generate_group_profiles, parse_data_groups
from .limits import Admission, FaultDice, RateLimiter, Stats
from .properties import listing_body, property_listing
from .replies import PageBody, Reply, error_reply, server_error
from .request import (
    BadRequest,
    authenticate,
    bool_param,
    int_param,
    is_cohort,
    is_str_list,
    json_param,
    optional_int_param,
)
from .where import WhereError, compile_where

if t.TYPE_CHECKING:
    from .config import SimulatorConfig

__all__ = ["MAX_SESSIONS", "EngageEngine"]

MAX_SESSIONS = 64  # oldest sessions are evicted (then answer "invalid session"), bounding memory


@dataclass
class _Session:
    records: list[ProfileRecord]
    created: float
    output_properties: list[str] | None


class EngageEngine:
    """State of one simulated project: data, sessions, limiter, fault dice, stats."""

    def __init__(
        self, config: SimulatorConfig, records: list[ProfileRecord], now: int | None = None
    ) -> None:
        """``records``: the user profiles; ``now`` (epoch seconds, default: the config's) is
        what the group profiles' ``$last_seen`` values are relative to."""
        self.config = config  # replaced atomically by set_config; read once per request
        self.users = DataSet(records, f"{config.seed}:orphans:users")
        self.group_specs = {g.id: g for g in parse_data_groups(config.data_groups)}
        self._groups: dict[int, DataSet] = {}
        self._groups_lock = threading.Lock()
        self._now = parse_now(config.now) if now is None else now
        self.cohorts = CohortSet(
            parse_cohorts(config.cohorts), config.seed, self._now, self.dataset
        )
        self.stats = Stats()
        self.limiter = RateLimiter()
        self.dice = FaultDice(config.seed)
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._lock = threading.Lock()
        self._listings: dict[int | None, list[tuple[str, int, str]]] = {}

    # ---------------------------------------------------------------------------- entry points
    def engage(self, params: Mapping[str, str], authorization: str | None) -> Reply:
        """Answer one engage request. The caller brackets it with ``stats.enter()/leave()``."""
        if params.get("data_group_id"):
            self.stats.data_group(params["data_group_id"])
        has_session = bool(params.get("session_id"))
        return self._query_api(params, authorization, has_session, self._engage_admitted)

    def cohorts_list(self, params: Mapping[str, str], authorization: str | None) -> Reply:
        """Answer one cohorts-list request: a Query API call like Engage (same auth, limits,
        latency and faults), without a session, so it always counts against the hour.
        The caller brackets it with ``stats.enter("cohorts_list")/leave()``."""
        return self._query_api(params, authorization, False, self._cohorts_admitted)

    def engage_properties(self, params: Mapping[str, str], authorization: str | None) -> Reply:
        """Answer one property-schema request (``/api/2.0/engage/properties``): a Query API
        call like the cohorts list (same auth, limits, latency and faults; it always counts).
        The caller brackets it with ``stats.enter("engage_properties")/leave()``."""
        return self._query_api(params, authorization, False, self._properties_admitted)

    def _query_api(
        self,
        params: Mapping[str, str],
        authorization: str | None,
        has_session: bool,
        answer: Callable[[SimulatorConfig, Mapping[str, str]], Reply],
    ) -> Reply:
        """Auth, limits and latency shared by the Query API endpoints; ``answer`` the rest."""
        cfg = self.config
        delay = cfg.latency + self.dice.uniform(cfg.jitter)
        denied = authenticate(cfg, params, authorization)
        if denied is not None:
            return self._finish(denied, delay)
        admission = self.limiter.admit(cfg, has_session)
        if admission.counted:
            self.stats.add("hourly_counted")
        elif admission.exempt:
            self.stats.add("hourly_exempt")
        if not admission.ok:
            return self._finish(self._rate_limited(cfg, admission), delay)
        try:
            if delay:
                time.sleep(delay)
            return self._finish(answer(cfg, params), 0.0)
        finally:
            self.limiter.release()

    def _finish(self, reply: Reply, delay: float) -> Reply:
        if delay:
            time.sleep(delay)
        if reply.action != "reset":
            self.stats.status(reply.status)
        return reply

    # ------------------------------------------------------------------------- auth and limits
    def _rate_limited(self, cfg: SimulatorConfig, admission: Admission) -> Reply:
        self.stats.add(
            "rate_limited_concurrent" if admission.cause == "concurrent" else "rate_limited_hourly"
        )
        headers = {}
        if cfg.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(cfg.retry_after))
        return error_reply(429, admission.message(cfg), **headers)

    # ------------------------------------------------------------------------------- admitted
    def _draw_faults(self, cfg: SimulatorConfig) -> tuple[Reply | None, bool]:
        """Roll the fault dice: (a 5xx or reset reply to send instead, whether to truncate)."""
        fault, status_5xx, slow = self.dice.draw(cfg)
        if slow:
            self.stats.fault("slow")
            time.sleep(cfg.slow_seconds)
        if fault == "5xx":
            self.stats.fault("5xx")
            return server_error(status_5xx), False
        if fault == "reset":
            self.stats.fault("reset")
            return Reply(0, action="reset"), False
        return None, fault == "truncated"

    def _cohorts_admitted(self, cfg: SimulatorConfig, params: Mapping[str, str]) -> Reply:
        instead, truncate = self._draw_faults(cfg)
        if instead is not None:
            return instead
        listing = self.cohorts.listing(cfg.project_id)
        reply = Reply(200, json.dumps(listing, ensure_ascii=False).encode())
        if truncate:
            self.stats.fault("truncated")
            return reply.truncated()
        return reply

    def _properties_admitted(self, cfg: SimulatorConfig, params: Mapping[str, str]) -> Reply:
        instead, truncate = self._draw_faults(cfg)
        if instead is not None:
            return instead
        mode = cfg.properties_endpoint
        if mode == "missing":
            return error_reply(404, "Not found")
        if mode == "forbidden":
            return error_reply(403, "Your plan does not include this feature")
        if mode == "junk":
            return Reply(200, b'{"status": "ok", "results": ["not", "a", "listing"]}')
        try:
            limit = int_param(params, "limit", 255, minimum=1)
            group_id = optional_int_param(params, "data_group_id")
            dataset = self._requested_dataset(group_id)
        except BadRequest as exc:
            return error_reply(400, str(exc))
        with self._lock:
            listing = self._listings.get(group_id)
        if listing is None:
            listing = property_listing(dataset.records)
            with self._lock:
                self._listings[group_id] = listing
        reply = Reply(200, json.dumps(listing_body(listing, limit), ensure_ascii=False).encode())
        if truncate:
            self.stats.fault("truncated")
            return reply.truncated()
        return reply

    def _engage_admitted(self, cfg: SimulatorConfig, params: Mapping[str, str]) -> Reply:
        instead, truncate = self._draw_faults(cfg)
        if instead is not None:
            return instead
        try:
            page = int_param(params, "page", 0, minimum=0)
            if page in cfg.fail_pages:
                self.stats.fault("5xx")
                return server_error(500)
            body, rows = self._query(cfg, params, page)
        except BadRequest as exc:
            return error_reply(400, str(exc))
        except MissingDatagroup:
            # Mixpanel's answer for a cohort whose data group was deleted (no "status" key).
            return Reply(404, json.dumps({"error": "Missing Datagroup"}).encode())
        if truncate:
            self.stats.fault("truncated")
            return Reply(200, body).truncated()
        self.stats.served(rows)
        return Reply(200, body)

    # ---------------------------------------------------------------------------------- query
    def _query(
        self, cfg: SimulatorConfig, params: Mapping[str, str], page: int
    ) -> tuple[PageBody, int]:
        page_size = min(
            int_param(params, "page_size", cfg.default_page_size, minimum=1), cfg.max_page_size
        )
        output_properties = json_param(
            params, "output_properties", is_str_list, "a JSON array of strings"
        )
        session_id = params.get("session_id") or None
        if page == 0:
            self.stats.add("page0_requests")
        if session_id is not None:
            session = self._get_session(cfg, session_id, page)
        elif page > 0:
            raise BadRequest("session_id is required for page > 0 (request page 0 first)")
        else:
            session = _Session(self._select(params), time.monotonic(), output_properties)
            session_id = self._add_session(session)
        keys = output_properties if output_properties is not None else session.output_properties
        rows = session.records[page * page_size : (page + 1) * page_size]
        paging: dict[str, t.Any] = {"page_size": page_size, "session_id": session_id}
        if page == 0:
            paging["total"] = len(session.records)
        if cfg.paging_keys_after_results:
            prefix = json.dumps({"page": page, "status": "ok"})[:-1] + ', "results": ['
            suffix = "], " + json.dumps(paging)[1:]
        else:
            head = {"page": page, "page_size": page_size, "session_id": session_id, "status": "ok"}
            if page == 0:
                head["total"] = paging["total"]
            prefix, suffix = json.dumps(head)[:-1] + ', "results": [', "]}"
        return PageBody(prefix.encode(), rows, keys, suffix.encode()), len(rows)

    def _select(self, params: Mapping[str, str]) -> list[ProfileRecord]:
        """Snapshot the ordered list of profiles (and, for a cohort, profile-less members)
        matching the query."""
        try:
            predicate = compile_where(params.get("where"))
        except WhereError as exc:
            raise BadRequest(f"Invalid where expression: {exc}") from None
        cohort = json_param(params, "filter_by_cohort", is_cohort, 'a JSON object like {"id": 123}')
        ids = json_param(params, "distinct_ids", is_str_list, "a JSON array of strings")
        if ids is None and params.get("distinct_id"):
            ids = [params["distinct_id"]]
        group_id = optional_int_param(params, "data_group_id")
        records: list[ProfileRecord]
        if cohort is None:
            dataset = self._requested_dataset(group_id)
            records = dataset.records if ids is None else dataset.by_ids(ids)
        else:
            records = self._cohort_members(int(cohort["id"]), group_id, params)
            if ids is not None:
                wanted = set(ids)
                records = [r for r in records if r.distinct_id in wanted]
        if predicate is None:
            return list(records)
        return [r for r in records if predicate(r.properties)]

    def _cohort_members(
        self, cohort_id: int, group_id: int | None, params: Mapping[str, str]
    ) -> list[ProfileRecord]:
        spec = self.cohorts.get(cohort_id)
        if spec is None:
            raise BadRequest(
                f"Invalid filter_by_cohort: cohort {cohort_id} does not exist in project "
                f"{self.config.project_id}"
            )
        if group_id is not None and group_id != spec.data_group_id:
            of = (
                "user profiles"
                if spec.data_group_id is None
                else f"data group {spec.data_group_id}"
            )
            raise BadRequest(
                f"Invalid filter_by_cohort: cohort {cohort_id} is a cohort of {of}, "
                f"not of data_group_id {group_id}"
            )
        include_all = bool_param(params, "include_all_users", default=True)
        return self.cohorts.members(spec, include_all)  # MissingDatagroup: 404

    def _requested_dataset(self, group_id: int | None) -> DataSet:
        dataset = self.dataset(group_id)
        if dataset is None:
            raise BadRequest(
                f"Invalid data_group_id {group_id}: no such group key in project "
                f"{self.config.project_id}"
            )
        return dataset

    # ----------------------------------------------------------------------------- data sets
    @property
    def records(self) -> list[ProfileRecord]:
        """The user profiles, in served order."""
        return self.users.records

    def dataset(self, data_group_id: int | None) -> DataSet | None:
        """The user profiles (None), a data group's profiles (built on first use), or None for
        a data_group_id that is not configured."""
        if data_group_id is None:
            return self.users
        spec = self.group_specs.get(data_group_id)
        if spec is None:
            return None
        with self._groups_lock:
            dataset = self._groups.get(data_group_id)
            if dataset is None:
                records = generate_group_profiles(spec, self.config.seed, self._now)
                dataset = DataSet(records, f"{self.config.seed}:orphans:group:{spec.id}")
                self._groups[data_group_id] = dataset
            return dataset

    # ------------------------------------------------------------------------------- sessions
    def _add_session(self, session: _Session) -> str:
        session_id = os.urandom(12).hex()
        with self._lock:
            self._sessions[session_id] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        self.stats.add("sessions_created")
        return session_id

    def _get_session(self, cfg: SimulatorConfig, session_id: str, page: int) -> _Session:
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise BadRequest(
                f"session_id {session_id!r} is invalid or expired; restart from page 0"
            )
        max_age = cfg.session_max_age
        if page > 0 and max_age is not None and time.monotonic() - session.created > max_age:
            self.stats.fault("expired")
            raise BadRequest(
                f"session_id {session_id!r} has expired (invalid); restart from page 0"
            )
        return session

    # --------------------------------------------------------------------------- control
    def stats_snapshot(self) -> dict[str, t.Any]:
        """``GET /_stats``: counters plus a few gauges of the current state."""
        snapshot = self.stats.snapshot()
        snapshot["profiles"] = len(self.records)
        snapshot["data_group_profiles"] = {str(g.id): g.profiles for g in self.group_specs.values()}
        snapshot["hourly_window"] = self.limiter.window_count(self.config)
        with self._lock:
            snapshot["sessions_active"] = len(self._sessions)
        return snapshot

    def set_config(self, **changes: t.Any) -> None:
        """Replace runtime fields; requests already running keep the config they started with."""
        unknown = set(changes) - RUNTIME_FIELDS
        if unknown:
            raise TypeError(
                f"cannot change {sorted(unknown)} at run time; allowed: {sorted(RUNTIME_FIELDS)}"
            )
        with self._lock:
            self.config = dataclasses.replace(self.config, **changes)

    def clear_sessions(self) -> None:
        with self._lock:
            self._sessions.clear()

    # ---------------------------------------------------------------------------- mutation
    def replace_records(
        self, updated: list[ProfileRecord], data_group_id: int | None = None
    ) -> None:
        """Swap in new versions of some records of a data set (default: the user profiles);
        existing sessions keep their snapshots."""
        dataset = self.dataset(data_group_id)
        if dataset is None:
            raise KeyError(f"no data group {data_group_id}")
        with self._lock:
            for record in updated:
                dataset.records[record.index] = record
            self._listings.pop(data_group_id, None)
