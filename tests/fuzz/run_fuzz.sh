#!/usr/bin/env bash
# Builds one libFuzzer target with clang (ASan+UBSan) and runs it for a bounded time on its corpus.
# Usage: tests/fuzz/run_fuzz.sh TARGET SECONDS   (TARGET: h1_request | rule | circuit_breaker_expression | auth_header | client_hello)
set -euo pipefail
target=$1 seconds=${2:-10}
root=$(cd "$(dirname "$0")/../.." && pwd)
clangxx=$(command -v clang++ || command -v clang++-14 || true)
[ -n "$clangxx" ] || { echo "clang++ not installed"; exit 1; }
out=$(mktemp -d -t berth-fuzz.XXXXXX)
trap 'rm -rf "$out"' EXIT
case "$target" in
  h1_request) srcs=(proxy/http/h1/parser.cpp proxy/http/header.cpp base/text.cpp); libs=() ;;
  rule) srcs=(config/rule.cpp proxy/router/matcher.cpp proxy/ip_net.cpp base/text.cpp); libs=(-lre2) ;;
  circuit_breaker_expression) srcs=(proxy/middleware/circuit_breaker.cpp base/text.cpp); libs=() ;;
  auth_header) srcs=(proxy/middleware/htpasswd.cpp base/text.cpp); libs=(-lcrypt -lcrypto) ;;
  client_hello) srcs=(proxy/tls/client_hello.cpp); libs=() ;;
  *) echo "unknown target $target"; exit 2 ;;
esac
cd "$root"
"$clangxx" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$root" "tests/fuzz/${target}_fuzz.cpp" "${srcs[@]}" "${libs[@]}" -o "$out/fuzz"
mkdir -p "$out/corpus"
cp "tests/fuzz/corpus/$target/"* "$out/corpus/"
"$out/fuzz" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$out/" "$out/corpus" 2>&1 | tail -15
echo "fuzz $target: no crash in ${seconds}s"
