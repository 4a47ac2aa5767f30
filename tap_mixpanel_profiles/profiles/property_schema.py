"""Mixpanel's property schema, cached on disk, as the typed columns of the Engage streams.

`GET /api/2.0/engage/properties?limit=N` (undocumented; both peer extractors use it) lists
the properties of the user profiles, or with `data_group_id` of one group key's profiles,
the most common first, each with Mixpanel's type (`string`, `number`, `boolean`,
`datetime`, `list`, `object`). It is a Query API call: it goes through the shared Engage
limiter, so it counts against the same hourly budget and concurrency cap as the pages.

Meltano runs `--discover` without STATE (and in another process than the sync), so the
listing is kept in a file cache, one file per (project, API host, data group) under
`property_schema_cache_dir`, reused while younger than `property_schema_max_age_hours`
(`property_schema_refresh` asks again). The same file keeps every column this machine ever
created for that key, with its type: a column, once created, stays in the schema with its
first type (target-duckdb would otherwise rename a column whose type changes), even when
Mixpanel retypes the property or it falls past `property_columns_max`.

A listing that cannot be had (404, 403, junk, retries exhausted, the budget spent in stop
mode, no credentials at discovery) is one warning: the last listing cached, however old, is
used, or else no columns for that run (the `properties` JSON keeps everything).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import pathlib
import re
import tempfile
import time
import typing as t
import weakref

from tap_mixpanel_profiles.profiles.columns import column_name, column_schema

if t.TYPE_CHECKING:
    from tap_mixpanel_profiles.engine.limiter import QueryLimiter
    from tap_mixpanel_profiles.engine.runtime import Runtime
    from tap_mixpanel_profiles.settings import Settings

#: Properties asked of the endpoint beyond the cap (to tell how many were left in JSON).
LIST_LIMIT = 2000
TYPES = ("string", "number", "boolean", "datetime", "list", "object")
CACHE_VERSION = 1
#: Longest timeout, backoff or 429 wait of one schema query (at most 2 retries).
SCHEMA_PATIENCE_SECONDS = 30.0


def default_cache_dir() -> pathlib.Path:
    """$XDG_CACHE_HOME/tap-mixpanel-profiles, else ~/.cache/tap-mixpanel-profiles."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "tap-mixpanel-profiles"


@dataclasses.dataclass
class Listing:
    """What the endpoint listed: (name, type) most common first, and when it was asked."""

    properties: list[tuple[str, str]]
    fetched_at: float  # wall-clock epoch seconds
    truncated: bool = False  # the endpoint returned as many as were asked: maybe more exist
    fetched_by: int = dataclasses.field(default_factory=os.getpid)  # the process that asked


class CacheFile:
    """One key's file: the last listing and every column created so far, with its type."""

    def __init__(self, settings: Settings, data_group_id: int | None) -> None:
        self.settings = settings
        self.data_group_id = data_group_id
        self.key = {
            "project_id": settings.project_id,
            "api": settings.base_url,
            "data_group_id": data_group_id,
        }
        host = hashlib.sha1(settings.base_url.encode()).hexdigest()[:8]
        scope = "users" if data_group_id is None else f"group-{data_group_id}"
        project = re.sub(r"[^A-Za-z0-9_.-]", "_", settings.project_id).lstrip(".")  # a file name
        self.path = (
            pathlib.Path(settings.property_schema_cache_dir or default_cache_dir())
            / f"engage-properties-{project}-{host}-{scope}.json"
        )
        self.listing: Listing | None = None
        self.columns: dict[str, str] = {}  # property -> its column's type, once created

    def load(self, log: logging.Logger) -> None:
        """Read the file (a missing one is empty; an unreadable one is warned about)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("Property schema cache %s is unreadable (%s): ignoring it.", self.path, exc)
            return
        if not isinstance(data, dict) or data.get("key") != self.key:
            return
        columns = data.get("columns")
        if isinstance(columns, dict):
            self.columns = {k: v for k, v in columns.items() if v in TYPES}
        listing = parse_listing({"results": data.get("listing")}, strict=False)
        fetched = data.get("fetched_at")
        by = data.get("fetched_by_pid")
        if listing is not None and isinstance(fetched, (int, float)):
            self.listing = Listing(
                listing,
                float(fetched),
                bool(data.get("truncated")),
                by if isinstance(by, int) else -1,
            )

    def age(self) -> float | None:
        """Seconds since the cached listing was asked (None: none cached)."""
        return None if self.listing is None else max(0.0, time.time() - self.listing.fetched_at)

    def save(self, log: logging.Logger) -> None:
        """Write the file atomically (a cache that cannot be written is warned about)."""
        listing = self.listing
        data = {
            "version": CACHE_VERSION,
            "key": self.key,
            "fetched_at": listing.fetched_at if listing else None,
            "fetched_by_pid": listing.fetched_by if listing else None,
            "truncated": listing.truncated if listing else False,
            "listing": {p: {"type": k} for p, k in listing.properties} if listing else {},
            "columns": self.columns,
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "w", encoding="utf-8", dir=self.path.parent, delete=False, suffix=".tmp"
            ) as out:
                json.dump(data, out, ensure_ascii=False)
            os.replace(out.name, self.path)
        except OSError as exc:
            log.warning("Cannot write the property schema cache %s (%s).", self.path, exc)
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(out.name)


def parse_listing(body: t.Any, *, strict: bool = True) -> list[tuple[str, str]] | None:
    """(name, type) pairs of an endpoint body, in its order; None when it is no listing.

    An entry whose type is none of Mixpanel's six is typed string (its values land as
    text, or null); `strict` also wants `"status": "ok"`.
    """
    if not isinstance(body, dict):
        return None
    if strict and body.get("status", "ok") != "ok":
        return None
    results = body.get("results")
    if not isinstance(results, dict):
        return None
    out: list[tuple[str, str]] = []
    for name, info in results.items():
        kind = info.get("type") if isinstance(info, dict) else None
        out.append((name, kind if kind in TYPES else "string"))
    return out


#: Schema queries each run spent: asked in this process, or counted from the cache as asked
#: by its discovery in another (the plan line reports them beside the pages' queries).
_SPENT: weakref.WeakKeyDictionary[Runtime[t.Any], int] = weakref.WeakKeyDictionary()


def spent_queries(runtime: Runtime[t.Any]) -> int:
    """The property-schema queries this run spent so far (see `_SPENT`)."""
    return _SPENT.get(runtime, 0)


def fetch_listing(runtime: Runtime[Settings], data_group_id: int | None) -> Listing:
    """Ask the endpoint once, through the shared Engage limiter (retries and waits included).

    Raises what the client raises (TapError, PartitionFailed, QuotaExhausted, ClientError),
    and BadResponse for an answer that is JSON but no property listing.
    """
    from tap_mixpanel_profiles.engine.client import BadResponse
    from tap_mixpanel_profiles.profiles.engage import engage_api

    settings = runtime.settings
    # Optional: never worth more than a short wait (a discovery without network falls back).
    client = runtime.client(engage_api(settings), patience=SCHEMA_PATIENCE_SECONDS)
    limit = max(LIST_LIMIT, settings.property_columns_max + 1)
    params: dict[str, t.Any] = {"limit": limit, "project_id": settings.project_id}
    if data_group_id is not None:
        params["data_group_id"] = data_group_id

    def handle(response: t.Any) -> Listing | None:
        try:
            body = json.loads(response.content)
        except ValueError as exc:  # a body cut short, maybe: retried
            raise BadResponse(f"property schema is not valid JSON ({type(exc).__name__})") from exc
        listing = parse_listing(body)  # JSON, but no listing: no retry would change that
        return None if listing is None else Listing(listing, time.time(), len(listing) >= limit)

    label = "property schema" + ("" if data_group_id is None else f" of data group {data_group_id}")
    try:
        listing = client.request(
            "GET",
            f"{settings.base_url}/api/2.0/engage/properties",
            label=label,
            params=params,
            handle=handle,
        )
    finally:
        client.close()
        _SPENT[runtime] = spent_queries(runtime) + client.requests
    if listing is None:
        raise BadResponse("the answer has no 'results' object of properties")
    return listing


def account_discovery(
    settings: Settings, runtime: Runtime[Settings], keys: set[int | None]
) -> None:
    """Before a sync: the property-schema queries an earlier process (Meltano's discovery)
    sent within the quota window count in the shared Engage budget of this run."""
    from tap_mixpanel_profiles.profiles.engage import engage_api

    limiter = runtime.limiter(engage_api(settings))
    found = account_earlier_requests(settings, sorted(keys, key=str), limiter)
    _SPENT[runtime] = spent_queries(runtime) + found
    if found:
        runtime.log.info(
            "%d property-schema queries of an earlier discovery are in this run's Engage "
            "budget (%s).",
            found,
            limiter.describe_budget(),
        )


def account_earlier_requests(
    settings: Settings, keys: t.Iterable[int | None], limiter: QueryLimiter
) -> int:
    """Put the schema queries another process of this run made (Meltano's `--discover`)
    into this process's quota ledger, so the budget is what Mixpanel counts; how many."""
    found = 0
    for key in keys:
        cache = CacheFile(settings, key)
        cache.load(logging.getLogger("tap-mixpanel-profiles"))
        age = cache.age()
        if cache.listing is None or cache.listing.fetched_by == os.getpid() or age is None:
            continue  # nothing cached, or this process asked it (the limiter counted it)
        if age < settings.quota_window_seconds:
            limiter.spent_earlier(age)
            found += 1
    return found


@dataclasses.dataclass
class Columns:
    """The typed columns of one stream: column name -> JSON schema, and what was left."""

    schemas: dict[str, dict[str, t.Any]]
    left_in_json: int = 0
    more_unlisted: bool = False


class ColumnSource:
    """The listings (cached or asked) and the column registries of one discovery."""

    def __init__(
        self,
        settings: Settings,
        log: logging.Logger,
        runtime: t.Callable[[], Runtime[Settings]],
    ) -> None:
        self.settings = settings
        self.log = log
        self.runtime = runtime
        self._caches: dict[int | None, CacheFile] = {}

    def cache(self, key: int | None) -> CacheFile:
        """Key `key`'s cache, with a fresh enough listing (asked at most once per run)."""
        cache = self._caches.get(key)
        if cache is not None:
            return cache
        cache = self._caches[key] = CacheFile(self.settings, key)
        cache.load(self.log)
        age = cache.age()
        max_age = self.settings.property_schema_max_age_hours * 3600
        if age is not None and age <= max_age and not self.settings.property_schema_refresh:
            return cache
        what = "user profiles" if key is None else f"data group {key}"
        try:
            cache.listing = fetch_listing(self.runtime(), key)
        except Exception as exc:  # noqa: BLE001  # any failure: one warning, never a failed sync
            reason = str(exc) or type(exc).__name__
            kept = (
                f"using the cached one from {_when(cache.listing.fetched_at)}"
                if cache.listing
                else "no typed columns this run (every property is in the properties JSON)"
            )
            self.log.warning(
                "Mixpanel's property schema of the %s could not be read (%s): %s.",
                what,
                reason,
                kept,
            )
            return cache
        self.log.info(
            "Property schema of the %s: %d properties listed (cached in %s).",
            what,
            len(cache.listing.properties),
            cache.path,
        )
        cache.save(self.log)
        return cache

    def columns(
        self, keys: t.Sequence[int | None], only: t.Collection[str] | None = None
    ) -> Columns:
        """The columns of a stream reading `keys` (None: user profiles), registry first.

        A property's type is the one its column was created with, else the first key's
        listing that has it; `only` (a names list) limits the columns to those names.
        """
        cap = self.settings.property_columns_max
        known: dict[str, str] = {}  # property -> the type its column was created with
        for key in keys:
            for prop, kind in self.cache(key).columns.items():
                known.setdefault(prop, kind)
        listed: dict[str, str] = {}
        truncated = False
        for key in keys:
            listing = self.cache(key).listing
            if listing is not None:
                truncated |= listing.truncated
                for prop, kind in listing.properties:
                    listed.setdefault(prop, kind)
        left = 0
        if only is None:
            types = dict(known)  # every column created before stays, with its type
            for prop, kind in listed.items():
                if prop in types:
                    continue
                if len(types) >= cap:
                    left += 1
                    continue
                types[prop] = kind
        else:
            types = {p: known.get(p) or listed[p] for p in only if p in known or p in listed}
            missing = [p for p in only if p not in types]
            truncated = False
            if missing:
                self.log.warning(
                    "%d named properties are not in Mixpanel's property schema (%s): they "
                    "stay in the properties JSON.",
                    len(missing),
                    ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""),
                )
        for key in keys:
            cache = self.cache(key)
            new = {p: k for p, k in types.items() if p not in cache.columns and p in _listed(cache)}
            if new:
                cache.columns.update(new)
                cache.save(self.log)
        schemas = {column_name(prop): column_schema(kind, prop) for prop, kind in types.items()}
        return Columns(schemas, left_in_json=left, more_unlisted=truncated)


def _listed(cache: CacheFile) -> set[str]:
    return {p for p, _ in cache.listing.properties} if cache.listing else set()


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
