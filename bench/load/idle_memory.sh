#!/bin/bash
# Idle keep-alive memory: for each proxy in turn (berth, nginx, HAProxy; one worker each, same
# configs as run.sh), open CONNS (default 10,000) keep-alive connections that each do one
# GET /size/100 and then stay idle, and report the proxy's RSS growth per connection
# (VmRSS of the proxy process + its direct children, before vs. after).
#
#   bench/load/idle_memory.sh [BERTH_BIN] [BACKEND_BIN]
#
# Environment: CONNS=10000  TARGETS="berth nginx haproxy"
#   SOURCES=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4  (client source addresses, loopback only)
#   OUT=bench/load/last-idle.md
# Idle timeouts are long enough to keep the connections: nginx keepalive_timeout 300s,
# HAProxy timeout http-keep-alive/client 300s, berth's default idleTimeout (180s).
# The open-file limit is raised to the hard limit; each proxy needs ≈ CONNS + a few fds.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BERTH_BIN=${1:-$ROOT/build/berth}
BACKEND_BIN=${2:-$ROOT/build/tests/support/berth_test_backend}
CONNS=${CONNS:-10000}
TARGETS=${TARGETS:-"berth nginx haproxy"}
SOURCES=${SOURCES:-127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4}
OUT=${OUT:-$HERE/last-idle.md}
PIN=0
MAXCONN=$CONNS

T=$(mktemp -d -t berth-idle.XXXXXX)
# shellcheck source=lib.sh
source "$HERE/lib.sh"
trap lib_cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n "$(ulimit -Hn)" 2>/dev/null
if [ "$(ulimit -n)" -lt $((CONNS + 200)) ]; then
  echo "open-file limit $(ulimit -n) is too low for CONNS=$CONNS" >&2
  exit 1
fi

BACKEND_BIN=$(ensure_backend "$BACKEND_BIN" "$ROOT/tests/support/test_backend.cpp") || exit 1
start_backend "$BACKEND_BIN" || exit 1
log "backend on 127.0.0.1:$BACKEND_PORT (pid $BACKEND_PID)"

ROWS=()
NOTES=()
for t in $TARGETS; do
  port="" pid=""
  case $t in
    berth)
      if [ ! -x "$BERTH_BIN" ]; then
        log "berth binary $BERTH_BIN not found: skipping berth"; NOTES+=("berth skipped: $BERTH_BIN not found"); continue
      fi
      start_berth "$BERTH_BIN" && port=$BERTH_PORT pid=$BERTH_PID ;;
    nginx) start_nginx && port=$NGINX_PORT pid=$NGINX_PID ;;
    haproxy) start_haproxy && port=$HAPROXY_PORT pid=$HAPROXY_PID ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
  if [ -z "$port" ]; then NOTES+=("$t skipped: failed to start"); continue; fi
  log "$t on 127.0.0.1:$port (pid $pid): opening $CONNS idle connections"
  line=$(/usr/bin/python3 "$HERE/idle_conns.py" --port "$port" --pid "$pid" --conns "$CONNS" --sources "$SOURCES" | grep '^RESULT ')
  log "$t: ${line#RESULT }"
  ROWS+=("$t ${line#RESULT }")
  stop_pid "$pid"
done

{
  echo "# Idle keep-alive memory ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "$CONNS connections, each after one GET /size/100, held idle; RSS = VmRSS of the proxy process and its children."
  for note in "${NOTES[@]}"; do echo "Note: $note."; done
  echo
  echo "| proxy | RSS before | RSS with idle conns | KiB per idle conn | conns ok | still open |"
  echo "|---|---:|---:|---:|---:|---:|"
  for row in "${ROWS[@]}"; do
    # shellcheck disable=SC2086
    set -- $row
    name=$1; shift
    declare -A kv=()
    for f in "$@"; do kv[${f%%=*}]=${f#*=}; done
    awk -v n="$name" -v b="${kv[rss_before_kib]:-0}" -v a="${kv[rss_after_kib]:-0}" -v k="${kv[kib_per_conn]:--}" \
        -v ok="${kv[ok]:--}" -v so="${kv[still_open]:--}" \
        'BEGIN { printf "| %s | %.1f MiB | %.1f MiB | %s | %s | %s |\n", n, b / 1024, a / 1024, k, ok, so }'
    unset kv
  done
} >"$T/idle.md"
cat "$T/idle.md"
cp "$T/idle.md" "$OUT"
log "table written to $OUT"
