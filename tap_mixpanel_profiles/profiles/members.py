"""The `cohort_members` stream's sync: one record per (cohort, member), a snapshot per cohort.

Members come from Engage with `filter_by_cohort={"id": N}` and `include_all_users=true`
(members without a profile too), `output_properties` set to `cohort_members_properties`
(none by default: a huge profile cannot weigh on a membership sync), and `data_group_id` for
a cohort of group profiles. Each cohort is one resumable pass of the profiles engine
(`KeyedPasses`): page 0, then the other pages in parallel, resumed page by page by the next
run after a pause.

Snapshots. Every member row carries `synced_at`, the start of its cohort's snapshot (kept
by a resumed pass). target-duckdb upserts on (cohort_id, distinct_id) and never deletes, so
a person who left keeps the row of an older snapshot. Once a cohort's snapshot is complete
the stream writes a marker, a record of the companion stream `cohort_snapshots` (key
cohort_id, the `synced_at` of its last complete snapshot), *after* the snapshot's rows and
*before* the STATE that records it. The current-membership query (docs/engage-streams.md)
keeps the rows with `synced_at >=` the marker's: a member who left disappears once a
snapshot without them completes, and a paused or failed snapshot changes nothing that was
already there.

Rounds. A run plans every cohort of the list (or of `cohort_members_cohort_ids`); cohorts
whose snapshot completed in the current round are skipped by the runs that finish it, so a
paused round resumes where it stopped. A round ends when every cohort is settled: complete,
or refused by the server (404 "Missing Datagroup" for a deleted group key, 400), which is
named and fails the run (exit 1) without holding back the others; the next run starts a new
round of snapshots.
"""

from __future__ import annotations

import datetime as dt
import math
import typing as t

from typing_extensions import override

from tap_mixpanel_profiles.engine.lifecycle import StreamSync
from tap_mixpanel_profiles.profiles.cohorts import (
    LIST,
    CohortList,
    list_fetcher,
    remember_list,
    report_list,
    shared_list,
)
from tap_mixpanel_profiles.profiles.engage import (
    EngageQuery,
    MakeRecord,
    to_record,
)
from tap_mixpanel_profiles.profiles.engage_streams import SNAPSHOTS
from tap_mixpanel_profiles.profiles.keyed import COMPLETE, UNFINISHED, KeyedPasses
from tap_mixpanel_profiles.profiles.passes import PassState, saved_pass
from tap_mixpanel_profiles.profiles.results import properties_of

if t.TYPE_CHECKING:
    from tap_mixpanel_profiles.engine.lifecycle import Batch
    from tap_mixpanel_profiles.profiles.engage_streams import CohortMembersStream


def utc_now() -> str:
    """Now in UTC with microseconds: two snapshots of a cohort never share a synced_at."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def member_record_maker(
    cohort_id: int, data_group_id: int | None, synced_at: str, asked: t.Collection[str]
) -> MakeRecord:
    """Engage result -> member record (checked like a profile; no $last_seen column).

    Only the `asked` properties are kept, also from a server that would ignore
    output_properties: the rows carry what cohort_members_properties names, nothing else.
    """
    wanted = frozenset(asked)

    def make(item: t.Any) -> tuple[dict[str, t.Any], bool]:
        profile, _ = to_record(item)
        served = properties_of(profile["properties"]) if wanted else {}
        record = {
            "cohort_id": cohort_id,
            "distinct_id": profile["distinct_id"],
            "synced_at": synced_at,
            "data_group_id": data_group_id,
            "properties": {k: v for k, v in served.items() if k in wanted} if served else {},
        }
        return record, False

    return make


def pages_left(saved: t.Any, count: int | None, page_size: int) -> tuple[int, bool]:
    """(pages a cohort still needs, whether its saved session is resumed): from the saved
    pass when a session of it is open, else from the list's count (1 when unknown)."""
    try:
        pass_ = PassState.from_dict(saved) if isinstance(saved, dict) else None
    except (KeyError, TypeError, ValueError):
        pass_ = None
    if pass_ is not None and any(s.session for s in pass_.pending()):
        return sum(len(s.session.remaining()) if s.session else 1 for s in pass_.pending()), True
    return max(1, math.ceil((count or 0) / page_size)), False


class CohortMembersSync(KeyedPasses):
    """One snapshot per cohort of the plan, in rounds (see the module docstring)."""

    container = "cohorts"
    noun = "cohort"
    record_noun = "member"
    state_keys = ("cohorts", "round")
    failed_key = "failed_cohorts"
    restart_hint = "starting a new round of cohort snapshots"

    def __init__(self, stream: CohortMembersStream) -> None:
        super().__init__(stream)
        self.members = stream
        # Member rows carry only the asked properties: pages decoded whole when there are any.
        self.api.raw_properties = not (self.columns or stream.settings.cohort_members_properties)
        self.listing: CohortList | None = None
        self.cohorts: dict[int, dict[str, t.Any]] = {}
        self.round = ""
        self.synced_at = ""

    @override
    def stream_fingerprint(self) -> dict[str, t.Any]:
        return {"project_id": self.settings.project_id}

    @override
    def key_fingerprint(self, key: int) -> dict[str, t.Any]:
        return {
            "cohort_id": key,
            "data_group_id": self.cohorts[key].get("data_group_id"),
            "cohort_members_properties": list(self.settings.cohort_members_properties),
            "page_size": self.settings.page_size,
        }

    @override
    def start(self) -> None:
        """Resume the round under way, or begin one."""
        super().start()
        saved = self.state.get("round")
        self.round = saved if isinstance(saved, str) and saved else utc_now()
        self.state["round"] = self.round
        if saved:
            self.log.info("cohort_members: resuming the round of snapshots begun at %s.", saved)

    @override
    def sync(self) -> t.Iterator[Batch]:
        """The list (this run's, when cohorts read it), the plan, then each cohort's snapshot."""
        listing = shared_list(self.runtime)
        own_list = listing is None
        if listing is None:
            fetcher = list_fetcher(self, self.settings, emit_records=False)
            yield from StreamSync.drain(self, fetcher, [LIST])  # planning: outside the share
            listing = self.listing
            if listing is None:  # paused, or failed (named)
                return
        self.plan = self.plan_cohorts(listing)
        self.log_plan(own_list)
        self.members.write_snapshot_schema()
        self.rewrite_unconfirmed_markers()
        yield from super().sync()
        if all(self.outcomes.get(k) not in (None, UNFINISHED) for k in self.plan):
            self.state["round"] = None  # null, not deleted: Meltano merges STATE messages

    @override
    def partition_done(self, partition: t.Any, rows: int, result: t.Any) -> None:
        """The cohorts list arrived (when this stream read it), else a page: as profiles."""
        if partition == LIST and self.key is None:
            self.listing = result
            remember_list(self.runtime, result)
            report_list(self, result)
            return
        super().partition_done(partition, rows, result)

    def plan_cohorts(self, listing: CohortList) -> list[int]:
        """The cohorts to snapshot in this run: wanted, listed, not yet done in this round."""
        listed = {int(c["id"]): c for c in listing.records}
        wanted = self.settings.cohort_members_cohort_ids
        if wanted is None:
            ids = list(listed)
        else:
            for missing in (i for i in wanted if i not in listed):
                self.log.error(
                    "cohort_members: cohort %d (cohort_members_cohort_ids) is not in the "
                    "cohorts list; skipped.",
                    missing,
                )
                self.fail(f"cohort {missing} (not in the cohorts list)")
            ids = [i for i in wanted if i in listed]
        self.cohorts = {i: listed[i] for i in ids}
        return [i for i in ids if self.part(i).get("settled") != self.round]

    def log_plan(self, own_list: bool) -> None:
        """Before any member is fetched: cohorts, pages, queries, hours of quota."""
        s = self.settings
        pages = page0s = 0
        for key in self.plan:
            part = self.part(key)
            need, resumed = pages_left(
                saved_pass(part.get("pass")), self.cohorts[key].get("count"), s.page_size
            )
            pages += need
            page0s += 0 if resumed else 1
        counted = s.session_pages_count_against_quota
        counted = self.limiter.maybe_counted if counted is None else counted
        listing = 1 if own_list else 0
        total = (page0s if counted is False else pages) + listing
        queries = f"{total} queries"
        if counted is None:  # auto, not learned yet: both answers
            queries += f" if session pages count (auto), {page0s + listing} if they do not"
        hours = total / s.queries_per_hour * s.quota_window_seconds / 3600
        done = len(self.cohorts) - len(self.plan)
        self.log.info(
            "cohort_members plan: %d cohorts%s, %d pages of up to %d members, %s (%s) = "
            "%.2f hours of quota at %d queries per %g s; shared by every Engage stream of "
            "the run, budget now %s.",
            len(self.plan),
            f" ({done} already done in this round)" if done else "",
            pages,
            s.page_size,
            queries,
            "with the cohorts list" if own_list else "the cohorts list was read by cohorts",
            hours,
            s.queries_per_hour,
            s.quota_window_seconds,
            self.limiter.describe_budget(),
        )

    @override
    def query_for(self, key: int) -> EngageQuery:
        """filter_by_cohort with every member (include_all_users) and only the asked properties."""
        return EngageQuery(
            cohort_id=key,
            include_all_users=True,
            output_properties=self.settings.cohort_members_properties,
            data_group_id=self.cohorts[key].get("data_group_id"),
        )

    @override
    def record_maker(self, key: int) -> MakeRecord:
        """The rows of this cohort's snapshot: a resumed pass keeps its snapshot's synced_at."""
        part = self.state
        saved = saved_pass(part.get("pass"))
        resumed = (
            isinstance(saved, dict)
            and self.pass_ is not None
            and saved.get("started_at") == self.pass_.started_at
            and bool(part.get("synced_at"))
        )
        if resumed:
            self.synced_at = str(part["synced_at"])
        else:
            self.synced_at = part["synced_at"] = utc_now()
        self.log.info(
            "cohort_members: cohort %d (%s members listed): %s snapshot begun at %s.",
            key,
            self.cohorts[key].get("count"),
            "resuming the" if resumed else "a new",
            self.synced_at,
        )
        return member_record_maker(
            key,
            self.cohorts[key].get("data_group_id"),
            self.synced_at,
            self.settings.cohort_members_properties,
        )

    @override
    def accept(self, partition: t.Any, records: Batch) -> Batch:
        """Members have no $last_seen to track: count them."""
        assert self.pass_ is not None
        self.pass_.rows += len(records)
        self.progress.rows += len(records)
        return records

    @override
    def key_settled(self, key: int, outcome: str) -> None:
        """A complete snapshot: its marker, after its rows and before the STATE recording it."""
        part = self.state
        part["settled"] = self.round
        if outcome != COMPLETE:
            part["synced_at"] = None
            return
        part["complete_synced_at"] = self.synced_at
        part["completed_at"] = utc_now()
        part["synced_at"] = None
        self.write_marker(key, part)

    def write_marker(self, key: int, part: dict[str, t.Any]) -> None:
        """Cohort `key`'s snapshot marker, and its record in `bookmarks.cohort_snapshots`."""
        synced_at = part["complete_synced_at"]
        self.members.write_snapshot(
            {
                "cohort_id": key,
                "synced_at": synced_at,
                "completed_at": part.get("completed_at"),
                "data_group_id": self.cohorts[key].get("data_group_id"),
            }
        )
        self.markers()[str(key)] = synced_at

    def markers(self) -> dict[str, t.Any]:
        """`bookmarks.cohort_snapshots.markers`: cohort -> synced_at of the marker written.

        target-duckdb emits a stream's bookmark only once it loaded that stream's rows, and
        without `flush_all_streams` it flushes one stream at a time: the STATE it emits can
        record a cohort's snapshot complete (its cohort_members bookmark) while the marker,
        a record of another stream, was still in its buffer, and a kill then loses it. The
        companion stream's own bookmark says which markers were loaded.
        """
        bookmarks = self.members.tap_state.setdefault("bookmarks", {})
        entry = bookmarks.get(SNAPSHOTS)
        if not isinstance(entry, dict):
            entry = bookmarks[SNAPSHOTS] = {}
        markers = entry.get("markers")
        if not isinstance(markers, dict):
            markers = entry["markers"] = {}
        return markers

    def rewrite_unconfirmed_markers(self) -> None:
        """Write again the marker of every complete snapshot the target has not confirmed."""
        markers = self.markers()
        again = []
        for key in self.cohorts:
            part = self.part(key)
            synced_at = part.get("complete_synced_at")
            if synced_at and markers.get(str(key)) != synced_at:
                self.write_marker(key, part)
                again.append(key)
        if again:
            self.log.info(
                "cohort_members: snapshot markers of cohorts %s were not confirmed loaded by "
                "the target's STATE: written again.",
                ", ".join(map(str, again)),
            )

    @override
    def summary_extra(self) -> dict[str, t.Any]:
        return {"round_started_at": self.round, **super().summary_extra()}
