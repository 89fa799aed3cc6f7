// Metrics: Traefik's Prometheus families (and berth's own), counted per worker and summed when
// scraped. Recording an exchange takes no lock and allocates nothing once its series exists
// (HP-1, HP-2): each worker owns its cells and is their only writer; the scrape reads them with
// relaxed loads. A worker takes its table's mutex only to add a series (the first exchange of a
// label set), which the scrape takes to list the cells.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/static_config.h"
#include "proxy/observe/exchange_record.h"

namespace berth::proxy {
struct Snapshot;
}

namespace berth::proxy::observe {

/// Stable ids for router and service names: the same name gets the same id in every snapshot, so
/// the workers' series survive reloads. Thread: control (id), any (name).
class NameIds {
 public:
  uint32_t id(std::string_view name);
  std::string name(uint32_t id) const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, uint32_t> ids_;
  std::vector<std::string> names_;
};

/// The process's name ids (one table, so that snapshots built anywhere agree). Thread: any.
NameIds& metric_names();

/// Requests and 5xx answers of one router since start, summed over workers (the dashboard's rates).
struct RequestTotals {
  uint64_t requests = 0;
  uint64_t server_errors = 0;
  uint64_t duration_ns = 0;  ///< summed over the requests
};

/// What the control plane adds to each scrape (it owns the values: atomics read at scrape time).
class Exposition;
using ProcessSource = std::function<void(Exposition&)>;

/// Text exposition format 0.0.4: families with HELP and TYPE, then their samples.
class Exposition {
 public:
  explicit Exposition(std::string prefix) : prefix_(std::move(prefix)) {}
  /// Starts family `<prefix>_<name>` of `type` (counter, gauge, histogram).
  void family(std::string_view name, std::string_view type, std::string_view help);
  /// One sample of the current family; `labels` is pairs of name and (unescaped) value.
  void sample(std::initializer_list<std::pair<std::string_view, std::string_view>> labels, double value,
              std::string_view suffix = {});
  void sample(const std::vector<std::pair<std::string_view, std::string_view>>& labels, double value,
              std::string_view suffix = {});
  const std::string& text() const { return out_; }

 private:
  std::string prefix_;
  std::string family_;
  std::string out_;
};

class Metrics;

/// One worker's counters. Thread: its worker (record*), any (reading through Metrics).
class WorkerMetrics {
 public:
  explicit WorkerMetrics(const Metrics& owner);
  ~WorkerMetrics();
  /// Counts a finished exchange. No lock, no allocation once its series exist.
  void record(const ExchangeRecord& r);
  /// Counts a TLS handshake on entry point `ep`.
  void record_handshake(uint32_t ep, bool ok) {
    auto& c = handshakes_[ep < kMaxEntryPoints ? ep : kMaxEntryPoints - 1][ok ? 0 : 1];
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  /// Counts a snapshot this worker started serving.
  void record_swap() { swaps_.store(swaps_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }

  static constexpr size_t kMaxEntryPoints = 64;
  static constexpr size_t kMaxBuckets = 32;

 private:
  friend class Metrics;
  struct Cell;
  Cell* cell(uint64_t key, const ExchangeRecord& r, uint8_t family);
  /// The cells so far. Thread: any.
  std::vector<const Cell*> cell_list() const;
  void add(Cell* c, const ExchangeRecord& r, bool histogram);

  const Metrics& owner_;
  std::unordered_map<uint64_t, Cell*> index_;  ///< this worker's only
  mutable std::mutex mu_;                      ///< guards cells_ growth against scrapes
  std::deque<Cell> cells_;
  std::array<std::array<std::atomic<uint64_t>, 2>, kMaxEntryPoints> handshakes_{};
  std::atomic<uint64_t> swaps_{0};
};

/// The process's metrics: one WorkerMetrics per worker, the settings, and the scrape. Lives for the
/// process (workers point to it).
class Metrics {
 public:
  Metrics(const config::StaticConfig& sc, size_t workers);
  ~Metrics();

  WorkerMetrics& worker(size_t index) { return *workers_[index]; }
  const config::PrometheusConfig& settings() const { return settings_; }
  const std::vector<double>& buckets() const { return settings_.buckets; }
  /// Sets what the control plane adds to each scrape. Thread: control, before the workers start.
  void set_process_source(ProcessSource source) { process_ = std::move(source); }
  /// A configuration was applied (Traefik counts those only). Thread: control.
  void record_reload();

  /// The whole exposition, with the server health and certificates of `snap`. Thread: any.
  std::string scrape(const Snapshot& snap) const;
  /// Per router name, over all workers. Thread: any.
  std::unordered_map<std::string, RequestTotals> router_totals() const;
  /// Per (load-balancer) service name, over all workers (a canary's automatic rollback). Thread: any.
  std::unordered_map<std::string, RequestTotals> service_totals() const;

 private:
  friend class WorkerMetrics;
  std::unordered_map<std::string, RequestTotals> totals(uint8_t family) const;
  config::PrometheusConfig settings_;
  std::vector<int64_t> bucket_ns_;  ///< the buckets' upper bounds in ns
  std::vector<std::string> entry_point_names_;
  std::vector<std::unique_ptr<WorkerMetrics>> workers_;
  ProcessSource process_;
  std::atomic<uint64_t> reloads_{0};
  std::atomic<int64_t> last_reload_success_{0};  ///< unix seconds
};

}  // namespace berth::proxy::observe
