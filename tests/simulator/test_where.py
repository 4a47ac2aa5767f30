"""Unit tests of the simulator's ``where`` evaluator (no HTTP; the 400 path: test_engage.py)."""

from __future__ import annotations

import pytest

from tap_mixpanel_profiles.simulator.where import WhereError, compile_where

PROFILE = {
    "$last_seen": "2024-06-15T12:00:00",
    "plan": "pro",
    "score": 42.5,
    "age": 30,
    "is_paying": True,
    "nothing": None,
    "name": 'Zoë "Z" \\ O\'Brien',
    "tags": ["a", "b"],
}


def matches(expr: str, props: dict | None = None) -> bool:
    predicate = compile_where(expr)
    assert predicate is not None
    return predicate(PROFILE if props is None else props)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('properties["$last_seen"] >= "2024-01-01T00:00:00"', True),
        ('properties["$last_seen"] >= "2024-06-15T12:00:00"', True),
        ('properties["$last_seen"] > "2024-06-15T12:00:00"', False),
        ('properties["$last_seen"] < "2024-06-15T12:00:01"', True),
        ('properties["$last_seen"] <= "2024-06-15T11:59:59"', False),
        ('properties["plan"] == "pro"', True),
        ('properties["plan"] != "pro"', False),
        ('properties["plan"] != "free"', True),
        ("properties['plan'] == 'pro'", True),
        ('properties["score"] > 42', True),
        ('properties["score"] >= 42.5', True),
        ('properties["score"] < 1e2', True),
        ('properties["age"] == 30', True),
        ('properties["age"] == 30.0', True),
        ('properties["age"] > -1', True),
        ('properties["is_paying"] == true', True),
        ('properties["is_paying"] != false', True),
        ('properties["name"] == "Zoë \\"Z\\" \\\\ O\'Brien"', True),
        ('properties["name"] == "Zo\\u00eb \\"Z\\" \\\\ O\'Brien"', True),
        ('properties["tags"] == "a"', False),
        ('"b" > "a"', True),
    ],
)
def test_comparisons(expr: str, expected: bool) -> None:
    assert matches(expr) is expected


@pytest.mark.parametrize(
    "expr",
    [
        'properties["missing"] == "x"',
        'properties["missing"] != "x"',
        'properties["missing"] >= ""',
        'properties["nothing"] == "x"',
        'properties["nothing"] != "x"',
    ],
)
def test_comparison_on_missing_or_null_is_false(expr: str) -> None:
    assert matches(expr) is False


def test_type_mismatch_is_never_equal_nor_ordered() -> None:
    assert matches('properties["age"] == "30"') is False
    assert matches('properties["age"] != "30"') is True
    assert matches('properties["age"] >= "0"') is False
    assert matches('properties["is_paying"] == 1') is False


def test_defined_and_not_defined() -> None:
    assert matches('defined (properties["plan"])') is True
    assert matches('defined(properties["missing"])') is False
    assert matches('defined properties["plan"]') is True
    assert matches('defined (properties["nothing"])') is False  # null counts as not set
    assert matches('not defined (properties["missing"])') is True
    assert matches('not defined (properties["$last_seen"])') is False


def test_and_or_not_parentheses_precedence() -> None:
    assert matches('properties["plan"] == "pro" and properties["age"] == 30') is True
    assert matches('properties["plan"] == "free" and properties["age"] == 30') is False
    assert matches('properties["plan"] == "free" or properties["age"] == 30') is True
    # "and" binds tighter than "or"
    assert (
        matches('properties["plan"] == "pro" or properties["age"] == 1 and properties["x"] == 2')
        is True
    )
    assert (
        matches('(properties["plan"] == "pro" or properties["age"] == 1) and properties["x"] == 2')
        is False
    )
    assert matches('not (properties["plan"] == "free") and ((defined(properties["age"])))') is True
    assert matches('not not defined(properties["plan"])') is True


def test_incremental_filter_with_missing_last_seen() -> None:
    expr = (
        'properties["$last_seen"] >= "2024-01-01T00:00:00" '
        'or not defined (properties["$last_seen"])'
    )
    assert matches(expr, {}) is True
    assert matches(expr, {"$last_seen": "2023-01-01T00:00:00"}) is False


@pytest.mark.parametrize("expr", ["", "   ", None])
def test_empty_where_means_no_filter(expr: str | None) -> None:
    assert compile_where(expr) is None


@pytest.mark.parametrize(
    "expr",
    [
        'properties["plan"] = "pro"',
        'properties["plan"] == ',
        'properties["plan"]',
        '"pro"',
        'properties[plan] == "pro"',
        'properties["plan" == "pro"',
        '(properties["plan"] == "pro"',
        'properties["plan"] == "pro")',
        'properties["plan"] == "pro" and',
        'properties["plan"] == "pro" xor properties["age"] == 1',
        'user["plan"] == "pro"',
        'properties["a"] == "b" == "c"',
        'properties["plan"] == "unterminated',
        'properties["plan"] == "bad \\q escape"',
        'defined("plan")',
        'not properties["plan"]',
        'properties["age"] in [1, 2]',
        'properties["plan"] == "pro" && properties["age"] == 30',
        "(" * 5000 + 'properties["a"] == 1' + ")" * 5000,
    ],
)
def test_invalid_expressions_raise(expr: str) -> None:
    with pytest.raises(WhereError):
        compile_where(expr)
