// Metrics: per-worker cells (recorded by their worker), summed and rendered in Prometheus's text
// format 0.0.4 at scrape time.
#include "proxy/observe/metrics.h"

#include <openssl/bn.h>
#include <openssl/x509.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <map>

#include "proxy/snapshot.h"

namespace berth::proxy::observe {

// ---- names ----

uint32_t NameIds::id(std::string_view name) {
  std::lock_guard lock(mu_);
  auto [it, added] = ids_.try_emplace(std::string(name), static_cast<uint32_t>(names_.size()));
  if (added) names_.emplace_back(name);
  return it->second;
}

NameIds& metric_names() {
  static NameIds names;
  return names;
}

std::string NameIds::name(uint32_t id) const {
  std::lock_guard lock(mu_);
  return id < names_.size() ? names_[id] : std::string();
}

// ---- exposition ----

namespace {

void append_number(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
  }
}

void append_escaped(std::string& out, std::string_view value) {
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
}

template <typename Labels>
void append_sample(std::string& out, std::string_view name, std::string_view suffix, const Labels& labels,
                   double value) {
  out.append(name).append(suffix);
  bool first = true;
  for (const auto& [k, v] : labels) {
    out += first ? '{' : ',';
    first = false;
    out.append(k).append("=\"");
    append_escaped(out, v);
    out += '"';
  }
  if (!first) out += '}';
  out += ' ';
  append_number(out, value);
  out += '\n';
}

}  // namespace

void Exposition::family(std::string_view name, std::string_view type, std::string_view help) {
  family_.assign(prefix_).append("_").append(name);
  out_.append("# HELP ").append(family_).append(" ").append(help).append("\n");
  out_.append("# TYPE ").append(family_).append(" ").append(type).append("\n");
}

void Exposition::sample(std::initializer_list<std::pair<std::string_view, std::string_view>> labels, double value,
                        std::string_view suffix) {
  append_sample(out_, family_, suffix, labels, value);
}

void Exposition::sample(const std::vector<std::pair<std::string_view, std::string_view>>& labels, double value,
                        std::string_view suffix) {
  append_sample(out_, family_, suffix, labels, value);
}

// ---- per-worker cells ----

namespace {

enum Family : uint8_t { kEntryPoint, kRouter, kService, kEntryPointTls, kRouterTls, kServiceTls, kFamilies };

constexpr uint64_t kNoId = (1u << 20) - 1;

uint64_t id20(uint32_t id) { return id < kNoId ? id : kNoId; }

uint8_t method_index(std::string_view method) {
  static constexpr std::string_view kMethods[] = {"GET",     "HEAD",  "POST",  "PUT", "DELETE", "CONNECT",
                                                  "OPTIONS", "TRACE", "PATCH", "PRI"};
  for (uint8_t i = 0; i < std::size(kMethods); ++i)
    if (method == kMethods[i]) return i;
  return std::size(kMethods);
}

uint8_t tls_version_index(std::string_view v) {
  if (v == "1.3") return 4;
  if (v == "1.2") return 3;
  if (v == "1.1") return 2;
  if (v == "1.0") return 1;
  return 0;
}

}  // namespace

struct WorkerMetrics::Cell {
  // Labels, set once when the cell is made.
  uint8_t family = 0;
  std::string entry_point, router, service;
  int code = 0;
  std::string code_label;
  std::string method;
  Protocol protocol = Protocol::kHttp;
  std::string tls_version, tls_cipher;
  // Values: written by the worker only (load + store, no read-modify-write), read by scrapes.
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> request_bytes{0};
  std::atomic<uint64_t> response_bytes{0};
  std::atomic<uint64_t> duration_ns{0};
  std::atomic<uint64_t> retries{0};
  std::array<std::atomic<uint64_t>, kMaxBuckets + 1> buckets{};  ///< per bucket (not cumulative); last: +Inf
};

namespace {
inline void bump(std::atomic<uint64_t>& c, uint64_t by) {
  c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}
}  // namespace

WorkerMetrics::WorkerMetrics(const Metrics& owner) : owner_(owner) { index_.reserve(256); }

std::vector<const WorkerMetrics::Cell*> WorkerMetrics::cell_list() const {
  // Only the list is copied under the lock (a worker adding a series waits for no more); the
  // cells never move or go away, so they are read after it.
  std::vector<const Cell*> out;
  std::lock_guard lock(mu_);
  out.reserve(cells_.size());
  for (const auto& c : cells_) out.push_back(&c);
  return out;
}
WorkerMetrics::~WorkerMetrics() = default;

WorkerMetrics::Cell* WorkerMetrics::cell(uint64_t key, const ExchangeRecord& r, uint8_t family) {
  auto it = index_.find(key);
  if (it != index_.end()) return it->second;
  // A new series: made once, then found by its key.
  std::lock_guard lock(mu_);
  Cell& c = cells_.emplace_back();
  c.family = family;
  if (family == kEntryPoint || family == kEntryPointTls) c.entry_point = r.entry_point_name;
  if (family == kRouter || family == kRouterTls) {
    c.router = r.router;
    c.service = r.router_service;
  } else if (family == kService || family == kServiceTls) {
    c.service = r.service;
  }
  if (family < kEntryPointTls) {
    c.code = r.code;
    c.code_label = std::to_string(r.code);
    c.method = metric_method(r.method);
    c.protocol = r.protocol;
  } else {
    c.tls_version = r.tls_version;
    c.tls_cipher = r.tls_cipher;
  }
  index_.emplace(key, &c);
  return &c;
}

void WorkerMetrics::add(Cell* c, const ExchangeRecord& r, bool histogram) {
  bump(c->requests, 1);
  if (!histogram) return;
  bump(c->request_bytes, r.request_bytes);
  bump(c->response_bytes, r.response_bytes);
  bump(c->duration_ns, static_cast<uint64_t>(std::max<int64_t>(r.duration_ns, 0)));
  bump(c->retries, r.retry_attempts);
  const auto& bounds = owner_.bucket_ns_;
  size_t i = 0;
  while (i < bounds.size() && r.duration_ns > bounds[i]) ++i;
  bump(c->buckets[i], 1);
}

void WorkerMetrics::record(const ExchangeRecord& r) {
  const uint64_t code = static_cast<uint64_t>(r.code < 0 || r.code > 999 ? 0 : r.code);
  const uint64_t shape = code << 11 | uint64_t{method_index(r.method)} << 7 | uint64_t{static_cast<uint8_t>(r.protocol)} << 4;
  const bool has_router = r.router_metric != UINT32_MAX;
  const bool has_service = r.service_metric != UINT32_MAX;
  auto key = [](uint8_t family, uint64_t a, uint64_t b, uint64_t rest) {
    return uint64_t{family} << 61 | id20(static_cast<uint32_t>(a)) << 41 | id20(static_cast<uint32_t>(b)) << 21 | rest;
  };
  add(cell(key(kEntryPoint, r.entry_point, 0, shape), r, kEntryPoint), r, true);
  // Router cells are kept even without addRoutersLabels: the dashboard's rates come from them.
  if (has_router) add(cell(key(kRouter, r.router_metric, r.router_service_metric, shape), r, kRouter), r, true);
  if (has_service) add(cell(key(kService, r.service_metric, 0, shape), r, kService), r, true);
  if (!r.tls) return;
  const uint64_t tls = uint64_t{tls_version_index(r.tls_version)} << 16 | r.tls_cipher_id;
  add(cell(key(kEntryPointTls, r.entry_point, 0, tls), r, kEntryPointTls), r, false);
  if (has_router) add(cell(key(kRouterTls, r.router_metric, r.router_service_metric, tls), r, kRouterTls), r, false);
  if (has_service) add(cell(key(kServiceTls, r.service_metric, 0, tls), r, kServiceTls), r, false);
}

// ---- the process ----

Metrics::Metrics(const config::StaticConfig& sc, size_t workers) : settings_(sc.prometheus) {
  if (settings_.buckets.size() > WorkerMetrics::kMaxBuckets) settings_.buckets.resize(WorkerMetrics::kMaxBuckets);
  for (double b : settings_.buckets) bucket_ns_.push_back(static_cast<int64_t>(b * 1e9));
  for (const auto& ep : sc.entry_points) entry_point_names_.push_back(ep.name);
  for (size_t i = 0; i < workers; ++i) workers_.push_back(std::make_unique<WorkerMetrics>(*this));
}

Metrics::~Metrics() = default;

void Metrics::record_reload() {
  reloads_.fetch_add(1, std::memory_order_relaxed);
  last_reload_success_.store(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count(),
        std::memory_order_relaxed);
}

namespace {

using Labels = std::vector<std::pair<std::string_view, std::string_view>>;

/// One label set's sums over the workers.
struct Sums {
  Labels labels;
  uint64_t requests = 0, request_bytes = 0, response_bytes = 0, duration_ns = 0, retries = 0;
  std::array<uint64_t, WorkerMetrics::kMaxBuckets + 1> buckets{};
};

std::string label_key(const Labels& labels) {
  std::string key;
  for (const auto& [k, v] : labels) key.append(k).append("\x1f").append(v).append("\x1e");
  return key;
}

std::string serial_text(X509* cert) {
  std::string out;
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  if (bn == nullptr) return out;
  if (char* dec = BN_bn2dec(bn)) {
    out = dec;
    OPENSSL_free(dec);
  }
  BN_free(bn);
  return out;
}

}  // namespace

std::string Metrics::scrape(const Snapshot& snap) const {
  // Gather every worker's cells under its mutex (values are read with relaxed loads).
  std::map<std::string, Sums> families[kFamilies];
  uint64_t swaps = 0;
  std::vector<std::array<uint64_t, 2>> handshakes(entry_point_names_.size(), {0, 0});
  const size_t nb = bucket_ns_.size();
  for (const auto& w : workers_) {
    swaps += w->swaps_.load(std::memory_order_relaxed);
    for (size_t ep = 0; ep < handshakes.size() && ep < WorkerMetrics::kMaxEntryPoints; ++ep)
      for (int ok = 0; ok < 2; ++ok) handshakes[ep][ok] += w->handshakes_[ep][ok].load(std::memory_order_relaxed);
    for (const WorkerMetrics::Cell* cell : w->cell_list()) {
      const auto& c = *cell;
      Labels labels;
      const std::string_view protocol = protocol_name(c.protocol);
      if (c.family < kEntryPointTls) {
        labels = {{"code", c.code_label}, {"method", c.method}, {"protocol", protocol}};
      } else {
        labels = {{"tls_version", c.tls_version}, {"tls_cipher", c.tls_cipher}};
      }
      switch (c.family) {
        case kEntryPoint: case kEntryPointTls: labels.emplace_back("entrypoint", c.entry_point); break;
        case kRouter: case kRouterTls: labels.emplace_back("router", c.router); labels.emplace_back("service", c.service); break;
        default: labels.emplace_back("service", c.service); break;
      }
      // The views point into the cells, which are never freed.
      Sums& s = families[c.family][label_key(labels)];
      if (s.labels.empty()) s.labels = std::move(labels);
      s.requests += c.requests.load(std::memory_order_relaxed);
      s.request_bytes += c.request_bytes.load(std::memory_order_relaxed);
      s.response_bytes += c.response_bytes.load(std::memory_order_relaxed);
      s.duration_ns += c.duration_ns.load(std::memory_order_relaxed);
      s.retries += c.retries.load(std::memory_order_relaxed);
      for (size_t i = 0; i <= nb; ++i) s.buckets[i] += c.buckets[i].load(std::memory_order_relaxed);
    }
  }

  Exposition out(settings_.prefix);
  out.family("config_reloads_total", "counter", "Config reloads.");
  out.sample({}, static_cast<double>(reloads_.load(std::memory_order_relaxed)));
  out.family("config_last_reload_success", "gauge", "Last config reload success (unix seconds).");
  out.sample({}, static_cast<double>(last_reload_success_.load(std::memory_order_relaxed)));

  // Requests, durations and bytes per entry point, router and service.
  struct Kind {
    Family family, tls;
    std::string_view name;
    bool on;
  };
  const Kind kinds[] = {{kEntryPoint, kEntryPointTls, "entrypoint", settings_.add_entry_points_labels},
                        {kRouter, kRouterTls, "router", settings_.add_routers_labels},
                        {kService, kServiceTls, "service", settings_.add_services_labels}};
  std::vector<std::string> bounds;
  for (double b : settings_.buckets) {
    std::string text;
    append_number(text, b);
    bounds.push_back(std::move(text));
  }
  for (const Kind& k : kinds) {
    if (!k.on) continue;
    const std::string n(k.name);
    const auto& cells = families[k.family];
    out.family(n + "_requests_total", "counter", "How many HTTP requests processed on " + n + ", partitioned by status code, protocol, and method.");
    for (const auto& [_, s] : cells) out.sample(s.labels, static_cast<double>(s.requests));
    out.family(n + "_requests_tls_total", "counter", "How many HTTP requests with TLS processed on " + n + ", partitioned by TLS version and TLS cipher.");
    for (const auto& [_, s] : families[k.tls]) out.sample(s.labels, static_cast<double>(s.requests));
    out.family(n + "_request_duration_seconds", "histogram", "How long it took to process the request on " + n + ", partitioned by status code, protocol, and method.");
    for (const auto& [_, s] : cells) {
      Labels labels = s.labels;
      labels.emplace_back("le", std::string_view{});
      uint64_t cumulative = 0;
      for (size_t i = 0; i <= nb; ++i) {
        cumulative += s.buckets[i];
        labels.back().second = i < nb ? std::string_view(bounds[i]) : std::string_view("+Inf");
        out.sample(labels, static_cast<double>(cumulative), "_bucket");
      }
      out.sample(s.labels, static_cast<double>(s.duration_ns) / 1e9, "_sum");
      out.sample(s.labels, static_cast<double>(s.requests), "_count");
    }
    out.family(n + "_requests_bytes_total", "counter", "The total size of requests in bytes handled by " + n + ", partitioned by status code, protocol, and method.");
    for (const auto& [_, s] : cells) out.sample(s.labels, static_cast<double>(s.request_bytes));
    out.family(n + "_responses_bytes_total", "counter", "The total size of responses in bytes handled by " + n + ", partitioned by status code, protocol, and method.");
    for (const auto& [_, s] : cells) out.sample(s.labels, static_cast<double>(s.response_bytes));
  }
  if (settings_.add_services_labels) {
    std::map<std::string_view, uint64_t> retries;
    for (const auto& [_, s] : families[kService]) retries[s.labels.back().second] += s.retries;
    out.family("service_retries_total", "counter", "How many request retries happened on a service.");
    for (const auto& [service, n] : retries) out.sample({{"service", service}}, static_cast<double>(n));
    // Set by active health checks, as in Traefik: services without one have no series.
    out.family("service_server_up", "gauge", "service server is up, described by gauge value of 0 or 1.");
    const int64_t now_ms = upstream::steady_now_ms();
    for (const auto& service : snap.services) {
      if (service.kind != Service::Kind::kLoadBalancer || !service.health_check) continue;
      for (const auto& e : service.endpoints)
        out.sample({{"service", service.name}, {"url", e.url}}, e.health->is_up(now_ms) ? 1 : 0);
    }
  }

  // Certificates: Traefik's series per certificate, and berth's per domain.
  if (snap.certificates) {
    out.family("tls_certs_not_after", "gauge", "Certificate expiration timestamp (unix seconds).");
    std::map<std::string, std::pair<std::string, double>> domains;
    for (const auto& cert : snap.certificates->certificates()) {
      std::string sans;
      for (const auto& name : cert->names()) sans.append(sans.empty() ? "" : ",").append(name);
      const double not_after = static_cast<double>(
          std::chrono::duration_cast<std::chrono::seconds>(cert->not_after().time_since_epoch()).count());
      std::string serial = serial_text(cert->leaf());
      out.sample({{"cn", cert->common_name()}, {"sans", sans}, {"serial", serial}}, not_after);
      for (const auto& name : cert->names()) {
        auto& d = domains[name];
        d.second = std::max(d.second, not_after);
      }
    }
    out.family("tls_domain_not_after", "gauge", "Latest expiration (unix seconds) of the certificates that cover each domain.");
    for (const auto& [domain, v] : domains) out.sample({{"domain", domain}}, v.second);
  }

  // berth's own.
  out.family("snapshot_swaps_total", "counter", "Configuration snapshots taken by workers (one per worker and reload).");
  out.sample({}, static_cast<double>(swaps));
  out.family("tls_handshakes_total", "counter", "TLS handshakes on entry points, by result.");
  for (size_t ep = 0; ep < handshakes.size(); ++ep) {
    out.sample({{"entrypoint", entry_point_names_[ep]}, {"result", "ok"}}, static_cast<double>(handshakes[ep][0]));
    out.sample({{"entrypoint", entry_point_names_[ep]}, {"result", "failed"}}, static_cast<double>(handshakes[ep][1]));
  }
  if (process_) process_(out);
  return out.text();
}

std::unordered_map<std::string, RequestTotals> Metrics::router_totals() const { return totals(kRouter); }

std::unordered_map<std::string, RequestTotals> Metrics::service_totals() const { return totals(kService); }

std::unordered_map<std::string, RequestTotals> Metrics::totals(uint8_t family) const {
  std::unordered_map<std::string, RequestTotals> out;
  for (const auto& w : workers_) {
    for (const WorkerMetrics::Cell* cell : w->cell_list()) {
      const auto& c = *cell;
      if (c.family != family) continue;
      auto& t = out[family == kRouter ? c.router : c.service];
      const uint64_t n = c.requests.load(std::memory_order_relaxed);
      t.requests += n;
      t.duration_ns += c.duration_ns.load(std::memory_order_relaxed);
      if (c.code >= 500 && c.code <= 599 && c.protocol != Protocol::kGrpc && c.protocol != Protocol::kGrpcWeb)
        t.server_errors += n;
    }
  }
  return out;
}

}  // namespace berth::proxy::observe
