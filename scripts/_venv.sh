# Shared by scripts/*.sh: create and fill the project's virtualenv.
# duckdb 1.0.0 (the version target-duckdb 0.8.0 loads every row with) ships wheels
# for CPython <= 3.12 only, so pick the newest such interpreter available.
VENV="${VENV:-$PWD/.venv}"

pick_python() {
  local candidate
  for candidate in python3.12 python3.11 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: need Python 3.10-3.12 (duckdb 1.0.0 has no wheels for newer versions)" >&2
  return 1
}

ensure_venv() {
  local stamp="$VENV/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)"
  if [ ! -x "$VENV/bin/python" ]; then
    "$(pick_python)" -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    "$VENV/bin/python" -m pip install --quiet -e ".[dev]"
    rm -f "$VENV"/.installed-*
    touch "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}
