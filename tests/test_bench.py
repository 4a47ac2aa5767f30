"""The benchmark package: `python -m bench` and the old `python bench/run.py` both run, and no
module of bench/ outgrows a reading (each measurement is a module of its own).

Section 8 (the quota table) is arithmetic, so running it exercises the entry points, the
section registry, latest.json and latest.md without timing anything; no figure is asserted
but the table's arithmetic, which must be the tap's own plan-line arithmetic.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
MAX_BENCH_MODULE_LINES = 300


def test_no_bench_module_outgrows_a_reading() -> None:
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in BENCH.glob("*.py")}
    assert {k: v for k, v in sizes.items() if v > MAX_BENCH_MODULE_LINES} == {}


@pytest.mark.parametrize("entry", [["-m", "bench"], [str(BENCH / "run.py")]], ids=["-m", "run.py"])
def test_the_entry_points_run_a_section_and_write_the_results(
    entry: list[str], tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, *entry, "--only", "8", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["meta"]["sections"] == [8] and results["errors"] == {}
    rows = results["sections"]["quota"]["rows"]
    assert len(rows) == 9
    for row in rows:
        assert row["queries_counted"] == math.ceil(row["profiles"] / row["page_size"])
        assert row["queries_exempt"] == 1
    summary = (tmp_path / "latest.md").read_text()
    assert "## 8. What a sync costs in quota" in summary
    assert "| 1,000,000 | 1,000 | 1,000 | 16.67 |" in summary


def test_a_bad_section_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "12", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "sections are 1..9" in done.stderr
