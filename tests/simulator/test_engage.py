"""The Mixpanel simulator over real HTTP on 127.0.0.1: paging, sessions, auth, query parameters,
data, stats, touch_profiles and the CLI. Limits and faults are in test_limits.py."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tap_mixpanel_profiles.simulator import MixpanelSimulator, SimulatorConfig
from tap_mixpanel_profiles.simulator.data import parse_now
from tap_mixpanel_profiles.simulator.users import generate_profiles

from .helpers import NOW, SERVICE_ACCOUNT, N, engage, fetch_all


# ------------------------------------------------------------------------------------ paging
def test_paging_total_only_on_page0_short_last_page_and_empty_beyond_end(
    sim: MixpanelSimulator,
) -> None:
    http = requests.Session()
    first = engage(sim, http, page_size=1000)
    assert first.status_code == 200
    assert first.headers["Content-Type"].startswith("application/json")
    body = first.json()
    assert {k: body[k] for k in ("page", "page_size", "status", "total")} == {
        "page": 0,
        "page_size": 1000,
        "status": "ok",
        "total": N,
    }
    assert re.fullmatch(r"[0-9a-f]+", body["session_id"])
    sizes = [len(body["results"])]
    for page in (1, 2, 3, 4):
        more = engage(sim, http, page=page, page_size=1000, session_id=body["session_id"]).json()
        assert "total" not in more
        assert (
            more["page"] == page
            and more["session_id"] == body["session_id"]
            and more["status"] == "ok"
        )
        sizes.append(len(more["results"]))
    assert sizes == [1000, 1000, 500, 0, 0]


def test_page_size_is_capped_and_defaulted() -> None:
    with MixpanelSimulator(profiles=300, now=NOW, max_page_size=100, default_page_size=40) as small:
        capped = engage(small, page_size=5000).json()
        assert capped["page_size"] == 100 and len(capped["results"]) == 100
        default = engage(small).json()
        assert default["page_size"] == 40 and len(default["results"]) == 40
        assert engage(small, page_size=0).status_code == 400
        assert engage(small, page_size="ten").status_code == 400
        assert engage(small, page=-1).status_code == 400


def test_full_pull_matches_profiles_in_order(sim: MixpanelSimulator) -> None:
    total, results = fetch_all(sim, page_size=700)
    assert total == N
    assert results == sim.profiles
    assert len({r["$distinct_id"] for r in results}) == N


def test_page_beyond_zero_needs_a_valid_session(sim: MixpanelSimulator) -> None:
    missing = engage(sim, page=1)
    assert missing.status_code == 400 and "session_id" in missing.json()["error"]
    assert missing.json()["status"] == "error"
    bogus = engage(sim, page=1, session_id="deadbeef")
    assert bogus.status_code == 400 and "session_id" in bogus.json()["error"]


def test_get_on_legacy_path_and_post_with_query_params(sim: MixpanelSimulator) -> None:
    got = engage(sim, method="GET", path="/api/2.0/engage", page_size=10)
    assert got.status_code == 200 and len(got.json()["results"]) == 10
    posted = engage(sim, path="/api/2.0/engage", page_size=10)
    assert posted.json()["results"] == got.json()["results"]
    assert requests.get(sim.url + "/api/nope", timeout=5).status_code == 404


def test_session_snapshot_survives_data_changes() -> None:
    with MixpanelSimulator(profiles=30, now=NOW) as small:
        where = 'properties["$last_seen"] >= "2025-01-01T00:00:00"'
        first = engage(small, page_size=10, where=where).json()
        assert first["total"] == 0
        touched = small.touch_profiles(5)
        again = engage(
            small, page=0, page_size=10, where=where, session_id=first["session_id"]
        ).json()
        assert again["total"] == 0  # the session's snapshot, not the new data
        fresh = engage(small, page_size=10, where=where).json()
        assert sorted(r["$distinct_id"] for r in fresh["results"]) == sorted(touched)


# -------------------------------------------------------------------------------------- auth
def test_auth_paths(sim: MixpanelSimulator) -> None:
    assert engage(sim, auth=None).status_code == 401
    assert engage(sim, auth=("sim-user", "wrong")).status_code == 401
    assert engage(sim, auth=("nobody", "")).status_code == 401
    no_project = engage(sim, project_id=None)
    assert no_project.status_code == 400 and "project_id" in no_project.json()["error"]
    wrong = engage(sim, project_id="999")
    assert wrong.status_code == 403 and "project" in wrong.json()["error"]
    assert engage(sim, auth=("sim-api-secret", ""), project_id=None).status_code == 200
    assert engage(sim, auth=("sim-api-secret", ""), project_id="12345").status_code == 200
    assert engage(sim, auth=("sim-api-secret", ""), project_id="999").status_code == 403
    broken = requests.post(
        sim.url + "/api/query/engage",
        params={"project_id": "12345"},
        headers={"Authorization": "Basic !!!"},
        timeout=5,
    )
    assert broken.status_code == 401


# ------------------------------------------------------------------------------ query params
def test_where_filter_matches_local_evaluation(sim: MixpanelSimulator) -> None:
    cutoff = "2024-07-01T00:00:00"
    expected = [p for p in sim.profiles if p["$properties"].get("$last_seen", "") >= cutoff]
    total, results = fetch_all(sim, where=f'properties["$last_seen"] >= "{cutoff}"')
    assert 0 < total == len(expected) < N
    assert results == expected
    undefined = engage(sim, where='not defined (properties["$last_seen"])').json()
    assert undefined["total"] == sum(
        1 for p in sim.profiles if "$last_seen" not in p["$properties"]
    )
    both = engage(
        sim,
        where=f'(properties["$last_seen"] < "{cutoff}" or properties["plan"] == "pro") '
        'and defined (properties["$email"])',
    ).json()
    assert both["total"] == sum(
        1
        for p in sim.profiles
        if p["$properties"].get("$last_seen", "~") < cutoff or p["$properties"].get("plan") == "pro"
    )


@pytest.mark.parametrize(
    "where", ['properties["$last_seen"] >>= "x"', 'properties["a"] == "b" and', "1 +"]
)
def test_invalid_where_is_400(sim: MixpanelSimulator, where: str) -> None:
    bad = engage(sim, where=where)
    assert bad.status_code == 400
    assert bad.json()["status"] == "error" and "where" in bad.json()["error"].lower()


def test_output_properties(sim: MixpanelSimulator) -> None:
    keys = ["$email", "$last_seen", "not_there"]
    body = engage(sim, page_size=200, output_properties=json.dumps(keys)).json()
    for result in body["results"]:
        assert set(result["$properties"]) <= {"$email", "$last_seen"}
        assert "$email" in result["$properties"]
    page1 = engage(sim, page=1, page_size=200, session_id=body["session_id"]).json()
    assert all(set(r["$properties"]) <= {"$email", "$last_seen"} for r in page1["results"])
    assert engage(sim, output_properties='"$email"').status_code == 400
    assert engage(sim, output_properties="[1, 2").status_code == 400


def test_distinct_id_filters(sim: MixpanelSimulator) -> None:
    profiles = sim.profiles
    one = engage(sim, distinct_id=profiles[5]["$distinct_id"]).json()
    assert one["results"] == [profiles[5]]
    ids = [profiles[9]["$distinct_id"], profiles[2]["$distinct_id"], "no-such-id"]
    many = engage(sim, distinct_ids=json.dumps(ids)).json()
    assert many["results"] == [profiles[2], profiles[9]]


# -------------------------------------------------------------------------------------- data
def test_data_is_awkward_and_deterministic(sim: MixpanelSimulator) -> None:
    profiles = sim.profiles
    ids = [p["$distinct_id"] for p in profiles]
    assert len(set(ids)) == N
    assert (
        any(not i.isascii() for i in ids)
        and any('"' in i for i in ids)
        and any("\\" in i for i in ids)
    )
    assert any(i != i.strip() for i in ids)
    props = [p["$properties"] for p in profiles]
    missing = sum(1 for p in props if "$last_seen" not in p)
    assert 0.02 * N < missing < 0.09 * N
    seen = sorted(p["$last_seen"] for p in props if "$last_seen" in p)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", s) for s in seen)
    assert seen[0] > "2022-12-01T00:00:00" and seen[-1] <= NOW
    assert any(len(json.dumps(p)) > 50_000 for p in props)
    assert any("\n" in str(v) for p in props for v in p.values())
    assert any(isinstance(v, dict) for p in props for v in p.values())
    assert any(v is None for p in props for v in p.values())
    assert all(isinstance(p["$email"], str) and "$name" in p and "$city" in p for p in props)
    again = generate_profiles(N, 42, parse_now(NOW))
    assert [r.json for r in again] == [r.json for r in sim.engine.records]
    assert [r.json for r in generate_profiles(50, 43, parse_now(NOW))] != [
        r.json for r in again[:50]
    ]


def test_realistic_profiles_have_20_to_40_properties() -> None:
    records = generate_profiles(3000, 1, parse_now(NOW), realistic=True)
    counts = [len(r.properties) for r in records]
    assert min(counts) >= 20 and max(counts) <= 40
    assert all(
        json.loads(r.json) == {"$distinct_id": r.distinct_id, "$properties": r.properties}
        for r in records
    )


def test_touch_profiles() -> None:
    with MixpanelSimulator(profiles=200, now=NOW) as small:
        touched = small.touch_profiles(7, when="2030-01-02T03:04:05")
        assert len(touched) == len(set(touched)) == 7
        by_id = {p["$distinct_id"]: p["$properties"] for p in small.profiles}
        assert all(by_id[i]["$last_seen"] == "2030-01-02T03:04:05" for i in touched)
        body = engage(small, where='properties["$last_seen"] >= "2030-01-01T00:00:00"').json()
        assert sorted(r["$distinct_id"] for r in body["results"]) == sorted(touched)
        now_touched = small.touch_profiles(3)
        stamps = {
            p["$properties"]["$last_seen"]
            for p in small.profiles
            if p["$distinct_id"] in now_touched
        }
        assert len(stamps) == 1 and stamps.pop() > NOW
    with MixpanelSimulator(profiles=200, now=NOW) as twin:  # same seed -> same choice
        assert twin.touch_profiles(7, when="2030-01-02T03:04:05") == touched


# ------------------------------------------------------------------------------------- stats
def test_stats_endpoint_and_reset(sim: MixpanelSimulator) -> None:
    sim.reset_stats()
    body = engage(sim, page_size=100).json()
    engage(sim, page=1, page_size=100, session_id=body["session_id"])
    engage(sim, auth=None)
    # A handler leaves the in-flight gauge after its reply is written: the client may read
    # the reply first (seen on a busy machine). Wait for the gauge, bounded.
    deadline = time.monotonic() + 5
    while sim.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = requests.get(sim.url + "/_stats", timeout=5).json()
    assert stats == sim.stats()
    assert stats["requests"] == 3 and stats["by_status"] == {"200": 2, "401": 1}
    assert stats["rows_served"] == 200 and stats["pages_served"] == 2
    assert stats["sessions_created"] == 1 and stats["page0_requests"] == 1
    assert stats["requests_by_endpoint"] == {
        "engage": 3,
        "cohorts_list": 0,
        "engage_properties": 0,
        "export": 0,
    }
    assert (stats["hourly_counted"], stats["hourly_exempt"]) == (2, 0)  # the 401 never counts
    assert stats["profiles"] == N and stats["max_in_flight"] >= 1
    assert stats["faults"] == {"5xx": 0, "reset": 0, "truncated": 0, "slow": 0, "expired": 0}
    assert requests.post(sim.url + "/_stats/reset", timeout=5).json() == {"status": "ok"}
    after = sim.stats()
    assert after["requests"] == 0 and after["by_status"] == {} and after["rows_served"] == 0
    assert after["requests_by_endpoint"] == {
        "engage": 0,
        "cohorts_list": 0,
        "engage_properties": 0,
        "export": 0,
    }


def test_config_validation_and_runtime_changes(sim: MixpanelSimulator) -> None:
    with pytest.raises(ValueError):
        SimulatorConfig(host="0.0.0.0")
    with pytest.raises(ValueError):
        SimulatorConfig(fault_5xx=0.8, fault_reset=0.5)
    with pytest.raises(TypeError):
        sim.set_faults(profiles=10)
    sim.set_faults(max_page_size=50)
    try:
        assert engage(sim, page_size=1000).json()["page_size"] == 50
        assert (
            requests.post(sim.url + "/_faults", json={"max_page_size": 60}, timeout=5).status_code
            == 200
        )
        assert engage(sim, page_size=1000).json()["page_size"] == 60
        assert requests.post(sim.url + "/_faults", json={"seed": 1}, timeout=5).status_code == 400
    finally:
        sim.set_faults(max_page_size=1000)
    assert sim.config.max_page_size == 1000


# --------------------------------------------------------------------------------------- CLI
def test_cli_prints_url_serves_and_exits_on_sigterm(tmp_path: Path) -> None:
    url_file = tmp_path / "url"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tap_mixpanel_profiles.simulator",
            "--profiles",
            "50",
            "--port",
            "0",
            "--latency",
            "0.01",
            "--fail-pages",
            "3,4",
            "--url-file",
            str(url_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = proc.stdout.readline()
        match = re.fullmatch(
            r"Mixpanel simulator listening on (http://127\.0\.0\.1:\d+) "
            r"\(project_id=12345, profiles=50\)\n",
            line,
        )
        assert match, line
        url = match.group(1)
        for _ in range(50):
            if url_file.exists():
                break
            time.sleep(0.05)
        assert url_file.read_text().strip() == url
        reply = requests.post(
            url + "/api/query/engage",
            params={"project_id": "12345"},
            auth=SERVICE_ACCOUNT,
            timeout=5,
        )
        assert reply.status_code == 200 and reply.json()["total"] == 50
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        rest = proc.stdout.read()
        assert "sim-secret" in rest and "sim-api-secret" in rest
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
