# shellcheck shell=bash
# Shared helpers for bench/load/*.sh: start the test backend and the proxies under comparison
# (berth, nginx, HAProxy) on 127.0.0.1 with run-time ports, each as ONE worker/thread with
# upstream keep-alive to the same berth_test_backend. Every process is started as a single
# backgrounded command, its pid recorded in PIDS, and stopped by pid from the EXIT trap.
#
# The sourcing script sets, before calling anything here:
#   T        scratch directory (mktemp -d)
#   PIN      1 = pin with taskset (SERVER_CPU for backend/proxies, CLIENT_CPU for the load client)
# and calls `trap lib_cleanup EXIT`.

PIDS=()
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BACKEND_CPU=${BACKEND_CPU:-$SERVER_CPU}

log() { printf '%s\n' "$*" >&2; }

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# pin CPU: prints the taskset prefix (nothing when PIN=0). taskset execs the command, so `$!` is
# still the server's own pid.
pin() { if [ "${PIN:-1}" = 1 ]; then printf 'taskset -c %s' "$1"; fi; }

stop_pid() {
  local p=$1
  kill "$p" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null; return 0; }; sleep 0.1; done
  kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null
}

lib_cleanup() {
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  PIDS=()
  [ -n "${T:-}" ] && [ -d "$T" ] && [ "${KEEP_TMP:-0}" != 1 ] && rm -rf "$T"
}

# wait_http PORT [TRIES]: any HTTP answer on 127.0.0.1:PORT (curl exits 0 for any status).
wait_http() {
  local port=$1 tries=${2:-100}
  for _ in $(seq "$tries"); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" && return 0
    sleep 0.1
  done
  return 1
}

# Sum of VmRSS (KiB) over a pid and its direct children (nginx master + worker).
rss_kib() {
  local root=$1 sum=0 p v
  for p in "$root" $(ps -o pid= --ppid "$root" 2>/dev/null); do
    v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

# start_backend BIN -> sets BACKEND_PORT, BACKEND_PID
start_backend() {
  local bin=$1
  # shellcheck disable=SC2046
  $(pin "$BACKEND_CPU") "$bin" --listen 127.0.0.1:0 --name bench --threads 1 >"$T/backend.out" 2>"$T/backend.err" &
  BACKEND_PID=$!
  PIDS+=("$BACKEND_PID")
  for _ in $(seq 100); do
    BACKEND_PORT=$(awk '/^READY /{print $2; exit}' "$T/backend.out" 2>/dev/null)
    [ -n "$BACKEND_PORT" ] && break
    sleep 0.05
  done
  [ -n "$BACKEND_PORT" ] || { log "backend did not start: $(cat "$T/backend.err")"; return 1; }
}

# Ensure a backend binary exists: build it from tests/support/test_backend.cpp into $T if needed.
ensure_backend() {
  local bin=$1 src=$2
  if [ -x "$bin" ]; then echo "$bin"; return 0; fi
  log "backend binary $bin not found; compiling $src"
  g++ -std=c++20 -O2 -o "$T/berth_test_backend" "$src" -pthread >&2 || return 1
  echo "$T/berth_test_backend"
}

# start_nginx -> sets NGINX_PORT, NGINX_PID. Needs BACKEND_PORT. MAXCONN (default 2000) sizes
# worker_connections.
start_nginx() {
  NGINX_PORT=$(free_port)
  local d=$T/nginx wc=$(( ${MAXCONN:-2000} + 1000 ))
  mkdir -p "$d/tmp"
  cat >"$d/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log error;
worker_rlimit_nofile $(ulimit -Hn);
events {
  worker_connections $wc;
}
http {
  access_log off;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  keepalive_timeout 300s;
  keepalive_requests 1000000;
  upstream backend {
    server 127.0.0.1:$BACKEND_PORT;
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
  # shellcheck disable=SC2046
  $(pin "$SERVER_CPU") nginx -p "$d" -c "$d/nginx.conf" >"$d/stdout" 2>&1 &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  wait_http "$NGINX_PORT" || { log "nginx did not start: $(cat "$d/error.log" "$d/stdout" 2>/dev/null)"; return 1; }
}

# start_haproxy -> sets HAPROXY_PORT, HAPROXY_PID. Needs BACKEND_PORT.
start_haproxy() {
  HAPROXY_PORT=$(free_port)
  local d=$T/haproxy mc=$(( ${MAXCONN:-2000} + 500 ))
  mkdir -p "$d"
  cat >"$d/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn $mc
  # HAProxy reserves 2 fds per connection and by default refuses to start when that exceeds the
  # hard open-file limit; idle client connections need only one, so let it start with a warning.
  no strict-limits
defaults
  mode http
  maxconn $mc
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-request 300s
  timeout http-keep-alive 300s
  http-reuse always
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT
  default_backend be
backend be
  server s1 127.0.0.1:$BACKEND_PORT
EOF
  # shellcheck disable=SC2046
  $(pin "$SERVER_CPU") haproxy -f "$d/haproxy.cfg" -db >"$d/stdout" 2>&1 &
  HAPROXY_PID=$!
  PIDS+=("$HAPROXY_PID")
  wait_http "$HAPROXY_PORT" || { log "haproxy did not start: $(cat "$d/stdout")"; return 1; }
}

# start_berth BIN -> sets BERTH_PORT, BERTH_PID. Needs BACKEND_PORT.
start_berth() {
  local bin=$1 d=$T/berth
  BERTH_PORT=$(free_port)
  mkdir -p "$d"
  cat >"$d/dyn.yml" <<EOF
http:
  routers:
    bench:
      rule: "PathPrefix(\`/\`)"
      service: backend
  services:
    backend:
      loadBalancer:
        servers:
          - url: "http://127.0.0.1:$BACKEND_PORT"
EOF
  cat >"$d/berth.yml" <<EOF
entryPoints:
  web:
    address: "127.0.0.1:$BERTH_PORT"
providers:
  file:
    filename: $d/dyn.yml
workers: 1
log:
  level: ERROR
EOF
  # shellcheck disable=SC2046
  $(pin "$SERVER_CPU") "$bin" --configFile="$d/berth.yml" >"$d/stdout" 2>&1 &
  BERTH_PID=$!
  PIDS+=("$BERTH_PID")
  wait_http "$BERTH_PORT" 150 || { log "berth did not start: $(tail -20 "$d/stdout")"; return 1; }
}

# check_target NAME PORT: a proxied /size/100 must return 100 bytes from the backend.
check_target() {
  local name=$1 port=$2 out
  out=$(curl -s -D "$T/check.h" "http://127.0.0.1:$port/size/100") || { log "$name: request failed"; return 1; }
  if [ "${#out}" != 100 ] || ! grep -qi '^X-Backend: bench' "$T/check.h"; then
    log "$name: unexpected answer on /size/100 (${#out} bytes)"; return 1
  fi
}
