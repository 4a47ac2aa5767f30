#!/usr/bin/env bash
# Run every check on a fresh machine: creates .venv, installs the tap with its dev extras
# (pytest, requests-mock, target-duckdb, duckdb, meltano, ruff, mypy), then runs, failing
# on the first finding:
#   ruff check .            lint of the whole repository (tests and bench included)
#   ruff format --check .   formatting
#   mypy                    strict type check of the package (configured in pyproject.toml)
#   pytest                  the test suite (extra arguments go to pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv
echo "== ruff check" >&2
"$VENV/bin/ruff" check .
echo "== ruff format --check" >&2
"$VENV/bin/ruff" format --check .
echo "== mypy" >&2
"$VENV/bin/mypy"
echo "== pytest" >&2
exec "$VENV/bin/python" -m pytest "$@"
