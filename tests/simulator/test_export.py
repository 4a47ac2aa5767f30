"""The simulator's raw Export API over real HTTP: semantics, data, limits, faults, stats."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import typing as t

import pytest
import requests

from tap_mixpanel_profiles.simulator import MixpanelSimulator, SimulatorConfig
from tap_mixpanel_profiles.simulator.cli import _parser

from .helpers import SERVICE_ACCOUNT, TODAY, N

DAYS = [(TODAY - dt.timedelta(days=n)).isoformat() for n in range(10)]


def export(
    sim: MixpanelSimulator,
    from_date: str,
    to_date: str,
    *,
    auth: t.Any = SERVICE_ACCOUNT,
    session: requests.Session | None = None,
    **params: t.Any,
) -> requests.Response:
    http = session or requests
    return http.get(
        sim.url + "/api/2.0/export",
        auth=auth,
        timeout=20,
        params={"project_id": "12345", "from_date": from_date, "to_date": to_date, **params},
    )


def lines(response: requests.Response) -> list[dict[str, t.Any]]:
    assert response.status_code == 200, response.text
    return [json.loads(x) for x in response.content.split(b"\n") if x.strip()]


def test_json_lines_streamed_with_chunked_encoding(sim: MixpanelSimulator) -> None:
    response = export(sim, DAYS[3], DAYS[0])
    assert response.headers.get("Transfer-Encoding") == "chunked"
    served = lines(response)
    assert served and all(set(e) == {"event", "properties"} for e in served)
    for event in served:
        props = event["properties"]
        assert isinstance(props["time"], int) and isinstance(props["distinct_id"], str)


def test_events_are_deterministic_and_match_the_accessor(sim: MixpanelSimulator) -> None:
    first, again = lines(export(sim, DAYS[2], DAYS[0])), lines(export(sim, DAYS[2], DAYS[0]))
    assert first == again
    unique = {json.dumps(e, sort_keys=True) for e in first}
    assert unique == {json.dumps(e, sort_keys=True) for e in sim.events(DAYS[2], DAYS[0])}
    assert len(first) > len(unique), "some events are served twice"
    again = MixpanelSimulator(
        SimulatorConfig(profiles=N, events_per_day=60, export_today=TODAY.isoformat())
    )
    assert again.events(DAYS[2], DAYS[0]) == sim.events(DAYS[2], DAYS[0])


def test_awkward_but_joinable_data(sim: MixpanelSimulator) -> None:
    events = sim.events(DAYS[9], DAYS[0])
    profile_ids = {p["$distinct_id"] for p in sim.profiles}
    assert {e["properties"]["distinct_id"] for e in events} <= profile_ids
    missing = [e for e in events if "$insert_id" not in e["properties"]]
    assert 0 < len(missing) < len(events) / 4
    assert any("\u2028" in json.dumps(e, ensure_ascii=False) for e in events)
    assert any(len(json.dumps(e)) > 100_000 for e in events), "a line longer than one read"
    assert any(not e["event"].isascii() for e in events)


def test_days_are_days_of_the_project_timezone() -> None:
    config = SimulatorConfig(
        profiles=10,
        events_per_day=30,
        export_today=TODAY.isoformat(),
        export_timezone="America/Los_Angeles",
    )
    sim = MixpanelSimulator(config)
    tz_start = dt.datetime(2025, 3, 30, tzinfo=dt.timezone(dt.timedelta(hours=-7))).timestamp()
    times = [e["properties"]["time"] for e in sim.events("2025-03-30", "2025-03-30")]
    assert times and all(tz_start <= t < tz_start + 86_400 for t in times)


def test_event_and_where_filters(sim: MixpanelSimulator) -> None:
    names = lines(export(sim, DAYS[3], DAYS[0], event=json.dumps(["Purchase", "注文完了"])))
    assert names and {e["event"] for e in names} <= {"Purchase", "注文完了"}
    ios = lines(export(sim, DAYS[3], DAYS[0], where='properties["$os"] == "iOS"'))
    assert ios and all(e["properties"]["$os"] == "iOS" for e in ios)
    assert len(sim.events(DAYS[3], DAYS[0], where='properties["$os"] == "iOS"')) == len(
        {json.dumps(e) for e in ios}
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from_date": DAYS[0], "to_date": DAYS[1]}, "after"),
        ({"from_date": DAYS[1], "to_date": (TODAY + dt.timedelta(days=1)).isoformat()}, "to_date"),
        ({"from_date": "2025-3-1", "to_date": DAYS[0]}, "from_date"),
        ({"from_date": DAYS[1]}, "to_date"),
        ({"from_date": DAYS[1], "to_date": DAYS[0], "event": "Purchase"}, "event"),
        ({"from_date": DAYS[1], "to_date": DAYS[0], "where": "properties[oops"}, "where"),
    ],
)
def test_bad_requests_are_400(sim: MixpanelSimulator, params: dict[str, str], message: str) -> None:
    response = requests.get(
        sim.url + "/api/2.0/export",
        auth=SERVICE_ACCOUNT,
        timeout=10,
        params={"project_id": "12345", **params},
    )
    assert response.status_code == 400 and message in response.json()["error"]


def test_auth_like_engage(sim: MixpanelSimulator) -> None:
    assert export(sim, DAYS[1], DAYS[0], auth=("sim-user", "wrong")).status_code == 401
    assert export(sim, DAYS[1], DAYS[0], project_id="999").status_code == 403
    assert export(sim, DAYS[1], DAYS[0], auth=("sim-api-secret", "")).status_code == 200
    assert (
        requests.post(sim.url + "/api/2.0/export", auth=SERVICE_ACCOUNT, timeout=10).status_code
        == 405
    )


def test_stats_count_export_requests_and_events(sim: MixpanelSimulator) -> None:
    sim.reset_stats()
    served = lines(export(sim, DAYS[1], DAYS[0]))
    stats = sim.stats()
    assert stats["export_requests"] == 1 and stats["export_served"] == 1
    assert stats["events_served"] == len(served)
    assert stats["requests"] == 0, "engage counters are separate"


def test_export_limits_concurrency_hour_and_second() -> None:
    config = SimulatorConfig(
        profiles=10,
        events_per_day=5,
        export_today=TODAY.isoformat(),
        export_latency=0.3,
        export_concurrency_limit=2,
        export_hourly_limit=0,
        export_per_second_limit=0,
    )
    with MixpanelSimulator(config) as sim:
        replies: list[requests.Response] = []
        threads = [
            threading.Thread(target=lambda: replies.append(export(sim, DAYS[0], DAYS[0])))
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        codes = sorted(r.status_code for r in replies)
        assert codes == [200, 200, 429, 429]
        text = next(r for r in replies if r.status_code == 429).json()["error"]
        assert "queries running concurrently" in text and "queries in the last second" in text
        stats = sim.stats()
        assert stats["export_rate_limited_concurrent"] == 2 and stats["export_max_in_flight"] >= 2
        sim.set_faults(export_latency=0.0, export_concurrency_limit=0, export_per_second_limit=2)
        time.sleep(1.05)  # the admitted requests above are still in the last second
        codes = [export(sim, DAYS[0], DAYS[0]).status_code for _ in range(3)]
        assert codes == [200, 200, 429] and sim.stats()["export_rate_limited_second"] == 1
        time.sleep(1.05)
        sim.set_faults(export_per_second_limit=0, export_hourly_limit=3, export_window_seconds=60)
        sim.reset_limits()
        codes = [export(sim, DAYS[0], DAYS[0]).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        assert (
            "4/3 queries running in the last hour" in export(sim, DAYS[0], DAYS[0]).json()["error"]
        )
        sim.reset_limits()
        assert export(sim, DAYS[0], DAYS[0]).status_code == 200


def test_faults_truncate_reset_fail() -> None:
    config = SimulatorConfig(
        profiles=10,
        events_per_day=80,
        export_today=TODAY.isoformat(),
        export_hourly_limit=0,
        export_per_second_limit=0,
        export_fault_truncated=1.0,
    )
    with MixpanelSimulator(config) as sim:
        body = export(sim, DAYS[2], DAYS[0]).content
        last = body.rstrip(b"\n").split(b"\n")[-1]
        with pytest.raises(ValueError):
            json.loads(last)
        assert sim.stats()["export_fault_truncated"] == 1
        sim.set_faults(export_fault_truncated=0.0, export_fault_reset=1.0)
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            export(sim, DAYS[2], DAYS[0])
        sim.set_faults(export_fault_reset=0.0, export_fault_5xx=1.0)
        assert export(sim, DAYS[2], DAYS[0]).status_code in (500, 502, 503)
        sim.set_faults(export_fault_5xx=0.0, export_fail_dates=DAYS[1])
        assert export(sim, DAYS[2], DAYS[0]).status_code == 500
        assert export(sim, DAYS[0], DAYS[0]).status_code == 200
        stats = sim.stats()
        assert stats["export_fault_reset"] == 1 and stats["export_fault_5xx"] == 2


def test_history_bound_and_config_validation() -> None:
    sim = MixpanelSimulator(
        SimulatorConfig(profiles=5, events_history_days=3, export_today=TODAY.isoformat())
    )
    assert sim.events("2025-03-27", "2025-03-27") == []
    assert sim.events("2025-03-28", "2025-03-28")
    for bad in (
        {"export_timezone": "Mars/Olympus"},
        {"export_today": "2025-13-01"},
        {"export_fail_dates": "yesterday"},
        {"export_fault_reset": 2.0},
        {"export_per_second_limit": -1},
    ):
        with pytest.raises(ValueError):
            SimulatorConfig(**bad)


def test_cli_has_the_export_flags() -> None:
    args = _parser().parse_args(
        [
            "--events-per-day",
            "5",
            "--export-timezone",
            "Europe/Berlin",
            "--export-fault-truncated",
            "0.1",
            "--export-fail-dates",
            "2025-01-01",
        ]
    )
    assert (
        args.events_per_day,
        args.export_timezone,
        args.export_fault_truncated,
        args.export_fail_dates,
    ) == (5, "Europe/Berlin", 0.1, "2025-01-01")
