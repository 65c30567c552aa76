#!/usr/bin/env bash
# Syscalls, context switches and CPU time per request of one server under
# `wrk -t2 -c64` on GET /. perf stat counts the server process (all its
# threads) for PERF_SECS seconds starting PERF_DELAY seconds into each wrk
# run; the request count of that window is wrk's req/s × PERF_SECS. See
# benches/README.md.
#
# Every server listens on 127.0.0.1 only, every load is bounded in time, and
# every process this script starts is tracked by PID and killed on exit.
#
#   bash benches/syscalls.sh
#   SERVER_BIN=benches/reference/target/release/axum-ok SERVER_ARGS=@ADDR@ bash benches/syscalls.sh
#   SERVER_BIN=benches/reference/target/release/actix-ok SERVER_ARGS=@ADDR@ bash benches/syscalls.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_NAME=syscalls
# shellcheck source=benches/common.sh
source "$here/common.sh"

# ---------------------------------------------------------------- knobs ----
SERVER_BIN=${SERVER_BIN:-$gremlins_bin}
SERVER_ARGS=${SERVER_ARGS:---listen @ADDR@} # @ADDR@ becomes 127.0.0.1:PORT
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
DURATION=${DURATION:-10}     # seconds of each wrk run
PERF_DELAY=${PERF_DELAY:-1}  # perf starts this many seconds into it
PERF_SECS=${PERF_SECS:-8}    # and counts for this many seconds
ROUNDS=${ROUNDS:-3}          # a fresh server per round; medians are reported
URL_PATH=${URL_PATH:-/}
OUT_DIR=${OUT_DIR:-}
BUILD=${BUILD:-1}            # 0: use the binaries as they are

READY_TIMEOUT=15
STOP_TIMEOUT=10


# --------------------------------------------------------------- checks ----
command -v wrk >/dev/null || die "wrk is missing (Debian: apt-get install wrk)"
((PERF_DELAY + PERF_SECS < DURATION)) || die "PERF_DELAY + PERF_SECS must be below DURATION"
perf_check

if ((BUILD)); then
  if [[ $SERVER_BIN == "$gremlins_bin" ]]; then
    log "building gremlins-api (release)"
    (cd "$root" && cargo build --release --quiet --bin gremlins-api)
  fi
  log "building loadgen (release)"
  cargo build --release --quiet --manifest-path "$ref_dir/Cargo.toml" --target-dir "$ref_dir/target"
fi
[[ -x $SERVER_BIN ]] || die "no server binary at $SERVER_BIN"

if [[ -z $OUT_DIR ]]; then
  OUT_DIR=$(mktemp -d -t gremlins-syscalls.XXXXXX)
fi
mkdir -p "$OUT_DIR/logs"
raise_fd_limit

# ------------------------------------------------------------------ run ----
tsv="$OUT_DIR/syscalls.tsv"
: >"$tsv"
for ((round = 1; round <= ROUNDS; round++)); do
  port=$("$loadgen" free-port)
  addr="127.0.0.1:$port"
  # shellcheck disable=SC2206 # SERVER_ARGS is split on purpose
  args=(${SERVER_ARGS//@ADDR@/$addr})
  "$SERVER_BIN" "${args[@]}" >"$OUT_DIR/server-$round.log" 2>&1 &
  server=$!
  own "$server"
  "$loadgen" probe --addr "$addr" --pid "$server" --timeout-secs "$READY_TIMEOUT" ||
    die "server did not answer on $addr (log: $OUT_DIR/server-$round.log)"

  log "round $round/$ROUNDS: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, perf for ${PERF_SECS}s from ${PERF_DELAY}s"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "http://$addr$URL_PATH" >"$OUT_DIR/wrk-$round.txt" 2>&1 &
  wrk_pid=$!
  own "$wrk_pid"
  sleep "$PERF_DELAY"
  perf_count "$server" "$PERF_SECS" "$OUT_DIR/perf-$round.csv" ||
    die "perf stat failed (see $OUT_DIR/perf-$round.csv)"
  wait "$wrk_pid" || log "wrk exited non-zero (see $OUT_DIR/wrk-$round.txt)"
  disown_pid "$wrk_pid"

  stop_server "$server"

  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$OUT_DIR/wrk-$round.txt")
  errs=$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' "$OUT_DIR/wrk-$round.txt")
  sys=$(perf_event "$OUT_DIR/perf-$round.csv" raw_syscalls:sys_enter)
  cs=$(perf_event "$OUT_DIR/perf-$round.csv" context-switches)
  cpu_ms=$(perf_event "$OUT_DIR/perf-$round.csv" task-clock)
  awk -v r="$round" -v rps="$rps" -v s="$PERF_SECS" -v sys="$sys" -v cs="$cs" -v cpu="$cpu_ms" -v e="${errs:-0}" 'BEGIN {
    n = rps * s;
    if (n <= 0) { printf "%s\t%s\t-\t-\t-\t-\t-\t-\t%s\n", r, rps, e; exit }
    printf "%s\t%.1f\t%.0f\t%s\t%s\t%.3f\t%.4f\t%.3f\t%s\n", r, rps, n, sys, cs, sys / n, cs / n, cpu * 1000 / n, e
  }' >>"$tsv"
done

col() { cut -f"$1" "$tsv" | median; }
printf '## Syscalls per request: %s, wrk -t%s -c%s GET %s\n\n' "$(basename "$SERVER_BIN") ${SERVER_ARGS//@ADDR@/127.0.0.1:PORT}" "$THREADS" "$CONNECTIONS" "$URL_PATH"
printf -- '- %s; %s cores; kernel %s; perf counts the server process for %s s from %s s into each %s s wrk run; requests in that window = req/s × %s\n\n' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" "$(uname -r)" "$PERF_SECS" "$PERF_DELAY" "$DURATION" "$PERF_SECS"
printf '| round | req/s | requests in window | syscalls | context switches | syscalls / request | context switches / request | CPU µs / request | wrk socket errors |\n'
printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|\n'
awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }' "$tsv"
printf '| **median** | %s | %s | %s | %s | **%s** | **%s** | **%s** | |\n\n' \
  "$(col 2)" "$(col 3)" "$(col 4)" "$(col 5)" "$(col 6)" "$(col 7)" "$(col 8)"
log "raw outputs: $OUT_DIR"
