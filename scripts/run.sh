#!/usr/bin/env bash
# README command 1: install what is missing, build berth (Release, profile-guided; BERTH_PGO=0: plain) into
# build/, run it on config/berth.yml.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
if [ "${BERTH_PGO:-1}" = 0 ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBERTH_TESTS=OFF -DBERTH_BENCH=OFF \
    -DCMAKE_CXX_FLAGS="" >/dev/null
  cmake --build build -j2 --target berth
else
  scripts/pgo_build.sh  # profile-guided: a training run between two builds (a plain build if it fails)
fi
echo "berth: http://localhost:8080/dashboard/ (dashboard, /api, /ping), routes on :8000 from config/dynamic.yml"
exec build/berth --configFile=config/berth.yml "$@"
