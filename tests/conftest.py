"""Shared fixtures: the fake Engage endpoint behind requests-mock, and a valid config."""

from __future__ import annotations

import os
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


@pytest.fixture(autouse=True, scope="session")
def _property_schema_cache(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[None]:
    """The tap's default property-schema cache ($XDG_CACHE_HOME/...) in a temporary directory
    for the whole session (tap processes inherit it), never the user's own cache."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old
