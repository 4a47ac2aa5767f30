"""One setting's value, checked: the small validators `settings` builds its Settings with.

Each reads `cfg[name]` (the config with defaults applied) and returns the typed value, or
raises ConfigError with one line naming the setting and what it must be.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import typing as t

from tap_mixpanel_profiles.errors import ConfigError


def parse_date(value: t.Any) -> dt.date:
    """A `YYYY-MM-DD` day; an ISO date-time is accepted and its date part used.

    Raises ValueError for anything else.
    """
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str):
        msg = f"not a date: {value!r}"
        raise ValueError(msg)
    text = value.strip()
    if len(text) > 10 and text[10] in "T ":
        dt.datetime.fromisoformat(text.replace("Z", "+00:00"))  # the rest must be valid too
        text = text[:10]
    if len(text) != 10:
        msg = f"not a YYYY-MM-DD date: {value!r}"
        raise ValueError(msg)
    return dt.date.fromisoformat(text)


def as_text(cfg: t.Mapping[str, t.Any], name: str) -> str:
    value = cfg.get(name)
    if value is None:
        return ""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ConfigError(f"Setting '{name}' must be a string.")
    return str(value).strip()


def as_counting(cfg: t.Mapping[str, t.Any], name: str) -> bool | None:
    """true / false / auto (also as text, as Meltano's `options` pass them); auto is None."""
    value = cfg.get(name)
    text = value.strip().lower() if isinstance(value, str) else value
    if text in (True, "true"):
        return True
    if text in (False, "false"):
        return False
    if text == "auto":
        return None
    raise ConfigError(f"Setting '{name}' must be true, false or auto (got {value!r}).")


def as_positive_int(cfg: t.Mapping[str, t.Any], name: str, minimum: int = 1) -> int:
    value = cfg.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"Setting '{name}' must be an integer >= {minimum} (got {value!r}).")
    return value


def as_positive_number(cfg: t.Mapping[str, t.Any], name: str, *, allow_zero: bool = False) -> float:
    value = cfg.get(name)
    if isinstance(value, decimal.Decimal):  # the SDK parses JSON floats as Decimal
        value = float(value)
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"Setting '{name}' must be a number {bound} (got {value!r}).")
    return float(t.cast("float", value))


def as_date(cfg: t.Mapping[str, t.Any], name: str) -> dt.date | None:
    value = cfg.get(name)
    if value is None or value == "":
        return None
    try:
        return parse_date(value)
    except ValueError:
        raise ConfigError(f"Setting '{name}' must be a date YYYY-MM-DD (got {value!r}).") from None


def as_id_list(cfg: t.Mapping[str, t.Any], name: str, minimum: int) -> tuple[int, ...] | None:
    """A list of integer ids >= minimum (duplicates dropped, order kept), or None when unset."""
    value = cfg.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value
    ):
        raise ConfigError(
            f"Setting '{name}' must be a list of integer ids >= {minimum} (got {value!r})."
        )
    return tuple(dict.fromkeys(value))
