#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: creates .venv, installs the tap with
# its dev extras (pytest, requests-mock, target-duckdb 0.8.0 + duckdb 1.0.0, meltano),
# then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv
exec "$VENV/bin/python" -m pytest "$@"
