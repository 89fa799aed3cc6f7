// Micro-benchmark of the HTTP/1 head parser and chunked framer (HP-8): throughput and heap allocations
// per parsed head, which must be 0 in steady state (HP-1).
#include "proxy/http/h1/parser.h"

#include <benchmark/benchmark.h>

#include "bench/support/alloc_counter.h"

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>

namespace berth::proxy::http::h1 {
namespace {

// What Chrome sends for a sub-resource: ~400 bytes, 9 header fields.
constexpr std::string_view kBrowserGet =
    "GET /assets/js/app.min.js?v=3.14.2 HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n"
    "Accept: */*\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Referer: https://www.example.com/products/index.html\r\n"
    "Cookie: session=3f2a9c81d7e4b6a0; theme=dark; consent=1\r\n"
    "Sec-Fetch-Mode: no-cors\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

constexpr std::string_view kResponse =
    "HTTP/1.1 200 OK\r\n"
    "Date: Mon, 01 Jan 2024 12:00:00 GMT\r\n"
    "Content-Type: application/javascript; charset=utf-8\r\n"
    "Content-Length: 48213\r\n"
    "Cache-Control: public, max-age=31536000, immutable\r\n"
    "ETag: \"5f3e-1a2b3c4d\"\r\n"
    "Last-Modified: Sun, 31 Dec 2023 10:00:00 GMT\r\n"
    "Vary: Accept-Encoding\r\n"
    "Server: nginx\r\n"
    "\r\n";

// Reports bytes/s and allocations per iteration for the loop just run.
void report(benchmark::State& state, size_t bytes, uint64_t allocs_before) {
  uint64_t allocs = berth::bench::allocation_count() - allocs_before;
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  state.counters["allocs_per_iter"] = benchmark::Counter(static_cast<double>(allocs), benchmark::Counter::kAvgIterations);
  state.counters["bytes"] = static_cast<double>(bytes);
}

void BM_FindHeadEnd(benchmark::State& state) {
  uint64_t before = berth::bench::allocation_count();
  for (auto _ : state) {
    size_t end = find_head_end(kBrowserGet);
    benchmark::DoNotOptimize(end);
  }
  report(state, kBrowserGet.size(), before);
}
BENCHMARK(BM_FindHeadEnd);

// The connection's steps: find the end of the head, then parse it into the reused RequestHead.
void BM_ParseRequest(benchmark::State& state) {
  RequestHead head;
  if (parse_request(kBrowserGet, head) != ParseStatus::kOk || head.headers.size() != 9) {
    state.SkipWithError("the sample request does not parse");
    return;
  }
  uint64_t before = berth::bench::allocation_count();
  for (auto _ : state) {
    size_t end = find_head_end(kBrowserGet);
    auto st = parse_request(kBrowserGet.substr(0, end), head);
    benchmark::DoNotOptimize(st);
    benchmark::DoNotOptimize(head.host.data());
  }
  report(state, kBrowserGet.size(), before);
}
BENCHMARK(BM_ParseRequest);

void BM_ParseResponse(benchmark::State& state) {
  ResponseHead head;
  if (parse_response(kResponse, head) != ParseStatus::kOk || head.status != 200) {
    state.SkipWithError("the sample response does not parse");
    return;
  }
  uint64_t before = berth::bench::allocation_count();
  for (auto _ : state) {
    size_t end = find_head_end(kResponse);
    auto st = parse_response(kResponse.substr(0, end), head);
    benchmark::DoNotOptimize(st);
    benchmark::DoNotOptimize(head.framing.content_length);
  }
  report(state, kResponse.size(), before);
}
BENCHMARK(BM_ParseResponse);

// A 64 KiB body in chunks of state.range(0) bytes, fed in 16 KiB reads as the relay would.
void BM_ChunkedFramer(benchmark::State& state) {
  const size_t chunk = static_cast<size_t>(state.range(0));
  std::string body;
  char size_hex[32];
  for (size_t total = 0; total < 64 * 1024; total += chunk) {
    body.append(size_hex, static_cast<size_t>(std::snprintf(size_hex, sizeof size_hex, "%zx\r\n", chunk)));
    body.append(chunk, 'x');
    body.append("\r\n");
  }
  body.append("0\r\n\r\n");
  std::string_view view = body;
  uint64_t before = berth::bench::allocation_count();
  for (auto _ : state) {
    ChunkedFramer framer;
    ChunkedFramer::Status st = ChunkedFramer::Status::kMore;
    for (size_t off = 0; off < view.size() && st == ChunkedFramer::Status::kMore;) {
      size_t used = 0;
      st = framer.consume(view.substr(off, 16 * 1024), used);
      off += used;
    }
    if (st != ChunkedFramer::Status::kDone) state.SkipWithError("the chunked body did not end");
    benchmark::DoNotOptimize(st);
  }
  report(state, body.size(), before);
}
BENCHMARK(BM_ChunkedFramer)->Arg(256)->Arg(8192);

}  // namespace
}  // namespace berth::proxy::http::h1

BENCHMARK_MAIN();
