"""Typed property columns: the naming rule, Mixpanel's types as column schemas, and the values.

Names. A property's column is named after the property alone (never after counts, order or
STATE), so a column never changes meaning once it exists, and the rule is injective *after
the loader lower-cases it* (target-duckdb quotes and lower-cases every name; DuckDB
identifiers are case-insensitive):

* a name without capitals, ``^`` or ``"`` is its own column (``$email``, ``plan``,
  ``favorite color``, ``utm.source``);
* a capital letter is written ``^`` + its lower case (``Plan`` -> ``^plan``, ``UTM_Medium``
  -> ``^u^t^m_^medium``), so ``Plan`` and ``plan`` are two columns; ``^`` itself is written
  ``^^``, ``"`` (which target-duckdb does not escape) ``^'``, and a control character or a
  capital with no one-letter lower case ``^#<hex>;``;
* a name that would be one of the tap's own columns (``distinct_id``, ``last_seen``,
  ``properties``, ``data_group_id``, ``cohort_id``, ``synced_at``, ``_sdc_*``) or is empty
  gets a trailing ``^`` (``distinct_id`` -> ``distinct_id^``): the rules above never end a
  name with a lone ``^``.

Types. Mixpanel's property schema types a property by its commonest value, which is no
guarantee: a value of another type than its column's (text in a number column, a
``datetime`` that is no date-time) is null in the column and still in ``properties``, the
JSON of every property as served. Nothing fails the load, nothing is lost.

Values. `ColumnPlan` is built from the schema in force (the catalog's, so a sync fills the
columns Meltano discovered) and adds each column's value to a record on the worker thread
that parsed it. Its values are exactly of their column's JSON type (str, int/float, bool,
list, dict, a date-time string DuckDB casts), which is what lets these records keep the fast
record path (`engine.records`): the SDK's conformance would return them unchanged.
"""

from __future__ import annotations

import datetime as dt
import typing as t

from tap_mixpanel_profiles.profiles.results import properties_of

#: The tap's own columns in every Engage stream (and the loader's metadata prefix).
RESERVED = frozenset(
    {"distinct_id", "last_seen", "properties", "data_group_id", "cohort_id", "synced_at"}
)
RESERVED_PREFIX = "_sdc_"

#: Mixpanel's property types -> the JSON schema of their column.
COLUMN_SCHEMAS: dict[str, dict[str, t.Any]] = {
    "string": {"type": ["string", "null"]},
    "number": {"type": ["number", "null"]},
    "boolean": {"type": ["boolean", "null"]},
    "datetime": {"type": ["string", "null"], "format": "date-time"},
    "list": {"type": ["array", "null"]},
    "object": {"type": ["object", "null"]},
}


def column_name(prop: str) -> str:
    """The column of property `prop` (see the module docstring for the rule)."""
    if prop and "^" not in prop and '"' not in prop and prop.isprintable() and prop.islower():
        name = prop  # the common case, e.g. "$email", "plan", "utm.source"
    else:
        name = "".join(map(_escape, prop))
    if name in RESERVED or name.startswith(RESERVED_PREFIX) or not name:
        name += "^"
    return name


def _escape(char: str) -> str:
    if char == "^":
        return "^^"
    if char == '"':
        return "^'"
    code = ord(char)
    if code < 0x20 or code == 0x7F:
        return f"^#{code:x};"
    lower = char.lower()
    if lower == char:
        return char
    if len(lower) == 1 and lower.upper() == char:
        return "^" + lower
    return f"^#{code:x};"


def column_schema(mixpanel_type: str, prop: str) -> dict[str, t.Any]:
    """The JSON schema of `prop`'s column (an unknown type is text)."""
    schema = dict(COLUMN_SCHEMAS.get(mixpanel_type, COLUMN_SCHEMAS["string"]))
    kind = mixpanel_type if mixpanel_type in COLUMN_SCHEMAS else "string"
    schema["description"] = f"Mixpanel property {prop!r} ({kind}; null where a value is not)."
    return schema


# ---------------------------------------------------------------------------- values
_SKIP: t.Any = object()
_NOTHING: frozenset[type] = frozenset()


def _datetime(value: t.Any) -> t.Any:
    """A date-time DuckDB's TIMESTAMP cast takes (UTC, no offset), else _SKIP."""
    if type(value) is not str:
        return _SKIP
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return _SKIP
    if len(value) == 19 and value[10] == "T":
        return value  # Mixpanel's own form, YYYY-MM-DDTHH:MM:SS: as served
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return parsed.isoformat()


#: JSON schema type of a column -> the value types it takes as they are.
_TAKES: dict[str, frozenset[type]] = {
    "string": frozenset({str}),
    "number": frozenset({int, float}),  # bool is no int here: type() is exact
    "integer": frozenset({int}),
    "boolean": frozenset({bool}),
    "array": frozenset({list}),
    "object": frozenset({dict}),
}


def _column_kind(schema: dict[str, t.Any]) -> str | None:
    """ "datetime" or a key of _TAKES, from a column's JSON schema; None when the schema is
    none the tap fills (a column added to the catalog by hand, say)."""
    types = schema.get("type")
    kinds = {types} if isinstance(types, str) else set(types or ()) - {"null"}
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    if kind == "string" and schema.get("format") == "date-time":
        return "datetime"
    return kind if kind in _TAKES else None


class ColumnPlan:
    """The property columns of one stream's schema and how a profile fills them.

    Built from the schema in force; a property maps to a column by `column_name` alone, and
    properties without a column (new since discovery, past the cap) stay in `properties`.
    `apply` runs on worker threads: what it learns of a new property name is one entry in
    each map, the same whoever writes it first.
    """

    def __init__(self, schema: dict[str, t.Any], own: t.Collection[str]) -> None:
        props: dict[str, t.Any] = schema.get("properties") or {}
        #: column -> its kind ("datetime" or a JSON schema type of _TAKES)
        self.columns: dict[str, str] = {}
        for name, column in props.items():
            kind = _column_kind(column) if name not in own and isinstance(column, dict) else None
            if kind is not None:
                self.columns[name] = kind
        self._seen: set[str] = set()  # property names resolved so far
        self._names: dict[str, str] = {}  # property -> its column (properties with one)
        self._renamed: dict[str, str] = {}  # the same, for columns not named as the property
        self._takes: dict[str, frozenset[type]] = {}  # property -> value types taken as is
        self._datetimes: set[str] = set()  # properties of date-time columns

    def __bool__(self) -> bool:
        return bool(self.columns)

    def _learn(self, props: t.Iterable[str]) -> None:
        for prop in props:
            if prop in self._seen:
                continue
            name = column_name(prop)
            kind = self.columns.get(name)
            if kind is not None:
                self._names[prop] = name
                if name != prop:
                    self._renamed[prop] = name
                if kind == "datetime":
                    self._datetimes.add(prop)
                else:
                    self._takes[prop] = _TAKES[kind]
            self._seen.add(prop)

    def apply(self, record: dict[str, t.Any], props: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
        """Add to `record` the column value of every property of `props` that has one.

        One dict comprehension takes the values of their column's type as they are (keyed
        by the property: nearly every column is named so; the others are renamed after),
        and only date-time values are checked one by one (bench/run.py, section 9).
        """
        if not self._seen.issuperset(props):
            self._learn(props)
        takes = self._takes
        columns = {k: v for k, v in props.items() if type(v) in takes.get(k, _NOTHING)}
        renamed = self._renamed
        if renamed and not renamed.keys().isdisjoint(columns):
            # Popped first, then added: a property may be named like another's column
            # ("^plan" and "Plan"); the columns themselves never collide (injective rule).
            moved = {renamed[prop]: columns.pop(prop) for prop in renamed.keys() & columns.keys()}
            columns.update(moved)
        record.update(columns)
        if self._datetimes:
            names = self._names
            for prop in self._datetimes.intersection(props):
                value = _datetime(props[prop])
                if value is not _SKIP:
                    record[names[prop]] = value
        return record


MakeRecord = t.Callable[[t.Any], tuple[dict[str, t.Any], bool]]


def with_columns(make: MakeRecord, plan: ColumnPlan | None) -> MakeRecord:
    """`make` (an Engage result -> record maker) that also fills the plan's typed columns
    from the record's `properties` (as kept: a member row's are the asked ones)."""
    if not plan:
        return make
    apply = plan.apply

    def made(item: t.Any) -> tuple[dict[str, t.Any], bool]:
        record, flag = make(item)
        apply(record, properties_of(record["properties"]))
        return record, flag

    return made
