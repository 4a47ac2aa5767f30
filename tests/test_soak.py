"""bench/soak.py's short form: every stream at once under faults, kills and a SIGTERM, exact.

`python -m bench.soak --short --seed N` must end with every table exactly what the simulator
serves (exit 0), and report a planted difference (one event row lost) with exit 1.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.helpers.e2e import REPO, clean_env

pytestmark = pytest.mark.e2e


def soak(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.soak", "--short", *args],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.parametrize("seed", [11, 12])
def test_the_short_soak_leaves_every_table_exact(seed: int) -> None:
    done = soak("--seed", str(seed))
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    line = done.stdout.strip().splitlines()[-1]
    assert line.endswith("EXACT"), line
    counts = re.search(r"(\d+) kills, (\d+) SIGTERMs", line)
    assert counts and int(counts.group(1)) >= 1 and sum(map(int, counts.groups())) >= 2, line
    for table in ("profiles", "group_profiles", "cohort_members", "cohorts", "events"):
        assert f" {table} " in line, line
    assert "duplicates or wrong rows: 0" in line and " 0 faults injected" not in line


def test_the_soak_fails_on_a_planted_difference() -> None:
    done = soak("--seed", "13", "--plant-difference")
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    assert "DIFFERENT: ['events']" in done.stdout
