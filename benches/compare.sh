#!/usr/bin/env bash
# End-to-end comparison of gremlins-api with tiny_http 0.12, axum 0.8 and
# actix-web 4 on this machine, in one run: throughput (wrk), per-connection
# fairness, 10k idle keep-alive connections, and shutdown under load. See
# benches/README.md.
#
# Every server listens on 127.0.0.1 only, every load is bounded in time, and
# every process this script starts is tracked by PID and killed on exit.
#
#   bash benches/compare.sh
#   ROUNDS=1 DURATION=3 SECTIONS=throughput,idle bash benches/compare.sh
set -euo pipefail

# ---------------------------------------------------------------- knobs ----
ROUNDS=${ROUNDS:-3}                       # throughput rounds per server
DURATION=${DURATION:-10}                  # seconds of each wrk run
SECTIONS=${SECTIONS:-throughput,fairness,idle,shutdown}
SERVERS=${SERVERS:-gremlins,tiny_http,axum,actix}
CONNECTIONS=${CONNECTIONS:-64,512}        # wrk -c and fairness --connections
FAIRNESS_DURATION=${FAIRNESS_DURATION:-5} # seconds of each fairness run
FAIRNESS_PATHS=${FAIRNESS_PATHS:-/,/test/sleep?ms=5}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
IDLE_HOLD=${IDLE_HOLD:-3}                 # seconds the idle connections are held
IDLE_EXIT_RUNS=${IDLE_EXIT_RUNS:-20}      # idle server SIGTERM-to-exit runs
SHUTDOWN_RUNS=${SHUTDOWN_RUNS:-10}        # loaded shutdown runs per server; 0: idle part only
SHUTDOWN_CLIENTS=${SHUTDOWN_CLIENTS:-32}
SHUTDOWN_PATH=${SHUTDOWN_PATH:-/test/sleep?ms=200}
SHUTDOWN_IDLE_CLIENTS=${SHUTDOWN_IDLE_CLIENTS:-32} # keep-alive race clients on GET /
SHUTDOWN_THINK_MS=${SHUTDOWN_THINK_MS:-25}         # their pause between requests
GREMLINS_ARGS=${GREMLINS_ARGS:-}          # extra flags, e.g. "--workers 32"
OUT_DIR=${OUT_DIR:-}                      # raw outputs and report.md

# Bounds on waits, in seconds.
READY_TIMEOUT=15      # a server answering GET / after start
STOP_TIMEOUT=15       # a server exiting after SIGTERM
IDLE_OPEN_TIMEOUT=180 # loadgen idle opening its connections
# How often the script samples /proc or looks for a marker (seconds).
SAMPLE_INTERVAL=1
MARKER_POLL=0.1

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BENCH_NAME=compare
# shellcheck source=benches/common.sh
source "$here/common.sh"

# --------------------------------------------------------------- checks ----
command -v wrk >/dev/null || die "wrk is missing (Debian: apt-get install wrk)"
command -v cargo >/dev/null || die "cargo is missing"
for s in ${SERVERS//,/ }; do
  in_list "$s" gremlins,tiny_http,axum,actix || die "unknown server '$s' in SERVERS"
done
for s in ${SECTIONS//,/ }; do
  in_list "$s" throughput,fairness,idle,shutdown || die "unknown section '$s' in SECTIONS"
done

if [[ -z $OUT_DIR ]]; then
  OUT_DIR=$(mktemp -d -t gremlins-compare.XXXXXX)
fi
mkdir -p "$OUT_DIR/logs" "$OUT_DIR/raw"
report="$OUT_DIR/report.md"
: >"$report"
emit() { printf '%s\n' "$*" | tee -a "$report"; }

# File descriptors: the idle section holds IDLE_CONNECTIONS sockets in the
# load tool and as many in the server, each its own process.
raise_fd_limit
fd_limit=$(ulimit -n)
if ((IDLE_CONNECTIONS + 1024 > fd_limit)); then
  log "ulimit -n is $fd_limit: idle section reduced to $((fd_limit - 1024)) connections"
  IDLE_CONNECTIONS=$((fd_limit - 1024))
fi

# ---------------------------------------------------------------- build ----
if in_list gremlins "$SERVERS"; then
  log "building gremlins-api (release)"
  (cd "$root" && cargo build --release --bin gremlins-api) ||
    die "gremlins-api does not build; run with SERVERS=tiny_http,axum,actix to compare the references only"
fi
log "building reference servers and loadgen (release)"
cargo build --release --quiet --manifest-path "$ref_dir/Cargo.toml" --target-dir "$ref_dir/target"

# -------------------------------------------------------------- helpers ----
# counts < words: "0×9, 143×1"
counts() { { grep . || true; } | sort | uniq -c | awk '{ printf "%s%s×%s", (NR > 1 ? ", " : ""), $2, $1 }'; }

free_port() { "$loadgen" free-port; }

# start_server NAME PORT [GREMLINS_FLAG...]: starts it in the background,
# waits until GET / is answered, sets SERVER_PID and SERVER_LOG.
start_server() {
  local name=$1 port=$2 addr="127.0.0.1:$2"
  shift 2
  local -a cmd
  case $name in
    gremlins)
      # shellcheck disable=SC2206 # GREMLINS_ARGS is split on purpose
      cmd=("$gremlins_bin" --listen "$addr" --enable-test-routes $GREMLINS_ARGS "$@")
      ;;
    tiny_http) cmd=("$ref_bin/tiny-http-ok" "$addr") ;;
    axum) cmd=("$ref_bin/axum-ok" "$addr") ;;
    actix) cmd=("$ref_bin/actix-ok" "$addr") ;;
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

# sample_threads_during JOB SERVER_PID SECONDS: while background JOB runs (at
# most SECONDS+5 samples), prints the max Threads of SERVER_PID.
sample_threads_during() {
  local job=$1 server=$2 secs=$3 max=0 t i
  for ((i = 0; i < secs + 5; i++)); do
    sleep "$SAMPLE_INTERVAL"
    t=$(proc_field "$server" Threads)
    [[ $t =~ ^[0-9]+$ ]] && ((t > max)) && max=$t
    is_running "$job" || break
  done
  echo "$max"
}

# ------------------------------------------------------------- sections ----
servers=${SERVERS//,/ }
conns_list=${CONNECTIONS//,/ }

header() {
  emit "# gremlins-api end-to-end comparison"
  emit ""
  emit "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); $(nproc) cores; kernel $(uname -r)"
  emit "- $(rustc --version); $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)"
  emit "- gremlins-api commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$root" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' (with uncommitted changes)')"
  emit "- servers: $SERVERS; gremlins-api flags: --enable-test-routes $GREMLINS_ARGS (default workers unless set)"
  emit "- knobs: ROUNDS=$ROUNDS DURATION=$DURATION CONNECTIONS=$CONNECTIONS FAIRNESS_DURATION=$FAIRNESS_DURATION IDLE_CONNECTIONS=$IDLE_CONNECTIONS IDLE_HOLD=$IDLE_HOLD IDLE_EXIT_RUNS=$IDLE_EXIT_RUNS SHUTDOWN_RUNS=$SHUTDOWN_RUNS SHUTDOWN_CLIENTS=$SHUTDOWN_CLIENTS SHUTDOWN_IDLE_CLIENTS=$SHUTDOWN_IDLE_CLIENTS"
  emit "- wrk and the load tool share the $(nproc) cores with the server."
  emit ""
}

throughput() {
  local tsv="$OUT_DIR/throughput.tsv" conns round name port out wrk_pid threads hwm rps p99 errs non2xx
  : >"$tsv"
  for conns in $conns_list; do
    for ((round = 1; round <= ROUNDS; round++)); do
      for name in $servers; do
        port=$(free_port)
        start_server "$name" "$port"
        out="$OUT_DIR/raw/wrk-$name-c$conns-r$round.txt"
        log "throughput: $name -c$conns round $round/$ROUNDS"
        wrk -t2 -c"$conns" -d"${DURATION}s" --latency "http://127.0.0.1:$port/" >"$out" 2>&1 &
        wrk_pid=$!
        own "$wrk_pid"
        threads=$(sample_threads_during "$wrk_pid" "$SERVER_PID" "$DURATION")
        wait "$wrk_pid" || log "wrk exited non-zero (see $out)"
        disown_pid "$wrk_pid"
        hwm=$(proc_field "$SERVER_PID" VmHWM)
        stop_server "$SERVER_PID"
        rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
        p99=$(wrk_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
        errs=$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' "$out")
        non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $5 }' "$out")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$conns" "$name" "$round" "${rps:--}" \
          "${p99:--}" "$hwm" "$threads" "${errs:-0}" "${non2xx:-0}" "$SERVER_EXIT" >>"$tsv"
      done
    done
  done

  local axum_rps med_rps med_p99 max_hwm max_threads ratio sum_errs sum_non2xx exits
  for conns in $conns_list; do
    emit "## Throughput: GET /, wrk -t2 -c$conns -d${DURATION}s, $ROUNDS rounds interleaved"
    emit ""
    emit "| server | req/s (median) | p99 ms (median) | peak RSS MiB (max VmHWM) | threads under load (max) | req/s vs axum | socket errors | non-2xx | exit after SIGTERM |"
    emit "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    col() { awk -F'\t' -v c="$conns" -v s="$1" -v f="$2" '$1 == c && $2 == s { print $f }' "$tsv"; }
    axum_rps=$(col axum 4 | median)
    for name in $servers; do
      med_rps=$(col "$name" 4 | median)
      med_p99=$(col "$name" 5 | median)
      max_hwm=$(col "$name" 6 | maxof)
      max_threads=$(col "$name" 7 | maxof)
      sum_errs=$(col "$name" 8 | sumof)
      sum_non2xx=$(col "$name" 9 | sumof)
      exits=$(col "$name" 10 | counts)
      ratio=$(awk -v a="$med_rps" -v b="$axum_rps" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f×", a / b; else print "-" }')
      emit "| $name | $(fmt1 "$med_rps") | $(fmt2 "$med_p99") | $(kib_to_mib "$max_hwm") | $max_threads | $ratio | $sum_errs | $sum_non2xx | $exits |"
    done
    emit ""
  done
}

fairness() {
  local path conns name port out json rc threads lg_pid
  for path in ${FAIRNESS_PATHS//,/ }; do
    emit "## Fairness: GET $path, one keep-alive connection per client thread, ${FAIRNESS_DURATION}s (loadgen fairness)"
    emit ""
    emit "| server | connections | req/s | per-connection responses min / median / max | connections with 0 responses | p99 ms | max ms | failures / reconnects | threads (max) | first error |"
    emit "|---|---:|---:|---|---:|---:|---:|---|---:|---|"
    for conns in $conns_list; do
      for name in $servers; do
        port=$(free_port)
        start_server "$name" "$port"
        out="$OUT_DIR/raw/fairness-$name-c$conns-${path//[^a-z0-9]/_}.json"
        log "fairness: $name GET $path, $conns connections"
        "$loadgen" fairness --addr "127.0.0.1:$port" --connections "$conns" \
          --duration-secs "$FAIRNESS_DURATION" --path "$path" >"$out" 2>>"$OUT_DIR/logs/loadgen.err" &
        lg_pid=$!
        own "$lg_pid"
        threads=$(sample_threads_during "$lg_pid" "$SERVER_PID" "$FAIRNESS_DURATION")
        rc=0
        wait "$lg_pid" || rc=$?
        disown_pid "$lg_pid"
        stop_server "$SERVER_PID"
        json=$(cat "$out")
        [[ -n $json ]] || {
          emit "| $name | $conns | loadgen failed (exit $rc) | | | | | | | |"
          continue
        }
        emit "| $name | $conns | $(fmt1 "$(jget "$json" rps)") | $(jget "$json" per_conn_min) / $(jget "$json" per_conn_median) / $(jget "$json" per_conn_max) | $(jget "$json" zero_response_connections) | $(fmt2 "$(jget "$json" latency_p99_ms)") | $(fmt1 "$(jget "$json" latency_max_ms)") | $(jget "$json" failures) / $(jget "$json" reconnects) | $threads | $(jget "$json" first_error) |"
      done
    done
    emit ""
  done
}

idle() {
  emit "## $IDLE_CONNECTIONS idle keep-alive connections (loadgen idle, held ${IDLE_HOLD}s)"
  emit ""
  emit "Each connection is answered once, then left idle. Fresh client: connect + GET / on a new connection while they are held (median of up to 20). Reuse: every 100th idle connection sends a second request at the end."
  emit ""
  emit "| server | held / asked | threads before / held / after | VmRSS MiB before / held / after | open s | fresh GET / median ms (max) | fresh failures / tried | reuse ok | first error |"
  emit "|---|---|---|---|---:|---|---|---|---|"
  local name room=$((IDLE_CONNECTIONS + 64))
  for name in $servers; do
    idle_one "$name" "$name"
    # gremlins-api as configured may have max_connections below
    # IDLE_CONNECTIONS (the rest get 503): run it again with room for all.
    if [[ $name == gremlins ]]; then
      idle_one "gremlins --max-connections $room" gremlins --max-connections "$room"
    fi
  done
  emit ""
}

# idle_one LABEL NAME [GREMLINS_FLAG...]: one idle-connections run, one table row.
idle_one() {
  local label=$1 name=$2
  shift 2
  local port out err lg_pid rc json i t_before r_before t_held=0 r_held=0 t_after r_after t r
  port=$(free_port)
  start_server "$name" "$port" "$@"
  t_before=$(proc_field "$SERVER_PID" Threads)
  r_before=$(proc_field "$SERVER_PID" VmRSS)
  out="$OUT_DIR/raw/idle-$name-$port.json"
  err="$OUT_DIR/raw/idle-$name-$port.err"
  log "idle: $label, $IDLE_CONNECTIONS connections"
  "$loadgen" idle --addr "127.0.0.1:$port" --connections "$IDLE_CONNECTIONS" \
    --hold-secs "$IDLE_HOLD" >"$out" 2>"$err" &
  lg_pid=$!
  own "$lg_pid"
  for ((i = 0; i < IDLE_OPEN_TIMEOUT * 10; i++)); do
    grep -q '^holding' "$err" && break
    is_running "$lg_pid" || break
    sleep "$MARKER_POLL"
  done
  # While they are held: the max of a sample a second.
  for ((i = 0; i < IDLE_HOLD + 30; i++)); do
    t=$(proc_field "$SERVER_PID" Threads)
    r=$(proc_field "$SERVER_PID" VmRSS)
    [[ $t =~ ^[0-9]+$ ]] && ((t > t_held)) && t_held=$t
    [[ $r =~ ^[0-9]+$ ]] && ((r > r_held)) && r_held=$r
    is_running "$lg_pid" || break
    sleep "$SAMPLE_INTERVAL"
  done
  rc=0
  wait "$lg_pid" || rc=$?
  disown_pid "$lg_pid"
  # After they closed: does it still answer, and what is left?
  sleep "$SAMPLE_INTERVAL"
  "$loadgen" probe --addr "127.0.0.1:$port" --pid "$SERVER_PID" --timeout-secs 5 ||
    log "idle: $label no longer answers after the idle connections closed"
  t_after=$(proc_field "$SERVER_PID" Threads)
  r_after=$(proc_field "$SERVER_PID" VmRSS)
  stop_server "$SERVER_PID"
  json=$(cat "$out")
  if [[ -z $json ]]; then
    emit "| $label | loadgen failed (exit $rc) | | | | | | | $(tail -n1 "$err") |"
    return
  fi
  emit "| $label | $(jget "$json" held) / $(jget "$json" requested) | $t_before / $t_held / $t_after | $(kib_to_mib "$r_before") / $(kib_to_mib "$r_held") / $(kib_to_mib "$r_after") | $(fmt1 "$(jget "$json" open_secs)") | $(fmt2 "$(jget "$json" fresh_median_ms)") ($(fmt2 "$(jget "$json" fresh_max_ms)")) | $(jget "$json" fresh_failures) / $(jget "$json" fresh_tried) | $(jget "$json" reuse_ok) / $(jget "$json" reuse_checked) | $(jget "$json" first_error) |"
}

shutdown() {
  local name port run ms tsv="$OUT_DIR/shutdown-idle.tsv"
  : >"$tsv"
  log "shutdown: idle SIGTERM-to-exit, $IDLE_EXIT_RUNS runs per server"
  for ((run = 1; run <= IDLE_EXIT_RUNS; run++)); do
    for name in $servers; do
      port=$(free_port)
      start_server "$name" "$port"
      stop_server "$SERVER_PID"
      ms=$(jget "${STOP_JSON:-}" sigterm_to_exit_ms)
      printf '%s\t%s\t%s\n' "$name" "${ms:--}" "$SERVER_EXIT" >>"$tsv"
    done
  done
  emit "## Shutdown: idle server, SIGTERM to exit ($IDLE_EXIT_RUNS runs each)"
  emit ""
  emit "| server | median ms | max ms | exit codes |"
  emit "|---|---:|---:|---|"
  for name in $servers; do
    emit "| $name | $(fmt2 "$(awk -F'\t' -v s="$name" '$1 == s { print $2 }' "$tsv" | median)") | $(fmt2 "$(awk -F'\t' -v s="$name" '$1 == s { print $2 }' "$tsv" | maxof)") | $(awk -F'\t' -v s="$name" '$1 == s { print $3 }' "$tsv" | counts) |"
  done
  emit ""

  # SHUTDOWN_RUNS=0: the idle part alone.
  ((SHUTDOWN_RUNS > 0)) || return 0
  shutdown_scenario loaded "$SHUTDOWN_CLIENTS" "$SHUTDOWN_PATH" 0
  shutdown_scenario keepalive 0 / "$SHUTDOWN_IDLE_CLIENTS"
}

# shutdown_scenario LABEL SLOW_CLIENTS SLOW_PATH IDLE_CLIENTS: SHUTDOWN_RUNS
# runs of loadgen shutdown per server, interleaved, then a table.
shutdown_scenario() {
  local label=$1 slow=$2 slow_path=$3 idle_clients=$4
  local tsv="$OUT_DIR/shutdown-$label.tsv" run name port out json after rc key
  : >"$tsv"
  for ((run = 1; run <= SHUTDOWN_RUNS; run++)); do
    # Vary where SIGTERM lands relative to the clients' request cycles.
    after=$((1000 + (run * 61) % 200))
    for name in $servers; do
      port=$(free_port)
      start_server "$name" "$port"
      out="$OUT_DIR/raw/shutdown-$label-$name-$run.json"
      log "shutdown ($label): $name run $run/$SHUTDOWN_RUNS, SIGTERM after ${after}ms"
      rc=0
      "$loadgen" shutdown --addr "127.0.0.1:$port" --pid "$SERVER_PID" \
        --clients "$slow" --path "$slow_path" \
        --idle-clients "$idle_clients" --think-ms "$SHUTDOWN_THINK_MS" \
        --signal-after-ms "$after" --max-secs "$STOP_TIMEOUT" >"$out" 2>>"$OUT_DIR/logs/loadgen.err" || rc=$?
      ((rc == 0)) || kill -KILL "$SERVER_PID" 2>/dev/null || true
      reap "$SERVER_PID"
      json=$(cat "$out")
      printf '%s' "$name" >>"$tsv"
      # Columns: 2 completed, 3 drained, 4 sent after SIGTERM, 5 of those
      # completed, 6 lost, 7 of those sent after SIGTERM, 8 write failed,
      # 9 stale, 10 refused, 11 503s, 12 exit ms, 13 exit - last ms, 14 exit code.
      for key in completed drained sent_after_sigterm completed_after_sigterm lost lost_after_sigterm \
        write_failed stale refused status_503 sigterm_to_exit_ms exit_minus_last_completed_ms; do
        printf '\t%s' "$(jget "$json" "$key")" >>"$tsv"
      done
      printf '\t%s\n' "$SERVER_EXIT" >>"$tsv"
    done
  done
  if [[ $label == loaded ]]; then
    emit "## Shutdown under load: $slow keep-alive clients on GET $slow_path, SIGTERM mid-request ($SHUTDOWN_RUNS runs each)"
    emit ""
    emit "Client i starts after i×200/$slow ms; SIGTERM after 1000-1199 ms (varied per run)."
  else
    emit "## Shutdown, keep-alive race: $idle_clients keep-alive clients on GET /, pausing $SHUTDOWN_THINK_MS ms between requests ($SHUTDOWN_RUNS runs each)"
    emit ""
    emit "SIGTERM mostly finds these connections idle, and a client's next request is written just after it: served (with Connection: close) or lost."
  fi
  emit "Clients honour Connection: close and stop at their first refused connect after SIGTERM. Sums over all runs, except times (median / max over runs). lost = written, no complete response; write failed = the connection was gone when writing; stale = found closed before reuse, nothing sent (as pooling clients check); refused = connect refused after SIGTERM."
  emit ""
  emit "| server | completed | drained (sent before, answered after SIGTERM) | sent after SIGTERM: completed / all | lost | lost, sent after SIGTERM | write failed | stale | refused | 503s | SIGTERM to exit ms | exit − last response ms | exit codes |"
  emit "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---|---|"
  fld() { awk -F'\t' -v s="$1" -v f="$2" '$1 == s { print $f }' "$tsv"; }
  for name in $servers; do
    emit "| $name | $(fld "$name" 2 | sumof) | $(fld "$name" 3 | sumof) | $(fld "$name" 5 | sumof) / $(fld "$name" 4 | sumof) | $(fld "$name" 6 | sumof) | $(fld "$name" 7 | sumof) | $(fld "$name" 8 | sumof) | $(fld "$name" 9 | sumof) | $(fld "$name" 10 | sumof) | $(fld "$name" 11 | sumof) | $(fmt1 "$(fld "$name" 12 | median)") / $(fmt1 "$(fld "$name" 12 | maxof)") | $(fmt1 "$(fld "$name" 13 | median)") / $(fmt1 "$(fld "$name" 13 | maxof)") | $(fld "$name" 14 | counts) |"
  done
  emit ""
}

# ------------------------------------------------------------------ run ----
started=$SECONDS
header
in_list throughput "$SECTIONS" && throughput
in_list fairness "$SECTIONS" && fairness
in_list idle "$SECTIONS" && idle
in_list shutdown "$SECTIONS" && shutdown
emit "_Total time: $((SECONDS - started)) s. Raw outputs and server logs: the output directory printed below._"
log "report: $report"
