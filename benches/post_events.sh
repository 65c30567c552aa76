#!/usr/bin/env bash
# POST /v1/events with PostgreSQL: the release gremlins-api against
# axum-events (axum, tokio-postgres and deadpool-postgres running the same
# SQL), each with POOL PostgreSQL connections, against one throwaway
# PostgreSQL (initdb in a temporary directory, a free port on 127.0.0.1,
# fsync on as in production). Per connection count, the servers
# interleaved, a fresh server each: a warm-up, wrk for events/s and p99,
# then wrk again while perf stat counts the server's CPU time, syscalls and
# context switches per request. Then SIGTERM to gremlins-api under write
# load (its shutdown report), and a check that every event answered 2xx is
# a row in the table. See benches/README.md.
#
# Every server listens on 127.0.0.1 only, every load is bounded in time,
# and every process this script starts is tracked by PID and ended on exit.
# Exits 1 if an event answered 2xx is missing from the table.
#
#   bash benches/post_events.sh                  # needs wrk, perf, postgresql
#   DURATION=3 CONNECTIONS=16 bash benches/post_events.sh
set -euo pipefail

# ---------------------------------------------------------------- knobs ----
DURATION=${DURATION:-10}               # seconds of each measured wrk run
CONNECTIONS=${CONNECTIONS:-16,64}      # wrk -c (commas or spaces)
SERVERS=${SERVERS:-gremlins,axum-events}
POOL=${POOL:-16}                       # PostgreSQL connections per server: gremlins-api --workers, axum-events --pool
WARMUP=${WARMUP:-1}                    # seconds of wrk before measuring (0: none), so both pools are open
PERF_DELAY=${PERF_DELAY:-1}            # perf starts this many seconds into the second wrk run
PERF_SECS=${PERF_SECS:-}               # and counts for this many; default DURATION - PERF_DELAY - 1, at least 1
TERM_CONNECTIONS=${TERM_CONNECTIONS:-64} # SIGTERM under write load: wrk -c
GREMLINS_ARGS=${GREMLINS_ARGS:-}       # extra gremlins-api flags
BUILD=${BUILD:-1}                      # 0: use the binaries as they are
OUT_DIR=${OUT_DIR:-}                   # raw outputs and report.md

# Bounds on waits, in seconds.
READY_TIMEOUT=15 # a server answering GET / after start
STOP_TIMEOUT=15  # a server exiting after SIGTERM
PG_TIMEOUT=30    # PostgreSQL starting, and stopping
# SIGTERM under write load: its wrk run, and when SIGTERM goes (s into it).
TERM_SECS=5
TERM_AFTER=2

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BENCH_NAME=post_events
# shellcheck source=benches/common.sh
source "$here/common.sh"

# --------------------------------------------------------------- checks ----
[[ -n $PERF_SECS ]] || PERF_SECS=$((DURATION - PERF_DELAY - 1 > 0 ? DURATION - PERF_DELAY - 1 : 1))
((PERF_DELAY + PERF_SECS < DURATION)) || die "PERF_DELAY + PERF_SECS must be below DURATION"
for s in ${SERVERS//,/ }; do
  in_list "$s" gremlins,axum-events || die "unknown server '$s' in SERVERS (gremlins, axum-events)"
done
command -v wrk >/dev/null || die "wrk is missing (Debian: apt-get install wrk)"
command -v cargo >/dev/null || die "cargo is missing"
perf_check
find_postgres || die "PostgreSQL is missing (Debian: apt-get install postgresql)"

if [[ -z $OUT_DIR ]]; then
  OUT_DIR=$(mktemp -d -t gremlins-post-events.XXXXXX)
fi
mkdir -p "$OUT_DIR/logs" "$OUT_DIR/raw"
report="$OUT_DIR/report.md"
: >"$report"
emit() { printf '%s\n' "$*" | tee -a "$report"; }
raise_fd_limit

# ---------------------------------------------------------------- build ----
if ((BUILD)); then
  if in_list gremlins "$SERVERS"; then
    log "building gremlins-api (release)"
    (cd "$root" && cargo build --release --quiet --bin gremlins-api)
  fi
  log "building axum-events and loadgen (release)"
  cargo build --release --quiet --manifest-path "$ref_dir/Cargo.toml" --target-dir "$ref_dir/target"
fi
[[ -x $loadgen ]] || die "no loadgen at $loadgen (run with BUILD=1)"

# -------------------------------------------------------------- helpers ----
db_url=

# start_server NAME PORT: starts it against the PostgreSQL of this run, waits
# until GET / is answered, sets SERVER_PID and SERVER_LOG.
start_server() {
  local name=$1 port=$2 addr="127.0.0.1:$2"
  local -a cmd
  case $name in
    gremlins)
      # One PostgreSQL connection per worker: --workers is its pool size.
      # shellcheck disable=SC2206 # GREMLINS_ARGS is split on purpose
      cmd=("$gremlins_bin" --listen "$addr" --database-url "$db_url" --workers "$POOL" $GREMLINS_ARGS)
      ;;
    axum-events) cmd=("$ref_bin/axum-events" "$addr" "$db_url" --pool "$POOL") ;;
  esac
  SERVER_LOG="$OUT_DIR/logs/$name-$port.log"
  "${cmd[@]}" >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  own "$SERVER_PID"
  if ! "$loadgen" probe --addr "$addr" --pid "$SERVER_PID" --timeout-secs "$READY_TIMEOUT"; then
    tail -n 20 "$SERVER_LOG" >&2 || true
    die "$name did not answer on $addr (log: $SERVER_LOG)"
  fi
}

# Every wrk run POSTs events whose Idempotency-Key starts with the run's
# label (its last argument), so the rows of each run can be counted.
post_lua="$OUT_DIR/post.lua"
cat >"$post_lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"type":"bench","payload":{"user":42,"action":"signup"}}'
wrk.headers["Content-Type"] = "application/json"
local counter = 0
local thread_id = 0
local label = "bench"
setup = function(thread) thread_id = thread_id + 1; thread:set("tid", thread_id) end
init = function(args) label = args[1] or label end
request = function()
    counter = counter + 1
    wrk.headers["Idempotency-Key"] = string.format("%s-%d-%d", label, tid, counter)
    return wrk.format()
end
LUA

# runs.tsv: one line per wrk run: label, server, connections, phase,
# requests answered, non-2xx, socket errors.
runs="$OUT_DIR/runs.tsv"
: >"$runs"

# post_wrk LABEL PORT CONNS SECONDS [WRK_FLAG...]: wrk POSTing events to
# 127.0.0.1:PORT in the background, the keys prefixed with LABEL (passed to
# the script's init); sets WRK_PID and WRK_OUT.
post_wrk() {
  local label=$1 port=$2 conns=$3 secs=$4
  shift 4
  WRK_OUT="$OUT_DIR/raw/wrk-$label.txt"
  wrk -t2 -c"$conns" -d"${secs}s" "$@" -s "$post_lua" "http://127.0.0.1:$port/v1/events" "$label" >"$WRK_OUT" 2>&1 &
  WRK_PID=$!
  own "$WRK_PID"
}

# wrk_done LABEL NAME CONNS PHASE: waits for WRK_PID and records its run.
wrk_done() {
  wait "$WRK_PID" || log "wrk exited non-zero (see $WRK_OUT)"
  disown_pid "$WRK_PID"
  local errs
  errs=$(($(wrk_field "$WRK_OUT" connect) + $(wrk_field "$WRK_OUT" read) + $(wrk_field "$WRK_OUT" write) + $(wrk_field "$WRK_OUT" timeout)))
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$(wrk_field "$WRK_OUT" requests)" \
    "$(wrk_field "$WRK_OUT" non2xx)" "$errs" >>"$runs"
}

# --------------------------------------------------------------- measure ----
# results.tsv: server, connections, events/s, p99 ms, CPU µs, syscalls and
# context switches per request (perf run), exit code after SIGTERM.
results="$OUT_DIR/results.tsv"
: >"$results"
servers=${SERVERS//,/ }
conns_list=${CONNECTIONS//,/ }

measure() {
  local name=$1 conns=$2 label=$1-c$2 port rps p99 perf_rps sys cs cpu_ms csv
  port=$("$loadgen" free-port)
  start_server "$name" "$port"
  if ((WARMUP > 0)); then
    log "$name -c$conns: warm-up ${WARMUP}s"
    post_wrk "$label-warmup" "$port" "$conns" "$WARMUP"
    wrk_done "$label-warmup" "$name" "$conns" warmup
  fi

  log "$name -c$conns: wrk ${DURATION}s"
  post_wrk "$label-plain" "$port" "$conns" "$DURATION" --latency
  wrk_done "$label-plain" "$name" "$conns" plain
  rps=$(wrk_field "$WRK_OUT" rps)
  p99=$(wrk_field "$WRK_OUT" p99)

  log "$name -c$conns: wrk ${DURATION}s, perf for ${PERF_SECS}s from ${PERF_DELAY}s"
  csv="$OUT_DIR/raw/perf-$label.csv"
  post_wrk "$label-perf" "$port" "$conns" "$DURATION"
  sleep "$PERF_DELAY"
  perf_count "$SERVER_PID" "$PERF_SECS" "$csv" || log "perf stat failed (see $csv)"
  wrk_done "$label-perf" "$name" "$conns" perf
  perf_rps=$(wrk_field "$WRK_OUT" rps)
  stop_server "$SERVER_PID"

  sys=$(perf_event "$csv" raw_syscalls:sys_enter)
  cs=$(perf_event "$csv" context-switches)
  cpu_ms=$(perf_event "$csv" task-clock)
  # Requests in perf's window: the perf run's req/s × PERF_SECS, as in syscalls.sh.
  awk -v name="$name" -v c="$conns" -v rps="${rps:--}" -v p99="$p99" -v prps="${perf_rps:-0}" -v s="$PERF_SECS" \
    -v sys="$sys" -v cs="$cs" -v cpu="$cpu_ms" -v exit_code="$SERVER_EXIT" 'BEGIN {
      n = prps * s;
      if (n <= 0 || sys == "" || cs == "" || cpu == "") { printf "%s\t%s\t%s\t%s\t-\t-\t-\t%s\n", name, c, rps, p99, exit_code; exit }
      printf "%s\t%s\t%s\t%s\t%.1f\t%.2f\t%.3f\t%s\n", name, c, rps, p99, cpu * 1000 / n, sys / n, cs / n, exit_code
    }' >>"$results"
}

# sigterm_under_load: gremlins-api under TERM_CONNECTIONS POSTing
# connections gets SIGTERM TERM_AFTER s in; prints its exit and shutdown report.
sigterm_under_load() {
  local label=gremlins-c$TERM_CONNECTIONS-sigterm port
  port=$("$loadgen" free-port)
  start_server gremlins "$port"
  log "gremlins -c$TERM_CONNECTIONS: SIGTERM ${TERM_AFTER}s into a ${TERM_SECS}s wrk run"
  post_wrk "$label" "$port" "$TERM_CONNECTIONS" "$TERM_SECS"
  sleep "$TERM_AFTER"
  stop_server "$SERVER_PID"
  wrk_done "$label" gremlins "$TERM_CONNECTIONS" sigterm
  emit "## SIGTERM under write load: gremlins-api, $TERM_CONNECTIONS connections"
  emit ""
  emit "Exit code $SERVER_EXIT, SIGTERM to exit $(fmt1 "$(jget "${STOP_JSON:-}" sigterm_to_exit_ms)") ms. Its shutdown report:"
  emit ""
  emit '```'
  emit "$(grep -o '{"shutdown_report".*' "$SERVER_LOG" || echo "(none in $SERVER_LOG)")"
  emit '```'
  emit ""
}

# ------------------------------------------------------------------ run ----
started=$SECONDS
start_postgres
db_url="postgres://postgres@127.0.0.1:$pg_port/postgres"

emit "# POST /v1/events with PostgreSQL: gremlins-api and axum-events"
emit ""
emit "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); $(nproc) cores; kernel $(uname -r); $("$pg_bin/postgres" --version)"
emit "- gremlins-api commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo none); flags: --workers $POOL${GREMLINS_ARGS:+ $GREMLINS_ARGS}; axum-events --pool $POOL"
emit "- knobs: DURATION=$DURATION CONNECTIONS=$CONNECTIONS POOL=$POOL WARMUP=$WARMUP PERF_DELAY=$PERF_DELAY PERF_SECS=$PERF_SECS"
emit "- wrk -t2, a fresh server per connection count, after a ${WARMUP}s warm-up; events/s and p99 from a ${DURATION}s run; CPU, syscalls and context switches per request from perf stat of the server process for ${PERF_SECS}s of a second ${DURATION}s run (requests in that window = its req/s × ${PERF_SECS}; PostgreSQL's own CPU is not counted). wrk, PostgreSQL and the server share the $(nproc) cores."
emit ""

for conns in $conns_list; do
  for name in $servers; do
    measure "$name" "$conns"
  done
done

emit "## POST /v1/events, wrk -t2, ${DURATION}s"
emit ""
emit "| server | connections | events/s | p99 ms | CPU µs/req | syscalls/req | ctx switches/req | events/s vs axum-events |"
emit "|---|---:|---:|---:|---:|---:|---:|---:|"
for conns in $conns_list; do
  axum_rps=$(awk -F'\t' -v c="$conns" '$1 == "axum-events" && $2 == c { print $3 }' "$results")
  while IFS=$'\t' read -r name c rps p99 cpu sys cs _; do
    [[ $c == "$conns" ]] || continue
    ratio=$(awk -v a="$rps" -v b="${axum_rps:-}" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f×", a / b; else print "-" }')
    emit "| $name | $c | $(fmt1 "$rps") | $(fmt2 "$p99") | $cpu | $sys | $cs | $ratio |"
  done <"$results"
done
emit ""

in_list gremlins "$SERVERS" && sigterm_under_load

# Every event answered 2xx must be a row. A row may have no answer (wrk
# stops with requests in flight, at most one per connection), so rows can
# exceed 2xx, never fall short of it.
rows_tsv="$OUT_DIR/rows.tsv"
pg_query "select regexp_replace(idempotency_key, '-[0-9]+-[0-9]+\$', ''), count(*) from events group by 1" |
  tr '|' '\t' >"$rows_tsv" || die "counting the rows failed"
emit "## Every event answered 2xx is a row"
emit ""
emit "Per wrk run: its responses, non-2xx and socket errors as wrk counts them, and the rows whose Idempotency-Key has the run's prefix. Missing (answered 2xx, no row) must be 0; rows never answered are requests still in flight when wrk stopped (at most one per connection) or that timed out. The SIGTERM run's socket errors are mostly wrk's connects refused once the server has exited."
emit ""
emit "| server | connections | run | responses | non-2xx | socket errors | 2xx | rows | missing | rows never answered |"
emit "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"
failed=0
while IFS=$'\t' read -r label name conns phase requests non2xx errs; do
  rows=$(awk -F'\t' -v l="$label" '$1 == l { print $2 }' "$rows_tsv")
  ok=$((${requests:-0} - ${non2xx:-0}))
  missing=$((ok > ${rows:-0} ? ok - ${rows:-0} : 0))
  extra=$((${rows:-0} > ok ? ${rows:-0} - ok : 0))
  ((missing == 0)) || failed=1
  emit "| $name | $conns | $phase | $requests | $non2xx | $errs | $ok | ${rows:-0} | $missing | $extra |"
done <"$runs"
emit ""
emit "Rows in the table: $(pg_rows)."
emit ""

stop_postgres
emit "_Total time: $((SECONDS - started)) s. Raw outputs and server logs: the output directory printed below._"
log "report: $report"
((failed == 0)) || die "events answered 2xx are missing from the table (see the table above)"
