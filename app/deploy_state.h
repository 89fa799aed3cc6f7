// Deploy state: what `berth deploy`, `rollback`, `rollout` and `stop` decided for each service
// (its targets, the previous ones, a canary and its share, a maintenance message), kept in one JSON
// file written atomically, and laid over the providers' merged config before each build (config
// flow step "merge", after the providers). Thread: control.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "config/dynamic_config.h"

namespace berth::proxy::upstream {
struct ServiceGate;
}

namespace berth::app {

/// How the new targets of a deploy are checked before the switch (kamal-proxy's flags and defaults).
struct HealthGate {
  std::string path = "/up";
  std::chrono::milliseconds interval{1000};
  std::chrono::milliseconds timeout{5000};  ///< one check
};

/// The automatic rollback of a canary: it goes when its 5xx ratio exceeds the stable targets' by
/// more than `error_margin`, or its mean latency is over `latency_factor` times theirs (and 50 ms
/// more), once it has served `min_requests` since the rollout began.
struct AutoRollback {
  bool enabled = false;
  double error_margin = 0.05;
  double latency_factor = 2.0;
  uint64_t min_requests = 20;
};

/// One service under berth's deploys. Targets are "host:port" (http) or URLs.
struct ServiceDeploy {
  std::string service;                 ///< qualified: "app@docker", or "app@deploy" when berth made it
  bool created = false;                ///< berth made its router and service (no provider has them)
  std::vector<std::string> hosts;      ///< created: its router's Host()s (none: every host)
  std::vector<std::string> targets;    ///< serving now (empty: the provider's servers)
  std::vector<std::string> previous;   ///< before the last switch (what `rollback` goes back to)
  std::vector<std::string> canary;     ///< `rollout`: the new targets
  int percent = 0;                     ///< `rollout`: the canary's share of users (sticky by cookie)
  AutoRollback auto_rollback;
  bool paused = false;                 ///< `pause`: new requests are held (ServiceGate)
  std::chrono::milliseconds max_pause{30'000};  ///< `pause --max-pause`: then 504
  bool stopped = false;                ///< `stop`: a 503 maintenance page
  std::string message;                 ///< `stop --message`
  HealthGate health;                   ///< as last given (rollback uses it)
  std::string last;                    ///< what happened last, for `berth list`
  int64_t updated = 0;                 ///< unix seconds of `last`
};

struct DeployState {
  std::map<std::string, ServiceDeploy> services;  ///< by qualified name

  /// Reads `path`; a missing file is an empty state. Errors name the file.
  static Result<DeployState> load(const std::string& path);
  /// Writes `path` atomically (a temp file, fsync, rename, fsync of the directory), creating the
  /// directory (0700) if needed.
  Result<bool> save(const std::string& path) const;
  std::string to_json() const;
  static Result<DeployState> from_json(std::string_view text, const std::string& where);
};

/// The URL of a target: "host:port" gets "http://"; a URL stays as it is.
std::string target_url(const std::string& target);
/// The names of a rollout's two halves: "app@docker" -> "app~stable@docker" / "app~canary@docker"
/// ('~' is in no provider's names, so they never collide).
std::string stable_name(const std::string& service);
std::string canary_name(const std::string& service);

/// Lays `state` over the merged provider config: targets replace a service's servers; a rollout
/// turns it into a sticky weighted service over its stable and canary halves; `stop` sets its
/// maintenance page; services berth made get their router and service. `gates` (by service) are
/// set on the top services for pause/resume. A deploy whose service no provider has (and berth did
/// not make) is left out, with a problem naming it.
void apply_deploys(const DeployState& state,
                   const std::map<std::string, std::shared_ptr<proxy::upstream::ServiceGate>>& gates,
                   config::DynamicConfig& dyn);

}  // namespace berth::app
