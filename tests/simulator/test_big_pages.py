"""Big Engage pages (max_page_size 50 000, streamed, never joined) and the paging keys' order."""

from __future__ import annotations

import base64
import json
import tracemalloc
import typing as t

import pytest
import requests

from tap_mixpanel_profiles.simulator import MixpanelSimulator, SimulatorConfig
from tap_mixpanel_profiles.simulator.cli import _parser
from tap_mixpanel_profiles.simulator.data import parse_now
from tap_mixpanel_profiles.simulator.replies import WRITE_BATCH, PageBody, Reply
from tap_mixpanel_profiles.simulator.users import generate_profiles

from .helpers import NOW, PROJECT_ID, SERVICE_ACCOUNT, engage

if t.TYPE_CHECKING:
    from collections.abc import Iterator

BIG = 50_000


@pytest.fixture(scope="module")
def big() -> Iterator[MixpanelSimulator]:
    """50 001 realistic profiles (~1.3 KB each on average) and a 50 000 page-size cap."""
    config = SimulatorConfig(
        profiles=BIG + 1,
        realistic=True,
        now=NOW,
        max_page_size=BIG,
        concurrency_limit=0,
        hourly_limit=0,
    )
    with MixpanelSimulator(config) as s:
        yield s


def test_a_page_of_50000_profiles(big: MixpanelSimulator) -> None:
    with requests.Session() as http:
        first = engage(big, http, page_size=BIG, timeout=120)
        assert first.status_code == 200
        assert int(first.headers["Content-Length"]) == len(first.content) > 50_000_000
        body = first.json()
        assert (body["page_size"], body["total"], len(body["results"])) == (BIG, BIG + 1, BIG)
        rest = engage(big, http, page=1, page_size=BIG, session_id=body["session_id"]).json()
    assert body["results"] + rest["results"] == big.profiles


def test_big_pages_are_streamed_in_batches_not_joined(big: MixpanelSimulator) -> None:
    """The simulator's allocations while answering a 50 000 page stay a small fraction of it."""
    params = {"project_id": PROJECT_ID, "page_size": str(BIG)}
    auth = "Basic " + base64.b64encode(":".join(SERVICE_ACCOUNT).encode()).decode()
    tracemalloc.start()
    try:
        reply = big.engine.engage(params, auth)
        written, largest = 0, 0
        for chunk in reply.chunks():
            written += len(chunk)
            largest = max(largest, len(chunk))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reply.status == 200 and written == len(reply.body) > 50_000_000
    assert largest < WRITE_BATCH + 100_000  # a batch plus at most one (big) profile
    assert peak < written / 10, f"peak {peak} bytes for a {written}-byte page"


def page_body(count: int, keys: list[str] | None = None) -> tuple[PageBody, bytes]:
    """A PageBody and the bytes it must produce (joined the way the simulator used to)."""
    rows = generate_profiles(count, 3, parse_now(NOW))
    results = b",".join(r.json if keys is None else r.projected_json(keys) for r in rows)
    prefix, suffix = b'{"a": 1, "results": [', b"]}"
    return PageBody(prefix, rows, keys, suffix), prefix + results + suffix


@pytest.mark.parametrize(("count", "keys"), [(0, None), (1, None), (1200, None), (700, ["$email"])])
def test_page_body_bytes_length_and_cut(count: int, keys: list[str] | None) -> None:
    body, expected = page_body(count, keys)
    assert len(body) == len(expected)
    assert b"".join(body.chunks()) == expected
    json.loads(expected)
    for limit in (1, 20, len(expected) // 2, len(expected) - 1, len(expected), len(expected) + 5):
        cut = body.cut(limit)
        assert len(cut) == min(limit, len(expected))
        assert b"".join(cut.chunks()) == expected[:limit]
    assert b"".join(body.chunks()) == expected, "cutting returns a copy"
    truncated = Reply(200, body).truncated()
    assert truncated.action == "truncate" and len(truncated.body) == max(1, len(expected) // 2)


# ---------------------------------------------------------------------------- key order
def top_level_keys(response: requests.Response) -> list[str]:
    pairs: list[tuple[str, t.Any]] = json.loads(
        response.content, object_pairs_hook=lambda items: items
    )
    return [key for key, _ in pairs]


def test_paging_keys_before_results_by_default_and_after_when_asked() -> None:
    with MixpanelSimulator(SimulatorConfig(profiles=30, now=NOW)) as sim:
        first = engage(sim, page_size=20)
        assert top_level_keys(first) == [
            "page",
            "page_size",
            "session_id",
            "status",
            "total",
            "results",
        ]
        sid = first.json()["session_id"]
        later = engage(sim, page=1, page_size=20, session_id=sid)
        assert top_level_keys(later) == ["page", "page_size", "session_id", "status", "results"]

        sim.set_faults(paging_keys_after_results=True)
        after = engage(sim, page_size=20)
        assert top_level_keys(after) == [
            "page",
            "status",
            "results",
            "page_size",
            "session_id",
            "total",
        ]
        assert after.content.endswith(b', "total": 30}')
        body = after.json()
        assert body["results"] == first.json()["results"]
        assert (body["page"], body["page_size"], body["total"], body["status"]) == (0, 20, 30, "ok")
        later = engage(sim, page=1, page_size=20, session_id=body["session_id"])
        assert top_level_keys(later) == ["page", "status", "results", "page_size", "session_id"]
        assert later.json()["results"] == sim.profiles[20:]
        projected = engage(sim, page_size=5, output_properties='["$email"]').json()
        assert all(set(r["$properties"]) == {"$email"} for r in projected["results"])


def test_the_cli_has_the_key_order_flag() -> None:
    args = _parser().parse_args(["--paging-keys-after-results", "--max-page-size", "50000"])
    assert args.paging_keys_after_results is True and args.max_page_size == BIG
