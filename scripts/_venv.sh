# Shared by scripts/*.sh: find a Python, create and fill the project's virtualenv.
#
# The loader decides the Python (docs/python-and-loaders.md, "The two target-duckdb
# variants"):
#   pypi  Python 3.10-3.12: target-duckdb 0.8.0 with duckdb 1.0.0 from PyPI (the dev extra;
#         duckdb 1.0.0 has wheels for CPython <= 3.12 only). Preferred: it is what meltano.yml's
#         default loader runs.
#   hub   Python 3.13+ (when no 3.10-3.12 is found): MeltanoLabs' target-duckdb (Meltano Hub's
#         variant, not on PyPI) with a current duckdb, from TARGET_DUCKDB_PIP_URL (a
#         space-separated requirement list, like pip_url) or else its git tag.
# PYTHON=/path/to/python overrides the search. Interpreters are looked up on PATH as
# python3.N / python3, and among pyenv's installed versions when pyenv is on PATH.
VENV="${VENV:-$PWD/.venv}"
HUB_TARGET_DUCKDB_GIT="git+https://github.com/MeltanoLabs/target-duckdb.git@v0.9.0"
HUB_WHEEL_NAME="target_duckdb-0.9.0-py3-none-any.whl"
PY_MINORS="14 13 12 11 10"

# "3.12" for a working interpreter, nothing (and status 1) otherwise.
python_version() {
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null
}

# Every usable interpreter (3.10+), one "MINOR PATH" line each, newest first.
find_pythons() {
  local minor exe root found=()
  for minor in $PY_MINORS; do
    for exe in "python3.$minor" python3; do
      exe="$(command -v "$exe" 2>/dev/null)" || continue
      [ "$(python_version "$exe")" = "3.$minor" ] && found+=("$minor $exe")
    done
    if command -v pyenv >/dev/null 2>&1 && root="$(pyenv root 2>/dev/null)"; then
      for exe in "$root"/versions/3."$minor".*/bin/python3."$minor"; do
        [ -x "$exe" ] && [ "$(python_version "$exe")" = "3.$minor" ] && found+=("$minor $exe")
      done
    fi
  done
  [ "${#found[@]}" -gt 0 ] && printf '%s\n' "${found[@]}"
}

no_python() {
  echo "error: no Python 3.10 or newer found (looked for python3.10 ... python3.14 and python3 on PATH): install Python 3.12 (or 3.13+), or set PYTHON=/path/to/python3" >&2
  return 1
}

# The interpreter for the project's venv: PYTHON, else the newest 3.10-3.12, else the newest 3.13+.
pick_python() {
  local version pythons pick
  if [ -n "${PYTHON:-}" ]; then
    if ! version="$(python_version "$PYTHON")" || [ "${version#3.}" -lt 10 ]; then
      echo "error: PYTHON=$PYTHON is not a working Python 3.10 or newer${version:+ (it is $version)}" >&2
      return 1
    fi
    echo "$PYTHON"
    return 0
  fi
  pythons="$(find_pythons)" || { no_python; return 1; }
  pick="$(awk '$1 <= 12' <<<"$pythons" | head -n 1)"
  [ -n "$pick" ] || pick="$(head -n 1 <<<"$pythons")"
  echo "${pick#* }"
}

# The newest interpreter found ("MINOR PATH"), for the second test venv.
newest_python() {
  find_pythons | head -n 1
}

# "pypi" when a venv's Python takes target-duckdb 0.8.0 + duckdb 1.0.0, "hub" from 3.13 on.
venv_loader() {
  local minor
  minor="$(python_version "${1:-$VENV}/bin/python")" || return 1
  if [ "${minor#3.}" -le 12 ]; then echo pypi; else echo hub; fi
}

# The Hub variant's wheel for tests and CI (not in the repository): TARGET_DUCKDB_WHEEL, or
# ../shared/wheels/ next to the checkout.
hub_wheel() {
  local wheel="${TARGET_DUCKDB_WHEEL:-$PWD/../shared/wheels/$HUB_WHEEL_NAME}"
  [ -f "$wheel" ] && echo "$(cd "$(dirname "$wheel")" && pwd)/$(basename "$wheel")"
}

_hash() { { sha1sum 2>/dev/null || shasum; } | cut -c1-12; }

# pip install into a venv, quietly, with one clear line when it fails.
venv_pip() {
  local venv="$1"; shift
  if ! "$venv/bin/python" -m pip install --quiet "$@"; then
    echo "error: pip install $* failed in $venv (see the pip output above)" >&2
    return 1
  fi
}

# Create $VENV (if missing) and install the tap with EXTRA into it (when pyproject.toml changed).
ensure_venv() {
  local extra="${1:-dev}"
  if [ ! -x "$VENV/bin/python" ]; then
    local py
    py="$(pick_python)" || return 1
    echo "Creating $VENV with Python $(python_version "$py") ($py)" >&2
    "$py" -m venv --clear "$VENV" || { echo "error: $py -m venv failed" >&2; return 1; }
  fi
  local stamp
  stamp="$VENV/.installed-$extra-$(_hash < pyproject.toml)"
  if [ ! -f "$stamp" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    venv_pip "$VENV" -e ".[$extra]" || return 1
    rm -f "$VENV"/.installed-*
    touch "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}

# Install the Hub variant of target-duckdb into VENV from a requirement list (default:
# TARGET_DUCKDB_PIP_URL, else the git tag), with the newest duckdb; once per list.
ensure_hub_target() {
  local venv="$1" pip_url="${2:-${TARGET_DUCKDB_PIP_URL:-$HUB_TARGET_DUCKDB_GIT}}"
  local stamp
  stamp="$venv/.hub-target-$(echo "$pip_url" | _hash)"
  [ -f "$stamp" ] && return 0
  # shellcheck disable=SC2086  # a space-separated requirement list, like Meltano's pip_url
  venv_pip "$venv" --upgrade $pip_url duckdb || return 1
  rm -f "$venv"/.hub-target-*
  touch "$stamp"
}
