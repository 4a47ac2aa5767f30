"""Cohorts: the cohorts list (both paths) and members through Engage's filter_by_cohort, with
include_all_users, group cohorts, the "Missing Datagroup" 404, limits, faults and stats.

The old rule "cohort N = every N-th profile" is gone: cohorts now come from the ``cohorts`` spec
(default: 101-105); its checks that a bad filter_by_cohort answers 400 are kept below."""

from __future__ import annotations

import json
import re
import threading
import time
import typing as t

import pytest
import requests

from tap_mixpanel_profiles.simulator import MixpanelSimulator, SimulatorConfig
from tap_mixpanel_profiles.simulator.cli import _parser
from tap_mixpanel_profiles.simulator.cohorts import CohortSpec, member_slots, parse_cohorts

from .helpers import NOW, PROJECT_ID, SERVICE_ACCOUNT, engage, fetch_all

LIST_PATHS = [("POST", "/api/query/cohorts/list"), ("GET", "/api/2.0/cohorts/list")]


def cohorts_list(
    sim: MixpanelSimulator,
    method: str = "POST",
    path: str = "/api/query/cohorts/list",
    *,
    auth: t.Any = SERVICE_ACCOUNT,
    project_id: str | None = PROJECT_ID,
) -> requests.Response:
    params = {} if project_id is None else {"project_id": project_id}
    return requests.request(method, sim.url + path, params=params, auth=auth, timeout=10)


def cohort(cohort_id: int) -> str:
    return json.dumps({"id": cohort_id})


# --------------------------------------------------------------------------------- the list
@pytest.mark.parametrize(("method", "path"), LIST_PATHS)
def test_cohorts_list_answers_a_json_array(sim: MixpanelSimulator, method: str, path: str) -> None:
    reply = cohorts_list(sim, method, path)
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("application/json")
    listing = reply.json()
    assert listing == sim.cohorts()
    assert [c["id"] for c in listing] == [101, 102, 103, 104, 105]
    for entry in listing:
        assert set(entry) - {"data_group_id"} == {
            "id",
            "name",
            "description",
            "count",
            "is_visible",
            "created",
            "project_id",
        }
        assert isinstance(entry["id"], int) and isinstance(entry["count"], int)
        assert isinstance(entry["name"], str) and isinstance(entry["description"], str)
        assert isinstance(entry["is_visible"], bool) and entry["project_id"] == 12345
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", entry["created"])
        assert entry["created"] < "2025-01-01 00:00:00"
    by_id = {c["id"]: c for c in listing}
    assert {i for i, c in by_id.items() if "data_group_id" in c} == {104, 105}
    assert (by_id[104]["data_group_id"], by_id[105]["data_group_id"]) == (3, 1)
    assert by_id[101]["count"] > 1000 and by_id[102]["count"] > 500, "large cohorts"
    assert by_id[103]["count"] == 0
    assert by_id[104]["count"] > 0, "the list still counts a cohort of a deleted group"
    assert by_id[102]["is_visible"] is False and by_id[101]["is_visible"] is True


def test_cohorts_list_needs_auth_and_project(sim: MixpanelSimulator) -> None:
    assert cohorts_list(sim, auth=None).status_code == 401
    assert cohorts_list(sim, auth=("sim-user", "wrong")).status_code == 401
    no_project = cohorts_list(sim, project_id=None)
    assert no_project.status_code == 400 and "project_id" in no_project.json()["error"]
    assert cohorts_list(sim, project_id="999").status_code == 403
    assert cohorts_list(sim, auth=("sim-api-secret", ""), project_id=None).status_code == 200
    assert cohorts_list(sim, "GET", "/api/query/cohorts/list").status_code == 200
    assert cohorts_list(sim, "POST", "/api/2.0/cohorts/list").status_code == 200


# ------------------------------------------------------------------------------ membership
def test_members_by_filter_by_cohort_match_the_list(sim: MixpanelSimulator) -> None:
    profiles = {p["$distinct_id"]: p for p in sim.profiles}
    counts = {c["id"]: c["count"] for c in sim.cohorts()}
    members: dict[int, list[dict[str, t.Any]]] = {}
    for cohort_id in (101, 102):
        total, results = fetch_all(sim, page_size=500, filter_by_cohort=cohort(cohort_id))
        assert total == counts[cohort_id] == len(results)
        assert results == sim.cohort_members(cohort_id)
        members[cohort_id] = results
        with_profile = [r for r in results if r["$distinct_id"] in profiles]
        assert all(r == profiles[r["$distinct_id"]] for r in with_profile)
        ordered = list(profiles)
        positions = [ordered.index(r["$distinct_id"]) for r in with_profile[:50]]
        assert positions == sorted(positions), "profile order"
        orphans = [r for r in results if r["$distinct_id"] not in profiles]
        assert orphans and all(r["$properties"] == {} for r in orphans)
        assert len(results) == len({r["$distinct_id"] for r in results})
    first, second = ({r["$distinct_id"] for r in members[c]} for c in (101, 102))
    both = first & second
    assert len(both & profiles.keys()) > 100, "people in two cohorts"
    assert both - profiles.keys(), "distinct_ids without a profile in two cohorts"


def test_include_all_users_false_keeps_only_members_with_a_profile(sim: MixpanelSimulator) -> None:
    profile_ids = {p["$distinct_id"] for p in sim.profiles}
    everyone = sim.cohort_members(101)
    total, results = fetch_all(sim, filter_by_cohort=cohort(101), include_all_users="false")
    assert results == [m for m in everyone if m["$distinct_id"] in profile_ids]
    assert total == len(results) == len(everyone) - 40
    assert results == sim.cohort_members(101, include_all_users=False)
    assert fetch_all(sim, filter_by_cohort=cohort(101), include_all_users="true")[1] == everyone
    bad = engage(sim, filter_by_cohort=cohort(101), include_all_users="yes")
    assert bad.status_code == 400 and "include_all_users" in bad.json()["error"]


def test_output_properties_where_and_distinct_ids_within_a_cohort(sim: MixpanelSimulator) -> None:
    everyone = sim.cohort_members(102)
    keys = ["$email", "plan"]
    total, results = fetch_all(
        sim, page_size=300, filter_by_cohort=cohort(102), output_properties=json.dumps(keys)
    )
    assert total == len(everyone)
    assert [r["$distinct_id"] for r in results] == [m["$distinct_id"] for m in everyone]
    assert all(set(r["$properties"]) <= set(keys) for r in results)
    where = 'properties["plan"] == "pro"'
    pro = fetch_all(sim, filter_by_cohort=cohort(102), where=where)[1]
    assert pro == [m for m in everyone if m["$properties"].get("plan") == "pro"]
    ids = [everyone[3]["$distinct_id"], everyone[-1]["$distinct_id"], "nobody"]
    some = engage(sim, filter_by_cohort=cohort(102), distinct_ids=json.dumps(ids)).json()
    assert some["results"] == [everyone[3], everyone[-1]]


def test_empty_cohort(sim: MixpanelSimulator) -> None:
    body = engage(sim, filter_by_cohort=cohort(103)).json()
    assert (body["total"], body["results"]) == (0, [])


def test_cohort_of_a_deleted_data_group_answers_404_missing_datagroup(
    sim: MixpanelSimulator,
) -> None:
    for extra in ({}, {"data_group_id": 3}, {"include_all_users": "false"}):
        reply = engage(sim, filter_by_cohort=cohort(104), **extra)
        assert reply.status_code == 404
        assert reply.json() == {"error": "Missing Datagroup"}
    with pytest.raises(KeyError):
        sim.cohort_members(104)


def test_group_cohort_members_are_group_profiles(sim: MixpanelSimulator) -> None:
    companies = sim.group_profiles(1)
    total, results = fetch_all(sim, filter_by_cohort=cohort(105))
    assert 700 < total == len(results) < 1300
    assert results == sim.cohort_members(105)
    ids = [p["$distinct_id"] for p in companies]
    assert [ids.index(r["$distinct_id"]) for r in results] == sorted(
        ids.index(r["$distinct_id"]) for r in results
    )
    assert all(r in companies for r in results[:100])
    assert fetch_all(sim, filter_by_cohort=cohort(105), data_group_id=1)[1] == results
    wrong = engage(sim, filter_by_cohort=cohort(105), data_group_id=2)
    assert wrong.status_code == 400 and "data group 1" in wrong.json()["error"]
    users_cohort = engage(sim, filter_by_cohort=cohort(101), data_group_id=1)
    assert users_cohort.status_code == 400 and "user profiles" in users_cohort.json()["error"]


@pytest.mark.parametrize("value", [cohort(999), cohort(0), '{"id": -1}', "7", '{"id": "x"}'])
def test_unknown_or_invalid_cohort_is_400(sim: MixpanelSimulator, value: str) -> None:
    reply = engage(sim, filter_by_cohort=value)
    assert reply.status_code == 400
    body = reply.json()
    assert body["status"] == "error" and "filter_by_cohort" in body["error"]


# ------------------------------------------------------------------ limits, faults, stats
def test_the_list_counts_against_the_query_limits() -> None:
    with MixpanelSimulator(SimulatorConfig(profiles=30, now=NOW, hourly_limit=2)) as sim:
        assert cohorts_list(sim).status_code == 200
        assert engage(sim, page_size=5).status_code == 200
        limited = cohorts_list(sim)
        assert limited.status_code == 429
        assert limited.json()["error"] == (
            "Query rate limit exceeded for project_id: 12345. 1/5 queries running concurrently "
            "and 3/2 queries running in the last hour. Please try again later."
        )
        stats = sim.stats()
        assert stats["requests_by_endpoint"] == {
            "engage": 1,
            "cohorts_list": 2,
            "engage_properties": 0,
            "export": 0,
        }
        assert stats["requests"] == 1, "requests counts Engage requests only"
        assert (stats["hourly_counted"], stats["rate_limited_hourly"]) == (2, 1)
        assert stats["by_status"] == {"200": 2, "429": 1}
    cfg = SimulatorConfig(profiles=30, now=NOW, latency=0.4, concurrency_limit=1, hourly_limit=0)
    with MixpanelSimulator(cfg) as sim:
        slow = threading.Thread(target=lambda: engage(sim, page_size=5))
        slow.start()
        try:
            for _ in range(50):  # until the Engage query holds the only slot
                if sim.stats()["in_flight"]:
                    break
                time.sleep(0.01)
            busy = cohorts_list(sim)
        finally:
            slow.join()
        assert busy.status_code == 429 and "2/1 queries running concurrently" in busy.text
        assert sim.stats()["max_in_flight"] == 2


def test_faults_apply_to_the_list() -> None:
    with MixpanelSimulator(SimulatorConfig(profiles=30, now=NOW, fault_5xx=1.0)) as sim:
        assert cohorts_list(sim).status_code in (500, 502, 503)
        sim.set_faults(fault_5xx=0.0, fault_truncated=1.0)
        cut = cohorts_list(sim)
        assert cut.status_code == 200 and int(cut.headers["Content-Length"]) == len(cut.content)
        with pytest.raises(ValueError):
            json.loads(cut.content)
        assert sim.stats()["faults"]["truncated"] == 1


# ------------------------------------------------------------------------ the spec and data
def test_membership_is_deterministic() -> None:
    def snapshot(seed: int) -> tuple[list[dict[str, t.Any]], list[dict[str, t.Any]]]:
        sim = MixpanelSimulator(SimulatorConfig(profiles=400, now=NOW, seed=seed))
        return sim.cohorts(), sim.cohort_members(101)

    assert snapshot(5) == snapshot(5)
    assert snapshot(5)[1] != snapshot(6)[1]
    spec = CohortSpec(9, 0.5, orphans=4)
    slots = member_slots(spec, 1, 100)
    assert slots == member_slots(spec, 1, 100) and sorted(s for s in slots if s < 0) == [
        -4,
        -3,
        -2,
        -1,
    ]


def test_configured_cohorts() -> None:
    spec = "7:1.0:orphans=3,8:0.5:group=1:hidden,9:0"
    config = SimulatorConfig(profiles=50, now=NOW, cohorts=spec, data_groups="1:org_id:20")
    with MixpanelSimulator(config) as sim:
        listing = cohorts_list(sim).json()
        assert [(c["id"], c["count"], c["is_visible"]) for c in listing][::2] == [
            (7, 53, True),
            (9, 0, True),
        ]
        assert listing[1]["data_group_id"] == 1 and listing[1]["is_visible"] is False
        members = fetch_all(sim, filter_by_cohort=cohort(7))[1]
        profile_ids = [p["$distinct_id"] for p in sim.profiles]
        assert [m["$distinct_id"] for m in members if m["$properties"]] == profile_ids
        assert engage(sim, filter_by_cohort=cohort(101)).status_code == 400
    with MixpanelSimulator(SimulatorConfig(profiles=5, cohorts="")) as none:
        assert cohorts_list(none).json() == []
    assert parse_cohorts("5:0.25:orphans=2:group=4:hidden") == (CohortSpec(5, 0.25, 2, 4, False),)
    args = _parser().parse_args(["--cohorts", "1:0.5"])
    assert args.cohorts == "1:0.5"


@pytest.mark.parametrize(
    "spec",
    ["1", "x:0.5", "0:0.5", "1:1.5", "1:0.5:orphans=-1", "1:0.5:teams=2", "1:0.5,1:0.2"],
)
def test_bad_cohorts_spec_is_rejected(spec: str) -> None:
    with pytest.raises(ValueError, match="cohorts"):
        SimulatorConfig(cohorts=spec)
