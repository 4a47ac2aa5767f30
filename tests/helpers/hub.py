"""The Hub variant of target-duckdb in tests, and the interpreters the scripts can see.

MeltanoLabs' target-duckdb (Meltano Hub's default variant) is not on PyPI. Tests install it
from `TARGET_DUCKDB_PIP_URL` (a requirement list, like Meltano's pip_url), else from the wheel
named by `TARGET_DUCKDB_WHEEL`, else from `<repo>/../shared/wheels/` (where this project's CI
keeps it); a fresh clone elsewhere has none of them, and the tests that need it skip, saying
why. scripts/test.sh installs it into the newest-Python venv and runs the `hub` tests there.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.e2e import REPO

WHEEL_NAME = "target_duckdb-0.9.0-py3-none-any.whl"
HUB_VERSION = (0, 9)


def hub_source() -> tuple[str | None, str]:
    """(the Hub variant's requirement list or None, where it comes from or why there is none)."""
    pip_url = os.environ.get("TARGET_DUCKDB_PIP_URL", "").strip()
    if pip_url:
        return pip_url, "TARGET_DUCKDB_PIP_URL"
    default = REPO.parent / "shared" / "wheels" / WHEEL_NAME
    wheel = Path(os.environ.get("TARGET_DUCKDB_WHEEL") or default)
    if wheel.is_file():
        return str(wheel.resolve()), str(wheel)
    return None, (
        f"Hub-variant checks skipped: no {WHEEL_NAME} at {wheel} and TARGET_DUCKDB_PIP_URL is "
        "not set (set TARGET_DUCKDB_WHEEL or TARGET_DUCKDB_PIP_URL to run them)"
    )


def require_hub_source() -> str:
    """The Hub variant's requirement list, or skip the test saying why there is none."""
    pip_url, why = hub_source()
    if pip_url is None:
        pytest.skip(why)
    return pip_url


def installed_target_version() -> tuple[int, ...] | None:
    """Version of the target-duckdb installed next to this interpreter (None: none is)."""
    try:
        text = importlib.metadata.version("target-duckdb")
    except importlib.metadata.PackageNotFoundError:
        return None
    return tuple(int(p) for p in text.split(".")[:3] if p.isdigit())


def require_hub_target() -> None:
    """Skip unless this venv's target-duckdb is the Hub variant (scripts/test.sh's second venv)."""
    version = installed_target_version()
    if version is None or version[:2] < HUB_VERSION:
        found = ".".join(map(str, version)) if version else "none"
        pytest.skip(
            f"this venv's target-duckdb is {found}, not the Hub variant 0.9: scripts/test.sh "
            "runs the `hub` tests in its newest-Python venv (.venv-py3.N)"
        )


# ----------------------------------------------------------------- the scripts' view of Python
def venv_sh(snippet: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `snippet` in bash from the repository root after sourcing scripts/_venv.sh."""
    return subprocess.run(
        ["bash", "-c", f"source scripts/_venv.sh && {snippet}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def python_of_version(version: tuple[int, int], *, at_least: bool = False) -> Path | None:
    """An interpreter the scripts would find (PATH, pyenv) of `version` (or newer), or None."""
    done = venv_sh("find_pythons || true")
    for line in done.stdout.splitlines():
        minor, _, path = line.partition(" ")
        found = (3, int(minor))
        if found == version or (at_least and found > version):
            return Path(path)
    return None


def fake_path(directory: Path, pythons: dict[str, Path] | None = None) -> str:
    """A PATH with every command of the system except Python interpreters (and pyenv), plus
    `pythons` (name -> interpreter): what a machine with exactly those Pythons looks like."""
    directory.mkdir(parents=True, exist_ok=True)
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        if not Path(folder).is_dir():
            continue
        for entry in sorted(Path(folder).iterdir()):
            name = entry.name
            if name.startswith(("python", "pyenv")) or (directory / name).exists():
                continue
            (directory / name).symlink_to(entry)
    for name, interpreter in (pythons or {}).items():
        (directory / name).symlink_to(interpreter)
    return str(directory)


def script_env(path: str, **extra: str) -> dict[str, str]:
    """The environment for running a script on a fake PATH (no pyenv, no venv, no settings)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYENV", "VIRTUAL_ENV", "TAP_MIXPANEL_PROFILES_", "TARGET_DUCKDB_"))
        and k not in ("PYTHON", "MELTANO_ENVIRONMENT")
    }
    env.update(PATH=path, NO_COLOR="1", **extra)
    return env


def copy_project(dest: Path, *, with_tests: bool = False) -> Path:
    """The files a user's checkout has (no .venv, no .meltano, no output) copied to `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("meltano.yml", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    folders = ("scripts", "tap_mixpanel_profiles", "target_config", "hub")
    for folder in (*folders, *(("tests",) if with_tests else ())):
        shutil.copytree(
            REPO / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    (dest / "output").mkdir(exist_ok=True)
    return dest
