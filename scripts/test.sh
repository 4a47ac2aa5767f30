#!/usr/bin/env bash
# Run every check on a fresh machine. Creates .venv (see scripts/_venv.sh for the Python it
# picks), installs the tap with its dev extras (pytest, requests-mock, meltano, the loader,
# ruff, mypy), then runs, failing on the first finding:
#   ruff check .            lint of the whole repository (tests and bench included)
#   ruff format --check .   formatting
#   mypy                    strict type check of the package (configured in pyproject.toml)
#   pytest                  the test suite (extra arguments go to pytest)
# A full run (no arguments) then also runs, on the newest Python it finds, in a second venv
# (.venv-py3.N, with MeltanoLabs' target-duckdb 0.9.0 and the newest duckdb):
#   the unit and integration tests again (not the e2e ones), when that Python is not the one
#   of .venv, and
#   the Hub-variant checks (pytest -m hub): tap | target-duckdb and `meltano run` with the
#   target-duckdb-hub loader of meltano.yml.
# The Hub variant (not on PyPI) comes from TARGET_DUCKDB_PIP_URL (a requirement list, like
# pip_url), else the wheel TARGET_DUCKDB_WHEEL or ../shared/wheels/target_duckdb-0.9.0-py3-none-
# any.whl. Without one, the Hub-variant checks are skipped and one line says so.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv
MAIN_VENV="$VENV"
MAIN_VERSION="$(python_version "$MAIN_VENV/bin/python")"

HUB_PIP_URL="${TARGET_DUCKDB_PIP_URL:-$(hub_wheel || true)}"
HUB_SKIP=""
[ -n "$HUB_PIP_URL" ] || HUB_SKIP="no source for target-duckdb 0.9.0: no wheel at ${TARGET_DUCKDB_WHEEL:-../shared/wheels/$HUB_WHEEL_NAME} and TARGET_DUCKDB_PIP_URL is not set (set TARGET_DUCKDB_WHEEL=/path/to/$HUB_WHEEL_NAME, or TARGET_DUCKDB_PIP_URL='$HUB_TARGET_DUCKDB_GIT')"
if [ "$(venv_loader "$MAIN_VENV")" = hub ]; then
  # Python 3.13+ only: the Hub variant is the loader of every test (from its git tag by default).
  HUB_PIP_URL="${HUB_PIP_URL:-$HUB_TARGET_DUCKDB_GIT}"
  HUB_SKIP=""
  echo "== installing target-duckdb (Hub variant) into .venv from: $HUB_PIP_URL" >&2
  ensure_hub_target "$MAIN_VENV" "$HUB_PIP_URL"
fi
export TARGET_DUCKDB_PIP_URL="$HUB_PIP_URL"

echo "== ruff check" >&2
"$MAIN_VENV/bin/ruff" check .
echo "== ruff format --check" >&2
"$MAIN_VENV/bin/ruff" format --check .
echo "== mypy" >&2
"$MAIN_VENV/bin/mypy"
echo "== pytest (Python $MAIN_VERSION, $MAIN_VENV)" >&2
"$MAIN_VENV/bin/python" -m pytest "$@"

if [ "$#" -gt 0 ]; then
  echo "== newest-Python unit tests and Hub-variant checks: only in a full run (no arguments)" >&2
  exit 0
fi

read -r NEW_MINOR NEW_PYTHON <<<"$(newest_python || true)"
if [ -z "${NEW_MINOR:-}" ] || [ "${MAIN_VERSION#3.}" -gt "$NEW_MINOR" ]; then
  # .venv's own interpreter (e.g. from PYTHON=...) is the newest.
  NEW_MINOR="${MAIN_VERSION#3.}" NEW_PYTHON="$(readlink -f "$MAIN_VENV/bin/python")"
fi
NEW_VERSION="3.$NEW_MINOR"
if [ "$NEW_VERSION" = "$MAIN_VERSION" ] && [ "$(venv_loader "$MAIN_VENV")" = hub ]; then
  echo "== Hub-variant checks ran above (.venv is Python $MAIN_VERSION with target-duckdb 0.9.0)" >&2
  exit 0
fi
if [ "$NEW_VERSION" = "$MAIN_VERSION" ] && [ -n "$HUB_SKIP" ]; then
  echo "== Hub-variant checks SKIPPED: $HUB_SKIP" >&2
  exit 0
fi

VENV="$PWD/.venv-py$NEW_VERSION"
PYTHON="$NEW_PYTHON" ensure_venv test
MARKERS="hub"
[ "$NEW_VERSION" = "$MAIN_VERSION" ] || MARKERS="not e2e or hub"
if [ -z "$HUB_SKIP" ]; then
  ensure_hub_target "$VENV" "$HUB_PIP_URL"
  echo "== Hub-variant checks on Python $NEW_VERSION ($VENV): target-duckdb $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("target-duckdb"), "with duckdb", m.version("duckdb"))') from $HUB_PIP_URL" >&2
else
  MARKERS="not e2e"
fi
echo "== pytest -m '$MARKERS' (Python $NEW_VERSION, $VENV)" >&2
"$VENV/bin/python" -m pytest -m "$MARKERS"
if [ -n "$HUB_SKIP" ]; then
  echo "== Hub-variant checks SKIPPED: $HUB_SKIP" >&2
fi
