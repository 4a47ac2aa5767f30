"""`session_pages_count_against_quota: auto`: learning whether session pages count.

Against the simulator in both behaviours: a server that exempts session pages
lets a 10-page sync finish on a 3-an-hour budget in one run (no 429 at all);
a server that counts them costs at most one 429, after which the run pauses
(stop, exit 0, resumable STATE) or waits for the window (wait). What was
learned is in the SUMMARY and in STATE, and the next run starts from it.
"""

from __future__ import annotations

import functools

import pytest

from tests.helpers.tap_runner import run_tap, sim_config, simulator

#: Runs the tap as a process against the simulator (slower; marked to run apart: `-m integration`).
pytestmark = pytest.mark.integration

PROFILES = 1000
PAGE = 100  # 10 pages: page 0 + 9 session pages

make_sim = functools.partial(simulator, profiles=PROFILES, seed=3, max_page_size=PAGE, latency=0.01)


def auto_config(sim: object, **extra: object) -> dict[str, object]:
    return sim_config(
        sim,
        page_size=PAGE,
        queries_per_hour=3,
        session_pages_count_against_quota="auto",
        **extra,
    )


def test_an_exempting_server_is_learned_without_a_429_and_the_sync_completes_in_one_run():
    with make_sim(hourly_limit=3, session_requests_exempt=True) as sim:
        run = run_tap(auto_config(sim, on_quota_exhausted="stop"))
        assert run.returncode == 0, run.stderr[-3000:]
        assert len(set(run.ids)) == PROFILES
        summary = run.summary
        assert summary["status"] == "complete"
        assert summary["rate_limited"] == 0, "an answer beyond the budget proved the exemption"
        assert summary["session_pages_counted"] is False
        assert summary["session_pages_counted_from"] == "learned"
        assert summary["queries"] == 10
        fact = run.last_state["engage_quota"]
        assert fact["session_pages_counted"] is False and fact["project_id"] == "12345"
        assert "do NOT count" in run.stderr

        # The next run starts from what was learned: no probing, session pages uncounted.
        second = run_tap(auto_config(sim, on_quota_exhausted="stop"), run.last_state)
        assert second.returncode == 0, second.stderr[-3000:]
        assert "An earlier run" in second.stderr and "do not count" in second.stderr
        assert second.summary["session_pages_counted_from"] == "earlier run"
        assert second.summary["rate_limited"] == 0


def test_a_counting_server_costs_at_most_one_429_then_the_run_pauses_resumably():
    with make_sim(hourly_limit=3, session_requests_exempt=False, window_seconds=3600) as sim:
        run = run_tap(auto_config(sim, on_quota_exhausted="stop"))
        assert run.returncode == 0, run.stderr[-3000:]
        summary = run.summary
        assert summary["status"] == "paused"
        assert summary["rate_limited"] == 1, "the one probe answered 429"
        assert summary["session_pages_counted"] is True
        assert summary["session_pages_counted_from"] == "learned"
        assert sim.stats()["rate_limited_hourly"] == 1
        assert run.bookmark["pass"], "resumable STATE: the pass goes on next run"
        assert run.last_state["engage_quota"]["session_pages_counted"] is True
        assert len(set(run.ids)) == 300, "3 pages within the budget, then the pause"

        # The next run (budget still spent on the server) spends no 429 on learning again:
        # it counts every page from the start and pauses when the server says so.
        second = run_tap(auto_config(sim, on_quota_exhausted="stop"), run.last_state)
        assert second.returncode == 0, second.stderr[-3000:]
        assert second.summary["status"] == "paused"
        assert second.summary["rate_limited"] <= 1


def test_a_counting_server_in_wait_mode_spends_one_429_then_waits_for_the_window():
    with make_sim(hourly_limit=3, session_requests_exempt=False, window_seconds=1.0) as sim:
        config = auto_config(sim, quota_window_seconds=1.0, on_quota_exhausted="wait")
        run = run_tap(config, timeout=120)
        assert run.returncode == 0, run.stderr[-3000:]
        assert len(set(run.ids)) == PROFILES
        summary = run.summary
        assert summary["status"] == "complete"
        assert summary["session_pages_counted"] is True
        assert summary["rate_limited"] <= 1, "learning costs at most one 429"
        assert summary["queries"] <= 11


def test_the_plan_line_says_what_the_pass_costs():
    with make_sim(hourly_limit=0) as sim:
        run = run_tap(sim_config(sim, page_size=PAGE))
        assert run.returncode == 0
        line = next(x for x in run.stderr.splitlines() if "Plan:" in x)
        assert "1,000 profiles in 10 pages of 100: 10 queries" in line
        assert "0.17 h of quota at 60 queries per 3600 s" in line
        assert "10,000: 1 (0.02 h)" in line
        auto = run_tap(sim_config(sim, page_size=PAGE, session_pages_count_against_quota="auto"))
        line = next(x for x in auto.stderr.splitlines() if "Plan:" in x)
        assert "if session pages count" in line and "1 query if they do not" in line
