"""The cohorts stream: the cohorts list read as served, one record per cohort, one query a run.

Parsing is checked on hand-written lists (fields we do not know, missing data_group_id,
0/1 booleans, numbers as text, items that cannot be keyed), the request on requests-mock
fakes, and the stream end to end against the simulator.
"""

from __future__ import annotations

import functools
import logging
import typing as t

import pytest

from tap_mixpanel_profiles.engine.runtime import Runtime
from tap_mixpanel_profiles.errors import ConfigError, PartitionFailed
from tap_mixpanel_profiles.profiles.cohorts import fetch_cohorts, parse_cohorts
from tap_mixpanel_profiles.profiles.engage import engage_api
from tap_mixpanel_profiles.settings import Settings
from tests.helpers.engage_fake import base_config
from tests.helpers.tap_runner import catalog_args, run_tap, sim_config, simulator

#: Runs the tap as a process against the simulator (slower; marked to run apart: `-m integration`).
pytestmark = pytest.mark.integration

LOG = logging.getLogger("tap-mixpanel-profiles")
LIST_URL = "https://mixpanel.com/api/query/cohorts/list"

make_sim = functools.partial(simulator, profiles=300, seed=21)


def test_items_are_read_as_served_whatever_their_extra_or_missing_fields() -> None:
    listing = parse_cohorts(
        [
            {
                "id": 1,
                "name": "A",
                "description": "d",
                "count": 10,
                "is_visible": 1,
                "created": "2024-01-02 03:04:05",
                "project_id": 42,
                "data_group_id": 5,
                "a_field_we_do_not_know": {"x": 1},
            },
            {"id": "2", "name": "B", "count": "7", "is_visible": 0, "project_id": "42"},
            {"id": 3, "is_visible": "true", "created": "not a date"},
            {"name": "no id"},
            {"id": True},
            {"id": 1, "name": "the same id again"},
            "not an object",
        ]
    )
    assert listing.records == [
        {
            "id": 1,
            "name": "A",
            "description": "d",
            "count": 10,
            "is_visible": True,
            "created": "2024-01-02T03:04:05",
            "project_id": 42,
            "data_group_id": 5,
        },
        {
            "id": 2,
            "name": "B",
            "description": None,
            "count": 7,
            "is_visible": False,
            "created": None,
            "project_id": 42,
            "data_group_id": None,
        },
        {
            "id": 3,
            "name": None,
            "description": None,
            "count": None,
            "is_visible": True,
            "created": None,
            "project_id": None,
            "data_group_id": None,
        },
    ]
    assert listing.skipped == 4
    assert listing.bad_created == 1


def _client(**overrides: t.Any) -> tuple[t.Any, Settings]:
    settings = Settings.from_config(base_config(**overrides))
    return Runtime(settings, LOG).client(engage_api(settings)), settings


def test_the_list_is_one_counted_post_with_project_id(requests_mock: t.Any) -> None:
    requests_mock.post(LIST_URL, json=[{"id": 9, "name": "Nine"}])
    client, settings = _client()
    listing = fetch_cohorts(client, settings)
    assert [r["id"] for r in listing.records] == [9]
    assert requests_mock.call_count == 1
    assert requests_mock.last_request.qs == {"project_id": ["4242"]}
    assert client.limiter.requests_counted == 1


def test_an_unusable_body_is_retried_then_fails_the_query(requests_mock: t.Any) -> None:
    requests_mock.post(
        LIST_URL,
        [{"json": {"results": "nope"}}, {"text": '[{"id": 1'}, {"json": [{"id": 1}]}],
    )
    client, settings = _client(max_retries=2)
    assert [r["id"] for r in fetch_cohorts(client, settings).records] == [1]
    assert client.retries == 2

    requests_mock.post(LIST_URL, json={"error": "not a list"})
    client, settings = _client(max_retries=1)
    with pytest.raises(PartitionFailed, match="cohorts list"):
        fetch_cohorts(client, settings)


def test_a_rejected_list_query_is_a_config_error(requests_mock: t.Any) -> None:
    requests_mock.post(LIST_URL, status_code=400, json={"error": "bad project"})
    client, settings = _client()
    with pytest.raises(ConfigError, match=r"cohorts list .*bad project"):
        fetch_cohorts(client, settings)


# ------------------------------------------------------------------ the stream, end to end
def test_one_record_per_cohort_from_one_query() -> None:
    with make_sim() as sim:
        config = sim_config(sim)
        run = run_tap(config, extra=catalog_args(config, ["cohorts"]))
        stats = sim.stats()
        served = sim.cohorts()
    assert run.returncode == 0, run.stderr[-3000:]
    records = run.records_of("cohorts")
    assert [r["id"] for r in records] == [c["id"] for c in served] == [101, 102, 103, 104, 105]
    for record, cohort in zip(records, served, strict=True):
        assert record["name"] == cohort["name"] and record["description"] == cohort["description"]
        assert record["count"] == cohort["count"] and record["is_visible"] is cohort["is_visible"]
        assert record["created"] == cohort["created"].replace(" ", "T")
        assert record["project_id"] == int(sim.config.project_id)
        assert record["data_group_id"] == cohort.get("data_group_id")
    assert [r["data_group_id"] for r in records] == [None, None, None, 3, 1]
    assert stats["requests_by_endpoint"]["cohorts_list"] == 1
    assert stats["requests"] == 0, "the cohorts stream alone sends no Engage query"
    assert run.summary_of("cohorts")["queries"] == 1
    assert run.records_of("profiles") == []


def test_a_run_without_a_catalog_still_syncs_profiles_only() -> None:
    with make_sim() as sim:
        run = run_tap(sim_config(sim, data_group_ids=[1]))
        stats = sim.stats()
        expected = {p["$distinct_id"] for p in sim.profiles}
    assert run.returncode == 0, run.stderr[-3000:]
    assert {m["stream"] for m in run.messages if m["type"] in ("SCHEMA", "RECORD")} == {"profiles"}
    assert set(run.ids) == expected
    assert stats["requests_by_endpoint"]["cohorts_list"] == 0
    assert stats["data_group_requests"] == {}
