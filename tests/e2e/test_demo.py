"""scripts/demo.sh end to end, in a copy of the checkout, on the two kinds of machine.

* A machine whose only Python is 3.13+ (a PATH with every system command but no other
  interpreter and no pyenv): demo.sh builds .venv on it from scratch and lands every profile
  with the Hub variant of target-duckdb and a current duckdb, installed by Meltano from
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


def run_demo(project: Path, env: dict[str, str], timeout: float = 900) -> str:
    done = subprocess.run(
        ["bash", str(project / "scripts" / "demo.sh")],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"demo.sh exited {done.returncode}:\n{done.stdout[-6000:]}"
    return done.stdout


def installed(python: Path, *packages: str) -> list[str]:
    code = "import importlib.metadata as m, sys; print(*(m.version(p) for p in sys.argv[1:]))"
    return subprocess.check_output([str(python), "-c", code, *packages], text=True).split()


def test_demo_on_a_machine_whose_only_python_is_313_lands_every_profile(tmp_path: Path) -> None:
    pip_url = require_hub_source()
    newest = python_of_version((3, 13), at_least=True)
    if newest is None:
        pytest.skip("no Python 3.13+ on this machine (PATH or pyenv)")
    minor = subprocess.check_output(
        [str(newest), "-c", "import sys; print(sys.version_info[1])"], text=True
    ).strip()
    project = copy_project(tmp_path / "project")
    path = fake_path(tmp_path / "bin", {f"python3.{minor}": newest, "python3": newest})
    env = script_env(
        path,
        TARGET_DUCKDB_PIP_URL=pip_url,
        DEMO_PROFILES=str(PROFILES),
        DEMO_LATENCY="0",
        TMPDIR=str(tmp_path),
    )
    out = run_demo(project, env)

    assert f"with Python 3.{minor} ({tmp_path / 'bin'}/python3.{minor})" in out, out[-3000:]
    assert "loader target-duckdb-hub" in out
    assert f"{PROFILES} profiles landed in output/demo-hub.duckdb" in out, out[-3000:]
    assert f"the simulator serves {PROFILES}." in out
    loader_python = project / ".meltano/loaders/target-duckdb-hub/venv/bin/python"
    target, duckdb = installed(loader_python, "target-duckdb", "duckdb")
    assert target == "0.9.0"
    assert tuple(int(p) for p in duckdb.split(".")[:2]) >= (1, 1), duckdb
    venv_minor = subprocess.check_output(
        [str(project / ".venv" / "bin" / "python"), "-c", "import sys; print(sys.version_info[1])"],
        text=True,
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
    out = run_demo(project, env)
    assert "loader target-duckdb (target-duckdb==0.8.0 duckdb==1.0.0)" in out, out[-3000:]
    assert re.search(rf"^{PROFILES} profiles landed in output/demo.duckdb ", out, re.M), out[-3000:]
    loader_python = project / ".meltano/loaders/target-duckdb/venv/bin/python"
    assert installed(loader_python, "target-duckdb", "duckdb") == ["0.8.0", "1.0.0"]
