// The compiled routes of one entry point, indexed by exact host and wildcard suffix so that
// matching among 10,000 routers costs about what it costs among 10.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proxy/middleware/middleware.h"
#include "proxy/router/matcher.h"

namespace berth::proxy::router {

/// Route::service for routes that only ever answer from their middlewares (entry point redirects,
/// noop@internal).
inline constexpr uint32_t kNoService = UINT32_MAX;
/// Route::service for berth's own services, answered after the route's middlewares ran.
inline constexpr uint32_t kApiService = UINT32_MAX - 1;         ///< api@internal (the API, and the dashboard)
inline constexpr uint32_t kDashboardService = UINT32_MAX - 2;   ///< dashboard@internal
inline constexpr uint32_t kPingService = UINT32_MAX - 3;        ///< ping@internal
inline constexpr uint32_t kPrometheusService = UINT32_MAX - 4;  ///< prometheus@internal
inline constexpr uint32_t kFirstInternalService = kPrometheusService;

struct Route {
  std::string name;                   ///< qualified router name, e.g. "web@file"
  uint32_t metric_id = UINT32_MAX;    ///< the name's id in observe::metric_names()
  int64_t priority = 0;
  std::shared_ptr<const Matcher> matcher;  ///< shared by the routes one router makes on several entry points
  uint32_t service = 0;               ///< index into Snapshot::services
  std::vector<const middleware::Middleware*> middlewares;  ///< flattened chain, owned by the Snapshot
};

class RouteTable {
 public:
  /// Adds a route; call freeze() once all are added. Thread: control.
  void add(std::shared_ptr<const Route> route);
  /// Sorts every candidate list by priority (desc), then name (asc) for determinism.
  void freeze();

  /// Returns the best matching route or nullptr. `req.host` may carry any case. Thread: any.
  const Route* match(const RequestView& req) const;

  size_t size() const { return routes_.size(); }

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using List = std::vector<const Route*>;
  static const Route* first_match(const List& a, const List& b, const RequestView& req);

  std::vector<std::shared_ptr<const Route>> routes_;
  std::unordered_map<std::string, List, StringHash, std::equal_to<>> exact_;     ///< "a.com"
  std::unordered_map<std::string, List, StringHash, std::equal_to<>> wildcard_;  ///< ".a.com" for "*.a.com"
  List any_host_;
};

}  // namespace berth::proxy::router
