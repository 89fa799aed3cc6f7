#!/usr/bin/env bash
# README command 1: install what is missing, build berth (Release) into build/, run it on config/berth.yml.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBERTH_TESTS=OFF -DBERTH_BENCH=OFF >/dev/null
cmake --build build -j2 --target berth
echo "berth: http://localhost:8080/dashboard/ (dashboard, /api, /ping), routes on :8000 from config/dynamic.yml"
exec build/berth --configFile=config/berth.yml "$@"
