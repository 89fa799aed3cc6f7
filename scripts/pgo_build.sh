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

# train: runs the instrumented berth under load, with the benchmarks' helpers (bench/tls/lib.sh:
# certificates, the backend, berth over TLS and plain); its profile is written as it exits.
train() (
  T=$(mktemp -d /tmp/berth-pgo.XXXXXX) PIN=0
  # shellcheck source=../bench/tls/lib.sh
  source bench/tls/lib.sh
  trap lib_cleanup EXIT
  make_certs && start_backend "$GEN/tests/support/berth_test_backend" || exit 1
  start_berth_tls "$GEN/berth" berth-tls || exit 1
  local tls=$BERTH_PORT
  start_berth "$GEN/berth" || exit 1
  {
    timeout 30 h2load -c64 -m10 -D 5 --connect-to="127.0.0.1:$tls" "https://$SNI:$tls/size/100" &&
    timeout 30 h2load --h1 -c64 -D 5 "http://127.0.0.1:$BERTH_PORT/size/100" &&
    timeout 30 h2load --h1 -c16 -D 2 "http://127.0.0.1:$BERTH_PORT/size/16384"
  } >"$T/load.log" 2>&1
  rc=$?
  grep -qE " [1-9][0-9]* succeeded" "$T/load.log" || rc=1
  [ $rc -eq 0 ] || log "pgo: training failed: $(tail -3 "$T/load.log")"
  exit $rc  # lib_cleanup stops both berths by SIGTERM: they exit and write the profile
)

if ! command -v h2load >/dev/null || ! command -v openssl >/dev/null || ! command -v curl >/dev/null ||
   ! [ -x /usr/bin/python3 ]; then
  echo "pgo: h2load, openssl, curl or python3 missing: plain build" >&2
  plain_build
  exit 0
fi
rm -rf "$PROFILE"
# -fprofile-prefix-path: the profile's file names are relative to the build directory, so the
# optimized build in build/ finds those of build-pgo-gen/. Atomic counters: the workers are threads.
if cmake -S . -B "$GEN" "${COMMON[@]}" -DBERTH_TESTS=ON \
     -DCMAKE_CXX_FLAGS="-fprofile-generate=$PROFILE -fprofile-prefix-path=$GEN -fprofile-update=atomic" \
     -DCMAKE_EXE_LINKER_FLAGS="-fprofile-generate=$PROFILE" >/dev/null &&
   cmake --build "$GEN" -j2 --target berth berth_test_backend && train && ls "$PROFILE"/*.gcda >/dev/null 2>&1; then
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
