"""Run the tap in this process (on requests-mock fakes) and read what it wrote.

`TapMixpanelProfiles(...).run()` is what the command line runs after parsing its
arguments: the same pre-flight, sync and end-of-run outcome, without a process.
"""

from __future__ import annotations

import dataclasses
import json
import typing as t

import pytest

from tap_mixpanel_profiles.errors import TapError
from tap_mixpanel_profiles.tap import TapMixpanelProfiles
from tests.helpers.engage_fake import base_config


@dataclasses.dataclass
class Sync:
    """What one in-process run wrote (stdout messages, stderr) and raised."""

    messages: list[dict[str, t.Any]]
    stderr: str
    error: TapError | None

    @property
    def records(self) -> list[dict[str, t.Any]]:
        return [m["record"] for m in self.messages if m["type"] == "RECORD"]

    @property
    def ids(self) -> list[str]:
        return [r["distinct_id"] for r in self.records]

    @property
    def states(self) -> list[dict[str, t.Any]]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def summary(self) -> dict[str, t.Any]:
        lines = [
            json.loads(line)
            for line in self.stderr.splitlines()
            if line.startswith('{"type": "SUMMARY"')
        ]
        assert len(lines) == 1, self.stderr
        return lines[0]


def sync(capsys: pytest.CaptureFixture[str], **overrides: t.Any) -> Sync:
    """Run the tap on base_config(**overrides); the messages, stderr and the error it raised."""
    capsys.readouterr()
    error: TapError | None = None
    try:
        TapMixpanelProfiles(config=base_config(**overrides)).run()
    except TapError as exc:
        error = exc
    out, err = capsys.readouterr()
    return Sync([json.loads(line) for line in out.splitlines() if line.strip()], err, error)
