#!/usr/bin/env bash
# Builds build/berth (Release) with GCC's profile-guided optimization: an instrumented berth in
# build-pgo-gen/, a short training run through it (HTTP/2 over TLS and plain HTTP/1.1 to the test
# backend, all on 127.0.0.1), then the optimized build in build/ from that profile: a few percent less
# CPU per request (bench/RESULTS.md, CONTRIBUTING.md "The profile-guided build").
# If any step of the training fails, build/berth is built the plain way: a slower berth, never none.
# Usage: scripts/pgo_build.sh (scripts/run.sh calls it; BERTH_PGO=0 there skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
GEN=$ROOT/build-pgo-gen
PROFILE=$GEN/profile
COMMON=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DBERTH_BENCH=OFF)

plain_build() {
  cmake -S . -B build "${COMMON[@]}" -DBERTH_TESTS=OFF -DCMAKE_CXX_FLAGS="" >/dev/null
  cmake --build build -j2 --target berth
}

# A port free on 127.0.0.1 (python3 when there is one; else a random high port, which may be taken:
# the training then fails and the build is plain).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 30000))
}

# train: runs the instrumented berth under load; its profile lands in $PROFILE when it exits.
train() {
  local t pids=() rc=0
  t=$(mktemp -d /tmp/berth-pgo.XXXXXX)
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$t/key.pem" -out "$t/cert.pem" \
    -days 1 -subj "/CN=pgo.test" -addext "subjectAltName=DNS:pgo.test" >/dev/null 2>&1 || return 1
  local bp tp pp
  bp=$(free_port) tp=$(free_port) pp=$(free_port)
  cat >"$t/dynamic.yml" <<EOF
http:
  routers:
    tls: {rule: "PathPrefix(\`/\`)", service: backend, entryPoints: [websecure], tls: {}}
    plain: {rule: "PathPrefix(\`/\`)", service: backend, entryPoints: [web]}
  services:
    backend: {loadBalancer: {servers: [{url: "http://127.0.0.1:$bp"}]}}
tls:
  certificates: [{certFile: $t/cert.pem, keyFile: $t/key.pem}]
EOF
  cat >"$t/berth.yml" <<EOF
entryPoints:
  web: {address: "127.0.0.1:$pp"}
  websecure: {address: "127.0.0.1:$tp"}
providers:
  file: {filename: $t/dynamic.yml}
serversTransport: {maxIdleConnsPerHost: 1024}
log: {level: ERROR}
EOF
  timeout 120 "$GEN/tests/support/berth_test_backend" --listen "127.0.0.1:$bp" --threads 1 >"$t/backend.log" 2>&1 &
  pids+=($!)
  timeout 120 "$GEN/berth" --configFile="$t/berth.yml" >"$t/berth.log" 2>&1 &
  local berth=$!
  for _ in $(seq 100); do
    curl -skf --connect-to "pgo.test:$tp:127.0.0.1:$tp" "https://pgo.test:$tp/size/10" >/dev/null 2>&1 && break
    sleep 0.1
  done
  {
    timeout 30 h2load -c64 -m10 -D 5 --connect-to="127.0.0.1:$tp" "https://pgo.test:$tp/size/100" &&
    timeout 30 h2load --h1 -c64 -D 5 "http://127.0.0.1:$pp/size/100" &&
    timeout 30 h2load --h1 -c16 -D 2 "http://127.0.0.1:$pp/size/16384"
  } >"$t/load.log" 2>&1 || rc=1
  kill -TERM "$berth" 2>/dev/null || true
  wait "$berth" || rc=1  # a clean exit writes the profile
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  if [ $rc -ne 0 ] || ! grep -qE " [1-9][0-9]* succeeded" "$t/load.log"; then
    echo "pgo: training failed: $(tail -3 "$t/load.log" "$t/berth.log")" >&2
    rc=1
  fi
  rm -rf "$t"
  return $rc
}

if ! command -v h2load >/dev/null || ! command -v openssl >/dev/null || ! command -v curl >/dev/null; then
  echo "pgo: h2load, openssl or curl missing: plain build" >&2
  plain_build
  exit 0
fi
rm -rf "$PROFILE"
# -fprofile-prefix-path: the profile's file names are relative to the build directory, so the
# optimized build in build/ finds those of build-pgo-gen/. Atomic counters: the workers are threads.
if cmake -S . -B "$GEN" "${COMMON[@]}" -DBERTH_TESTS=ON \
     -DCMAKE_CXX_FLAGS="-fprofile-generate=$PROFILE -fprofile-prefix-path=$GEN -fprofile-update=atomic" \
     -DCMAKE_EXE_LINKER_FLAGS="-fprofile-generate=$PROFILE" >/dev/null &&
   cmake --build "$GEN" -j2 --target berth berth_test_backend && train; then
  # The profile covers what the training ran; the rest is optimized as usual (partial training).
  # Sources generated into the build directory differ in path from the training build's: their
  # profile is left out (coverage-mismatch) rather than failing the build.
  use="-fprofile-use=$PROFILE -fprofile-prefix-path=$ROOT/build -fprofile-partial-training"
  cmake -S . -B build "${COMMON[@]}" -DBERTH_TESTS=OFF \
    -DCMAKE_CXX_FLAGS="$use -Wno-missing-profile -Wno-coverage-mismatch" >/dev/null
  cmake --build build -j2 --target berth
else
  echo "pgo: the profile could not be made: plain build" >&2
  plain_build
fi
