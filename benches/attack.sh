#!/usr/bin/env bash
# Slow-client attacks against gremlins-api and axum, in one run: slowhttptest
# in its slow headers (-H), slow body (-B) and slow read (-X) modes, and
# loadgen's pipeline-flood (pipelines requests, never reads a response),
# while `loadgen latency-probe` asks GET /healthz RATE times a second on
# fresh connections. Reports /healthz latency and errors alone and under
# each attack, the server's peak RSS, and how long the server held the
# attack connections. See benches/README.md.
#
# Every server listens on 127.0.0.1 only, every load is bounded in time, and
# every process this script starts is tracked by PID and killed on exit.
#
#   bash benches/attack.sh
#   SERVERS=gremlins MODES=slowbody,pipeline bash benches/attack.sh
set -euo pipefail

# ---------------------------------------------------------------- knobs ----
SERVERS=${SERVERS:-gremlins,axum}
MODES=${MODES:-slowloris,slowbody,slowread,pipeline}
SLOW_CONNECTIONS=${SLOW_CONNECTIONS:-1000}   # slowhttptest -c
SLOW_RATE=${SLOW_RATE:-200}                  # slowhttptest -r, connections per second
SLOW_INTERVAL=${SLOW_INTERVAL:-5}            # slowhttptest -i, seconds between follow-up data
FLOOD_CONNECTIONS=${FLOOD_CONNECTIONS:-50}   # loadgen pipeline-flood --connections
ATTACK_SECS=${ATTACK_SECS:-20}               # length of each attack
RAMP_SECS=${RAMP_SECS:-5}                    # the probe starts this long into it
PROBE_SECS=${PROBE_SECS:-10}                 # and runs this long
BASELINE_SECS=${BASELINE_SECS:-5}            # probe alone, before the attack
AFTER_SECS=${AFTER_SECS:-2}                  # probe again once the attack has ended
PROBE_RATE=${PROBE_RATE:-20}                 # /healthz requests per second
PROBE_TIMEOUT_MS=${PROBE_TIMEOUT_MS:-2000}   # bound on one of them
SEED_EVENTS=${SEED_EVENTS:-1000}             # events stored before slowread/pipeline
GREMLINS_ARGS=${GREMLINS_ARGS:-}             # extra gremlins-api flags
OUT_DIR=${OUT_DIR:-}                         # raw outputs and report.md

READY_TIMEOUT=15      # a server answering GET / after start
STOP_TIMEOUT=40       # a server exiting after SIGTERM (it may drain slow clients)
ATTACK_GRACE=15       # an attack tool exiting after ATTACK_SECS
SAMPLE_INTERVAL=0.5   # ss / proc sampling while an attack runs
MAX_SAMPLES=$(((ATTACK_SECS + ATTACK_GRACE) * 2 + 10))

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BENCH_NAME=attack
# shellcheck source=benches/common.sh
source "$here/common.sh"

# --------------------------------------------------------------- checks ----
command -v cargo >/dev/null || die "cargo is missing"
command -v ss >/dev/null || die "ss is missing (Debian: apt-get install iproute2)"
for s in ${SERVERS//,/ }; do
  in_list "$s" gremlins,axum || die "unknown server '$s' in SERVERS (gremlins, axum)"
done
for m in ${MODES//,/ }; do
  in_list "$m" slowloris,slowbody,slowread,pipeline || die "unknown mode '$m' in MODES"
  if [[ $m != pipeline ]]; then
    command -v slowhttptest >/dev/null || die "slowhttptest is missing (Debian: apt-get install slowhttptest)"
  fi
done
((RAMP_SECS + PROBE_SECS <= ATTACK_SECS)) || die "RAMP_SECS + PROBE_SECS must not exceed ATTACK_SECS"

if [[ -z $OUT_DIR ]]; then
  OUT_DIR=$(mktemp -d -t gremlins-attack.XXXXXX)
fi
mkdir -p "$OUT_DIR/logs" "$OUT_DIR/raw"
report="$OUT_DIR/report.md"
: >"$report"
emit() { printf '%s\n' "$*" | tee -a "$report"; }

raise_fd_limit
((SLOW_CONNECTIONS + 256 <= $(ulimit -n))) || die "ulimit -n $(ulimit -n) is too low for $SLOW_CONNECTIONS connections"

# ---------------------------------------------------------------- build ----
if in_list gremlins "$SERVERS"; then
  log "building gremlins-api (release)"
  (cd "$root" && cargo build --release --quiet --bin gremlins-api)
fi
log "building reference servers and loadgen (release)"
cargo build --release --quiet --manifest-path "$ref_dir/Cargo.toml" --target-dir "$ref_dir/target"

# -------------------------------------------------------------- helpers ----
# start_server NAME PORT: in the background, waits for GET /; sets SERVER_PID.
start_server() {
  local name=$1 addr="127.0.0.1:$2"
  local -a cmd
  case $name in
    gremlins)
      # shellcheck disable=SC2206 # GREMLINS_ARGS is split on purpose
      cmd=("$gremlins_bin" --listen "$addr" $GREMLINS_ARGS)
      ;;
    axum) cmd=("$ref_bin/axum-ok" "$addr") ;;
  esac
  SERVER_LOG="$OUT_DIR/logs/$name-$2.log"
  "${cmd[@]}" >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  own "$SERVER_PID"
  "$loadgen" probe --addr "$addr" --pid "$SERVER_PID" --timeout-secs "$READY_TIMEOUT" ||
    die "$name did not answer on $addr (log: $SERVER_LOG)"
}

# seed_events PORT: stores SEED_EVENTS events of ~200 bytes each (pipelined
# POSTs on one connection), so GET /v1/events?limit=1000 is a large page.
seed_events() {
  local port=$1 body i
  body='{"type":"bench.seed","payload":{"note":"'$(printf 'x%.0s' {1..100})'"}}'
  {
    for ((i = 1; i <= SEED_EVENTS; i++)); do
      printf 'POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n' "${#body}"
      ((i == SEED_EVENTS)) && printf 'Connection: close\r\n'
      printf '\r\n%s' "$body"
    done
  } >"$OUT_DIR/raw/seed-$port.req"
  # One connection: write every request, then read until the server closes.
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 30 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && cat "$2" >&3 && cat <&3' \
    _ "$port" "$OUT_DIR/raw/seed-$port.req" >"$OUT_DIR/raw/seed-$port.txt" || true
  grep -ao 'HTTP/1.1 201' "$OUT_DIR/raw/seed-$port.txt" | wc -l
}

# probe_run SECS OUT PORT: loadgen latency-probe on /healthz, JSON to OUT.
probe_run() {
  "$loadgen" latency-probe --addr "127.0.0.1:$3" --path /healthz --rate "$PROBE_RATE" \
    --duration-secs "$1" --timeout-ms "$PROBE_TIMEOUT_MS" >"$2" 2>>"$OUT_DIR/logs/loadgen.err" || true
}

# sampler ATTACK_PID SERVER_PID PORT OUT: every SAMPLE_INTERVAL while the
# attack runs, the attack's connections that are ESTABLISHED on its side
# (neither end has closed): one "SECONDS LOCAL_PORT" line each, seconds since
# the sampler started; and one "# SECONDS VmRSS_kB" line per sample.
sampler() {
  local attack=$1 server=$2 port=$3 out=$4 i t0=$EPOCHREALTIME t
  : >"$out"
  for ((i = 0; i < MAX_SAMPLES; i++)); do
    is_running "$attack" || break
    t=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
    ss -Htnp state established "( dport = :$port )" 2>/dev/null |
      awk -v t="$t" -v p="pid=$attack," 'index($0, p) { n = split($3, a, ":"); print t, a[n] }' >>"$out"
    printf '# %s %s\n' "$t" "$(proc_field "$server" VmRSS)" >>"$out"
    sleep "$SAMPLE_INTERVAL"
  done
}

# held_summary SAMPLES: "peak concurrent|seen|held to the end|median s|max s",
# the times over the connections the server closed before the end. "The
# end" is 1 s before the attack's planned end (when the tools start closing).
held_summary() {
  awk -v dt="$SAMPLE_INTERVAL" -v end="$((ATTACK_SECS - 1))" '
    /^#/ { next }
    { c[$1]++; if (!($2 in first)) first[$2] = $1; seen[$2] = $1 }
    END {
      peak = 0; for (s in c) if (c[s] > peak) peak = c[s];
      n = 0; open = 0; total = 0;
      for (p in first) {
        total++;
        if (seen[p] >= end) open++; else h[++n] = seen[p] - first[p] + dt / 2
      }
      # insertion sort: n is at most a few thousand
      for (i = 2; i <= n; i++) { v = h[i]; j = i - 1; while (j > 0 && h[j] > v) { h[j + 1] = h[j]; j-- } h[j + 1] = v }
      med = n ? sprintf("%.1f", h[int((n + 1) / 2)]) : "-"; mx = n ? sprintf("%.1f", h[n]) : "-";
      printf "%d|%d|%d|%s|%s\n", peak, total, open, med, mx
    }' "$1"
}

# probe_cell JSON: "p50 / p99 ms" ; errors_cell JSON: "errors / requested (kinds)"
probe_cell() {
  [[ -n $1 ]] || {
    echo "-"
    return
  }
  echo "$(fmt1 "$(jget "$1" p50_ms)") / $(fmt1 "$(jget "$1" p99_ms)")"
}
errors_cell() {
  [[ -n $1 ]] || {
    echo "probe failed"
    return
  }
  local kinds="" k v
  for k in connect_timeouts connect_errors timed_out closed bad_status other_errors; do
    v=$(jget "$1" "$k")
    [[ -n $v && $v != 0 ]] || continue
    kinds+="${kinds:+, }$k $v"
    [[ $k == bad_status ]] && kinds+=" [$(jget "$1" bad_statuses)]"
  done
  echo "$(jget "$1" errors) / $(jget "$1" requested)${kinds:+ ($kinds)}"
}

# ------------------------------------------------------------------ run ----
page_bytes=200000 # size of gremlins' 1000-event page; measured below when it runs

# attack_cmd MODE NAME PORT PREFIX: sets ATTACK (argv) and ATTACK_DESC.
attack_cmd() {
  local mode=$1 name=$2 port=$3 prefix=$4 base="http://127.0.0.1:$3"
  local get_url big_url post_url
  if [[ $name == gremlins ]]; then
    get_url="$base/v1/events" post_url="$base/v1/events" big_url="$base/v1/events?limit=1000"
    big_path="/v1/events?limit=1000"
  else
    get_url="$base/" post_url="$base/" big_url="$base/test/bytes?n=$page_bytes"
    big_path="/test/bytes?n=$page_bytes"
  fi
  local -a slow=(slowhttptest -c "$SLOW_CONNECTIONS" -r "$SLOW_RATE" -l "$ATTACK_SECS" -p 2 -g -o "$prefix")
  case $mode in
    slowloris)
      ATTACK=("${slow[@]}" -H -i "$SLOW_INTERVAL" -u "$get_url")
      ATTACK_DESC="slowhttptest -H, GET ${get_url#"$base"}"
      ;;
    slowbody)
      ATTACK=("${slow[@]}" -B -i "$SLOW_INTERVAL" -s 8192 -u "$post_url")
      ATTACK_DESC="slowhttptest -B, POST ${post_url#"$base"}"
      ;;
    slowread)
      ATTACK=("${slow[@]}" -X -k 1 -n 1 -w 512 -y 1024 -z 32 -u "$big_url")
      ATTACK_DESC="slowhttptest -X, GET ${big_url#"$base"}"
      ;;
    pipeline)
      ATTACK=("$loadgen" pipeline-flood --addr "127.0.0.1:$port" --connections "$FLOOD_CONNECTIONS"
        --duration-secs "$ATTACK_SECS" --path "$big_path")
      ATTACK_DESC="pipeline-flood ×$FLOOD_CONNECTIONS, GET $big_path"
      ;;
  esac
}

started=$SECONDS
emit "# Slow-client attacks: /healthz under slowhttptest and a non-reading pipeliner"
emit ""
emit "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); $(nproc) cores; kernel $(uname -r); $(slowhttptest -h 2>&1 | sed -n 's/.*version \([0-9.]*\).*/slowhttptest \1/p' | head -n1)"
emit "- gremlins-api commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$root" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' (with uncommitted changes)'); flags: --listen 127.0.0.1:PORT $GREMLINS_ARGS (defaults otherwise)"
emit "- slowhttptest: -c $SLOW_CONNECTIONS -r $SLOW_RATE -l $ATTACK_SECS (-H/-B: -i $SLOW_INTERVAL, -B: -s 8192; -X: -k 1 -n 1 -w 512 -y 1024 -z 32); pipeline-flood: $FLOOD_CONNECTIONS connections, ${ATTACK_SECS}s"
emit "- probe: GET /healthz, $PROBE_RATE/s, a fresh connection each, timeout ${PROBE_TIMEOUT_MS} ms: ${BASELINE_SECS}s alone, then ${PROBE_SECS}s from ${RAMP_SECS}s into the attack, then ${AFTER_SECS}s after it ended. A fresh server per row."
emit "- slowread and pipeline ask for a large response: gremlins GET /v1/events?limit=1000 after storing $SEED_EVENTS events, axum GET /test/bytes?n=(the same size)."
emit ""

rows="$OUT_DIR/rows.md"
: >"$rows"
for mode in ${MODES//,/ }; do
  for name in ${SERVERS//,/ }; do
    port=$("$loadgen" free-port)
    start_server "$name" "$port"
    tag="$name-$mode"
    if [[ $name == gremlins && ($mode == slowread || $mode == pipeline) ]]; then
      seeded=$(seed_events "$port")
      page_bytes=$(curl -s --max-time 5 "http://127.0.0.1:$port/v1/events?limit=1000" | wc -c) || true
      log "$tag: seeded $seeded events; page of 1000 is $page_bytes bytes"
    fi
    log "$tag: probe alone, ${BASELINE_SECS}s"
    probe_run "$BASELINE_SECS" "$OUT_DIR/raw/$tag-alone.json" "$port"

    attack_cmd "$mode" "$name" "$port" "$OUT_DIR/raw/$tag-slowhttptest"
    log "$tag: ${ATTACK[*]}"
    "${ATTACK[@]}" >"$OUT_DIR/raw/$tag-attack.out" 2>&1 &
    attack_pid=$!
    own "$attack_pid"
    sampler "$attack_pid" "$SERVER_PID" "$port" "$OUT_DIR/raw/$tag-held.txt" &
    sampler_pid=$!
    own "$sampler_pid"
    sleep "$RAMP_SECS"
    log "$tag: probe under attack, ${PROBE_SECS}s"
    probe_run "$PROBE_SECS" "$OUT_DIR/raw/$tag-attack.json" "$port"
    threads=$(proc_field "$SERVER_PID" Threads)
    # The attack ends by itself after ATTACK_SECS; bounded wait, then kill.
    for ((i = 0; i < (ATTACK_SECS + ATTACK_GRACE) * 10; i++)); do
      is_running "$attack_pid" || break
      sleep 0.1
    done
    kill -KILL "$attack_pid" 2>/dev/null || true
    wait "$attack_pid" 2>/dev/null || true
    disown_pid "$attack_pid"
    wait "$sampler_pid" 2>/dev/null || true
    disown_pid "$sampler_pid"
    sleep 0.5
    log "$tag: probe after the attack, ${AFTER_SECS}s"
    probe_run "$AFTER_SECS" "$OUT_DIR/raw/$tag-after.json" "$port"
    hwm=$(proc_field "$SERVER_PID" VmHWM)
    stop_server "$SERVER_PID"

    alone=$(cat "$OUT_DIR/raw/$tag-alone.json")
    under=$(cat "$OUT_DIR/raw/$tag-attack.json")
    after=$(cat "$OUT_DIR/raw/$tag-after.json")
    IFS='|' read -r peak seen open med mx <<<"$(held_summary "$OUT_DIR/raw/$tag-held.txt")"
    held="$open of $seen held to the end"
    ((seen > open)) && held+="; $((seen - open)) closed after median ${med}s, max ${mx}s"
    if [[ $mode == pipeline ]]; then
      f=$(cat "$OUT_DIR/raw/$tag-attack.out")
      held+="; loadgen: $(jget "$f" closed_by_server) closed by server, held p50 $(fmt1 "$(awk -v v="$(jget "$f" held_p50_ms)" 'BEGIN { if (v ~ /^[0-9.]+$/) print v / 1000; else print "-" }')")s, $(jget "$f" requests_written) requests written"
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
      "$name" "$ATTACK_DESC" "$(probe_cell "$alone")" "$(errors_cell "$alone")" \
      "$(probe_cell "$under")" "$(errors_cell "$under")" "$(errors_cell "$after")" \
      "$(kib_to_mib "$hwm")" "$threads" "$peak" "$held" "$SERVER_EXIT" >>"$rows"
  done
done

emit "## /healthz under attack"
emit ""
emit "p50 / p99 are over the 200 responses only; errors are counted by kind (timed_out: connected, no response within the timeout). Held connections are the attack's TCP connections still ESTABLISHED on its side (neither end has closed them), sampled every ${SAMPLE_INTERVAL}s with ss; a hold time is first to last sample seen (±${SAMPLE_INTERVAL}s); \"held to the end\" means still open 1 s before the attack's planned end (${ATTACK_SECS}s), i.e. the server never closed it."
emit ""
emit "| server | attack | alone p50 / p99 ms | alone errors / requests | under attack p50 / p99 ms | under attack errors / requests | after attack errors / requests | peak RSS MiB (VmHWM) | threads | attack conns held (peak) | attack connection hold times | exit after SIGTERM |"
emit "|---|---|---:|---|---:|---|---|---:|---:|---:|---|---|"
while IFS= read -r line; do emit "$line"; done <"$rows"
emit ""
emit "_Total time: $((SECONDS - started)) s. Raw outputs (probe JSON, slowhttptest output and CSV, ss samples, server logs): ${OUT_DIR}_"
log "report: $report"
