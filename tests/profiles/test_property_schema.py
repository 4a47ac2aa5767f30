"""Discovery of typed columns from Mixpanel's property schema: the cache, the cap, fallbacks.

In process: a Tap built on a simulator config discovers its streams (what `--discover`
prints), and the simulator counts the property-schema queries it was asked.
"""

from __future__ import annotations

import json
import logging
import typing as t
from pathlib import Path

import pytest

from tap_mixpanel_profiles.engine.limiter import QueryLimiter, Window
from tap_mixpanel_profiles.profiles.columns import column_name
from tap_mixpanel_profiles.profiles.property_schema import CacheFile, account_earlier_requests
from tap_mixpanel_profiles.settings import Settings
from tap_mixpanel_profiles.simulator import MixpanelSimulator, SimulatorConfig
from tap_mixpanel_profiles.tap import TapMixpanelProfiles
from tests.helpers.tap_runner import sim_config

OWN = {"distinct_id", "last_seen", "properties"}
JSON_TYPES = {
    "string": ["string", "null"],
    "number": ["number", "null"],
    "boolean": ["boolean", "null"],
    "datetime": ["string", "null"],
    "list": ["array", "null"],
    "object": ["object", "null"],
}


@pytest.fixture(scope="module")
def sim() -> t.Iterator[MixpanelSimulator]:
    with MixpanelSimulator(SimulatorConfig(profiles=400, seed=17)) as running:
        yield running


def config(sim: MixpanelSimulator, cache: Path, **extra: t.Any) -> dict[str, t.Any]:
    options = {"property_columns": "all", "property_schema_cache_dir": str(cache), **extra}
    return sim_config(sim, **options)


def discover(cfg: dict[str, t.Any], stream: str = "profiles", **kw: t.Any) -> dict[str, t.Any]:
    tap = TapMixpanelProfiles(config=cfg, validate_config=True, **kw)
    return t.cast("dict[str, t.Any]", tap.streams[stream].schema)


def asked(sim: MixpanelSimulator) -> int:
    return int(sim.stats()["requests_by_endpoint"]["engage_properties"])


def test_every_listed_property_is_a_column_of_its_type(
    sim: MixpanelSimulator, tmp_path: Path
) -> None:
    before = asked(sim)
    schema = discover(config(sim, tmp_path))
    listing = sim.property_listing()
    columns = {k: v for k, v in schema["properties"].items() if k not in OWN}
    assert set(columns) == {column_name(name) for name, _, _ in listing}
    for name, _, kind in listing:
        column = columns[column_name(name)]
        assert column["type"] == JSON_TYPES[kind], name
        assert (column.get("format") == "date-time") == (kind == "datetime"), name
    # Case twins, the tap's own names, spaces, dots and quotes: each its own column.
    for column in ("plan", "^plan", "distinct_id^", "last_seen^", "properties^", "say ^'cheese^'"):
        assert column in columns, column
    assert asked(sim) == before + 1


def test_discovery_reuses_the_cache_while_fresh_and_asks_again_when_told(
    sim: MixpanelSimulator, tmp_path: Path
) -> None:
    before = asked(sim)
    first = discover(config(sim, tmp_path))
    assert discover(config(sim, tmp_path)) == first
    assert asked(sim) == before + 1, "a fresh cache: --discover needs no request"
    discover(config(sim, tmp_path, property_schema_refresh=True))
    assert asked(sim) == before + 2
    discover(config(sim, tmp_path, property_schema_max_age_hours=0))
    assert asked(sim) == before + 3, "too old: asked again"
    files = list(tmp_path.glob("engage-properties-*-users.json"))
    assert len(files) == 1
    key = json.loads(files[0].read_text())["key"]
    assert key == {"project_id": sim.config.project_id, "api": sim.url, "data_group_id": None}


def test_a_catalog_decides_the_columns_and_nothing_is_asked(
    sim: MixpanelSimulator, tmp_path: Path
) -> None:
    cfg = config(sim, tmp_path)
    tap = TapMixpanelProfiles(config=cfg, validate_config=True)
    catalog = tap.catalog_dict
    entry = next(s for s in catalog["streams"] if s["tap_stream_id"] == "profiles")
    del entry["schema"]["properties"]["drift"]
    before = asked(sim)
    schema = discover(cfg | {"property_schema_refresh": True}, catalog=catalog)
    assert "drift" not in schema["properties"] and "$email" in schema["properties"]
    assert asked(sim) == before


@pytest.mark.parametrize("mode", ["missing", "forbidden", "junk"])
def test_an_unusable_endpoint_falls_back_with_one_warning(
    mode: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        MixpanelSimulator(SimulatorConfig(profiles=20, properties_endpoint=mode)) as sim,
        caplog.at_level(logging.WARNING),
    ):
        schema = discover(config(sim, tmp_path, max_retries=1))
    assert set(schema["properties"]) == OWN, "today's table for this run"
    warnings = [r.getMessage() for r in caplog.records if "property schema" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "no typed columns this run" in warnings[0]


def test_a_failed_refresh_keeps_the_cached_listing(tmp_path: Path) -> None:
    with MixpanelSimulator(SimulatorConfig(profiles=20, seed=3)) as sim:
        first = discover(config(sim, tmp_path))
        sim.set_faults(properties_endpoint="missing")
        again = discover(config(sim, tmp_path, property_schema_refresh=True))
    assert again == first and len(first["properties"]) > len(OWN)


def test_the_cap_keeps_the_most_common_and_columns_once_created_stay(
    sim: MixpanelSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    listing = sim.property_listing()
    with caplog.at_level(logging.WARNING):
        capped = discover(config(sim, tmp_path, property_columns_max=5))
    five = {column_name(name) for name, _, _ in listing[:5]}
    assert set(capped["properties"]) - OWN == five
    assert f"{len(listing) - 5} more listed properties are in the properties JSON only" in (
        caplog.text
    )
    # Lower the cap: the five columns created stay (a column never disappears from the schema).
    lower = discover(config(sim, tmp_path, property_columns_max=2, property_schema_refresh=True))
    assert set(lower["properties"]) - OWN == five


def test_a_retyped_property_keeps_the_type_its_column_was_created_with(
    sim: MixpanelSimulator, tmp_path: Path
) -> None:
    discover(config(sim, tmp_path))
    settings = Settings.from_config(config(sim, tmp_path))
    cache = CacheFile(settings, None)
    cache.load(logging.getLogger())
    assert cache.listing is not None and cache.columns["drift"] == "number"
    # Mixpanel now types "drift" as text (its commonest value changed).
    # And "signup_at", also retyped, never had a column created on this machine.
    cache.columns.pop("signup_at")
    retyped = {"drift", "signup_at"}
    cache.listing.properties = [
        (p, "string" if p in retyped else k) for p, k in cache.listing.properties
    ]
    cache.save(logging.getLogger())
    schema = discover(config(sim, tmp_path))
    assert schema["properties"]["drift"]["type"] == ["number", "null"], "created as a number"
    assert schema["properties"]["signup_at"]["type"] == ["string", "null"], "new: as listed"


def test_property_columns_only_names_the_columns(
    sim: MixpanelSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        schema = discover(
            config(sim, tmp_path, property_columns_only=["$email", "Plan", "not_listed"])
        )
    assert set(schema["properties"]) - OWN == {"$email", "^plan"}
    assert "not_listed" in caplog.text


def test_none_is_todays_table_without_a_request(sim: MixpanelSimulator, tmp_path: Path) -> None:
    before = asked(sim)
    schema = discover(config(sim, tmp_path, property_columns="none"))
    assert set(schema["properties"]) == OWN
    assert asked(sim) == before


def test_group_profiles_columns_come_from_each_data_group(
    sim: MixpanelSimulator, tmp_path: Path
) -> None:
    schema = discover(config(sim, tmp_path, data_group_ids=[1, 2]), stream="group_profiles")
    names = {name for g in (1, 2) for name, _, _ in sim.property_listing(g)}
    own = {"data_group_id", "distinct_id", "last_seen", "properties"}
    assert set(schema["properties"]) - own == {column_name(n) for n in names}
    assert "data_group_id^" in schema["properties"] and "^plan" in schema["properties"]
    assert len(list(tmp_path.glob("engage-properties-*-group-*.json"))) == 2


def test_cohort_members_columns_are_the_asked_properties(
    sim: MixpanelSimulator, tmp_path: Path
) -> None:
    cfg = config(sim, tmp_path, cohort_members_properties=["$email", "age", "nope"])
    schema = discover(cfg, stream="cohort_members")
    own = {"cohort_id", "distinct_id", "synced_at", "data_group_id", "properties"}
    assert set(schema["properties"]) - own == {"$email", "age"}


def test_a_discovery_in_another_process_counts_in_the_sync_ledger(
    sim: MixpanelSimulator, tmp_path: Path
) -> None:
    discover(config(sim, tmp_path))
    settings = Settings.from_config(config(sim, tmp_path))
    path = CacheFile(settings, None).path
    data = json.loads(path.read_text())
    limiter = QueryLimiter(max_in_flight=5, windows=[Window(60, 3600)])
    assert account_earlier_requests(settings, [None], limiter) == 0, "this process asked it"
    data["fetched_by_pid"] = -1
    path.write_text(json.dumps(data))
    assert account_earlier_requests(settings, [None], limiter) == 1
    assert limiter.budget_left() == 59
    data["fetched_at"] -= 7200
    path.write_text(json.dumps(data))
    assert account_earlier_requests(settings, [None], limiter) == 0, "outside the window"


@pytest.mark.integration
def test_a_tight_budget_pauses_after_a_discovery_instead_of_meeting_a_429(tmp_path: Path) -> None:
    """Meltano's way: `--discover` in one process (one schema query), then the sync with the
    catalog in another. The sync counts the discovery's query, so with 2 queries an hour it
    takes page 0 and pauses, and the server never answers 429."""
    from tests.helpers.tap_runner import discover as discover_process
    from tests.helpers.tap_runner import run_tap, write_json

    limits = {"hourly_limit": 2, "profiles": 300}
    with MixpanelSimulator(SimulatorConfig(**limits)) as sim:
        cfg = config(sim, tmp_path, page_size=100, queries_per_hour=2, on_quota_exhausted="stop")
        catalog = discover_process(cfg)
        run = run_tap(cfg, extra=["--catalog", str(write_json(catalog))])
        stats = sim.stats()
    assert run.returncode == 0, run.stderr[-3000:]
    assert stats["rate_limited_hourly"] == stats["rate_limited_concurrent"] == 0
    assert run.summary_of("profiles")["status"] == "paused"
    assert "property-schema queries of an earlier discovery" in run.stderr
    assert "the run's property schema took 1 more (counted)" in run.stderr, "in the plan line"
    assert stats["requests_by_endpoint"]["engage_properties"] == 1
    assert len(run.records_of("profiles")) == 100


def test_the_cache_file_stays_in_its_directory_whatever_the_project_id(tmp_path: Path) -> None:
    settings = Settings.from_config(
        {
            "project_id": "../../etc/passwd",
            "api_secret": "s",
            "property_schema_cache_dir": str(tmp_path),
        }
    )
    path = CacheFile(settings, None).path
    assert path.parent == tmp_path and "/" not in path.name and not path.name.startswith(".")
