#!/usr/bin/env bash
# The main job on a fresh machine, against the built-in Mixpanel simulator:
#   creates .venv (tap + meltano + target-duckdb), starts the simulator on a free port,
#   `meltano run`s the profiles-to-duckdb job in the demo environment into output/demo.duckdb,
#   prints how many profiles landed (vs. the simulator's count) and a sample query, and stops
#   the simulator. Exits non-zero if the run failed or a profile is missing.
#
# Knobs (env vars): DEMO_PROFILES (default 25000), DEMO_LATENCY (seconds per simulated
# response, default 0.2), DEMO_KEEP_STATE=1 to run incrementally from the previous demo's state
# instead of a full refresh into a fresh database.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh

PROFILES="${DEMO_PROFILES:-25000}"
LATENCY="${DEMO_LATENCY:-0.2}"
DB="output/demo.duckdb"

say() { printf '\n==> %s\n' "$*"; }

say "Setting up .venv (first time: a minute or two)"
ensure_venv

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

# The demo must not pick up real credentials exported for the prod environment.
for var in $(env | sed -n 's/^\(TAP_MIXPANEL_PROFILES_[A-Z_]*\)=.*/\1/p'); do unset "$var"; done
unset MELTANO_ENVIRONMENT
export TAP_MIXPANEL_PROFILES_API_URL="$SIM_URL"

mkdir -p output
RUN_ARGS=()
if [ "${DEMO_KEEP_STATE:-0}" != "1" ]; then
  rm -f "$DB" "$DB.wal"
  RUN_ARGS+=(--full-refresh)
fi

say "meltano install (plugin venvs under .meltano/)"
meltano --log-level=warning install

say "meltano run profiles-to-duckdb (environment: demo)"
started=$SECONDS
meltano --environment=demo run ${RUN_ARGS[@]+"${RUN_ARGS[@]}"} profiles-to-duckdb
echo "Job finished in $((SECONDS - started)) s."

say "Result"
EXPECTED="$("$VENV/bin/python" -c 'import json, sys, urllib.request
print(json.load(urllib.request.urlopen(sys.argv[1] + "/_stats"))["profiles"])' "$SIM_URL")"
"$VENV/bin/python" - "$DB" "$EXPECTED" <<'PY'
import sys

import duckdb

db, expected = sys.argv[1], int(sys.argv[2])
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
con.sql(query).show()
print("Explore it yourself:\n"
      f"  .venv/bin/python -c \"import duckdb; duckdb.connect('{db}').sql('FROM mixpanel.profiles LIMIT 5').show()\"")
if landed != expected or distinct != expected:
    sys.exit(f"error: expected {expected} profiles, found {landed} rows ({distinct} distinct ids)")
PY
