"""Group profiles: Engage with data_group_id serves that group key's own data set, with the same
paging, sessions, page-size cap, where, output_properties, limits and faults as user profiles."""

from __future__ import annotations

import json
import re

import pytest
import requests

from tap_mixpanel_profiles.simulator import MixpanelSimulator, SimulatorConfig
from tap_mixpanel_profiles.simulator.cli import _parser
from tap_mixpanel_profiles.simulator.data import parse_now
from tap_mixpanel_profiles.simulator.groups import (
    DataGroupSpec,
    generate_group_profiles,
    parse_data_groups,
)

from .helpers import NOW, engage, fetch_all


def test_default_data_groups() -> None:
    assert parse_data_groups(SimulatorConfig().data_groups) == (
        DataGroupSpec(1, "company_id", 2000),
        DataGroupSpec(2, "account_id", 300),
    )


def test_each_data_group_is_its_own_data_set(sim: MixpanelSimulator) -> None:
    companies = sim.group_profiles(1)
    total, results = fetch_all(sim, page_size=700, data_group_id=1)
    assert total == len(companies) == 2000
    assert results == companies
    accounts = sim.group_profiles(2)
    assert fetch_all(sim, page_size=1000, data_group_id="2") == (300, accounts)
    company_ids = [p["$distinct_id"] for p in companies]
    assert len(set(company_ids)) == 2000
    assert set(company_ids).isdisjoint(p["$distinct_id"] for p in sim.profiles)
    assert fetch_all(sim, page_size=1000)[1] == sim.profiles, "no data_group_id: user profiles"
    assert sim.stats()["data_group_profiles"] == {"1": 2000, "2": 300}


def test_group_data_is_awkward_and_deterministic(sim: MixpanelSimulator) -> None:
    companies = sim.group_profiles(1)
    ids = [p["$distinct_id"] for p in companies]
    assert any(not i.isascii() for i in ids) and any('"' in i for i in ids)
    assert any(i != i.strip() for i in ids) and any(i.isdigit() for i in ids)
    props = [p["$properties"] for p in companies]
    seen = [p["$last_seen"] for p in props if "$last_seen" in p]
    assert 0.02 * 2000 < 2000 - len(seen) < 0.09 * 2000
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", s) for s in seen)
    assert min(seen) > "2022-12-01T00:00:00" and max(seen) <= NOW
    assert any(isinstance(v, dict) for p in props for v in p.values())
    assert any(v is None for p in props for v in p.values())
    assert all("$name" in p and "$created" in p for p in props)
    spec, now, served = DataGroupSpec(1, "company_id", 2000), parse_now(NOW), sim.engine.dataset(1)
    again = generate_group_profiles(spec, 42, now)
    assert served is not None and [r.json for r in again] == [r.json for r in served.records]
    assert [r.json for r in generate_group_profiles(spec, 43, now)[:50]] != [
        r.json for r in again[:50]
    ]
    assert [r.json for r in generate_group_profiles(DataGroupSpec(2, "x", 50), 42, now)] != [
        r.json for r in again[:50]
    ], "each data group has its own data"


def test_where_output_properties_and_distinct_ids_on_groups(sim: MixpanelSimulator) -> None:
    companies = sim.group_profiles(1)
    cutoff = "2024-07-01T00:00:00"
    expected = [p for p in companies if p["$properties"].get("$last_seen", "") >= cutoff]
    where = f'properties["$last_seen"] >= "{cutoff}"'
    total, results = fetch_all(sim, page_size=300, data_group_id=1, where=where)
    assert 0 < total == len(expected) < 2000 and results == expected
    keys = ["$name", "$last_seen"]
    body = engage(sim, page_size=50, data_group_id=1, output_properties=json.dumps(keys)).json()
    assert [r["$distinct_id"] for r in body["results"]] == [
        p["$distinct_id"] for p in companies[:50]
    ]
    assert all(set(r["$properties"]) <= set(keys) for r in body["results"])
    assert all("$name" in r["$properties"] for r in body["results"])
    one = engage(sim, data_group_id=1, distinct_id=companies[7]["$distinct_id"]).json()
    assert one["results"] == [companies[7]]
    ids = [companies[9]["$distinct_id"], sim.profiles[3]["$distinct_id"]]
    many = engage(sim, data_group_id=1, distinct_ids=json.dumps(ids)).json()
    assert many["results"] == [companies[9]], "a user's distinct_id is not a group profile"


def test_sessions_and_page_size_cap_on_groups(sim: MixpanelSimulator) -> None:
    with requests.Session() as http:
        first = engage(sim, http, data_group_id=2, page_size=5000).json()
        assert (first["page_size"], first["total"], len(first["results"])) == (1000, 300, 300)
        sim.set_faults(max_page_size=120)
        try:
            capped = engage(sim, http, data_group_id=2, page_size=5000).json()
            sid = capped["session_id"]
            assert capped["page_size"] == 120 and len(capped["results"]) == 120
            page2 = engage(sim, http, data_group_id=2, page=2, page_size=5000, session_id=sid)
            assert page2.json()["results"] == sim.group_profiles(2)[240:]
        finally:
            sim.set_faults(max_page_size=1000)
        no_session = engage(sim, http, data_group_id=2, page=1)
        assert no_session.status_code == 400 and "session_id" in no_session.json()["error"]


@pytest.mark.parametrize("value", ["3", "0", "-1", "company", "1.5"])
def test_unknown_or_invalid_data_group_id_is_400(sim: MixpanelSimulator, value: str) -> None:
    reply = engage(sim, data_group_id=value)
    assert reply.status_code == 400
    body = reply.json()
    assert body["status"] == "error" and "data_group_id" in body["error"]


def test_stats_count_requests_per_data_group(sim: MixpanelSimulator) -> None:
    sim.reset_stats()
    engage(sim, data_group_id=1, page_size=10)
    engage(sim, data_group_id=1, page_size=10)
    engage(sim, data_group_id=3, page_size=10)
    engage(sim, page_size=10)
    stats = sim.stats()
    assert stats["data_group_requests"] == {"1": 2, "3": 1}
    assert stats["requests"] == 4 and stats["requests_by_endpoint"]["engage"] == 4
    assert stats["by_status"] == {"200": 3, "400": 1}


def test_limits_and_faults_apply_to_group_queries() -> None:
    cfg = SimulatorConfig(profiles=20, now=NOW, hourly_limit=2, data_groups="7:team_id:40")
    with MixpanelSimulator(cfg) as sim:
        assert engage(sim, data_group_id=7).status_code == 200
        assert engage(sim, page_size=5).status_code == 200
        limited = engage(sim, data_group_id=7)
        assert limited.status_code == 429
        assert "3/2 queries running in the last hour" in limited.json()["error"]
        sim.reset_limits()
        sim.set_faults(hourly_limit=0, fault_5xx=1.0)
        assert engage(sim, data_group_id=7).status_code in (500, 502, 503)
        sim.set_faults(fault_5xx=0.0, fail_pages=frozenset({1}))
        first = engage(sim, data_group_id=7, page_size=10).json()
        assert first["total"] == 40
        again = engage(sim, data_group_id=7, page=1, page_size=10, session_id=first["session_id"])
        assert again.status_code == 500
        assert engage(sim, data_group_id=1).status_code == 400, "only data group 7 exists"


def test_touch_group_profiles_for_incremental_syncs() -> None:
    with MixpanelSimulator(SimulatorConfig(profiles=10, now=NOW)) as sim:
        touched = sim.touch_profiles(4, when="2030-01-02T03:04:05", data_group_id=2)
        where = 'properties["$last_seen"] >= "2030-01-01T00:00:00"'
        body = engage(sim, data_group_id=2, where=where).json()
        assert sorted(r["$distinct_id"] for r in body["results"]) == sorted(touched)
        assert engage(sim, where=where).json()["total"] == 0, "user profiles untouched"
        with pytest.raises(KeyError):
            sim.touch_profiles(1, data_group_id=9)
        with pytest.raises(KeyError):
            sim.group_profiles(9)
    with MixpanelSimulator(SimulatorConfig(profiles=10, now=NOW)) as twin:
        assert twin.touch_profiles(4, when="2030-01-02T03:04:05", data_group_id=2) == touched


@pytest.mark.parametrize(
    "spec",
    ["1:company_id", "x:company_id:5", "1:company_id:-1", "1::5", "1:a:5,1:b:6", "1:a b!:5"],
)
def test_bad_data_groups_spec_is_rejected(spec: str) -> None:
    with pytest.raises(ValueError, match="data_groups"):
        SimulatorConfig(data_groups=spec)


def test_no_data_groups_and_the_cli_flag() -> None:
    with MixpanelSimulator(SimulatorConfig(profiles=5, data_groups="")) as sim:
        assert engage(sim, data_group_id=1).status_code == 400
        assert sim.stats()["data_group_profiles"] == {}
    args = _parser().parse_args(["--data-groups", "5:org_id:10"])
    assert args.data_groups == "5:org_id:10"
    with pytest.raises(TypeError):
        MixpanelSimulator(SimulatorConfig(profiles=5)).set_faults(data_groups="")
