"""`python bench/run.py`: the benchmarks' old entry point, kept; the same as `python -m bench`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a package

from bench.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
