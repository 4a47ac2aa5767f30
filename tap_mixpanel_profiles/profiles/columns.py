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
Convert = t.Callable[[t.Any], t.Any]
#: How one column takes a value: (column, the value type taken as it is, a converter for
#: the others that returns the column's value or _SKIP).
Spec = tuple[str, "type | None", "Convert | None"]
_SKIP: t.Any = object()


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


def _integer(value: t.Any) -> t.Any:
    """An int (not a bool) as it is, for a number column; else _SKIP."""
    return value if type(value) is int else _SKIP


def _taking(schema: dict[str, t.Any]) -> tuple[type | None, Convert | None] | None:
    """What a column takes, from its JSON schema; None when the schema is none the tap
    fills (a column added to the catalog by hand, say)."""
    types = schema.get("type")
    kinds = {types} if isinstance(types, str) else set(types or ()) - {"null"}
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    if kind == "string":
        return (None, _datetime) if schema.get("format") == "date-time" else (str, None)
    if kind == "number":
        return float, _integer
    if kind == "integer":
        return int, None
    taken = {"boolean": bool, "array": list, "object": dict}.get(kind)
    return None if taken is None else (taken, None)


class ColumnPlan:
    """The property columns of one stream's schema and how a profile fills them.

    Built from the schema in force; a property maps to a column by `column_name` alone, and
    properties without a column (new since discovery, past the cap) stay in `properties`.
    `apply` runs on worker threads: the memo it fills holds one entry per property name, the
    same whoever writes it first.
    """

    def __init__(self, schema: dict[str, t.Any], own: t.Collection[str]) -> None:
        props: dict[str, t.Any] = schema.get("properties") or {}
        self.columns: dict[str, tuple[type | None, Convert | None]] = {}
        for name, column in props.items():
            taking = _taking(column) if name not in own and isinstance(column, dict) else None
            if taking is not None:
                self.columns[name] = taking
        self._memo: dict[str, Spec | None] = {}

    def __bool__(self) -> bool:
        return bool(self.columns)

    def _resolve(self, prop: str) -> Spec | None:
        name = column_name(prop)
        taking = self.columns.get(name)
        spec = None if taking is None else (name, *taking)
        self._memo[prop] = spec
        return spec

    def apply(self, record: dict[str, t.Any], props: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
        """Add to `record` the column value of every property of `props` that has one.

        Per property: one dict look-up and one type test in the common case (measured in
        bench/run.py: the record path keeps >= 0.8x the profiles per CPU-second of no columns).
        """
        memo = self._memo
        for prop, value in props.items():
            spec = memo.get(prop, _SKIP)
            if spec is _SKIP:
                spec = self._resolve(prop)
            if spec is None:
                continue
            name, taken, convert = spec
            if type(value) is taken:
                record[name] = value
            elif convert is not None:
                value = convert(value)
                if value is not _SKIP:
                    record[name] = value
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
        apply(record, record["properties"])
        return record, flag

    return made
