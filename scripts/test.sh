#!/usr/bin/env bash
# README command 2: install what is missing, build with ASan+UBSan into build-test/, run every test with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
# -Og -g1: under the sanitizers GCC compiles 2-3x faster than at -O2 -g, and reports keep file:line
# (CONTRIBUTING.md, "CI time").
cmake -S . -B build-test -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-Og -g1 -DNDEBUG" \
  -DBERTH_SANITIZE=ON -DBERTH_BENCH=OFF >/dev/null
cmake --build build-test -j2
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cd build-test
ctest -j2 --output-on-failure --timeout 900 "$@"
