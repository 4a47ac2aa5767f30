#!/usr/bin/env bash
# The main job on a fresh machine, against the built-in Mixpanel simulator:
#   creates .venv (tap + meltano), starts the simulator on a free port, `meltano run`s the job
#   in the demo environment, prints how many profiles landed (vs. the simulator's count) and a
#   sample query, and stops the simulator. Exits non-zero if the run failed or a profile is
#   missing.
#
# The loader follows the Python (scripts/_venv.sh): with a Python 3.10-3.12, the job
# profiles-to-duckdb (target-duckdb 0.8.0 + duckdb 1.0.0) into output/demo.duckdb; on a machine
# whose only Python is 3.13+, the job profiles-to-duckdb-hub (MeltanoLabs' target-duckdb, Meltano
# Hub's variant, with a current duckdb) into output/demo-hub.duckdb, installed from
# TARGET_DUCKDB_PIP_URL when set (a space-separated requirement list, like pip_url) or else from
# its git tag.
#
# Knobs (env vars): DEMO_PROFILES (default 25000), DEMO_LATENCY (seconds per simulated
# response, default 0.2), DEMO_KEEP_STATE=1 to run incrementally from the previous demo's state
# instead of a full refresh into a fresh database, DEMO_LOADER=pypi|hub to choose the loader,
# PYTHON=/path/to/python to choose the interpreter of a new .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh

PROFILES="${DEMO_PROFILES:-25000}"
LATENCY="${DEMO_LATENCY:-0.2}"

say() { printf '\n==> %s\n' "$*"; }

say "Setting up .venv (first time: a minute or two)"
ensure_venv
LOADER="${DEMO_LOADER:-$(venv_loader)}"
case "$LOADER" in
  pypi)
    TARGET=target-duckdb JOB=profiles-to-duckdb DB=output/demo.duckdb
    SOURCE="target-duckdb==0.8.0 duckdb==1.0.0" ;;
  hub)
    TARGET=target-duckdb-hub JOB=profiles-to-duckdb-hub DB=output/demo-hub.duckdb
    # meltano.yml's pip_url for this loader is "${TARGET_DUCKDB_PIP_URL} duckdb".
    export TARGET_DUCKDB_PIP_URL="${TARGET_DUCKDB_PIP_URL:-$HUB_TARGET_DUCKDB_GIT}"
    SOURCE="$TARGET_DUCKDB_PIP_URL duckdb" ;;
  *)
    echo "error: DEMO_LOADER must be pypi or hub (got '$LOADER')" >&2; exit 2 ;;
esac
echo "Python $(python_version "$VENV/bin/python") in $VENV; loader $TARGET ($SOURCE)"

RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/mixpanel-demo.XXXXXX")"
SIM_PID=""
cleanup() {
  if [ -n "$SIM_PID" ] && kill -0 "$SIM_PID" 2>/dev/null; then
    kill "$SIM_PID" 2>/dev/null || true
    wait "$SIM_PID" 2>/dev/null || true
    echo "Simulator stopped."
  fi
  rm -rf "$RUN_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "Starting the Mixpanel simulator ($PROFILES profiles, ${LATENCY}s latency)"
"$VENV/bin/python" -m tap_mixpanel_profiles.simulator --profiles "$PROFILES" --latency "$LATENCY" \
  --port 0 --url-file "$RUN_DIR/url" >"$RUN_DIR/simulator.log" 2>&1 &
SIM_PID=$!
for _ in $(seq 1 300); do
  [ -s "$RUN_DIR/url" ] && break
  if ! kill -0 "$SIM_PID" 2>/dev/null; then
    echo "error: the simulator exited early:" >&2; cat "$RUN_DIR/simulator.log" >&2; exit 1
  fi
  sleep 0.1
done
[ -s "$RUN_DIR/url" ] || { echo "error: the simulator did not start within 30 s" >&2; exit 1; }
SIM_URL="$(cat "$RUN_DIR/url")"
echo "Simulator listening on $SIM_URL"

# The demo must not pick up real credentials or a database path exported for the prod
# environment (TARGET_DUCKDB_PIP_URL, the Hub loader's source, is not a setting: it stays).
for var in $(env | sed -n 's/^\(TAP_MIXPANEL_PROFILES_[A-Z_]*\|TARGET_DUCKDB_[A-Z_]*\)=.*/\1/p'); do
  [ "$var" = TARGET_DUCKDB_PIP_URL ] || unset "$var"
done
unset MELTANO_ENVIRONMENT
export TAP_MIXPANEL_PROFILES_API_URL="$SIM_URL"

mkdir -p output
RUN_ARGS=()
if [ "${DEMO_KEEP_STATE:-0}" != "1" ]; then
  rm -f "$DB" "$DB.wal"
  RUN_ARGS+=(--full-refresh)
fi

say "meltano install tap-mixpanel-profiles $TARGET (plugin venvs under .meltano/)"
meltano --log-level=warning install tap-mixpanel-profiles "$TARGET"

say "meltano run $JOB (environment: demo)"
started=$SECONDS
meltano --environment=demo run ${RUN_ARGS[@]+"${RUN_ARGS[@]}"} "$JOB"
echo "Job finished in $((SECONDS - started)) s."

say "Result"
EXPECTED="$("$VENV/bin/python" -c 'import json, sys, urllib.request
print(json.load(urllib.request.urlopen(sys.argv[1] + "/_stats"))["profiles"])' "$SIM_URL")"
# Read the file with the loader's own duckdb: a file written by a newer duckdb cannot be
# opened by an older one.
READER=".meltano/loaders/$TARGET/venv/bin/python"
[ -x "$READER" ] || READER="$VENV/bin/python"
"$READER" - "$DB" "$EXPECTED" "$READER" <<'PY'
import sys

import duckdb

db, expected, reader = sys.argv[1], int(sys.argv[2]), sys.argv[3]
con = duckdb.connect(db, read_only=True)
# execute().fetchall(): duckdb 2.x relations have no fetchone().
((landed, distinct),) = con.execute(
    "SELECT count(*), count(DISTINCT distinct_id) FROM mixpanel.profiles").fetchall()
print(f"{landed} profiles landed in {db} (table mixpanel.profiles); the simulator serves {expected}.")
query = """
SELECT properties->>'plan'                                   AS plan,
       count(*)                                              AS profiles,
       count(*) FILTER (WHERE last_seen >= now() - INTERVAL 30 DAY) AS seen_last_30d,
       round(avg(CAST(properties->>'score' AS DOUBLE)), 1)   AS avg_score,
       any_value(properties->>'$."$city"')                   AS a_city
FROM mixpanel.profiles
GROUP BY ALL
ORDER BY profiles DESC"""
print("\nSample query (properties is a JSON column):" + query + ";\n")
cursor = con.execute(query)
columns = [d[0] for d in cursor.description]
rows = [[str(v) for v in row] for row in cursor.fetchall()]
widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
for line in (columns, ["-" * w for w in widths], *rows):
    print("  ".join(v.ljust(w) for v, w in zip(line, widths)))
print("\nExplore it yourself (with the duckdb that wrote the file):\n"
      f"  {reader} -c \"import duckdb; print(duckdb.connect('{db}', read_only=True)"
      ".execute('FROM mixpanel.profiles LIMIT 5').fetchall())\"")
if landed != expected or distinct != expected:
    sys.exit(f"error: expected {expected} profiles, found {landed} rows ({distinct} distinct ids)")
PY
