# shellcheck shell=bash
# Shared by the bench scripts (sourced, not run): logging, the processes a
# script owns (killed by PID on any exit), bounded waits, /proc readings,
# wrk's output, perf stat counts, a throwaway PostgreSQL, and number
# helpers. The sourcing script sets `here` (its directory) before it
# sources this; BENCH_NAME (its log prefix) and OUT_DIR/logs before it calls
# stop_server or start_postgres; and MARKER_POLL if waits should poll more
# often than every 0.1 s.

# The repository, the reference servers' and gremlins-api's binaries, from
# the directory of the sourcing script (`here`, which it sets first).
# shellcheck disable=SC2154,SC2034 # `here` is the sourcing script's; it reads these
root=$(cd "$here/.." && pwd)
ref_dir="$here/reference"
ref_bin="$ref_dir/target/release"
loadgen="$ref_bin/loadgen"
gremlins_bin="${CARGO_TARGET_DIR:-$root/target}/release/gremlins-api"

log() { printf '[%s %s] %s\n' "$BENCH_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
in_list() { [[ ",$2," == *",$1,"* ]]; }

# ------------------------------------------------------ owned processes ----
# PIDs this script started and has not reaped yet; killed on any exit.
declare -a owned=()
own() { owned+=("$1"); }
disown_pid() {
  local keep=() p
  for p in "${owned[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  owned=("${keep[@]+"${keep[@]}"}")
}
cleanup() {
  local p
  for p in "${owned[@]+"${owned[@]}"}"; do
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  [[ -n ${pg_dir:-} ]] && rm -rf "$pg_dir"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# reap PID: waits for an exited (or killed) child, sets SERVER_EXIT.
# shellcheck disable=SC2034 # SERVER_EXIT is read by the sourcing script
reap() {
  SERVER_EXIT=0
  wait "$1" 2>/dev/null || SERVER_EXIT=$?
  disown_pid "$1"
}

# stop_server PID: SIGTERM, bounded wait (STOP_TIMEOUT), SIGKILL if still
# running; sets STOP_JSON (loadgen stop's report, or empty if it had
# already died) and SERVER_EXIT.
# shellcheck disable=SC2034,SC2154 # STOP_JSON is for the caller; loadgen is its
stop_server() {
  local pid=$1
  if ! STOP_JSON=$("$loadgen" stop --pid "$pid" --max-secs "$STOP_TIMEOUT" 2>>"$OUT_DIR/logs/loadgen.err"); then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  reap "$pid"
}

# raise_fd_limit: ulimit -n up to the hard limit.
raise_fd_limit() {
  local hard
  hard=$(ulimit -Hn)
  [[ $hard == unlimited ]] && hard=1048576
  ulimit -n "$hard" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# ---------------------------------------------------------------- waits ----
now_ms() { date +%s%3N; }
# wait_for SECONDS COMMAND...: runs COMMAND every MARKER_POLL seconds until
# it succeeds (true) or SECONDS have passed (false).
wait_for() {
  local end=$(($(now_ms) + $1 * 1000))
  shift
  until "$@"; do
    (($(now_ms) < end)) || return 1
    sleep "${MARKER_POLL:-0.1}"
  done
}
# wait_child PID SECONDS: waits for a child of this script, SIGKILL after
# SECONDS; sets CHILD_EXIT.
# shellcheck disable=SC2034 # CHILD_EXIT is read by the sourcing script
wait_child() {
  wait_for "$2" not_running "$1" || {
    log "process $1 still running after $2 s: killed"
    kill -KILL "$1" 2>/dev/null || true
  }
  CHILD_EXIT=0
  wait "$1" 2>/dev/null || CHILD_EXIT=$?
  disown_pid "$1"
}
# shellcheck disable=SC2317 # called through wait_for
not_running() { ! is_running "$1"; }

# ------------------------------------------------------------ readings ----
# proc_field PID KEY: a field of /proc/PID/status ("Threads", "VmHWM" in kB), or "-".
proc_field() {
  awk -v k="$2:" '$1 == k { print $2; found = 1 } END { if (!found) print "-" }' \
    "/proc/$1/status" 2>/dev/null || echo "-"
}
# is_running PID: true while PID exists and is not a zombie (an exited child
# stays a zombie until this script reaps it).
is_running() {
  local state
  state=$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# ---------------------------------------------------------- wrk output ----
# wrk_ms VALUE: wrk latency ("850.00us", "1.20ms", "2.01s", "1.00m") in ms, "-" if empty.
wrk_ms() {
  awk -v v="$1" 'BEGIN {
    if (v == "") { print "-"; exit }
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
    printf "%.2f", n }'
}
# wrk_field FILE KEY: from wrk's output in FILE: rps, requests, p50, p99
# (ms; p50 and p99 need --latency), max (ms), connect, read, write,
# timeout (socket errors), non2xx (non-2xx or 3xx responses).
wrk_field() {
  local f=$1
  case $2 in
    rps) awk '/^Requests\/sec:/ { print $2 }' "$f" ;;
    requests) awk '/ requests in / { print $1 }' "$f" ;;
    p50) wrk_ms "$(awk '$1 == "50%" { print $2 }' "$f")" ;;
    p99) wrk_ms "$(awk '$1 == "99%" { print $2 }' "$f")" ;;
    max) wrk_ms "$(awk '$1 == "Latency" { print $4; exit }' "$f")" ;;
    connect | read | write | timeout)
      awk -v k="$2" '/Socket errors:/ { gsub(/,/, ""); for (i = 3; i < NF; i += 2) if ($i == k) print $(i + 1) }' "$f" |
        grep . || echo 0
      ;;
    non2xx) awk '/Non-2xx or 3xx responses:/ { print $5 }' "$f" | grep . || echo 0 ;;
  esac
}

# ----------------------------------------------------------- perf stat ----
# What perf_count counts: syscalls entered, context switches, CPU time (ms).
PERF_EVENTS=raw_syscalls:sys_enter,context-switches,task-clock
# perf_check: fails the script unless perf can count PERF_EVENTS here.
perf_check() {
  command -v perf >/dev/null || die "perf is missing (Debian: apt-get install linux-perf)"
  perf stat -x, -e "$PERF_EVENTS" -- true >/dev/null 2>&1 ||
    die "perf stat cannot count raw_syscalls:sys_enter here (perf_event_paranoid, tracefs?)"
}
# perf_count PID SECONDS CSV: counts PERF_EVENTS of process PID (all its
# threads) for SECONDS, into CSV.
perf_count() { perf stat -x, -o "$3" -e "$PERF_EVENTS" -p "$1" -- sleep "$2"; }
# perf_event CSV EVENT: one count from perf_count's CSV (task-clock in ms),
# empty if it is not there.
perf_event() { awk -F, -v e="$2" '$3 == e { print $1 }' "$1"; }

# ------------------------------------------------- throwaway PostgreSQL ----
pg_bin='' pg_dir='' pg_pid='' pg_port=''
# find_postgres: sets pg_bin to the directory of initdb and postgres; false
# if there is none.
find_postgres() {
  # shellcheck disable=SC2012 # version-sorted directory names, no odd characters
  pg_bin=$(dirname "$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n1)")
  [[ -x $pg_bin/initdb && -x $pg_bin/postgres ]]
}
# start_postgres: initdb in a new temporary directory and postgres on a
# free port of 127.0.0.1 (fsync on, as in production; as the postgres user
# when the script is root), owned; waits at most PG_TIMEOUT s for it to
# accept connections. Sets pg_dir (removed on exit), pg_pid and pg_port.
start_postgres() {
  pg_dir=$(mktemp -d -t "gremlins-$BENCH_NAME-pg.XXXXXX")
  local -a as_pg=()
  if [[ $(id -u) -eq 0 ]]; then
    # PostgreSQL refuses to run as root. setpriv execs, so $! is the postmaster.
    chown postgres: "$pg_dir"
    as_pg=(setpriv --reuid=postgres --regid=postgres --clear-groups --)
  fi
  "${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U postgres -A trust >"$OUT_DIR/logs/initdb.log" 2>&1 ||
    die "initdb failed (see $OUT_DIR/logs/initdb.log)"
  pg_port=$("$loadgen" free-port)
  "${as_pg[@]}" "$pg_bin/postgres" -D "$pg_dir/data" -p "$pg_port" -k "$pg_dir" \
    -c listen_addresses=127.0.0.1 -c max_connections=100 >"$OUT_DIR/logs/postgres.log" 2>&1 &
  pg_pid=$!
  own "$pg_pid"
  wait_for "$PG_TIMEOUT" grep -q "ready to accept connections" "$OUT_DIR/logs/postgres.log" ||
    die "PostgreSQL did not start (see $OUT_DIR/logs/postgres.log)"
  log "PostgreSQL on 127.0.0.1:$pg_port (pid $pg_pid)"
}
# stop_postgres: its fast shutdown (SIGINT), at most PG_TIMEOUT s, and its
# directory removed.
stop_postgres() {
  kill -INT "$pg_pid" 2>/dev/null || true
  wait_child "$pg_pid" "$PG_TIMEOUT"
  pg_pid=
  rm -rf "$pg_dir"
  pg_dir=
}
# pg_query SQL: the rows of one query, unaligned, "|" between columns.
pg_query() {
  local psql
  psql=$(command -v psql || echo "$pg_bin/psql")
  "$psql" -h 127.0.0.1 -p "$pg_port" -U postgres -Atc "$1"
}
# pg_rows: rows in the events table, or "-".
pg_rows() { pg_query "select count(*) from events" 2>/dev/null || echo "-"; }

# ------------------------------------------------------------- numbers ----
# jget JSON KEY: a scalar from one of loadgen's flat JSON lines.
jget() { sed -n "s/.*\"$2\":\(\"[^\"]*\"\|[^,}]*\).*/\1/p" <<<"$1" | tr -d '"'; }
# median < numbers: median of the numeric lines on stdin, "-" if none.
numbers() { grep -E '^-?[0-9.]+$' || true; }
median() {
  numbers | sort -g |
    awk '{ a[NR] = $1 } END {
      if (NR == 0) print "-";
      else if (NR % 2) print a[(NR + 1) / 2];
      else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
maxof() { numbers | sort -g | awk '{ m = $1 } END { print (NR ? m : "-") }'; }
sumof() { numbers | awk '{ s += $1 } END { print s + 0 }'; }
kib_to_mib() { awk -v k="$1" 'BEGIN { if (k ~ /^[0-9]+$/) printf "%.1f", k / 1024; else print "-" }'; }
fmt1() { awk -v v="$1" 'BEGIN { if (v ~ /^-?[0-9.]+$/) printf "%.1f", v; else print "-" }'; }
fmt2() { awk -v v="$1" 'BEGIN { if (v ~ /^-?[0-9.]+$/) printf "%.2f", v; else print "-" }'; }
