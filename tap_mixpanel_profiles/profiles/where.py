"""Engage `where` expressions: the helpers that build and combine them.

Mixpanel filters profiles with an expression language (`properties["plan"] ==
"pro"`). A sync adds clauses to the user's `where`: `$last_seen >= bookmark` for
incremental runs, and `$last_seen` ranges or `not defined` for the segments of
a split pass (see `passes`).
"""

from __future__ import annotations

import datetime as dt
import json
import re

#: Mixpanel's $last_seen format, YYYY-MM-DDTHH:MM:SS (also the bookmark's first 19 chars),
#: with each field in its range; group 1 is a day that only the calendar can judge (29-31).
LAST_SEEN_RE = re.compile(
    r"(?!0000)\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8]|(29|3[01]))"
    r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d",
    re.ASCII,  # \d: 0-9 only
)


def is_last_seen(value: str) -> bool:
    """True when `value` starts with a real $last_seen date-time (2024-13-45T99:00:00 is not).

    The pattern checks the shape and each field's range; only a day 29-31 (about 1 in 10)
    also needs the calendar, `fromisoformat` (this runs for every profile).
    """
    match = LAST_SEEN_RE.match(value)
    if match is None:
        return False
    if match.group(1) is None:
        return True
    try:
        dt.datetime.fromisoformat(value[:19])
    except ValueError:
        return False
    return True


def last_seen_clause(op: str, value: str) -> str:
    """An Engage `where` comparison on $last_seen (values are 'YYYY-MM-DDTHH:MM:SS')."""
    return f'properties["$last_seen"] {op} {json.dumps(value)}'


def combine_where(*clauses: str | None) -> str | None:
    """AND together the non-empty clauses, each parenthesised."""
    parts = [c for c in clauses if c]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return " and ".join(f"({c})" for c in parts)
