"""A small evaluator for the subset of Mixpanel's ``where`` expressions the simulator accepts.

The tap only ever sends simple filters (mostly ``properties["$last_seen"] >= "..."``), so the
simulator deliberately supports a narrow, well-defined grammar and rejects everything else with
a :class:`WhereError` (served as HTTP 400). Being strict here is the point: a tap that builds a
malformed expression should fail loudly against the simulator, just as it would against Mixpanel.

Grammar (keywords are case-sensitive, like Mixpanel's)::

    expr       := and_expr ("or" and_expr)*
    and_expr   := unary ("and" unary)*
    unary      := "not" unary | comparison
    comparison := operand (OP operand)?          # a bare operand must be boolean (see below)
    operand    := "defined" "(" prop ")" | "defined" prop
                | "(" expr ")" | prop | STRING | NUMBER | "true" | "false"
    prop       := "properties" "[" STRING "]"
    OP         := ">=" | ">" | "<=" | "<" | "==" | "!="

Semantics:

* ``defined(prop)`` is true when the key exists and its value is not ``null``.
* A comparison where either side is missing or ``null`` is false (for every operator, ``!=``
  included), so profiles without ``$last_seen`` never match an incremental filter.
* Numbers compare numerically, strings lexically (ISO timestamps without offset therefore compare
  chronologically), booleans only with ``==``/``!=``. Values of different types are never equal
  (``==`` false, ``!=`` true, ordering operators false).

The parser compiles the expression into nested closures once, so evaluating it against 200 000
profiles on page 0 costs a few function calls per profile.
"""

from __future__ import annotations

import re
import typing as t
from collections.abc import Callable

__all__ = ["WhereError", "compile_where"]

Predicate = Callable[[dict[str, t.Any]], bool]
Getter = Callable[[dict[str, t.Any]], t.Any]

_MISSING = object()
_MAX_LENGTH = 20_000

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<op>>=|<=|==|!=|>|<)
  | (?P<punct>[()\[\]])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "/": "/",
    "\\": "\\",
    '"': '"',
    "'": "'",
}


class WhereError(ValueError):
    """The ``where`` expression is not valid; the message is shown to the client (HTTP 400)."""


def _decode_string(token: str) -> str:
    """Decode a quoted literal (either quote style) with JSON-like escapes."""
    body, out, i = token[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = body[i + 1]
        if esc == "u":
            digits = body[i + 2 : i + 6]
            if not re.fullmatch(r"[0-9a-fA-F]{4}", digits):
                raise WhereError(f"invalid \\u escape in string literal {token!r}")
            out.append(chr(int(digits, 16)))
            i += 6
        elif esc in _ESCAPES:
            out.append(_ESCAPES[esc])
            i += 2
        else:
            raise WhereError(f"invalid escape \\{esc} in string literal {token!r}")
    return "".join(out)


def _tokenize(text: str) -> list[tuple[str, t.Any, int]]:
    tokens: list[tuple[str, t.Any, int]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise WhereError(f"unexpected character {text[pos]!r} at position {pos}")
        kind = m.lastgroup or ""
        raw = m.group()
        if kind == "string":
            tokens.append(("literal", _decode_string(raw), pos))
        elif kind == "number":
            value: t.Any = float(raw) if any(c in raw for c in ".eE") else int(raw)
            tokens.append(("literal", value, pos))
        elif kind == "ident" and raw in ("true", "false"):
            tokens.append(("literal", raw == "true", pos))
        elif kind != "ws":
            tokens.append((kind if kind != "punct" else raw, raw, pos))
        pos = m.end()
    tokens.append(("end", None, pos))
    return tokens


def _type_class(value: t.Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def _compare(op: str, left: t.Any, right: t.Any) -> bool:
    if left is _MISSING or right is _MISSING or left is None or right is None:
        return False
    lt, rt = _type_class(left), _type_class(right)
    if lt != rt:
        return op == "!="
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if lt not in ("number", "string"):
        return False
    if op == ">=":
        return bool(left >= right)
    if op == ">":
        return bool(left > right)
    if op == "<=":
        return bool(left <= right)
    return bool(left < right)


def _make_comparison(op: str, left: Getter, right: Getter) -> Predicate:
    return lambda props: _compare(op, left(props), right(props))


def _make_or(left: Predicate, right: Predicate) -> Predicate:
    return lambda props: left(props) or right(props)


def _make_and(left: Predicate, right: Predicate) -> Predicate:
    return lambda props: left(props) and right(props)


def _make_not(inner: Predicate) -> Predicate:
    return lambda props: not inner(props)


def _make_defined(getter: Getter) -> Predicate:
    return lambda props: getter(props) not in (_MISSING, None)


def _make_literal(value: t.Any) -> Getter:
    return lambda _props: value


class _Bool(t.NamedTuple):
    """A parsed node that yields a truth value: a comparison, ``defined(...)``, and/or/not."""

    test: Predicate


class _Value(t.NamedTuple):
    """A parsed node that yields a value: a property or a literal."""

    get: Getter


_Node: t.TypeAlias = "_Bool | _Value"


class _Parser:
    """Recursive-descent parser producing :class:`_Bool` or :class:`_Value` nodes."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, t.Any, int]:
        return self.tokens[self.i]

    def next(self) -> tuple[str, t.Any, int]:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, kind: str, what: str) -> tuple[str, t.Any, int]:
        tok = self.next()
        if tok[0] != kind:
            found = "end of input" if tok[0] == "end" else repr(tok[1])
            raise WhereError(f"expected {what} at position {tok[2]}, found {found}")
        return tok

    def is_keyword(self, word: str) -> bool:
        tok = self.peek()
        return tok[0] == "ident" and tok[1] == word

    def parse(self) -> Predicate:
        pred = self.boolean(self.expr(), "the expression")
        tok = self.peek()
        if tok[0] != "end":
            raise WhereError(f"unexpected {tok[1]!r} at position {tok[2]}")
        return pred

    @staticmethod
    def boolean(node: _Node, where: str) -> Predicate:
        if not isinstance(node, _Bool):
            raise WhereError(f"{where} must be a comparison, defined(...) or a logical expression")
        return node.test

    def expr(self) -> _Node:
        node = self.and_expr()
        while self.is_keyword("or"):
            self.next()
            left = self.boolean(node, "operand of 'or'")
            right = self.boolean(self.and_expr(), "operand of 'or'")
            node = _Bool(_make_or(left, right))
        return node

    def and_expr(self) -> _Node:
        node = self.unary()
        while self.is_keyword("and"):
            self.next()
            left = self.boolean(node, "operand of 'and'")
            right = self.boolean(self.unary(), "operand of 'and'")
            node = _Bool(_make_and(left, right))
        return node

    def unary(self) -> _Node:
        if self.is_keyword("not"):
            self.next()
            inner = self.boolean(self.unary(), "operand of 'not'")
            return _Bool(_make_not(inner))
        return self.comparison()

    def comparison(self) -> _Node:
        left = self.operand()
        if self.peek()[0] != "op":
            return left
        op = self.next()[1]
        right = self.operand()
        if not (isinstance(left, _Value) and isinstance(right, _Value)):
            raise WhereError(f"operator {op!r} needs a property or literal on both sides")
        return _Bool(_make_comparison(op, left.get, right.get))

    def prop(self) -> Getter:
        tok = self.next()
        if tok[0] != "ident" or tok[1] != "properties":
            raise WhereError(f'expected properties["name"] at position {tok[2]}')
        self.expect("[", "'['")
        name = self.expect("literal", "a quoted property name")[1]
        if not isinstance(name, str):
            raise WhereError("property names must be quoted strings")
        self.expect("]", "']'")

        def getter(props: dict[str, t.Any]) -> t.Any:
            return props.get(name, _MISSING)

        return getter

    def operand(self) -> _Node:
        tok = self.peek()
        if tok[0] == "literal":
            self.next()
            return _Value(_make_literal(tok[1]))
        if tok[0] == "(":
            self.next()
            node = self.expr()
            self.expect(")", "')'")
            return node
        if tok[0] == "ident" and tok[1] == "defined":
            self.next()
            paren = self.peek()[0] == "("
            if paren:
                self.next()
            getter = self.prop()
            if paren:
                self.expect(")", "')'")
            return _Bool(_make_defined(getter))
        if tok[0] == "ident" and tok[1] == "properties":
            return _Value(self.prop())
        shown = tok[1] if tok[0] != "end" else "end of input"
        raise WhereError(f"unexpected {shown!r} at position {tok[2]}")


def compile_where(text: str | None) -> Predicate | None:
    """Compile ``text`` into a predicate over a profile's ``$properties`` dict.

    Returns ``None`` for an empty/blank expression (no filtering), raises :class:`WhereError`
    for anything outside the supported grammar.
    """
    if text is None or not text.strip():
        return None
    if len(text) > _MAX_LENGTH:
        raise WhereError(f"where expression longer than {_MAX_LENGTH} characters")
    try:
        return _Parser(text).parse()
    except RecursionError:
        raise WhereError("where expression nested too deeply") from None
    except IndexError:
        raise WhereError("where expression ends inside a string escape") from None
