# shellcheck shell=bash
# Shared by the bench scripts (sourced, not run): logging, the processes a
# script owns (killed by PID on any exit), /proc readings, and number
# helpers. The sourcing script sets BENCH_NAME (its log prefix), loadgen and
# OUT_DIR/logs before it calls stop_server.

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

# ---------------------------------------------------- readings, numbers ----
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
