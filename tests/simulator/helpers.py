"""Shared constants and HTTP helpers of the simulator tests (fixtures are in conftest.py)."""

from __future__ import annotations

import datetime as dt
import typing as t

import requests

if t.TYPE_CHECKING:
    from tap_mixpanel_profiles.simulator import MixpanelSimulator

SERVICE_ACCOUNT = ("sim-user", "sim-secret")
PROJECT_ID = "12345"
NOW = "2025-01-01T00:00:00"  # the profiles' fixed 'now' ($last_seen values are before it)
TODAY = dt.date(2025, 3, 31)  # the export's fixed 'today'
N = 2500  # profiles of the shared simulator


def engage(
    sim: MixpanelSimulator,
    session: requests.Session | None = None,
    *,
    auth: t.Any = SERVICE_ACCOUNT,
    project_id: str | None = PROJECT_ID,
    method: str = "POST",
    path: str = "/api/query/engage",
    timeout: float = 10,
    **data: t.Any,
) -> requests.Response:
    """POST (form body) or GET (query string) an engage request; project_id goes in the query."""
    http = session or requests
    params: dict[str, t.Any] = {} if project_id is None else {"project_id": project_id}
    if method == "GET":
        return http.get(sim.url + path, params={**params, **data}, auth=auth, timeout=timeout)
    return http.post(sim.url + path, params=params, data=data, auth=auth, timeout=timeout)


def fetch_all(
    sim: MixpanelSimulator, page_size: int = 1000, **data: t.Any
) -> tuple[int, list[dict[str, t.Any]]]:
    """Page through a whole query the way a tap would; return (total, results)."""
    with requests.Session() as http:
        body = engage(sim, http, page=0, page_size=page_size, **data).json()
        results, page = list(body["results"]), 0
        while len(results) < body["total"]:
            page += 1
            more = engage(
                sim, http, page=page, page_size=page_size, session_id=body["session_id"], **data
            )
            assert more.status_code == 200 and more.json()["results"], more.text
            results.extend(more.json()["results"])
    return body["total"], results
