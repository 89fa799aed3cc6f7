#!/usr/bin/env bash
# Heap allocations per proxied request in steady state, counted by heaptrack around the real berth
# binary: one run with no traffic (start-up and shutdown) and one with wrk traffic; the difference
# divided by the requests served is the per-request figure (HP-1 says it must be ~0).
# Usage: bench/load/allocs.sh [BERTH] [BACKEND]   env: DURATION=5s CONNS=64 PATH_=/size/100 OBSERVE=0
#   H2=1: the clients speak HTTP/2 (h2c, h2load -m10: 10 streams in flight on each connection).
#   TLS=1: over TLS 1.3 (HTTPS/1.1 with wrk; with H2=1, h2 by ALPN), a self-signed ECDSA certificate.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BERTH_BIN=$(realpath "${1:-$ROOT/build/berth}")
BACKEND_BIN=${2:-$ROOT/build/tests/support/berth_test_backend}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
REQ_PATH=${PATH_:-/size/100}
PIN=0
T=$(mktemp -d -t berth-allocs.XXXXXX)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
trap lib_cleanup EXIT
command -v heaptrack >/dev/null || { log "heaptrack is not installed (apt-get install heaptrack)"; exit 1; }
# heaptrack counts malloc and friends; jemalloc has its own operator new, which it would not see.
# So a jemalloc berth (the default build) is measured as its glibc twin, built beside it.
if "$BERTH_BIN" version 2>/dev/null | grep -q '^allocator: jemalloc'; then
  log "$BERTH_BIN links jemalloc, whose operator new heaptrack cannot see: measuring a -DBERTH_JEMALLOC=OFF build ($ROOT/build-glibc)"
  cmake -S "$ROOT" -B "$ROOT/build-glibc" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBERTH_JEMALLOC=OFF \
    -DBERTH_TESTS=OFF -DBERTH_BENCH=OFF >/dev/null
  cmake --build "$ROOT/build-glibc" -j2 --target berth >/dev/null
  BERTH_BIN=$ROOT/build-glibc/berth
fi
SCHEME=http ROUTER_TLS=
if [ "${TLS:-0}" = 1 ]; then
  SCHEME=https ROUTER_TLS=$'      tls: {}\n'
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null
fi
BACKEND_BIN=$(ensure_backend "$BACKEND_BIN" "$ROOT/tests/support/test_backend.cpp")
start_backend "$BACKEND_BIN"

# run_under_heaptrack NAME TRAFFIC(0|1) -> prints "<allocation calls> <requests>"
run_under_heaptrack() {
  local name=$1 traffic=$2 port d=$T/$1 requests=0
  port=$(free_port)
  mkdir -p "$d"
  printf 'http:\n  routers:\n    r:\n      rule: "PathPrefix(`/`)"\n      service: s\n%s  services:\n    s:\n      loadBalancer:\n        servers:\n          - url: "http://127.0.0.1:%s"\n' \
    "$ROUTER_TLS" "$BACKEND_PORT" >"$d/dyn.yml"
  if [ "${TLS:-0}" = 1 ]; then
    printf 'tls:\n  certificates:\n    - certFile: %s\n      keyFile: %s\n' "$T/cert.pem" "$T/key.pem" >>"$d/dyn.yml"
  fi
  printf 'entryPoints:\n  web:\n    address: "127.0.0.1:%s"\nproviders:\n  file:\n    filename: %s\nworkers: 1\nlog:\n  level: ERROR\n' "$port" "$d/dyn.yml" >"$d/berth.yml"
  # Enough idle upstream connections for every request in flight (H2=1: CONNS x 10), as bench/tls
  # gives every proxy: beyond Traefik's default of 200, each extra request would open a connection.
  printf 'serversTransport:\n  maxIdleConnsPerHost: 1024\n' >>"$d/berth.yml"
  # OBSERVE=1: with metrics (every family) and a JSON access log, to show they allocate nothing either.
  if [ "${OBSERVE:-0}" = 1 ]; then
    printf 'metrics:\n  prometheus:\n    entryPoint: web\n    addRoutersLabels: true\naccessLog:\n  filePath: %s\n  format: json\n' \
      "$d/access.log" >>"$d/berth.yml"
  fi
  heaptrack -o "$d/ht" "$BERTH_BIN" --configFile="$d/berth.yml" >"$d/heaptrack.out" 2>&1 &
  local ht_pid=$!
  PIDS+=("$ht_pid")
  wait_http "$port" 200 || { log "berth did not start under heaptrack"; return 1; }
  # Every request counts, warm-up included: the heap calls it made are in the total too.
  if [ "$traffic" = 1 ] && [ "${H2:-0}" = 1 ]; then
    local run
    for run in "-n 20000" "-D ${DURATION%s}"; do  # warm-up (pools fill), then the measured run
      # shellcheck disable=SC2086
      requests=$((requests + $(h2load -c"$CONNS" -m10 $run "$SCHEME://127.0.0.1:$port$REQ_PATH" |
        awk '/^requests:/{for (i = 1; i <= NF; ++i) if ($(i + 1) ~ /^succeeded/) print $i}')))
    done
  elif [ "$traffic" = 1 ]; then
    local run
    for run in 2s "$DURATION"; do  # warm-up (pools fill), then the measured run
      local out
      out=$(wrk -t1 -c"$CONNS" -d"$run" "$SCHEME://127.0.0.1:$port$REQ_PATH")
      # Only answered requests count (h2load's "succeeded" are 2xx and 3xx too).
      if grep -q "Non-2xx" <<<"$out"; then log "berth answered with errors: $(grep Non-2xx <<<"$out")"; return 1; fi
      requests=$((requests + $(awk '/requests in/{print $1}' <<<"$out")))
    done
  else
    sleep 1
  fi
  pkill -TERM -P "$ht_pid" -f "$BERTH_BIN" 2>/dev/null || true
  wait "$ht_pid" 2>/dev/null || true
  local calls
  calls=$(heaptrack_print -f "$d"/ht.*zst 2>/dev/null | awk -F': ' '/^calls to allocation functions/{split($2,a," "); print a[1]}')
  echo "$calls $requests"
}

read -r base_calls _ < <(run_under_heaptrack idle 0)
read -r load_calls requests < <(run_under_heaptrack load 1)
[ "${requests:-0}" -gt 0 ] || { log "no request was answered with 2xx (see above): nothing to count"; exit 1; }
per=$(awk -v a="$load_calls" -v b="$base_calls" -v r="$requests" 'BEGIN { printf "%.4f", (a - b) / (r > 0 ? r : 1) }')
echo "allocation calls: $base_calls without traffic, $load_calls with $requests requests ($SCHEME, $REQ_PATH, $CONNS connections)"
echo "heap allocations per proxied request: $per"
