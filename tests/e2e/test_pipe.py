"""End-to-end: `tap-mixpanel-profiles | target-duckdb` against the simulator, checked in DuckDB.

Real processes and the configuration users run (target_config/duckdb.json with only the file
moved to a temporary folder). Small data sets and zero latency keep the whole file to seconds.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tap_mixpanel_profiles.simulator import MixpanelSimulator, SimulatorConfig
from tests.helpers.e2e import (
    TABLE,
    TARGET,
    clean_env,
    loaded_profiles,
    parse_last_seen,
    query,
    run_pipe,
    sim_profiles,
    tap_config,
    target_config,
)

pytestmark = pytest.mark.e2e


def assert_exact_copy(db, sim) -> None:
    """The table holds exactly the simulator's profiles, byte-for-byte properties included."""
    expected = sim_profiles(sim)
    loaded = loaded_profiles(db)
    assert len(loaded) == len(expected), f"{len(loaded)} rows loaded, {len(expected)} served"
    missing, extra = expected.keys() - loaded.keys(), loaded.keys() - expected.keys()
    assert not missing and not extra, (
        f"missing {sorted(missing)[:10]} ({len(missing)}), "
        f"unexpected {sorted(extra)[:10]} ({len(extra)})"
    )
    differ = [i for i, props in expected.items() if loaded[i][1] != props]
    assert not differ, f"{len(differ)} profiles' properties changed on the way, e.g. {differ[:5]}"
    wrong_ts = [
        i
        for i, props in expected.items()
        if loaded[i][0] != parse_last_seen(props.get("$last_seen"))
    ]
    assert not wrong_ts, f"last_seen differs from $last_seen for {wrong_ts[:5]}"


def test_pipe_loads_exactly_the_simulators_profiles(tmp_path):
    with MixpanelSimulator(SimulatorConfig(profiles=3000, seed=7)) as sim:
        db = tmp_path / "profiles.duckdb"
        run = run_pipe(tmp_path / "run", tap_config(sim, page_size=400), target_config(db))
        assert run.tap_rc == 0 and run.target_rc == 0, run.describe()
        assert_exact_copy(db, sim)
        stats = sim.stats()
    assert run.summary["status"] == "complete" and run.summary["total_rows"] == 3000
    assert stats["max_in_flight"] <= 5

    # The awkward values really were in the data set (a check of the check).
    ids = set(loaded_profiles(db))
    assert any(not i.isascii() for i in ids) and any('"' in i or "\\" in i for i in ids)
    props = [p for _, p in loaded_profiles(db).values()]
    assert any(isinstance(v, dict) for p in props for v in p.values()), "no nested object"
    assert any(isinstance(v, list) for p in props for v in p.values()), "no list"
    assert any(isinstance(v, str) and "\n" in v for p in props for v in p.values()), "no newline"
    assert any(isinstance(v, str) and len(v) >= 40_000 for p in props for v in p.values())
    assert any("$last_seen" not in p for p in props), "no profile without $last_seen"

    types = dict(
        query(
            db,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'mixpanel' AND table_name = 'profiles'",
        )
    )
    assert types["last_seen"] == "TIMESTAMP"
    assert types["properties"] == "JSON"
    assert types["distinct_id"] == "VARCHAR"
    assert "_sdc_extracted_at" in types, "add_metadata_columns is off in target_config/duckdb.json"

    # JSON is queryable the way docs/querying.md says.
    n_plans = query(db, f"SELECT count(DISTINCT properties->>'plan') FROM {TABLE}")[0][0]
    assert n_plans >= 3
    with_city = query(
        db, f"""SELECT count(*) FROM {TABLE} WHERE properties->>'$."$city"' IS NOT NULL"""
    )
    assert with_city[0][0] > 0

    # The target's last STATE carries the finished pass's bookmark: the next run is incremental.
    final = run.states[-1]["bookmarks"]["profiles"]
    assert final.get("replication_key_value") and not final.get("pass"), final


def test_pipe_survives_faults_and_429_bursts(tmp_path):
    """5xx, resets, truncated bodies (10 % each) and a server allowing only 2 concurrent queries.

    100 pages, so that every fault kind occurs (a miss has odds of about 1 in 300 000).
    """
    cfg = SimulatorConfig(
        profiles=2500,
        seed=11,
        fault_5xx=0.1,
        fault_reset=0.1,
        fault_truncated=0.1,
        concurrency_limit=2,
        hourly_limit=100_000,
        latency=0.03,
    )
    with MixpanelSimulator(cfg) as sim:
        db = tmp_path / "profiles.duckdb"
        run = run_pipe(
            tmp_path / "run",
            tap_config(sim, page_size=25, max_retries=12, queries_per_hour=100_000),
            target_config(db),
            timeout=180,
        )
        stats = sim.stats()
        assert run.tap_rc == 0 and run.target_rc == 0, run.describe()
        assert_exact_copy(db, sim)
    faults = stats["faults"]
    assert faults["5xx"] and faults["reset"] and faults["truncated"], (
        f"faults not exercised: {stats}"
    )
    assert stats["rate_limited_concurrent"] > 0, f"no 429 burst happened: {stats}"
    assert stats["max_in_flight"] <= 5, stats
    assert run.summary["status"] == "complete", run.summary


def test_concurrency_429s_from_a_server_without_hourly_limit(tmp_path):
    cfg = SimulatorConfig(profiles=1000, seed=17, concurrency_limit=1, hourly_limit=0, latency=0.05)
    with MixpanelSimulator(cfg) as sim:
        db = tmp_path / "profiles.duckdb"
        run = run_pipe(tmp_path / "run", tap_config(sim, page_size=100), target_config(db))
        stats = sim.stats()
        assert stats["rate_limited_concurrent"] > 0, stats
        assert run.tap_rc == 0 and run.target_rc == 0, run.describe()
        assert_exact_copy(db, sim)


def test_pipe_within_a_compressed_hourly_quota(tmp_path):
    """A 12-queries-per-1.5-s quota on both sides: the tap waits for the window, loses nothing."""
    cfg = SimulatorConfig(profiles=2000, seed=5, hourly_limit=12, window_seconds=1.5)
    with MixpanelSimulator(cfg) as sim:
        db = tmp_path / "profiles.duckdb"
        run = run_pipe(
            tmp_path / "run",
            tap_config(sim, page_size=100, queries_per_hour=12, quota_window_seconds=1.5),
            target_config(db),
            timeout=120,
        )
        stats = sim.stats()
        assert run.tap_rc == 0 and run.target_rc == 0, run.describe()
        assert_exact_copy(db, sim)
    assert stats["pages_served"] >= 20
    assert stats["max_in_flight"] <= 5, stats


def test_a_page_that_always_fails_exits_1_and_delivers_every_other_page(tmp_path):
    page_size, bad_page = 500, 3
    cfg = SimulatorConfig(profiles=3000, seed=3, fail_pages=frozenset({bad_page}))
    with MixpanelSimulator(cfg) as sim:
        db = tmp_path / "profiles.duckdb"
        run = run_pipe(
            tmp_path / "run", tap_config(sim, page_size=page_size, max_retries=2), target_config(db)
        )
        served = [p["$distinct_id"] for p in sim.profiles]  # in page order
    assert run.tap_rc == 1, run.describe()
    assert run.target_rc == 0, run.describe()
    assert run.summary["status"] == "failed"
    assert run.summary["failed_page_indices"] == [bad_page]
    assert f"not fetched: profiles: {bad_page}" in run.tap_stderr, run.tap_stderr[-3000:]

    lost = set(served[bad_page * page_size : (bad_page + 1) * page_size])
    loaded = set(loaded_profiles(db))
    assert loaded == set(served) - lost, (
        f"{len(loaded)} loaded; expected every profile but the {len(lost)} of page {bad_page}"
    )

    # The STATE that reached the target keeps the pass open: a rerun fetches only what is missing.
    final = run.states[-1]["bookmarks"]["profiles"]
    assert final.get("pass") and not final.get("replication_key_value"), final


def test_loader_keeps_every_row(tmp_path):
    """Guard against the target-duckdb 0.8.0 / duckdb >= 1.1 trap: the first row of a batch lost.

    Loads in many small batches, through the tap (the real profiles schema) and through a
    synthetic all-text stream (the shape duckdb 1.1-1.2 already mangle). If this fails, the loader
    environment has a duckdb other than 1.0.0: see target_config/README.md.
    """
    import duckdb

    hint = (
        f"target-duckdb dropped rows (duckdb {duckdb.__version__} in the test env; target-duckdb "
        f"0.8.0 needs duckdb==1.0.0 - see target_config/README.md)"
    )
    with MixpanelSimulator(SimulatorConfig(profiles=1500, seed=13)) as sim:
        db = tmp_path / "profiles.duckdb"
        run = run_pipe(
            tmp_path / "run", tap_config(sim, page_size=250), target_config(db, batch_size_rows=97)
        )
        assert run.tap_rc == 0 and run.target_rc == 0, run.describe()
        rows = query(db, f"SELECT count(*), count(DISTINCT distinct_id) FROM {TABLE}")[0]
        assert rows == (1500, 1500), f"{rows[0]} of 1500 rows: {hint}"
        assert set(loaded_profiles(db)) == set(sim_profiles(sim)), hint

    # All-text stream whose rows all look like a header line to a CSV sniffer.
    messages = [
        {
            "type": "SCHEMA",
            "stream": "guard",
            "key_properties": ["k"],
            "schema": {
                "type": "object",
                "properties": {"k": {"type": "string"}, "v": {"type": "string"}},
            },
        }
    ]
    messages += [
        {"type": "RECORD", "stream": "guard", "record": {"k": f"key{i}", "v": f"value{i}"}}
        for i in range(50)
    ]
    db2 = tmp_path / "guard.duckdb"
    cfg = tmp_path / "guard-target.json"
    cfg.write_text(json.dumps(target_config(db2, batch_size_rows=7)), encoding="utf-8")
    done = subprocess.run(
        [str(TARGET), "--config", str(cfg)],
        capture_output=True,
        text=True,
        input="".join(json.dumps(m) + "\n" for m in messages),
        env=clean_env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert query(db2, "SELECT count(*) FROM mixpanel.guard")[0][0] == 50, hint
