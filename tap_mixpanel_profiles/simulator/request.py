"""What a Query API request carries, checked: its credentials and its parameters.

* :func:`authenticate`: HTTP Basic credentials, a service account (which must name the project)
  or the legacy API secret, answered 401/403/400 like Mixpanel;
* the parameter readers (``int_param``, ``bool_param``, ``json_param``...): a missing or empty
  parameter reads as its default, a malformed one raises :class:`BadRequest` (answered 400).

These checks are stateless, so they live apart from the engine that keeps the project's state
and decides the order of checks (:mod:`.engage`); the export (:mod:`.export`) authenticates with
the same function.
"""

from __future__ import annotations

import base64
import binascii
import json
import typing as t

from .replies import Reply, error_reply

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .config import SimulatorConfig

__all__ = [
    "BadRequest",
    "authenticate",
    "bool_param",
    "int_param",
    "is_cohort",
    "is_str_list",
    "json_param",
    "optional_int_param",
]


class BadRequest(Exception):
    """A 400 answer raised from deep inside query parsing."""


def authenticate(
    cfg: SimulatorConfig, params: Mapping[str, str], header: str | None
) -> Reply | None:
    """None when the Basic credentials may query ``project_id``, else the 400/401/403 reply."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "basic" or not token:
        return error_reply(401, "Unauthorized: HTTP Basic authentication is required")
    try:
        user, _, secret = (
            base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        return error_reply(401, "Unauthorized: malformed Basic credentials")
    project = params.get("project_id")
    if user == cfg.service_account_username and secret == cfg.service_account_secret:
        if not project:
            return error_reply(
                400, "project_id is required when authenticating with a service account"
            )
    elif not (user == cfg.api_secret and secret == ""):
        return error_reply(401, "Unauthorized: invalid service account credentials or API secret")
    if project and project != cfg.project_id:
        return error_reply(
            403, f"Permission denied: credentials have no access to project {project}"
        )
    return None


def optional_int_param(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None


def int_param(params: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    value = optional_int_param(params, name)
    if value is None:
        return default
    if value < minimum:
        raise BadRequest(f"{name} must be >= {minimum}, got {value}")
    return value


def bool_param(params: Mapping[str, str], name: str, default: bool) -> bool:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise BadRequest(f"{name} must be true or false, got {raw!r}")


def json_param(
    params: Mapping[str, str], name: str, check: Callable[[t.Any], bool], shape: str
) -> t.Any:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise BadRequest(f"{name} must be {shape}, got invalid JSON") from None
    if not check(value):
        raise BadRequest(f"{name} must be {shape}")
    return value


def is_str_list(value: t.Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def is_cohort(value: t.Any) -> bool:
    cid = value.get("id") if isinstance(value, dict) else None
    if isinstance(cid, str) and cid.isdigit():
        cid = int(cid)
    return isinstance(cid, int) and not isinstance(cid, bool) and cid > 0
