"""The installed copy of the Meltano project that the meltano.yml end-to-end tests share."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.helpers.e2e import REPO, meltano, ok

PROJECT_FILES = ("meltano.yml", "pyproject.toml", "README.md")


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the Meltano project after a plain `meltano install` (once per test session).

    No TARGET_DUCKDB_PIP_URL (clean_env drops it): the install must succeed without it, as
    README's quick start promises on a Python <= 3.12 machine.
    """
    if sys.version_info >= (3, 13):
        pytest.skip(
            "meltano.yml's default loader (target-duckdb 0.8.0 + duckdb 1.0.0) needs Python "
            "<= 3.12; on 3.13+ tests/e2e/test_hub_variant.py runs the target-duckdb-hub loader"
        )
    root = tmp_path_factory.mktemp("meltano-project")
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, root / name)
    shutil.copytree(
        REPO / "tap_mixpanel_profiles",
        root / "tap_mixpanel_profiles",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    (root / "output").mkdir()
    ok(meltano(root, "install", timeout=900))
    return root
