"""scripts/_venv.sh picks the interpreter the loader needs, and says so when there is none.

Each machine is simulated by a PATH that holds every system command but only the chosen
Python interpreters (no pyenv): a machine with Python 3.12 and 3.13 builds the PyPI loader's
venv on 3.12; one whose only Python is 3.13 builds it on 3.13 (the Hub variant); one with no
Python gets one line naming what to install and a non-zero exit, from demo.sh and test.sh alike.
The full 3.13-only demo run is tests/e2e/test_demo.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers.hub import copy_project, fake_path, python_of_version, script_env, venv_sh


def interpreter(version: tuple[int, int]) -> Path:
    """An interpreter of `version` that the scripts find on this machine, or skip."""
    found = python_of_version(version)
    if found is None:
        pytest.skip(f"no Python {version[0]}.{version[1]} on this machine (PATH or pyenv)")
    return found


@pytest.mark.parametrize("script", ["demo.sh", "test.sh"])
def test_without_any_python_the_scripts_say_what_to_install(tmp_path: Path, script: str) -> None:
    project = copy_project(tmp_path / "project")
    path = fake_path(tmp_path / "bin")
    done = subprocess.run(
        ["bash", str(project / "scripts" / script)],
        env=script_env(path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("error: no Python 3.10 or newer found"), errors
    assert "install Python 3.12" in errors[0]
    assert "command not found" not in done.stderr + done.stdout
    assert not (project / ".venv").exists()


def test_a_machine_with_312_and_313_builds_the_pypi_loaders_venv_on_312(tmp_path: Path) -> None:
    py312, py313 = interpreter((3, 12)), interpreter((3, 13))
    path = fake_path(tmp_path / "bin", {"python3.12": py312, "python3.13": py313})
    done = venv_sh('echo "$(pick_python)|$(newest_python)"', env=script_env(path))
    picked, newest = done.stdout.strip().split("|")
    assert picked == str(tmp_path / "bin" / "python3.12"), done.stderr
    assert newest == f"13 {tmp_path / 'bin' / 'python3.13'}"


def test_a_machine_whose_only_python_is_313_builds_the_hub_venv(tmp_path: Path) -> None:
    py313 = interpreter((3, 13))
    path = fake_path(tmp_path / "bin", {"python3.13": py313, "python3": py313})
    venv = tmp_path / "venv"
    done = venv_sh(
        f'py="$(pick_python)" && "$py" -m venv --without-pip {venv} && venv_loader {venv}',
        env=script_env(path),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hub"


def test_python_overrides_the_search_and_is_checked(tmp_path: Path) -> None:
    path = fake_path(tmp_path / "bin")
    done = venv_sh("pick_python", env=script_env(path, PYTHON=str(tmp_path / "no-python")))
    assert done.returncode != 0
    assert done.stderr.strip() == (
        f"error: PYTHON={tmp_path / 'no-python'} is not a working Python 3.10 or newer"
    )
    py312 = interpreter((3, 12))
    done = venv_sh("pick_python", env=script_env(path, PYTHON=str(py312)))
    assert done.stdout.strip() == str(py312), done.stderr


def test_the_hub_wheel_is_found_next_to_the_checkout_or_through_the_variable(
    tmp_path: Path,
) -> None:
    wheel = tmp_path / "target_duckdb-0.9.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    done = venv_sh("hub_wheel", env=script_env("/usr/bin:/bin", TARGET_DUCKDB_WHEEL=str(wheel)))
    assert done.stdout.strip() == str(wheel)
    done = venv_sh(
        "hub_wheel", env=script_env("/usr/bin:/bin", TARGET_DUCKDB_WHEEL=str(tmp_path / "x.whl"))
    )
    assert done.returncode != 0 and done.stdout == ""
