// Micro-benchmark of RouteTable::match (HP-8): a host hit, a miss and a wildcard host among 10 and
// 10,000 host routes; matching must cost about the same at both sizes and allocate nothing (HP-1).
#include "proxy/router/route_table.h"

#include <benchmark/benchmark.h>

#include "bench/support/alloc_counter.h"

#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "config/rule.h"

namespace berth::proxy::router {
namespace {

// Routes compiled the way snapshot_builder does (priority 0 -> rule length).
void add(RouteTable& table, std::string name, const std::string& rule, int64_t priority, uint32_t service) {
  auto ast = config::parse_rule(rule);
  if (!ast) std::abort();
  auto matcher = Matcher::compile(**ast);
  if (!matcher) std::abort();
  auto r = std::make_shared<Route>();
  r->name = std::move(name);
  r->priority = priority != 0 ? priority : static_cast<int64_t>(rule.size());
  r->matcher = std::move(*matcher);
  r->service = service;
  table.add(std::move(r));
}

// "h<i>.example.com"; appended rather than "h" + to_string(i), which trips GCC 12's -Wrestrict.
std::string host_name(uint64_t i) { return std::string("h").append(std::to_string(i)).append(".example.com"); }

struct Fixture {
  RouteTable table;
  std::vector<std::string> hit_hosts;  // random existing hosts, cycled through by the hit benchmark
  std::vector<std::string> wild_hosts;
};

// One table per size, built once and shared by the benchmarks of that size.
const Fixture& fixture(int n) {
  static std::map<int, std::unique_ptr<Fixture>> cache;
  auto& f = cache[n];
  if (f) return *f;
  f = std::make_unique<Fixture>();
  for (int i = 0; i < n; ++i)
    add(f->table, std::string("r").append(std::to_string(i)).append("@file"),
        "Host(`" + host_name(i) + "`) && PathPrefix(`/`)", 0, static_cast<uint32_t>(i));
  add(f->table, "wild@file", "Host(`*.apps.example.com`) && PathPrefix(`/`)", 0, 1);
  // Host-less routes: every request walks these after (or before) its host list.
  add(f->table, "health@file", "Path(`/ping`)", 0, 2);
  add(f->table, "api@file", "PathPrefix(`/api`) && Method(`POST`)", 0, 3);
  add(f->table, "acme@internal", "PathPrefix(`/.well-known/acme-challenge/`)", 1'000'000, 4);
  f->table.freeze();
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> pick(0, n - 1);
  for (int i = 0; i < 1024; ++i) {
    f->hit_hosts.push_back(host_name(pick(rng)));
    f->wild_hosts.push_back(std::string("svc").append(std::to_string(i)).append(".apps.example.com"));
  }
  return *f;
}

void report(benchmark::State& state, uint64_t allocs_before, const Fixture& f) {
  uint64_t allocs = berth::bench::allocation_count() - allocs_before;
  state.counters["allocs_per_iter"] = benchmark::Counter(static_cast<double>(allocs), benchmark::Counter::kAvgIterations);
  state.counters["routes"] = static_cast<double>(f.table.size());
}

void BM_MatchHit(benchmark::State& state) {
  const Fixture& f = fixture(static_cast<int>(state.range(0)));
  for (const auto& h : f.hit_hosts) {
    const Route* r = f.table.match(RequestView{h, "/index.html", "GET"});
    if (!r || host_name(r->service) != h) {
      state.SkipWithError("a host route did not match its host");
      return;
    }
  }
  size_t i = 0;
  uint64_t before = berth::bench::allocation_count();
  for (auto _ : state) {
    const std::string& host = f.hit_hosts[i++ & 1023];
    const Route* r = f.table.match(RequestView{host, "/index.html", "GET"});
    benchmark::DoNotOptimize(r);
  }
  report(state, before, f);
}
BENCHMARK(BM_MatchHit)->Arg(10)->Arg(10'000);

void BM_MatchMiss(benchmark::State& state) {
  const Fixture& f = fixture(static_cast<int>(state.range(0)));
  RequestView req{"unknown.example.org", "/nothing", "GET"};
  if (f.table.match(req) != nullptr) {
    state.SkipWithError("the miss matched a route");
    return;
  }
  uint64_t before = berth::bench::allocation_count();
  for (auto _ : state) {
    const Route* r = f.table.match(req);
    benchmark::DoNotOptimize(r);
  }
  report(state, before, f);
}
BENCHMARK(BM_MatchMiss)->Arg(10)->Arg(10'000);

void BM_MatchWildcard(benchmark::State& state) {
  const Fixture& f = fixture(static_cast<int>(state.range(0)));
  const Route* first = f.table.match(RequestView{f.wild_hosts[0], "/", "GET"});
  if (!first || first->name != "wild@file") {
    state.SkipWithError("the wildcard route did not match");
    return;
  }
  size_t i = 0;
  uint64_t before = berth::bench::allocation_count();
  for (auto _ : state) {
    const std::string& host = f.wild_hosts[i++ & 1023];
    const Route* r = f.table.match(RequestView{host, "/app/main.css", "GET"});
    benchmark::DoNotOptimize(r);
  }
  report(state, before, f);
}
BENCHMARK(BM_MatchWildcard)->Arg(10)->Arg(10'000);

}  // namespace
}  // namespace berth::proxy::router

BENCHMARK_MAIN();
