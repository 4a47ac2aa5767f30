"""What the command line reads before any stream runs: --config, --state and --catalog files.

A scheduler needs a bad input to end in one line that names the file and exit
code 3, not in a traceback from deep inside the SDK: a --config file that is
missing or not JSON, a --state or --catalog file that is not JSON. STATE of the
wrong shape (a hand-edited file, a bookmark written by another tool) is not
fatal: the part that cannot be read is dropped with a warning naming it, and
the stream it belonged to syncs from scratch, as it would with no STATE at all.
"""

from __future__ import annotations

import decimal
import json
import logging
import typing as t
from pathlib import Path

from tap_mixpanel_profiles.errors import ConfigError

#: Keys of a stream's bookmark that the SDK itself walks before any stream runs.
_SDK_LIST_KEYS = ("partitions",)
_SDK_OBJECT_KEYS = ("progress_markers",)


def parse_json_object(text: str, what: str, name: str) -> dict[str, t.Any]:
    """`text` as a JSON object (floats as Decimal, as the SDK reads them), or one ConfigError.

    The message names the file and where the JSON breaks, never its content:
    a config file holds secrets.
    """
    try:
        data = json.loads(text, parse_float=decimal.Decimal)
    except ValueError as exc:
        raise ConfigError(f"The {what} file {name} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"The {what} file {name} must hold a JSON object (found {type(data).__name__})."
        )
    return data


def read_json_handle(handle: t.IO[str] | None, what: str) -> dict[str, t.Any] | None:
    """A --state or --catalog file (an open handle, as click passes it), or one clear error."""
    if handle is None:
        return None
    return parse_json_object(handle.read(), what, str(getattr(handle, "name", what)))


def read_config_file(path: str) -> dict[str, t.Any]:
    """One --config file, or one clear error naming it (missing, unreadable, not JSON)."""
    file = Path(path)
    if not file.is_file():
        reason = "is a directory" if file.is_dir() else "was not found"
        raise ConfigError(f"The config file {path} {reason}.")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"The config file {path} cannot be read: {exc}") from None
    return parse_json_object(text, "config", path)


def sanitize_state(state: t.Mapping[str, t.Any], logger: logging.Logger) -> dict[str, t.Any]:
    """`state` without the parts the SDK or the streams cannot read, each dropped with a warning.

    The SDK iterates `bookmarks` and each stream's entry (and its `partitions`
    and `progress_markers`) before any stream runs, so a string where an object
    belongs would otherwise end the run with a traceback. A dropped stream entry
    means that stream starts over (a full sync); well-formed entries, including
    those of streams this tap does not know, are kept as they are.
    """
    clean = dict(state)
    bookmarks = clean.get("bookmarks")
    if bookmarks is None:
        return clean
    if not isinstance(bookmarks, dict):
        logger.warning(
            "Ignoring STATE: 'bookmarks' must be an object, found %s; every stream starts over.",
            _describe(bookmarks),
        )
        clean["bookmarks"] = {}
        return clean
    kept: dict[str, t.Any] = {}
    for stream, entry in bookmarks.items():
        problem = _entry_problem(entry)
        if problem:
            logger.warning(
                "Ignoring the STATE of stream %r: %s; it starts over (full sync).",
                stream,
                problem,
            )
            continue
        kept[stream] = entry
    clean["bookmarks"] = kept
    return clean


def _entry_problem(entry: t.Any) -> str | None:
    """Why a stream's bookmark cannot be read (None when it can)."""
    if not isinstance(entry, dict):
        return f"expected an object, found {_describe(entry)}"
    for key in _SDK_LIST_KEYS:
        value = entry.get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(p, dict) for p in value)
        ):
            return f"'{key}' must be a list of objects, found {_describe(value)}"
    for key in _SDK_OBJECT_KEYS:
        value = entry.get(key)
        if value is not None and not isinstance(value, dict):
            return f"'{key}' must be an object, found {_describe(value)}"
    return None


def _describe(value: t.Any) -> str:
    """A short, safe description of a value found in STATE (type and a clipped repr)."""
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"
