"""The `group_profiles` stream's sync: Engage with `data_group_id`, a resumable pass per group.

Group Analytics keeps one profile per value of a group key (company_id, account_id ...);
Engage serves them when asked with `data_group_id` (Project Settings → Group Keys), and a
result's `$distinct_id` is the group's key value. Each configured data group is read exactly
like the profiles stream reads user profiles (`KeyedPasses`: page 0, then the pages in
parallel, incremental by `$last_seen`, resumable), with its own pass and bookmark under
`bookmarks.group_profiles.data_groups.<id>`. The key is (data_group_id, distinct_id): two
group keys may share a key value.
"""

from __future__ import annotations

import typing as t

from typing_extensions import override

from tap_mixpanel_profiles.errors import ConfigError
from tap_mixpanel_profiles.profiles.engage import EngageQuery, MakeRecord, to_record
from tap_mixpanel_profiles.profiles.keyed import KeyedPasses


def group_record_maker(data_group_id: int) -> MakeRecord:
    """Engage result -> group profile record (a profile record plus its data group)."""

    def make(item: t.Any) -> tuple[dict[str, t.Any], bool]:
        record, bad_last_seen = to_record(item)
        return {"data_group_id": data_group_id, **record}, bad_last_seen

    return make


class GroupProfilesSync(KeyedPasses):
    """One incremental, resumable pass per configured data group."""

    container = "data_groups"
    noun = "data group"
    record_noun = "group profile"
    state_keys = ("data_groups",)
    restart_hint = "reading every group profile"

    @override
    def start(self) -> None:
        """The data groups to read, in the configured order."""
        super().start()
        self.settings.require_group_settings()
        self.plan = list(self.settings.data_group_ids or ())

    @override
    def query_for(self, key: int) -> EngageQuery:
        """Engage with data_group_id (the profiles stream's where and cohort do not apply)."""
        self.log.info("group_profiles: data group %d.", key)
        return EngageQuery(data_group_id=key)

    @override
    def record_maker(self, key: int) -> MakeRecord:
        return group_record_maker(key)

    @override
    def key_fingerprint(self, key: int) -> dict[str, t.Any]:
        return {"data_group_id": key, "page_size": self.settings.page_size}

    @override
    def key_refused(self, key: int, error: BaseException) -> None:
        """A 400 means the id is no data group of the project: a configuration error (exit 3)
        once the other data groups are delivered; other refusals fail the run (exit 1)."""
        super().key_refused(key, error)
        if isinstance(error, ConfigError) and self.fatal is None:
            self.fatal = ConfigError(
                f"Setting 'data_group_ids': Mixpanel refused data group {key} ({error}); "
                f"check the ids in Project Settings → Group Keys."
            )
