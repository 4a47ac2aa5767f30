"""What the soak serves and what it must find: the simulator's faults, the tap's config, and
the check of every table against what the simulator serves (bench/soak.py runs the loop).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import typing as t
from pathlib import Path

import duckdb

from tap_mixpanel_profiles.events.export import to_record as event_record
from tap_mixpanel_profiles.simulator import MixpanelSimulator, SimulatorConfig

STREAMS = ("profiles", "events", "cohorts", "cohort_members", "group_profiles")
CURRENT_MEMBERS = (
    "SELECT m.cohort_id, m.distinct_id FROM mixpanel.cohort_members AS m "
    "JOIN mixpanel.cohort_snapshots AS s "
    "ON s.cohort_id = m.cohort_id AND m.synced_at >= s.synced_at"
)


@dataclasses.dataclass
class Knobs:
    seed: int
    profiles: int
    events_per_day: int
    event_days: int
    cohorts: int
    group_keys: int
    kills: int
    kill_min: float
    kill_max: float
    fault_rate: float
    max_runs: int
    workdir: Path
    plant: bool = False
    session_max_age: float = 10.0
    batch_rows: int = 2000


def simulator_config(k: Knobs) -> SimulatorConfig:
    """Faults on every endpoint, a 2-slot server, sessions that expire."""
    groups = ",".join(
        f"{g}:key_{g}:{max(50, k.profiles // (5 * g))}" for g in range(1, k.group_keys + 1)
    )
    cohorts = ",".join(
        f"{100 + c}:{round(0.05 + 0.9 * (c % 7) / 7, 2)}"
        + (f":group={1 + c % k.group_keys}" if c % 4 == 3 and k.group_keys else "")
        + (":orphans=15" if c % 3 == 0 else "")
        for c in range(1, k.cohorts + 1)
    )
    rate = k.fault_rate
    return SimulatorConfig(
        profiles=k.profiles,
        seed=k.seed,
        data_groups=groups,
        cohorts=cohorts,
        events_per_day=k.events_per_day,
        events_history_days=k.event_days + 5,
        fault_5xx=rate,
        fault_reset=rate,
        fault_truncated=rate,
        export_fault_5xx=rate,
        export_fault_reset=rate,
        export_fault_truncated=rate,
        concurrency_limit=2,
        hourly_limit=0,
        export_hourly_limit=0,
        export_per_second_limit=0,
        session_max_age=k.session_max_age,
        latency=0.01,
    )


def tap_config(sim: MixpanelSimulator, k: Knobs, start: dt.date) -> dict[str, t.Any]:
    return {
        "project_id": sim.config.project_id,
        "service_account_username": sim.config.service_account_username,
        "service_account_secret": sim.config.service_account_secret,
        "api_url": sim.url,
        "export_api_url": sim.url,
        "page_size": max(100, k.profiles // 40),
        "max_retries": 20,
        "backoff_base_seconds": 0.02,
        "backoff_max_seconds": 0.3,
        "queries_per_hour": 1_000_000,
        "events_queries_per_hour": 1_000_000,
        "start_date": start.isoformat(),
        "events_chunk_days": 2,
        "events_lookback_days": 2,
        "data_group_ids": list(range(1, k.group_keys + 1)),
        "cohort_members_properties": ["$email"],
        "property_schema_cache_dir": str(k.workdir / "schema-cache"),
    }


def plant_difference(db: Path) -> None:
    """For the soak's own test: lose one event row, as a resume bug would."""
    con = duckdb.connect(str(db))
    try:
        con.execute(
            "DELETE FROM mixpanel.events "
            "WHERE event_id = (SELECT min(event_id) FROM mixpanel.events)"
        )
    finally:
        con.close()


def check(
    sim: MixpanelSimulator, db: Path, k: Knobs, start: dt.date
) -> dict[str, tuple[int, int, int]]:
    """table -> (expected rows, loaded rows, rows loaded twice or wrong); every table exact."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
        out: dict[str, tuple[int, int, int]] = {}
        served = {p["$distinct_id"]: p["$properties"] for p in sim.profiles}
        rows = {
            r[0]: json.loads(r[1])
            for r in q("SELECT distinct_id, CAST(properties AS VARCHAR) FROM mixpanel.profiles")
        }
        total = q("SELECT count(*) FROM mixpanel.profiles")[0][0]
        wrong = sum(rows.get(d) != p for d, p in served.items()) + (total - len(served))
        out["profiles"] = (len(served), total, wrong)
        groups = {
            (g, p["$distinct_id"])
            for g in range(1, k.group_keys + 1)
            for p in sim.group_profiles(g)
        }
        loaded = q("SELECT data_group_id, distinct_id FROM mixpanel.group_profiles")
        out["group_profiles"] = (
            len(groups),
            len(loaded),
            len(groups ^ set(loaded)) + len(loaded) - len(set(loaded)),
        )
        members = {
            (c["id"], m["$distinct_id"]) for c in sim.cohorts() for m in sim.cohort_members(c["id"])
        }
        current = q(CURRENT_MEMBERS)
        out["cohort_members"] = (
            len(members),
            len(current),
            len(members ^ set(current)) + len(current) - len(set(current)),
        )
        cohorts = {c["id"] for c in sim.cohorts()}
        listed = [r[0] for r in q("SELECT id FROM mixpanel.cohorts")]
        out["cohorts"] = (len(cohorts), len(listed), len(cohorts ^ set(listed)))
        today = dt.datetime.now(dt.timezone.utc).date()
        events = {event_record(e)[0]["event_id"] for e in sim.events(start, today)}
        ids = [r[0] for r in q("SELECT event_id FROM mixpanel.events")]
        out["events"] = (len(events), len(ids), len(events ^ set(ids)) + len(ids) - len(set(ids)))
        return out
    finally:
        con.close()
