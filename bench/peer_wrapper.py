"""Run singer-io `tap-mixpanel` against the local simulator (executed by the PEER's venv).

The peer hard-codes https://{,eu.,data.,data-eu.}mixpanel.com; this wrapper
rewrites those request URLs to the simulator and changes nothing else.

    peer-python bench/peer_wrapper.py SIM_URL catalog OUT.json   # catalog, engage selected
    peer-python bench/peer_wrapper.py SIM_URL sync -- --config C --catalog K
"""

from __future__ import annotations

import json
import re
import sys

import requests

_HOSTS = re.compile(r"^https://(?:(?:eu|data|data-eu)\.)?mixpanel\.com")


def redirect(sim_url: str) -> None:
    """Send every request the peer makes to the simulator instead of mixpanel.com."""
    original = requests.Session.request

    def request(self, method, url, *args, **kwargs):
        return original(self, method, _HOSTS.sub(sim_url, url), *args, **kwargs)

    requests.Session.request = request


def offline_catalog(sim_url: str, path: str) -> None:
    """The catalog the peer's discovery builds, with `engage` selected and nothing else.

    Discovery types the engage columns from Mixpanel's /engage/properties, which
    the simulator does not serve: the stand-in below answers it from the
    properties of one simulator page (as Mixpanel would list them), so the peer
    emits every property, as it would in production.
    """
    from tap_mixpanel.discover import discover

    kinds = {
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        dict: "object",
        list: "list",
    }

    class EngagePropertiesFromSimulator:
        disable_engage_endpoint = False

        def request(self, method, url=None, path=None, params=None, **kwargs):
            if path != "engage/properties":
                return {"status": "ok", "results": {}}
            page = requests.post(
                f"{sim_url}/api/2.0/engage",
                auth=("sim-api-secret", ""),
                data={"page_size": 1000},
                timeout=60,
            ).json()
            results = {}
            for item in page["results"]:
                for key, value in item["$properties"].items():
                    results.setdefault(key, {"type": kinds.get(type(value), "string")})
            return {"status": "ok", "results": results}

    client = EngagePropertiesFromSimulator()
    setattr(client, "__api_domain", "mixpanel.com")  # read unmangled by tap_mixpanel.schema
    catalog = discover(client, "true").to_dict()
    catalog["streams"] = [s for s in catalog["streams"] if s["tap_stream_id"] == "engage"]
    for entry in catalog["streams"][0]["metadata"]:
        if not entry["breadcrumb"]:
            entry["metadata"]["selected"] = True
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(catalog, handle)


def main() -> None:
    sim_url, command, *rest = sys.argv[1:]
    sim_url = sim_url.rstrip("/")
    if command == "catalog":
        offline_catalog(sim_url, rest[0])
        return
    redirect(sim_url)
    sys.argv = ["tap-mixpanel", *[a for a in rest if a != "--"]]
    from tap_mixpanel import main as peer_main

    peer_main()


if __name__ == "__main__":
    main()
