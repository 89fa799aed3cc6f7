// Compiles static + dynamic config into a Snapshot (config flow step "build"): parses and compiles
// rules, resolves services and entry points, renders the built-in page. Thread: control.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "config/dynamic_config.h"
#include "config/static_config.h"
#include "proxy/snapshot.h"

namespace berth::proxy {

/// What became of one router, service or middleware (the API's `status` and `error`).
struct ElementStatus {
  bool disabled = false;                 ///< left out of the snapshot (else serving; `errors`: warnings)
  std::vector<std::string> errors;       ///< "file:line:col: message"
  std::vector<std::string> entry_points; ///< routers: where the router serves (Traefik's `using`)
  int64_t priority = 0;                  ///< routers: the effective priority
};

/// Every element of the dynamic config by qualified name (routers: all; services and middlewares:
/// those with problems), including the ones the decoder dropped.
struct BuildReport {
  std::map<std::string, ElementStatus> routers, services, middlewares;
  /// The routers berth makes itself (api@internal, ping@internal, entry point redirects...).
  std::vector<config::RouterConfig> internal_routers;
};

struct BuildResult {
  std::shared_ptr<const Snapshot> snapshot;
  std::vector<Error> errors;  ///< elements that were disabled, each with its place
  BuildReport report;
};

/// Never fails as a whole: a broken router or service is left out and reported. Servers get their
/// shared health state from `health`, so health survives reloads.
BuildResult build_snapshot(const config::StaticConfig& static_config, const config::DynamicConfig& dynamic,
                           uint64_t generation, upstream::HealthRegistry& health);

}  // namespace berth::proxy
