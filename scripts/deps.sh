#!/usr/bin/env bash
# Installs the Debian 12 packages berth needs that are missing. Usage: scripts/deps.sh [build|test|bench]
set -euo pipefail
profile=${1:-build}
pkgs=(cmake ninja-build g++ ccache pkg-config libboost1.81-dev libboost-url1.81-dev libboost-json1.81-dev
      libnghttp2-dev libjemalloc-dev libssl-dev libyaml-cpp-dev libre2-dev zlib1g-dev libbrotli-dev libzstd-dev liburing-dev libgtest-dev
      libbenchmark-dev nghttp2-client openssl curl python3)  # the last four: pgo_build.sh's training run
case "$profile" in
  test) pkgs+=(docker.io docker-compose python3 python3-websockets python3-h2 python3-cryptography python3-grpcio openssl curl zstd wrk nghttp2-client nginx-light busybox-static procps clang libclang-rt-14-dev testssl.sh pebble lego prometheus chromium nodejs)
        command -v npm >/dev/null || pkgs+=(npm) ;;  # NodeSource's nodejs brings its own npm
  bench) pkgs+=(python3 curl wrk nginx-light haproxy procps heaptrack openssl nghttp2-client nghttp2-proxy h2o) ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -q -o DPkg::Lock::Timeout=900
  $sudo_cmd apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=900 "${missing[@]}"
fi
# The dashboard's browser test drives Chromium with playwright-core, pinned in tests/browser and
# installed there (not globally).
if [ "$profile" = test ]; then
  browser_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
  if [ ! -d "$browser_dir/node_modules/playwright-core" ]; then
    echo "installing playwright-core into $browser_dir"
    npm ci --prefix "$browser_dir" --no-audit --no-fund
  fi
fi
