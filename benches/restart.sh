#!/usr/bin/env bash
# Hot restart under load: RESTARTS SIGHUPs to the release gremlins-api while
# wrk and a counting client (loadgen restart-count) load it, once with the
# in-memory store and once with a throwaway PostgreSQL of this script's own.
# For each store: wrk for DURATION s with no restart, then wrk for DURATION
# s during which the restarts happen, INTERVAL_MS apart, each to the
# process that took over last (its PID from the MAINPID= message on a
# NOTIFY_SOCKET this script listens on). The counting client runs over
# both and classifies every request. See benches/README.md ("Restart").
#
# Every server listens on 127.0.0.1 only, every wait is bounded, and every
# process this script starts (the server's generations included) is ended
# by PID. Exits non-zero if any counting-client request failed, a restart
# did not hand over, a generation exited unclean, or (PostgreSQL) the rows
# stored differ from the POSTs answered 2xx.
#
#   bash benches/restart.sh
#   RESTARTS=3 STORES=memory bash benches/restart.sh
set -euo pipefail

# ---------------------------------------------------------------- knobs ----
RESTARTS=${RESTARTS:-10}                # SIGHUPs per store
INTERVAL_MS=${INTERVAL_MS:-1000}        # between SIGHUPs (and before the first)
DURATION=${DURATION:-}                  # s of each wrk run; default fits the restarts
CONNECTIONS=${CONNECTIONS:-64}          # wrk -c
WRK_THREADS=${WRK_THREADS:-2}           # wrk -t
KEEPALIVE_CLIENTS=${KEEPALIVE_CLIENTS:-8} # counting client: keep-alive clients
FRESH_CLIENTS=${FRESH_CLIENTS:-8}       # and clients with a new connection per request
THINK_MS=${THINK_MS:-10}                # their mean pause between requests
POST_EVERY=${POST_EVERY:-2}             # PostgreSQL run: every Nth request is POST /v1/events
STORES=${STORES:-memory,postgres}
GREMLINS_ARGS=${GREMLINS_ARGS:-}        # extra gremlins-api flags
BUILD=${BUILD:-1}                       # 0: use the binaries as they are
OUT_DIR=${OUT_DIR:-}                    # raw outputs and report.md

# Bounds on waits, in seconds.
READY_TIMEOUT=15    # the server answering GET / after start
HANDOVER_TIMEOUT=10 # a SIGHUP to the successor's MAINPID=
STOP_TIMEOUT=15     # the last generation exiting after SIGTERM; every one reaped
PG_TIMEOUT=30       # PostgreSQL starting, and stopping
# How often the script looks for a marker in a log (seconds): the error it
# adds to the restart schedule, not to any measured time.
MARKER_POLL=0.02

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BENCH_NAME=restart
# shellcheck source=benches/common.sh
source "$here/common.sh"

# --------------------------------------------------------------- checks ----
[[ $RESTARTS =~ ^[0-9]+$ && $INTERVAL_MS =~ ^[0-9]+$ ]] || die "RESTARTS and INTERVAL_MS must be whole numbers"
# The restarts, INTERVAL_MS apart after INTERVAL_MS, and a second to spare.
[[ -n $DURATION ]] || DURATION=$(((RESTARTS + 1) * INTERVAL_MS / 1000 + 2))
for s in ${STORES//,/ }; do
  in_list "$s" memory,postgres || die "unknown store '$s' in STORES (memory, postgres)"
done
command -v cargo >/dev/null || die "cargo is missing"
if ! command -v wrk >/dev/null; then
  [[ $(id -u) -eq 0 ]] || die "wrk is missing (Debian: apt-get install wrk)"
  log "wrk is missing: installing it (apt-get)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; } >&2; then
    die "could not install wrk"
  fi
fi
if in_list postgres "$STORES"; then
  find_postgres || die "PostgreSQL is missing (Debian: apt-get install postgresql), or run with STORES=memory"
fi

if [[ -z $OUT_DIR ]]; then
  OUT_DIR=$(mktemp -d -t gremlins-restart.XXXXXX)
fi
mkdir -p "$OUT_DIR/logs"
report="$OUT_DIR/report.md"
: >"$report"
emit() { printf '%s\n' "$*" | tee -a "$report"; }
raise_fd_limit

# ---------------------------------------------------------------- build ----
if ((BUILD)); then
  log "building gremlins-api (release)"
  (cd "$root" && cargo build --release --quiet --bin gremlins-api)
  log "building loadgen (release)"
  cargo build --release --quiet --manifest-path "$ref_dir/Cargo.toml" --target-dir "$ref_dir/target"
fi
[[ -x $gremlins_bin && -x $loadgen ]] || die "no binaries (run with BUILD=1)"

# -------------------------------------------------------------- helpers ----
# sleep_until_ms T: sleeps until wall-clock ms T (at once if past).
sleep_until_ms() {
  local left=$(($1 - $(now_ms)))
  ((left > 0)) && sleep "$(awk -v ms="$left" 'BEGIN { printf "%.3f", ms / 1000 }')"
  return 0
}
# nth_mainpid N: the PID in the Nth MAINPID= message of the current run.
# matches GREP_ARGS...: grep's output; no match is not a failure.
matches() { grep "$@" || true; }
nth_mainpid() { matches -o 'MAINPID=[0-9]*' "$run_dir/notify.log" | sed -n "$1p" | cut -d= -f2; }
# shellcheck disable=SC2317 # called through wait_for
handed_over_or_failed() { [[ -n $(nth_mainpid "$1") ]] || grep -q 'restart failed' "$run_dir/server.log"; }
# reaped PID: true once the subreaper of the current run reported PID.
reaped() { grep -q "\"event\":\"reaped\",\"pid\":$1," "$run_dir/reaper.log" 2>/dev/null; }

# Generations of the current run not yet reaped are killed (and given a
# moment to be reaped by the subreaper) before the owned list, so that no
# PID reaped (and perhaps reused) is signalled.
gens=()
run_dir=
# shellcheck disable=SC2317 # called by the EXIT trap
restart_cleanup() {
  local p
  for p in "${gens[@]+"${gens[@]}"}"; do
    if ! reaped "$p" && is_running "$p"; then
      kill -KILL "$p" 2>/dev/null || true
      wait_for 2 reaped "$p" || true
    fi
    disown_pid "$p"
  done
  cleanup
}
trap restart_cleanup EXIT

# ------------------------------------------------------------- one run ----
# run_store STORE: one server, wrk without and with restarts, the counting
# client over both; writes $OUT_DIR/STORE/summary.tsv. sighups.tsv there
# has a line per SIGHUP: restart, PID signalled, sent and planned (unix ms).
run_store() {
  local store=$1
  run_dir="$OUT_DIR/$store"
  mkdir -p "$run_dir"
  local port addr sock run_max notify_pid reaper_pid main pid0 count_pid wrk_pid t2 i new target
  port=$("$loadgen" free-port)
  addr="127.0.0.1:$port"
  sock="$run_dir/notify.sock"
  run_max=$((2 * DURATION + 60))

  "$loadgen" notify-listen --socket "$sock" --max-secs "$run_max" >"$run_dir/notify.log" 2>>"$OUT_DIR/logs/loadgen.err" &
  notify_pid=$!
  own "$notify_pid"
  wait_for 5 test -S "$sock" || die "notify-listen did not bind $sock"

  local -a env_vars=("NOTIFY_SOCKET=$sock")
  [[ $store == postgres ]] && env_vars+=("DATABASE_URL=postgres://postgres@127.0.0.1:$pg_port/postgres")
  # shellcheck disable=SC2086 # GREMLINS_ARGS is split on purpose
  env "${env_vars[@]}" "$loadgen" subreaper --max-secs "$run_max" --output "$run_dir/server.log" -- \
    "$gremlins_bin" --listen "$addr" $GREMLINS_ARGS >"$run_dir/reaper.log" 2>>"$OUT_DIR/logs/loadgen.err" &
  reaper_pid=$!
  own "$reaper_pid"
  wait_for 5 grep -q '"event":"started"' "$run_dir/reaper.log" || die "subreaper did not start the server"
  pid0=$(grep -o '"event":"started","pid":[0-9]*' "$run_dir/reaper.log" | grep -o '[0-9]*$')
  gens=("$pid0")
  own "$pid0"
  main=$pid0
  "$loadgen" probe --addr "$addr" --pid "$pid0" --timeout-secs "$READY_TIMEOUT" ||
    die "$store: the server did not answer on $addr (log: $run_dir/server.log)"
  wait_for 5 grep -q ' READY=1' "$run_dir/notify.log" || die "$store: no READY=1 on $sock"
  log "$store: server pid $pid0 on $addr; counting client and wrk without restarts for ${DURATION}s"

  local -a post=()
  [[ $store == postgres ]] && post=(--post-every "$POST_EVERY")
  "$loadgen" restart-count --addr "$addr" --duration-secs $((2 * DURATION + 1)) \
    --baseline-ms $((DURATION * 1000)) --keepalive-clients "$KEEPALIVE_CLIENTS" \
    --fresh-clients "$FRESH_CLIENTS" --think-ms "$THINK_MS" "${post[@]}" \
    >"$run_dir/count.json" 2>>"$OUT_DIR/logs/loadgen.err" &
  count_pid=$!
  own "$count_pid"

  wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://$addr/" >"$run_dir/wrk-baseline.txt" 2>&1 &
  wrk_pid=$!
  own "$wrk_pid"
  wait_child "$wrk_pid" $((DURATION + 10))

  log "$store: wrk with $RESTARTS restarts, ${INTERVAL_MS} ms apart, for ${DURATION}s"
  t2=$(now_ms)
  wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://$addr/" >"$run_dir/wrk-restarts.txt" 2>&1 &
  wrk_pid=$!
  own "$wrk_pid"
  : >"$run_dir/sighups.tsv"
  local done_restarts=0
  for ((i = 1; i <= RESTARTS; i++)); do
    target=$((t2 + i * INTERVAL_MS))
    # The last handover must land within this wrk run, with time to spare.
    if ((target + 1000 > t2 + DURATION * 1000)); then
      log "$store: no time left in the wrk run for restart $i; stopping at $done_restarts"
      break
    fi
    sleep_until_ms "$target"
    printf '%s\t%s\t%s\t%s\n' "$i" "$main" "$(now_ms)" "$target" >>"$run_dir/sighups.tsv"
    kill -HUP "$main" || {
      log "$store: SIGHUP to $main failed"
      break
    }
    wait_for "$HANDOVER_TIMEOUT" handed_over_or_failed "$i" || true
    new=$(nth_mainpid "$i")
    if [[ -z $new ]]; then
      log "$store: restart $i: $main did not hand over (failed, or not within ${HANDOVER_TIMEOUT}s; see $run_dir/server.log)"
      break
    fi
    gens+=("$new")
    own "$new"
    main=$new
    done_restarts=$i
  done
  wait_child "$wrk_pid" $((DURATION + 10))
  log "$store: $done_restarts restarts done; waiting for the counting client"
  wait_child "$count_pid" 30
  local count_exit=$CHILD_EXIT

  local rows=-
  [[ $store == postgres ]] && rows=$(pg_rows)

  # The last generation: SIGTERM, bounded wait; then every one reaped.
  local stop_json stop_ms=-
  if stop_json=$("$loadgen" stop --pid "$main" --max-secs "$STOP_TIMEOUT" 2>>"$OUT_DIR/logs/loadgen.err"); then
    stop_ms=$(jget "$stop_json" sigterm_to_exit_ms)
  else
    log "$store: the last generation ($main) did not exit within ${STOP_TIMEOUT}s of SIGTERM: killed"
    kill -KILL "$main" 2>/dev/null || true
  fi
  wait_child "$reaper_pid" "$STOP_TIMEOUT"
  local p
  for p in "${gens[@]}"; do
    if ! reaped "$p" && is_running "$p"; then
      log "$store: generation $p was not reaped: killed"
      kill -KILL "$p" 2>/dev/null || true
    fi
    disown_pid "$p"
  done
  gens=()
  kill -TERM "$notify_pid" 2>/dev/null || true
  wait_child "$notify_pid" 5

  # Figures.
  local distinct exits unclean handover_med handover_max exit_med exit_max json
  distinct=$({
    echo "$pid0"
    matches -o 'MAINPID=[0-9]*' "$run_dir/notify.log" | cut -d= -f2
  } | sort -u | wc -l)
  # "0×11", or e.g. "0×10, signal 9×1".
  exits=$(awk '/"event":"reaped"/ {
      code = $0; sub(/.*"exit_code":/, "", code); sub(/,.*/, "", code)
      sig = $0; sub(/.*"signal":/, "", sig); sub(/,.*/, "", sig)
      print (code == "null" ? "signal " sig : code) }' "$run_dir/reaper.log" | sort | uniq -c |
    awk '{ n = $1; $1 = ""; sub(/^ /, ""); printf "%s%s×%s", (NR > 1 ? ", " : ""), $0, n }')
  unclean=$(matches '"event":"none_left"' "$run_dir/reaper.log" | matches -o '"unclean":[0-9]*' | cut -d: -f2)
  matches -o 'accepts after [0-9]* ms' "$run_dir/server.log" | awk '{ print $3 }' >"$run_dir/handover-ms.txt"
  handover_med=$(median <"$run_dir/handover-ms.txt")
  handover_max=$(maxof <"$run_dir/handover-ms.txt")
  # SIGHUP to the old generation's exit, as the subreaper saw it, for
  # the restarts that handed over.
  while IFS=$'\t' read -r i p sent _; do
    ((i <= done_restarts)) || continue
    awk -v t="$sent" -v pat="\"pid\":$p," 'index($0, "\"event\":\"reaped\"") && index($0, pat) {
      sub(/.*"t_unix_ms":/, ""); sub(/}.*/, ""); print $0 - t }' "$run_dir/reaper.log"
  done <"$run_dir/sighups.tsv" >"$run_dir/old-exit-ms.txt"
  exit_med=$(median <"$run_dir/old-exit-ms.txt")
  exit_max=$(maxof <"$run_dir/old-exit-ms.txt")
  json=$(cat "$run_dir/count.json")
  [[ -n $json ]] || json='{}'
  printf '%s\n' "$json" >"$run_dir/count.json"
  {
    printf 'restarts\t%s\n' "$done_restarts"
    printf 'distinct\t%s\n' "$distinct"
    printf 'exits\t%s\n' "$exits"
    printf 'unclean\t%s\n' "${unclean:-unknown}"
    printf 'handover\t%s / %s\n' "$(fmt1 "$handover_med")" "$(fmt1 "$handover_max")"
    printf 'old_exit\t%s / %s\n' "$(fmt1 "$exit_med")" "$(fmt1 "$exit_max")"
    printf 'stop_ms\t%s\n' "$stop_ms"
    printf 'rows\t%s\n' "$rows"
    printf 'count_exit\t%s\n' "$count_exit"
  } >"$run_dir/summary.tsv"
  log "$store: done; $distinct distinct PIDs, exits $exits"
}

# ------------------------------------------------------------------ run ----
started=$SECONDS
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
stores=${STORES//,/ }
in_list postgres "$STORES" && start_postgres
for store in $stores; do
  run_store "$store"
done
[[ -n $pg_pid ]] && stop_postgres

# --------------------------------------------------------------- report ----
sum() { awk -F'\t' -v k="$2" '$1 == k { print $2 }' "$OUT_DIR/$1/summary.tsv"; }
cj() { jget "$(cat "$OUT_DIR/$1/count.json")" "$2"; }
# cjn STORE KEY: a count from the counting client, 0 if missing.
cjn() {
  local v
  v=$(cj "$1" "$2")
  [[ $v =~ ^[0-9]+$ ]] && echo "$v" || echo 0
}
other() {
  local s=$1 p=$2
  echo $(($(cjn "$s" "${p}_write_failed") + $(cjn "$s" "${p}_connect_timeout") + $(cjn "$s" "${p}_connect_error") + $(cjn "$s" "${p}_protocol")))
}
emit "# gremlins-api: hot restart under load"
emit ""
emit "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); $(nproc) cores; kernel $(uname -r); $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)"
emit "- gremlins-api commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$root" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' (with uncommitted changes)'); flags: --listen 127.0.0.1:PORT $GREMLINS_ARGS"
emit "- per store: wrk -t$WRK_THREADS -c$CONNECTIONS -d${DURATION}s --latency on GET / without restarts, then the same during $RESTARTS restarts (SIGHUP every $INTERVAL_MS ms to the process that took over last); the counting client over both: $KEEPALIVE_CLIENTS keep-alive + $FRESH_CLIENTS new-connection-per-request clients, mean pause $THINK_MS ms, with PostgreSQL 1 request in $POST_EVERY of each client a POST /v1/events (its own Idempotency-Key)"
emit "- wrk, the counting client and the server share the $(nproc) cores; load average at the start: $load_at_start."
emit ""
emit "| store | period | restarts | wrk requests | wrk p50 ms | wrk p99 ms | wrk max ms | wrk errors connect / read / write / timeout | wrk non-2xx | counting requests | ok | refused | reset | lost | timeout | non-2xx | other failures | counting p50 / p99 ms |"
emit "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
failed=0
for store in $stores; do
  for period in baseline restarts; do
    f="$OUT_DIR/$store/wrk-$period.txt"
    if [[ $period == baseline ]]; then label="no restarts" n=0; else label="with restarts" n=$(sum "$store" restarts); fi
    emit "| $store | $label | $n | $(wrk_field "$f" requests) | $(wrk_field "$f" p50) | $(wrk_field "$f" p99) | $(wrk_field "$f" max) | $(wrk_field "$f" connect) / $(wrk_field "$f" read) / $(wrk_field "$f" write) / $(wrk_field "$f" timeout) | $(wrk_field "$f" non2xx) | $(cj "$store" "${period}_requests") | $(cj "$store" "${period}_ok") | $(cj "$store" "${period}_refused") | $(cj "$store" "${period}_reset") | $(cj "$store" "${period}_lost") | $(cj "$store" "${period}_timeout") | $(cj "$store" "${period}_non_2xx") | $(other "$store" "$period") | $(fmt2 "$(cj "$store" "${period}_p50_ms")") / $(fmt2 "$(cj "$store" "${period}_p99_ms")") |"
  done
done
emit ""
emit "| store | restarts done / asked | distinct PIDs | handover ms median / max | SIGHUP to old process exit ms median / max | exit codes (every generation) | last generation SIGTERM to exit ms | counting requests keep-alive / new-connection / POST | failures | stale (reconnected, nothing sent) | POSTs answered 2xx / rows stored |"
emit "|---|---|---:|---|---|---|---:|---|---:|---:|---|"
for store in $stores; do
  posts=-
  if [[ $store == postgres ]]; then
    posts="$(($(cjn "$store" post_requests) - $(cjn "$store" post_failures))) / $(sum "$store" rows)"
  fi
  emit "| $store | $(sum "$store" restarts) / $RESTARTS | $(sum "$store" distinct) | $(sum "$store" handover) | $(sum "$store" old_exit) | $(sum "$store" exits) | $(fmt2 "$(sum "$store" stop_ms)") | $(cj "$store" keepalive_requests) / $(cj "$store" fresh_requests) / $(cj "$store" post_requests) | $(cj "$store" failures) | $(cj "$store" stale) | $posts |"
  # The verdict.
  [[ $(cj "$store" failures) == 0 ]] || {
    log "$store: $(cj "$store" failures) counting-client requests failed: $(cj "$store" failure_log)"
    failed=1
  }
  [[ $(sum "$store" restarts) == "$RESTARTS" ]] || {
    log "$store: only $(sum "$store" restarts) of $RESTARTS restarts handed over"
    failed=1
  }
  [[ $(sum "$store" unclean) == 0 ]] || {
    log "$store: generations exited unclean: $(sum "$store" exits)"
    failed=1
  }
  if [[ $store == postgres && $(($(cjn "$store" post_requests) - $(cjn "$store" post_failures))) != "$(sum "$store" rows)" ]]; then
    log "$store: POSTs answered 2xx and rows stored differ: $posts"
    failed=1
  fi
done
emit ""
for store in $stores; do
  log_line=$(cj "$store" failure_log)
  [[ -z $log_line ]] || emit "- $store, first failures (unix ms, kind, client, method, connection): $log_line"
done
emit "_Total time: $((SECONDS - started)) s. Raw outputs (wrk, counting-client JSON, notify messages, subreaper log, server logs): ${OUT_DIR}_"
log "report: $report"
exit "$failed"
