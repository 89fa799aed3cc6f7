// Micro-benchmark of AccessLog::record (HP-8): filter, format and hand over one line per exchange,
// in each layout. The rings are drained to /dev/null every 256 records on the same thread (no
// writer thread: on a busy machine it would fall behind and lines would be dropped, which skips
// their copy), so the time includes the writer's share. Recording must allocate nothing (HP-1)
// and take no lock (HP-2): allocs_per_iter is 0, and so is dropped.
#include "proxy/observe/access_log.h"

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bench/support/alloc_counter.h"

namespace berth::proxy::observe {
namespace {

using http::Header;
using http::HeaderId;

// A typical proxied exchange: a browser-like request, a JSON answer.
struct Exchange {
  std::vector<Header> request{{"Host", "shop.example.com", HeaderId::kHost},
                              {"User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                               HeaderId::kOther},
                              {"Accept", "application/json", HeaderId::kOther},
                              {"Accept-Encoding", "gzip, deflate, br", HeaderId::kAcceptEncoding},
                              {"Referer", "https://shop.example.com/cart", HeaderId::kOther},
                              {"Cookie", "session=0123456789abcdef", HeaderId::kCookie},
                              {"X-Request-Id", "5f0c6a1e-8d6f-4f51-9d0e-4a1c2b3d4e5f", HeaderId::kOther}};
  std::vector<Header> origin{{"Content-Type", "application/json", HeaderId::kContentType},
                             {"Content-Length", "512", HeaderId::kContentLength},
                             {"Cache-Control", "no-store", HeaderId::kOther}};
  ExchangeRecord r;

  Exchange() {
    r.entry_point_name = "websecure";
    r.start_unix_ns = 1784889195LL * 1'000'000'000 + 123'456'789;
    r.duration_ns = 3'456'789;
    r.request_count = 1;
    r.client = boost::asio::ip::make_address("203.0.113.7");
    r.client_port = 54321;
    r.method = "GET";
    r.target = "/api/cart/items?page=2";
    r.http_version = "HTTP/2.0";
    r.tls = true;
    r.host = "shop.example.com";
    r.request_headers = &request;
    r.tls_version = "1.3";
    r.tls_cipher = "TLS_AES_128_GCM_SHA256";
    r.router = "shop@docker";
    r.service = "shop@docker";
    r.service_url = "http://172.18.0.5:8080";
    r.origin_status = 200;
    r.origin_duration_ns = 3'000'000;
    r.origin_bytes = 512;
    r.origin_headers = &origin;
    r.status = 200;
    r.code = 200;
    r.response_bytes = 512;
  }
};

void run(benchmark::State& state, const std::string& format, bool headers) {
  config::AccessLogConfig c;
  c.enabled = true;
  c.format = format;
  c.file_path = "/dev/null";
  if (headers) c.headers_default_mode = "keep";
  auto log = AccessLog::open(c, 1, AccessLog::Options{0, false});
  if (!log) {
    state.SkipWithError(log.error().to_string().c_str());
    return;
  }
  Exchange ex;
  (*log)->record(0, ex.r);  // first touch of the ring's pages
  (*log)->drain();
  const uint64_t before = berth::bench::allocation_count();
  uint64_t n = 0;
  for (auto _ : state) {
    ex.r.request_count++;
    (*log)->record(0, ex.r);
    if ((++n & 255) == 0) (*log)->drain();
  }
  const uint64_t allocs = berth::bench::allocation_count() - before;
  (*log)->stop();
  state.counters["allocs_per_iter"] = benchmark::Counter(static_cast<double>(allocs), benchmark::Counter::kAvgIterations);
  state.counters["dropped"] = static_cast<double>((*log)->dropped_lines());
  state.SetItemsProcessed(state.iterations());
}

void BM_RecordCommon(benchmark::State& state) { run(state, "common", false); }
BENCHMARK(BM_RecordCommon);

void BM_RecordGenericClf(benchmark::State& state) { run(state, "genericCLF", false); }
BENCHMARK(BM_RecordGenericClf);

void BM_RecordJson(benchmark::State& state) { run(state, "json", false); }
BENCHMARK(BM_RecordJson);

void BM_RecordJsonAllHeaders(benchmark::State& state) { run(state, "json", true); }
BENCHMARK(BM_RecordJsonAllHeaders);

// A line the filters leave out costs only the filter.
void BM_RecordFilteredOut(benchmark::State& state) {
  config::AccessLogConfig c;
  c.enabled = true;
  c.file_path = "/dev/null";
  c.status_codes = {{500, 599}};
  c.has_filters = true;
  auto log = AccessLog::open(c, 1);
  if (!log) {
    state.SkipWithError(log.error().to_string().c_str());
    return;
  }
  Exchange ex;
  const uint64_t before = berth::bench::allocation_count();
  for (auto _ : state) (*log)->record(0, ex.r);
  const uint64_t allocs = berth::bench::allocation_count() - before;
  state.counters["allocs_per_iter"] = benchmark::Counter(static_cast<double>(allocs), benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_RecordFilteredOut);

}  // namespace
}  // namespace berth::proxy::observe

BENCHMARK_MAIN();
