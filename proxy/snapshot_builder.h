// Compiles static + dynamic config into a Snapshot (config flow step "build"): parses and compiles
// rules, resolves services and entry points, renders the built-in page. Thread: control.
#pragma once

#include <memory>
#include <vector>

#include "base/result.h"
#include "config/dynamic_config.h"
#include "config/static_config.h"
#include "proxy/snapshot.h"

namespace berth::proxy {

struct BuildResult {
  std::shared_ptr<const Snapshot> snapshot;
  std::vector<Error> errors;  ///< elements that were disabled, each with its place
};

/// Never fails as a whole: a broken router or service is left out and reported. Servers get their
/// shared health state from `health`, so health survives reloads.
BuildResult build_snapshot(const config::StaticConfig& static_config, const config::DynamicConfig& dynamic,
                           uint64_t generation, upstream::HealthRegistry& health);

}  // namespace berth::proxy
