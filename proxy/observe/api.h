// The Traefik API (/api/...): the documents of one snapshot, rendered once with Boost.JSON on the
// control thread (snapshot_builder), then answered by a worker, which adds the live parts: each
// server's health (UP/DOWN) and each router's request counts.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "config/dynamic_config.h"
#include "config/static_config.h"
#include "proxy/observe/metrics.h"

namespace berth::proxy {
struct Snapshot;
struct BuildReport;
}  // namespace berth::proxy

namespace berth::proxy::observe {

/// One answer of the API.
struct ApiReply {
  int status = 200;
  std::string body;
  bool json = true;        ///< application/json (else text/plain)
  std::string next_page;   ///< X-Next-Page of list answers ("" for others)
};

/// Requests per router name (Metrics::router_totals()); called only by answers that show them.
using RouterTotalsSource = std::function<std::unordered_map<std::string, RequestTotals>()>;

class ApiDocuments {
 public:
  /// Renders the documents of `snap`, built from `dyn` with `report`; `problems` are the builder's
  /// (the decoder's are in dyn.errors). Thread: control.
  static std::shared_ptr<const ApiDocuments> render(const config::StaticConfig& sc, const config::DynamicConfig& dyn,
                                                    const Snapshot& snap, const BuildReport& report,
                                                    const std::vector<Error>& problems);

  /// Answers GET `path` ("/api/..."; percent-encoded as received) with `query` (after '?', may be
  /// empty), reading server health from `snap` (the snapshot these documents belong to) now.
  /// Thread: any.
  ApiReply answer(const Snapshot& snap, std::string_view path, std::string_view query,
                  const RouterTotalsSource& totals) const;

  /// The dashboard is on (api.dashboard): api@internal serves it too. Thread: any.
  bool dashboard() const { return dashboard_; }

  /// One entry point, router, service or middleware, prerendered.
  struct Item {
    std::string name;                  ///< qualified
    std::string provider;
    std::string status;                ///< enabled | disabled | warning
    std::string type;                  ///< services and middlewares: Traefik's lower-case type
    std::string rule;                  ///< routers
    std::string service;               ///< routers: the qualified service
    std::vector<std::string> middlewares;  ///< routers: qualified
    int64_t priority = 0;              ///< routers
    uint32_t live = UINT32_MAX;        ///< services: index into Snapshot::services (load balancers)
    boost::json::object doc;           ///< Traefik's representation, without the live fields
  };

 private:
  enum class Kind { kEntryPoints, kRouters, kServices, kMiddlewares };
  ApiReply list(const Snapshot& snap, Kind kind, std::string_view query, const RouterTotalsSource& totals) const;
  ApiReply one(const Snapshot& snap, Kind kind, std::string_view name, const RouterTotalsSource& totals) const;
  ApiReply rawdata(const Snapshot& snap, const RouterTotalsSource& totals) const;
  /// The item's document with its live fields.
  boost::json::object live_doc(const Snapshot& snap, Kind kind, const Item& item,
                               const std::unordered_map<std::string, RequestTotals>* totals) const;
  const std::vector<Item>& items(Kind kind) const;

  std::vector<Item> entry_points_, routers_, services_, middlewares_;  ///< by name
  std::string overview_json_;
  bool dashboard_ = false;
  std::string version_json_;
};

}  // namespace berth::proxy::observe
