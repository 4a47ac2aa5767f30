"""scripts/demo.sh (and test.sh) end to end, in a copy of the checkout, on two kinds of machine.

* A machine whose only Python is 3.13+ (a PATH with every system command but no other
  interpreter and no pyenv): test.sh builds .venv on it from scratch, installs the Hub variant
  of target-duckdb into it and passes ruff, mypy and a test file; demo.sh then lands every
  profile with target-duckdb-hub and a current duckdb, installed by Meltano from
  TARGET_DUCKDB_PIP_URL (here the wheel; users get the git tag by default).
* This machine's own venv (Python <= 3.12): the PyPI loader, as before.

Both keep DEMO_PROFILES and the "N profiles landed" line.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.hub import (
    copy_project,
    fake_path,
    python_of_version,
    require_hub_source,
    script_env,
)

pytestmark = pytest.mark.e2e

PROFILES = 3000


def run_script(project: Path, script: str, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        ["bash", str(project / "scripts" / script), *args],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout[-6000:]}"
    return done.stdout


def installed(python: Path, *packages: str) -> list[str]:
    code = "import importlib.metadata as m, sys; print(*(m.version(p) for p in sys.argv[1:]))"
    return subprocess.check_output([str(python), "-c", code, *packages], text=True).split()


def test_scripts_on_a_machine_whose_only_python_is_313(tmp_path: Path) -> None:
    """test.sh builds .venv on 3.13 with the Hub variant and passes its checks; then demo.sh
    (on that venv) lands every profile through the target-duckdb-hub loader."""
    pip_url = require_hub_source()
    newest = python_of_version((3, 13), at_least=True)
    if newest is None:
        pytest.skip("no Python 3.13+ on this machine (PATH or pyenv)")
    minor = subprocess.check_output(
        [str(newest), "-c", "import sys; print(sys.version_info[1])"], text=True
    ).strip()
    project = copy_project(tmp_path / "project", with_tests=True)
    path = fake_path(tmp_path / "bin", {f"python3.{minor}": newest, "python3": newest})
    env = script_env(
        path,
        TARGET_DUCKDB_PIP_URL=pip_url,
        DEMO_PROFILES=str(PROFILES),
        DEMO_LATENCY="0",
        TMPDIR=str(tmp_path),
    )
    checks = run_script(project, "test.sh", env, "tests/test_settings.py", "-q")
    assert f"with Python 3.{minor} ({tmp_path / 'bin'}/python3.{minor})" in checks, checks[-3000:]
    assert f"installing target-duckdb (Hub variant) into .venv from: {pip_url}" in checks
    assert "All checks passed!" in checks and "Success: no issues found" in checks
    assert re.search(r"^\d+ passed", checks, re.M), checks[-3000:]
    venv_python = project / ".venv" / "bin" / "python"
    assert installed(venv_python, "target-duckdb")[0] == "0.9.0"

    out = run_script(project, "demo.sh", env)
    assert "loader target-duckdb-hub" in out, out[-3000:]
    assert f"{PROFILES} profiles landed in output/demo-hub.duckdb" in out, out[-3000:]
    assert f"the simulator serves {PROFILES}." in out
    loader_python = project / ".meltano/loaders/target-duckdb-hub/venv/bin/python"
    target, duckdb = installed(loader_python, "target-duckdb", "duckdb")
    assert target == "0.9.0"
    assert tuple(int(p) for p in duckdb.split(".")[:2]) >= (1, 1), duckdb
    venv_minor = subprocess.check_output(
        [str(venv_python), "-c", "import sys; print(sys.version_info[1])"], text=True
    ).strip()
    assert venv_minor == minor
    assert not (project / ".meltano" / "loaders" / "target-duckdb").exists(), (
        "the PyPI loader (python3.11) must not be installed on a 3.13-only machine"
    )


def test_demo_with_this_machines_venv_uses_the_pypi_loader(tmp_path: Path) -> None:
    venv = Path(sys.prefix)
    if sys.version_info >= (3, 13):
        pytest.skip("this venv is Python 3.13+: the PyPI loader needs Python <= 3.12")
    project = copy_project(tmp_path / "project")
    stamp = hashlib.sha1((project / "pyproject.toml").read_bytes()).hexdigest()[:12]
    if not (venv / f".installed-dev-{stamp}").exists():
        pytest.skip(f"{venv} was not made by scripts/_venv.sh from this pyproject.toml")
    env = script_env(
        f"{venv / 'bin'}:/usr/bin:/bin",
        VENV=str(venv),
        DEMO_PROFILES=str(PROFILES),
        DEMO_LATENCY="0",
        TMPDIR=str(tmp_path),
    )
    out = run_script(project, "demo.sh", env)
    assert "loader target-duckdb (target-duckdb==0.8.0 duckdb==1.0.0)" in out, out[-3000:]
    assert re.search(rf"^{PROFILES} profiles landed in output/demo.duckdb ", out, re.M), out[-3000:]
    loader_python = project / ".meltano/loaders/target-duckdb/venv/bin/python"
    assert installed(loader_python, "target-duckdb", "duckdb") == ["0.8.0", "1.0.0"]
