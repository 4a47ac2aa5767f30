"""Configuration of the Mixpanel simulator (re-exported by :mod:`tap_mixpanel_profiles.simulator`).

Every field carries a ``help`` text in its metadata: the CLI is generated from these fields, so the
Python API and ``python -m tap_mixpanel_profiles.simulator --help`` can never drift apart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import typing as t
import zoneinfo
from dataclasses import dataclass, field

from .cohorts import DEFAULT_COHORTS, parse_cohorts
from .groups import parse_data_groups
from .properties import PROPERTY_ENDPOINT_MODES

__all__ = ["DEFAULT_DATA_GROUPS", "RUNTIME_FIELDS", "SimulatorConfig"]


DEFAULT_DATA_GROUPS = "1:company_id:2000,2:account_id:300"


def _f(default: t.Any, help: str, **kw: t.Any) -> t.Any:
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class SimulatorConfig:
    """Behaviour of one simulated Mixpanel project.

    The simulator works on its own validated copy (``dataclasses.replace``), so editing a config
    object after handing it over has no effect: change a running simulator with ``set_faults``.
    """

    # --- data -------------------------------------------------------------------------------
    profiles: int = _f(1000, "number of profiles in the data set")
    seed: int = _f(42, "seed for data generation and fault dice")
    realistic: bool = _f(False, "20-40 properties per profile with nested values (benchmarks)")
    wide_properties: int = _f(
        0, "a pool of this many extra properties, ten per profile (wide property schemas)"
    )
    now: str | None = _f(
        None, "fixed 'now' (YYYY-MM-DDTHH:MM:SS, UTC) that $last_seen values are relative to"
    )
    # --- network ----------------------------------------------------------------------------
    host: str = _f("127.0.0.1", "bind address; loopback only", cli=False)
    port: int = _f(0, "port (0 = pick a free one)")
    # --- credentials (fake) -----------------------------------------------------------------
    project_id: str = _f("12345", "project id that service-account requests must name")
    service_account_username: str = _f("sim-user", "service account username")
    service_account_secret: str = _f("sim-secret", "service account secret")
    api_secret: str = _f(
        "sim-api-secret", "legacy project API secret (Basic auth user, empty password)"
    )
    # --- group profiles and cohorts ---------------------------------------------------------
    data_groups: str = _f(
        DEFAULT_DATA_GROUPS,
        "group profile data sets served by Engage with data_group_id: comma list of "
        "DATA_GROUP_ID:GROUP_KEY:PROFILES ('' = none)",
    )
    cohorts: str = _f(
        DEFAULT_COHORTS,
        "cohorts (cohorts list, Engage filter_by_cohort): comma list of "
        "ID:SHARE[:orphans=N][:group=K][:hidden]; SHARE of the profiles (of data group K) are "
        "members, plus N distinct_ids without a profile; a K not in data_groups answers 404 "
        "Missing Datagroup ('' = none)",
    )
    # --- timing and paging -------------------------------------------------------------------
    latency: float = _f(0.0, "seconds added to every Query API response (engage, cohorts list)")
    jitter: float = _f(0.0, "extra uniform 0..jitter seconds per Query API response")
    default_page_size: int = _f(1000, "page size when the request names none")
    max_page_size: int = _f(1000, "cap on the served page size (50000 works; pages are streamed)")
    paging_keys_after_results: bool = _f(
        False,
        "Engage bodies put page_size, session_id and total after results "
        "(Mixpanel's key order is undocumented; default: before)",
    )
    # --- limits ------------------------------------------------------------------------------
    concurrency_limit: int = _f(
        5, "concurrent Query API queries allowed (engage and cohorts list; 0 = unlimited)"
    )
    hourly_limit: int = _f(60, "Query API queries allowed per sliding window (0 = unlimited)")
    window_seconds: float = _f(3600.0, "length of the 'hourly' sliding window in seconds")
    retry_after: float | None = _f(None, "if set, 429 responses carry Retry-After: ceil(this)")
    session_requests_exempt: bool = _f(
        False,
        "engage requests with a session_id do not count toward the hourly limit "
        "(page-0 queries and the cohorts list always count)",
    )
    count_rejected: bool = _f(False, "429-rejected requests count toward the hourly window")
    # --- faults ------------------------------------------------------------------------------
    fault_5xx: float = _f(0.0, "rate of 500/502/503 answers")
    fault_reset: float = _f(0.0, "rate of connections closed abruptly without an answer")
    fault_truncated: float = _f(0.0, "rate of 200 answers whose JSON body is cut in the middle")
    fault_slow: float = _f(0.0, "rate of answers delayed by slow_seconds")
    slow_seconds: float = _f(5.0, "delay of a slow answer")
    fail_pages: frozenset[int] = _f(
        frozenset(), "page numbers that always answer 500 (CLI: comma list)"
    )
    session_max_age: float | None = _f(
        None, "seconds after which a session_id is rejected on pages > 0"
    )
    properties_endpoint: str = _f(
        "ok",
        "how /api/2.0/engage/properties answers: ok (the listing), missing (404), "
        "forbidden (403) or junk (a 200 that is no listing)",
    )
    # --- raw export (/api/2.0/export, see simulator.export) ----------------------------------
    events_per_day: int = _f(40, "average events per day in the export data set")
    events_history_days: int = _f(400, "days before today that have events")
    export_timezone: str = _f("UTC", "project timezone: what 'today' and the export dates mean")
    export_today: str | None = _f(
        None,
        "fixed 'today' (YYYY-MM-DD) for the to_date check "
        "(default: the current date in export_timezone)",
    )
    export_missing_insert_id: float = _f(0.1, "rate of events served without $insert_id")
    export_duplicates: float = _f(0.03, "rate of events the export serves twice")
    export_insert_id_twins: float = _f(
        0.02,
        "rate of events followed by another event (another name) with the same $insert_id, "
        "distinct_id and time: two events to Mixpanel",
    )
    export_latency: float = _f(0.0, "seconds before an export answer starts")
    export_concurrency_limit: int = _f(100, "concurrent export queries allowed (0 = unlimited)")
    export_hourly_limit: int = _f(60, "export queries allowed per export window (0 = unlimited)")
    export_per_second_limit: int = _f(3, "export queries allowed per second (0 = unlimited)")
    export_window_seconds: float = _f(3600.0, "length of the export 'hourly' window in seconds")
    export_fault_5xx: float = _f(0.0, "rate of export 500/502/503 answers")
    export_fault_reset: float = _f(0.0, "rate of export streams reset mid-body")
    export_fault_truncated: float = _f(0.0, "rate of export bodies ending in a cut line")
    export_fault_slow: float = _f(0.0, "rate of export answers delayed by slow_seconds")
    export_fail_dates: str = _f(
        "", "comma list of YYYY-MM-DD: export ranges including one answer 500"
    )

    def __post_init__(self) -> None:
        """Validate eagerly so a typo in a test fails at construction, not on the 1000th request."""
        self.fail_pages = frozenset(int(p) for p in self.fail_pages)
        if self.profiles < 0 or self.wide_properties < 0:
            raise ValueError("profiles and wide_properties must be >= 0")
        for name in ("fault_5xx", "fault_reset", "fault_truncated", "fault_slow"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.fault_5xx + self.fault_reset + self.fault_truncated > 1.0 + 1e-9:
            raise ValueError("fault_5xx + fault_reset + fault_truncated must not exceed 1")
        if self.default_page_size < 1 or self.max_page_size < 1:
            raise ValueError("page sizes must be >= 1")
        if self.window_seconds <= 0:
            raise ValueError("window_seconds must be > 0")
        if min(self.latency, self.jitter, self.slow_seconds) < 0:
            raise ValueError("latency, jitter and slow_seconds must be >= 0")
        if self.properties_endpoint not in PROPERTY_ENDPOINT_MODES:
            raise ValueError(f"properties_endpoint must be one of {PROPERTY_ENDPOINT_MODES}")
        self._validate_export()
        parse_data_groups(self.data_groups)  # ValueError naming the bad entry
        parse_cohorts(self.cohorts)
        host = "127.0.0.1" if self.host == "localhost" else self.host
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"host must be a loopback address, got {self.host!r}")

    def _validate_export(self) -> None:
        rates = (
            "export_missing_insert_id",
            "export_duplicates",
            "export_insert_id_twins",
            "export_fault_5xx",
            "export_fault_reset",
            "export_fault_truncated",
            "export_fault_slow",
        )
        for name in rates:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if (
            self.export_fault_5xx + self.export_fault_reset + self.export_fault_truncated
            > 1.0 + 1e-9
        ):
            raise ValueError(
                "export_fault_5xx + export_fault_reset + export_fault_truncated must not exceed 1"
            )
        for name in (
            "events_per_day",
            "events_history_days",
            "export_concurrency_limit",
            "export_hourly_limit",
            "export_per_second_limit",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.export_window_seconds <= 0 or self.export_latency < 0:
            raise ValueError("export_window_seconds must be > 0 and export_latency >= 0")
        try:
            zoneinfo.ZoneInfo(self.export_timezone)
            for day in [self.export_today or "", *self.export_fail_dates.split(",")]:
                if day.strip():
                    dt.date.fromisoformat(day.strip())
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"invalid export_timezone, export_today or export_fail_dates: {exc}"
            ) from None


# Fields that ``MixpanelSimulator.set_faults`` may change while the server runs. Data, network and
# credential fields are fixed at construction because the data set and the socket depend on them.
RUNTIME_FIELDS: frozenset[str] = frozenset(
    f.name
    for f in dataclasses.fields(SimulatorConfig)
    if f.name
    not in {
        "profiles",
        "seed",
        "realistic",
        "wide_properties",
        "now",
        "data_groups",
        "cohorts",
        "host",
        "port",
        "project_id",
        "service_account_username",
        "service_account_secret",
        "api_secret",
    }
)
