"""Secrets never reach a log line, an error message or a SUMMARY: the one place that removes them.

Two layers, both here: `redact` for texts the tap builds itself (a server's error
body may echo the credentials back), and one process-wide logging filter as
defence in depth for every record any library logs.
"""

from __future__ import annotations

import logging
import typing as t

#: Values shorter than this are not redacted: masking every "s" in every line would only
#: make the logs unreadable (Mixpanel secrets are 32 characters).
MIN_SECRET_LENGTH = 6
MASK = "***"


def redact(text: str, secrets: t.Iterable[str]) -> str:
    """`text` with every one of `secrets` replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Replace secret values in every log record (rewrites the message; never drops one)."""

    def __init__(self, secrets: t.Sequence[str] = ()) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: t.Iterable[str]) -> None:
        """Redact these values too."""
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET_LENGTH and secret not in self.secrets:
                self.secrets.append(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the message in place; never drop a record."""
        if not self.secrets:
            return True
        message = record.getMessage()
        redacted = redact(message, self.secrets)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


#: One filter for the whole process: Tap instances come and go (tests, the SDK's
#: standard tests), the filter must not pile up on the root logger with each of them.
_FILTER = RedactingFilter()


def install(secrets: t.Iterable[str]) -> None:
    """Redact `secrets` from every log record from now on (the filter is installed once)."""
    root = logging.getLogger()
    _FILTER.add(secrets)
    for target in (root, *root.handlers):
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)
