// Micro-benchmark of WorkerMetrics::record (HP-8): the cost of counting one exchange in the
// entry point, router and service families (and their TLS counters), once its series exist. It
// must allocate nothing (HP-1) and take no lock (HP-2): the counters are the worker's own.
#include "proxy/observe/metrics.h"

#include <benchmark/benchmark.h>

#include "bench/support/alloc_counter.h"
#include "proxy/snapshot.h"

namespace berth::proxy::observe {
namespace {

config::StaticConfig static_config() {
  config::StaticConfig sc;
  config::EntryPointConfig ep;
  ep.name = "web";
  sc.entry_points.push_back(ep);
  sc.prometheus.enabled = true;
  sc.prometheus.add_routers_labels = true;
  return sc;
}

ExchangeRecord record(bool tls, int code) {
  ExchangeRecord r;
  r.entry_point_name = "web";
  r.method = "GET";
  r.router = "shop@docker";
  r.router_metric = metric_names().id("shop@docker");
  r.router_service = r.service = "shop@docker";
  r.router_service_metric = r.service_metric = metric_names().id("shop@docker");
  r.status = r.code = code;
  r.duration_ns = 1'500'000;
  r.request_bytes = 0;
  r.response_bytes = 612;
  r.tls = tls;
  if (tls) {
    r.tls_version = "1.3";
    r.tls_cipher = "TLS_AES_128_GCM_SHA256";
    r.tls_cipher_id = 0x1301;
  }
  return r;
}

void run(benchmark::State& state, bool tls) {
  static auto sc = static_config();
  Metrics metrics(sc, 1);
  WorkerMetrics& w = metrics.worker(0);
  // A few label sets, as a real mix of statuses gives; their series are made before timing.
  ExchangeRecord records[] = {record(tls, 200), record(tls, 404), record(tls, 502), record(tls, 304)};
  for (const auto& r : records) w.record(r);
  size_t i = 0;
  const uint64_t before = bench::allocation_count();
  for (auto _ : state) {
    w.record(records[i++ & 3]);
  }
  state.counters["allocs/op"] =
      benchmark::Counter(static_cast<double>(bench::allocation_count() - before) / static_cast<double>(state.iterations()));
}

void BM_RecordPlain(benchmark::State& state) { run(state, false); }
void BM_RecordTls(benchmark::State& state) { run(state, true); }
BENCHMARK(BM_RecordPlain);
BENCHMARK(BM_RecordTls);

// The scrape of 4 label sets x 3 families over 4 workers, for scale (not on the request path).
void BM_Scrape(benchmark::State& state) {
  static auto sc = static_config();
  Metrics metrics(sc, 4);
  for (size_t w = 0; w < 4; ++w)
    for (int code : {200, 404, 502, 304}) metrics.worker(w).record(record(false, code));
  Snapshot snap;
  for (auto _ : state) benchmark::DoNotOptimize(metrics.scrape(snap));
}
BENCHMARK(BM_Scrape);

}  // namespace
}  // namespace berth::proxy::observe

BENCHMARK_MAIN();
