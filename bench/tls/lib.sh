# shellcheck shell=bash
# Helpers for bench/tls/run.sh: a throw-away CA + ECDSA P-256 leaf, and the TLS-terminating
# servers under comparison (berth, nginx, HAProxy, nghttpx, h2o), each with ONE worker/thread,
# TLS 1.3 only, ALPN h2 + http/1.1, proxying over HTTP/1.1 keep-alive to the same
# berth_test_backend. Sources bench/load/lib.sh (log, free_port, pin, stop_pid, lib_cleanup,
# start_backend, ensure_backend); every server is one backgrounded command whose pid goes to PIDS.
#
# The sourcing script sets T (scratch dir) and PIN, and calls `trap lib_cleanup EXIT`.
#
# UPSTREAM_IDLE (default 1024) is the idle upstream pool of berth (maxIdleConnsPerHost, default
# 200 as in Traefik) and nginx (`keepalive`): h2load's 64 x 10 streams put 640 requests in flight,
# and a pool smaller than that makes the proxy open and close backend connections per request
# (HAProxy, nghttpx and h2o keep theirs without a cap).

# shellcheck source=../load/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../load/lib.sh"

SNI=bench.test

# make_certs: $T/certs/{ca,leaf}.{pem,key} (ECDSA P-256; leaf for bench.test and 127.0.0.1,
# signed by the CA) and leaf.combined.pem (cert + key, for HAProxy).
make_certs() {
  local d=$T/certs
  mkdir -p "$d"
  (
    cd "$d" || exit 1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
      -days 2 -subj "/CN=berth bench CA" &&
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key -out leaf.csr \
      -subj "/CN=$SNI" &&
    printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\nsubjectAltName=DNS:%s,IP:127.0.0.1\n' \
      "$SNI" >leaf.ext &&
    openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 8)" -days 2 \
      -extfile leaf.ext -out leaf.pem &&
    cat leaf.pem leaf.key >leaf.combined.pem
  ) >"$T/certs.log" 2>&1 || { log "certificate generation failed: $(cat "$T/certs.log")"; return 1; }
  CERT=$d/leaf.pem KEY=$d/leaf.key CA=$d/ca.pem
}

# wait_https PORT [TRIES]: a TLS handshake + any HTTP answer on 127.0.0.1:PORT.
wait_https() {
  local port=$1 tries=${2:-100}
  for _ in $(seq "$tries"); do
    curl -sk -o /dev/null --max-time 1 "https://127.0.0.1:$port/" && return 0
    sleep 0.1
  done
  return 1
}

# start_berth_tls BIN [NAME] -> BERTH_PORT, BERTH_PID (its files in $T/NAME, default berth)
start_berth_tls() {
  local bin=$1 d=$T/${2:-berth}
  BERTH_PORT=$(free_port)
  mkdir -p "$d"
  cat >"$d/dyn.yml" <<EOF
http:
  routers:
    bench:
      rule: "PathPrefix(\`/\`)"
      service: backend
      tls: {}
  services:
    backend:
      loadBalancer:
        servers:
          - url: "http://127.0.0.1:$BACKEND_PORT"
tls:
  certificates:
    - certFile: $CERT
      keyFile: $KEY
  stores:
    default:
      defaultCertificate:
        certFile: $CERT
        keyFile: $KEY
  options:
    default:
      minVersion: VersionTLS13
EOF
  cat >"$d/berth.yml" <<EOF
entryPoints:
  websecure:
    address: "127.0.0.1:$BERTH_PORT"
providers:
  file:
    filename: $d/dyn.yml
workers: 1
serversTransport:
  maxIdleConnsPerHost: ${UPSTREAM_IDLE:-1024}
log:
  level: ERROR
EOF
  # shellcheck disable=SC2046
  $(pin "$SERVER_CPU") "$bin" --configFile="$d/berth.yml" >"$d/stdout" 2>&1 &
  BERTH_PID=$!
  PIDS+=("$BERTH_PID")
  wait_https "$BERTH_PORT" 150 || { log "berth did not start: $(tail -20 "$d/stdout")"; return 1; }
}

# start_nginx_tls -> NGINX_PORT, NGINX_PID. nginx 1.22 has no `http2 on;` (1.25.1+): HTTP/2 is
# the `http2` parameter of `listen`.
start_nginx_tls() {
  NGINX_PORT=$(free_port)
  local d=$T/nginx
  mkdir -p "$d/tmp"
  cat >"$d/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log error;
worker_rlimit_nofile $(ulimit -Hn);
events {
  worker_connections 4096;
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
    keepalive ${UPSTREAM_IDLE:-1024};
    keepalive_requests 1000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT ssl http2 backlog=4096;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    ssl_protocols TLSv1.3;
    ssl_session_cache shared:SSL:10m;
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
  wait_https "$NGINX_PORT" || { log "nginx did not start: $(cat "$d/error.log" "$d/stdout" 2>/dev/null)"; return 1; }
}

# start_haproxy_tls -> HAPROXY_PORT, HAPROXY_PID
start_haproxy_tls() {
  HAPROXY_PORT=$(free_port)
  local d=$T/haproxy
  mkdir -p "$d"
  cat >"$d/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4000
  no strict-limits
  ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
  mode http
  maxconn 4000
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-request 300s
  timeout http-keep-alive 300s
  http-reuse always
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT ssl crt $T/certs/leaf.combined.pem alpn h2,http/1.1
  default_backend be
backend be
  server s1 127.0.0.1:$BACKEND_PORT
EOF
  # shellcheck disable=SC2046
  $(pin "$SERVER_CPU") haproxy -f "$d/haproxy.cfg" -db >"$d/stdout" 2>&1 &
  HAPROXY_PID=$!
  PIDS+=("$HAPROXY_PID")
  wait_https "$HAPROXY_PORT" || { log "haproxy did not start: $(cat "$d/stdout")"; return 1; }
}

# start_nghttpx -> NGHTTPX_PORT, NGHTTPX_PID (master; the worker is its child). TLS on the
# frontend (no `no-tls` flag), HTTP/1.1 backend with its connection pool (keep-alive).
start_nghttpx() {
  NGHTTPX_PORT=$(free_port)
  local d=$T/nghttpx
  mkdir -p "$d"
  # shellcheck disable=SC2046
  $(pin "$SERVER_CPU") nghttpx --conf=/dev/null --workers=1 \
      --frontend="127.0.0.1,$NGHTTPX_PORT" --backend="127.0.0.1,$BACKEND_PORT" \
      --tls-min-proto-version=TLSv1.3 --tls-max-proto-version=TLSv1.3 --no-ocsp \
      --backend-keep-alive-timeout=300s --backlog=4096 --rlimit-nofile="$(ulimit -Hn)" \
      --errorlog-file="$d/error.log" --pid-file="$d/nghttpx.pid" \
      "$KEY" "$CERT" >"$d/stdout" 2>&1 &
  NGHTTPX_PID=$!
  PIDS+=("$NGHTTPX_PID")
  wait_https "$NGHTTPX_PORT" || { log "nghttpx did not start: $(cat "$d/error.log" "$d/stdout" 2>/dev/null)"; return 1; }
}

# start_h2o -> H2O_PORT, H2O_PID. h2o 2.2.5 knows no "TLSv1.3" for minimum-version; TLS 1.3 is
# what OpenSSL 3 and the clients here negotiate anyway (checked per run).
start_h2o() {
  H2O_PORT=$(free_port)
  local d=$T/h2o
  mkdir -p "$d"
  # As root, h2o switches to `nobody` before writing its pid file (into our 0700 temp dir).
  local user=""
  [ "$(id -u)" = 0 ] && user="user: root"
  cat >"$d/h2o.conf" <<EOF
$user
num-threads: 1
pid-file: $d/h2o.pid
error-log: $d/error.log
max-connections: 4096
listen:
  host: 127.0.0.1
  port: $H2O_PORT
  ssl:
    certificate-file: $CERT
    key-file: $KEY
    minimum-version: TLSv1.2
    ocsp-update-interval: 0
hosts:
  default:
    paths:
      /:
        proxy.reverse.url: http://127.0.0.1:$BACKEND_PORT/
        proxy.timeout.keepalive: 300000
EOF
  # shellcheck disable=SC2046
  $(pin "$SERVER_CPU") h2o -c "$d/h2o.conf" >"$d/stdout" 2>&1 &
  H2O_PID=$!
  PIDS+=("$H2O_PID")
  wait_https "$H2O_PORT" || { log "h2o did not start: $(cat "$d/error.log" "$d/stdout" 2>/dev/null)"; return 1; }
}

# check_tls NAME PORT: over HTTP/1.1 and HTTP/2, verifying the chain against the bench CA with
# SNI (bench.test) and without (127.0.0.1 IP SAN), /size/100 must return the backend's 100
# bytes; the negotiated protocol must be TLS 1.3. Logs "TLS 1.3 <alpn-h2-result>".
check_tls() {
  local name=$1 port=$2 v out
  for v in --http1.1 --http2; do
    out=$(curl -sS "$v" --cacert "$CA" --resolve "$SNI:$port:127.0.0.1" -D "$T/check.h" \
          -w '%{http_version}' "https://$SNI:$port/size/100" 2>&1) || { log "$name ($v): $out"; return 1; }
    if [ "${#out}" -lt 100 ] || ! grep -qi '^X-Backend: bench' "$T/check.h"; then
      log "$name ($v): unexpected answer on /size/100: ${out:0:200}"; return 1
    fi
    local hv=${out:100}
    if { [ "$v" = --http2 ] && [ "$hv" != 2 ]; } || { [ "$v" = --http1.1 ] && [ "$hv" != 1.1 ]; }; then
      log "$name ($v): answered HTTP/$hv"; return 1
    fi
  done
  out=$(curl -sS --cacert "$CA" -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/size/100" 2>&1)
  [ "$out" = 200 ] || { log "$name: without SNI: $out"; return 1; }
  out=$(openssl s_client -connect "127.0.0.1:$port" -servername "$SNI" </dev/null 2>&1)
  if ! grep -q '^New, TLSv1.3' <<<"$out"; then
    log "$name: not TLS 1.3: $(grep -m1 -E '^New|error' <<<"$out")"; return 1
  fi
  grep -q 'Peer signature type: ECDSA' <<<"$out" || { log "$name: not the ECDSA certificate"; return 1; }
}
