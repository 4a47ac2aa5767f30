"""Shared fixtures: the fake Engage endpoint behind requests-mock, and a valid config."""

from __future__ import annotations

import typing as t

import pytest

from tests.helpers.engage_fake import BASE_URL, EngageFake, base_config


@pytest.fixture
def config() -> dict[str, t.Any]:
    """A valid config (service account auth, fast retries); tests copy and tweak it."""
    return base_config()


@pytest.fixture
def engage(requests_mock: t.Any) -> t.Callable[..., EngageFake]:
    """Factory: `engage(n_profiles, served_page_size=..., delay=...)` → an installed EngageFake."""

    def make(profiles: t.Any = 0, *, base_url: str = BASE_URL, **kwargs: t.Any) -> EngageFake:
        return EngageFake(profiles, **kwargs).install(requests_mock, base_url)

    return make
