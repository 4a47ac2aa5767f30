"""The simulator tests' shared fixture: one simulator per test module, without query limits."""

from __future__ import annotations

import typing as t

import pytest

from tap_mixpanel_profiles.simulator import MixpanelSimulator, SimulatorConfig

from .helpers import NOW, TODAY, N

if t.TYPE_CHECKING:
    from collections.abc import Iterator

SHARED_CONFIG = SimulatorConfig(
    profiles=N,
    now=NOW,
    concurrency_limit=0,
    hourly_limit=0,
    events_per_day=60,
    export_today=TODAY.isoformat(),
    export_hourly_limit=0,
    export_per_second_limit=0,
)


@pytest.fixture(scope="module")
def sim() -> Iterator[MixpanelSimulator]:
    """Shared simulator without Engage or export limits, for the semantics tests (limits and
    faults get their own simulators). Tests that change it at run time restore it."""
    with MixpanelSimulator(SHARED_CONFIG) as s:
        yield s
