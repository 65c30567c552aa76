#!/usr/bin/env bash
# POST /v1/events throughput with PostgreSQL, release build: a throwaway
# PostgreSQL (initdb in a temp dir, private port, fsync on as in
# production), the service in front of it, then wrk POSTing events (each
# with its own Idempotency-Key) at a few connection counts, and finally
# SIGTERM under write load with the shutdown report's figures.
#
# Usage: bash benches/post_events.sh        (needs wrk, postgresql)
# Knobs: DURATION (s, default 10), CONNECTIONS (default "16 64").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-"16 64"}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
bindir=$(dirname "$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)")

work=$(mktemp -d)
pg_pid= service_pid=
cleanup() {
    [[ -n $service_pid ]] && kill -KILL "$service_pid" 2>/dev/null || true
    [[ -n $pg_pid ]] && kill -INT "$pg_pid" 2>/dev/null && wait "$pg_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

as_postgres=()
if [[ $(id -u) -eq 0 ]]; then
    chown postgres: "$work"
    as_postgres=(setpriv --reuid=postgres --regid=postgres --clear-groups --)
fi
port=$((20000 + RANDOM % 10000))
"${as_postgres[@]}" "$bindir/initdb" -D "$work/data" -U postgres -A trust >/dev/null
"${as_postgres[@]}" "$bindir/postgres" -D "$work/data" -p "$port" -k "$work" \
    -c listen_addresses=127.0.0.1 -c max_connections=100 >"$work/pg.log" 2>&1 &
pg_pid=$!
for _ in $(seq 100); do
    grep -q "ready to accept connections" "$work/pg.log" && break
    sleep 0.1
done
grep -q "ready to accept connections" "$work/pg.log" || { cat "$work/pg.log"; exit 1; }

cargo build --release -q
DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres" \
    target/release/gremlins-api --listen 127.0.0.1:0 2>"$work/service.log" &
service_pid=$!
for _ in $(seq 100); do
    grep -q "listening on" "$work/service.log" && break
    sleep 0.1
done
addr=$(grep -o "listening on [0-9.:]*" "$work/service.log" | awk '{print $3}')

cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"type":"bench","payload":{"user":42,"action":"signup"}}'
wrk.headers["Content-Type"] = "application/json"
local counter = 0
local thread_id = 0
setup = function(thread) thread_id = thread_id + 1; thread:set("tid", thread_id) end
request = function()
    counter = counter + 1
    wrk.headers["Idempotency-Key"] = string.format("bench-%d-%d-%d", tid, counter, math.random(1, 2^30))
    return wrk.format()
end
LUA

echo "| connections | events/s | p50 ms | p99 ms | non-2xx |"
echo "|---:|---:|---:|---:|---:|"
for c in $CONNECTIONS; do
    out=$(wrk -t2 -c"$c" -d"${DURATION}s" --latency -s "$work/post.lua" "http://$addr/v1/events")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
    echo "| $c | $rps | $p50 | $p99 | ${non2xx:-0} |"
done

# SIGTERM under write load: the report's phases.
wrk -t2 -c64 -d5s -s "$work/post.lua" "http://$addr/v1/events" >"$work/wrk-term.txt" 2>&1 &
wrk_pid=$!
sleep 2
start=$(date +%s%N)
kill -TERM "$service_pid"
wait "$service_pid" && code=0 || code=$?
end=$(date +%s%N)
service_pid=
wait "$wrk_pid" || true
echo
echo "SIGTERM under write load (64 connections): exit code $code after $(( (end - start) / 1000000 )) ms"
grep -o '{"shutdown_report".*' "$work/service.log"
psql=$(command -v psql || echo "$bindir/psql")
rows=$("$psql" -h 127.0.0.1 -p "$port" -U postgres -Atc "select count(*) from events")
echo "rows in PostgreSQL: $rows"
