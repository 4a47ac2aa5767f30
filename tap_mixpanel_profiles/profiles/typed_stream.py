"""The Engage streams whose properties are also typed columns: their schema and column plan.

A stream's schema is its own columns plus, with `property_columns: all`, one typed column
per property of Mixpanel's property schema (`property_schema`). It is decided when the
stream is built:

* with a catalog (Meltano's sync, `--catalog`), the catalog's schema is the stream's: the
  columns are those discovered, and nothing is asked;
* otherwise (`--discover`, a run without a catalog) from the cached or asked property schema;
  a config too incomplete to ask it, or any failure, leaves the stream's own columns with one
  warning (every property is in the `properties` JSON anyway).

Records fill the columns of the schema in force (`ColumnPlan`), on the worker threads.
"""

from __future__ import annotations

import typing as t
import weakref

from typing_extensions import override

from tap_mixpanel_profiles.engine.stream import EngineStream, StreamOwner
from tap_mixpanel_profiles.errors import ConfigError
from tap_mixpanel_profiles.profiles.columns import ColumnPlan
from tap_mixpanel_profiles.settings import Settings

if t.TYPE_CHECKING:
    from singer_sdk import Tap

    from tap_mixpanel_profiles.profiles.property_schema import ColumnSource

#: One ColumnSource per tap: a run asks each property schema at most once, for every stream.
_SOURCES: weakref.WeakKeyDictionary[t.Any, ColumnSource] = weakref.WeakKeyDictionary()


def column_source(tap: Tap, settings: Settings) -> ColumnSource:
    """The tap's ColumnSource (created on first use)."""
    source = _SOURCES.get(tap)
    if source is None:
        from tap_mixpanel_profiles.profiles.property_schema import ColumnSource

        owner = t.cast("StreamOwner[Settings]", tap)
        source = _SOURCES[tap] = ColumnSource(settings, tap.logger, lambda: owner.runtime)
    return source


class PropertyColumnsStream(EngineStream[Settings]):
    """An Engage stream whose schema may carry typed property columns."""

    #: The stream's own columns (the schema with `property_columns: none`).
    base_schema: t.ClassVar[dict[str, t.Any]]

    def __init__(self, tap: Tap) -> None:
        super().__init__(tap, schema=self.discover_schema(tap))
        self._plan: ColumnPlan | None = None

    def column_keys(self, settings: Settings) -> list[int | None]:
        """Whose property schema types the columns: None for user profiles, else data groups."""
        return [None]

    def column_names(self, settings: Settings) -> t.Collection[str] | None:
        """Only these properties become columns (None: every listed one, up to the cap)."""
        return settings.property_columns_only

    def discover_schema(self, tap: Tap) -> dict[str, t.Any]:
        """The catalog's schema when there is one, else the own columns plus the typed ones."""
        catalog = tap.input_catalog
        entry = catalog.get_stream(self.name) if catalog is not None else None
        if entry is not None:
            return entry.schema.to_dict()
        if tap.config.get("property_columns") == "none":
            return self.base_schema
        try:
            settings = t.cast("StreamOwner[Settings]", tap).settings
        except ConfigError as exc:
            tap.logger.warning(
                "%s: no typed property columns (%s); every property is in the properties JSON.",
                self.name,
                exc,
            )
            return self.base_schema
        if settings.property_columns == "none":
            return self.base_schema
        columns = column_source(tap, settings).columns(
            self.column_keys(settings), self.column_names(settings)
        )
        if columns.left_in_json or columns.more_unlisted:
            tap.logger.warning(
                "%s: %d typed property columns (property_columns_max=%d); %d%s more listed "
                "properties are in the properties JSON only.",
                self.name,
                len(columns.schemas),
                settings.property_columns_max,
                columns.left_in_json,
                "+" if columns.more_unlisted else "",
            )
        schema = dict(self.base_schema)
        schema["properties"] = {**self.base_schema["properties"], **columns.schemas}
        return schema

    @property
    def column_plan(self) -> ColumnPlan:
        """How records fill the typed columns of the schema in force."""
        if self._plan is None:
            self._plan = ColumnPlan(self.schema, own=self.base_schema["properties"])
        return self._plan

    @override
    def typed_columns(self) -> frozenset[str]:
        return frozenset(self.column_plan.columns)
