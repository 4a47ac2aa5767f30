"""Typed property columns: the naming rule, the values each column takes, the fast path."""

from __future__ import annotations

import logging
import random
import typing as t

import pytest
from singer_sdk.helpers._typing import conform_record_data_types
from singer_sdk.helpers.conform import TypeConformanceLevel

from tap_mixpanel_profiles.engine.records import conformance_is_identity
from tap_mixpanel_profiles.profiles.columns import (
    RESERVED,
    ColumnPlan,
    column_name,
    column_schema,
    with_columns,
)
from tap_mixpanel_profiles.profiles.engage import to_record
from tap_mixpanel_profiles.profiles.stream import PROFILE_SCHEMA

NAMES = {
    "$email": "$email",
    "plan": "plan",
    "Plan": "^plan",
    "UTM_Medium": "^u^t^m_^medium",
    "utm_medium": "utm_medium",
    "Favorite Color": "^favorite ^color",
    "utm.source": "utm.source",
    'say "cheese"': "say ^'cheese^'",
    "a^b": "a^^b",
    "distinct_id": "distinct_id^",
    "distinct_id^": "distinct_id^^",
    "last_seen": "last_seen^",
    "properties": "properties^",
    "data_group_id": "data_group_id^",
    "_sdc_batched_at": "_sdc_batched_at^",
    "": "^",
    "名前": "名前",
    "x\ny": "x^#a;y",
}


@pytest.mark.parametrize(("prop", "column"), sorted(NAMES.items()))
def test_column_names_follow_the_documented_rule(prop: str, column: str) -> None:
    assert column_name(prop) == column


def _awkward_name(rng: random.Random) -> str:
    alphabet = "aAbBzZ_ .$^\"'-1éÉß\u03c3\u03a3\u0130\u01c5\u212a\n"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 6)))


def test_the_rule_is_injective_after_lower_casing_and_never_clashes() -> None:
    rng = random.Random(7)
    names = {_awkward_name(rng) for _ in range(20_000)} | set(NAMES) | RESERVED
    columns: dict[str, str] = {}
    for prop in names:
        column = column_name(prop)
        # What target-duckdb does to a name: quote it and lower-case the whole string.
        loaded = f'"{column}"'.lower()[1:-1]
        assert loaded == column, (prop, column)
        assert '"' not in column and column.isprintable()
        assert column not in RESERVED, "a property never takes one of the tap's own columns"
        assert not column.startswith("_sdc_") or column.endswith("^"), "nor a loader's one"
        assert columns.setdefault(loaded, prop) == prop, (prop, columns[loaded])


def test_each_mixpanel_type_has_the_column_type_the_loader_maps() -> None:
    assert column_schema("number", "n")["type"] == ["number", "null"]
    assert column_schema("boolean", "b")["type"] == ["boolean", "null"]
    assert column_schema("datetime", "d")["format"] == "date-time"
    assert column_schema("list", "l")["type"] == ["array", "null"]
    assert column_schema("object", "o")["type"] == ["object", "null"]
    assert column_schema("string", "s")["type"] == ["string", "null"]
    assert column_schema("unknown", "u")["type"] == ["string", "null"], "unknown types: text"


def schema_with(**types: str) -> dict[str, t.Any]:
    schema = dict(PROFILE_SCHEMA)
    schema["properties"] = {
        **PROFILE_SCHEMA["properties"],
        **{column_name(p): column_schema(k, p) for p, k in types.items()},
    }
    return schema


SCHEMA = schema_with(
    n="number", b="boolean", d="datetime", s="string", l="list", o="object", Plan="string"
)
PLAN = ColumnPlan(SCHEMA, own=PROFILE_SCHEMA["properties"])


@pytest.mark.parametrize(
    ("prop", "value", "column_value"),
    [
        ("n", 3, 3),
        ("n", 2.5, 2.5),
        ("n", "12", None),
        ("n", True, None),
        ("b", False, False),
        ("b", 1, None),
        ("b", "yes", None),
        ("d", "2024-01-02T03:04:05", "2024-01-02T03:04:05"),
        ("d", "2024-01-02", "2024-01-02T00:00:00"),
        ("d", "2024-01-02T03:04:05+02:00", "2024-01-02T01:04:05"),
        ("d", "2024-02-30T10:00:00", None),
        ("d", "1638298874", None),
        ("d", "15/08/53895", None),
        ("d", 1638298874, None),
        ("s", "text", "text"),
        ("s", 5, None),
        ("s", ["a"], None),
        ("l", ["a", {"b": 1}], ["a", {"b": 1}]),
        ("l", {"a": 1}, None),
        ("o", {"a": [1]}, {"a": [1]}),
        ("o", [1], None),
        ("Plan", "Gold", "Gold"),
        ("x_unlisted", "kept in JSON only", None),
    ],
)
def test_a_value_of_another_type_is_null_in_its_column(
    prop: str, value: t.Any, column_value: t.Any
) -> None:
    record = PLAN.apply({}, {prop: value, "null": None})
    assert record.get(column_name(prop)) == column_value
    assert set(record) <= {column_name(prop)}, "only the property's own column, if any"


def test_records_keep_every_property_in_json_and_add_the_columns() -> None:
    item = {
        "$distinct_id": "u1",
        "$properties": {"n": 1.5, "Plan": "Gold", "plan": "pro", "s": None, "new": 1},
    }
    record, _ = with_columns(to_record, PLAN)(item)
    assert record["properties"] == item["$properties"], "the JSON column stays whole"
    assert record["n"] == 1.5 and record["^plan"] == "Gold"
    assert "plan" not in record and "s" not in record and "new" not in record


def test_typed_records_pass_the_sdks_conformance_unchanged() -> None:
    """Why typed columns keep the fast record path: the SDK would write the same record."""
    assert not conformance_is_identity(SCHEMA), "a boolean column is refused unless typed"
    assert conformance_is_identity(SCHEMA, PLAN.columns)
    rng = random.Random(3)
    values = [None, 0, 7, -1.25, 1e300, True, False, "", "x", "2024-01-02", [1, [2]], {"a": {}}]
    for _ in range(500):
        props = {p: rng.choice(values) for p in ("n", "b", "d", "s", "l", "o", "Plan", "z")}
        record, _ = with_columns(to_record, PLAN)({"$distinct_id": "u", "$properties": props})
        conformed = conform_record_data_types(
            "profiles", record, SCHEMA, TypeConformanceLevel.RECURSIVE, logging.getLogger()
        )
        assert conformed == record
        assert [type(v) for v in conformed.values()] == [type(v) for v in record.values()]


def test_a_property_named_like_another_propertys_column_keeps_its_own_column() -> None:
    schema = schema_with(Plan="string", **{"^plan": "string"})
    plan = ColumnPlan(schema, own=PROFILE_SCHEMA["properties"])
    for _ in range(20):  # set order varies between runs: repeat
        record = plan.apply({}, {"^plan": "caret", "Plan": "capital"})
        assert record == {"^^plan": "caret", "^plan": "capital"}


def test_a_plan_ignores_columns_it_does_not_fill() -> None:
    schema = schema_with(n="number")
    schema["properties"]["odd"] = {"type": ["string", "integer"]}  # hand-edited catalog
    plan = ColumnPlan(schema, own=PROFILE_SCHEMA["properties"])
    assert set(plan.columns) == {"n"}
    assert not ColumnPlan(PROFILE_SCHEMA, own=PROFILE_SCHEMA["properties"])
