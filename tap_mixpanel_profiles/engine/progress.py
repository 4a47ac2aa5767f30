"""Progress lines and the final summary, on stderr (stdout belongs to Singer messages).

One line per partition (page or date range) tells an operator watching a
multi-hour, quota-bound sync where it is and when it will end; the final JSON
line is for machines (CI, wrappers) and has the same keys for every stream.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
import typing as t


class Progress:
    """Counts partitions and rows for one stream; logs a line per finished partition."""

    def __init__(
        self,
        stream: str,
        logger: logging.Logger,
        unit: str = "page",
        budget: t.Callable[[], str] | None = None,
    ) -> None:
        self.stream = stream
        self._log = logger
        self._unit = unit
        self._budget = budget
        self.started = time.monotonic()
        self.fetched_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.rows = 0
        self.done = 0
        self.expected = 0
        self.failed: list[t.Any] = []

    def plan(self, partitions: int) -> None:
        """Announce more partitions to fetch (a segment's pages, a run's date chunks)."""
        self.expected += partitions

    def partition_done(self, label: str, rows: int) -> None:
        """Log one finished partition with totals, elapsed time, ETA and budget."""
        self.done += 1
        elapsed = time.monotonic() - self.started
        left = max(0, self.expected - self.done)
        eta = elapsed / self.done * left if self.done else 0.0
        budget = f", budget {self._budget()}" if self._budget else ""
        self._log.info(
            "%s %s: %d rows, %d total, %.1f s elapsed, ETA %.0f s%s",
            self.stream,
            label,
            rows,
            self.rows,
            elapsed,
            eta,
            budget,
        )

    def fail(self, ident: t.Any) -> None:
        """Record a partition that could not be fetched."""
        self.failed.append(ident)

    def summary(self, **extra: t.Any) -> dict[str, t.Any]:
        """The machine-readable summary (also written to stderr by `emit_summary`)."""
        return {
            "type": "SUMMARY",
            "stream": self.stream,
            "total_rows": self.rows,
            f"successful_{self._unit}s": self.done,
            f"failed_{self._unit}s": len(self.failed),
            "duration_seconds": round(time.monotonic() - self.started, 3),
            "fetched_at": self.fetched_at,
            **extra,
        }

    def emit_summary(self, **extra: t.Any) -> dict[str, t.Any]:
        """Write the summary as one JSON line on stderr and return it."""
        summary = self.summary(**extra)
        sys.stderr.write(json.dumps(summary, default=str) + "\n")
        sys.stderr.flush()
        return summary
