// Picks the server for an exchange by walking the snapshot's service tree: weighted services
// split by weight, failover services fall back when their main service is down, load balancers
// pick a healthy server by smooth weighted round robin or p2c, sticky cookies pin a client.
// One instance per worker (per-worker counters, HP-2); rebuilt when a snapshot arrives.
#pragma once

#include <cstdint>
#include <vector>

#include "proxy/balancer/weighted_round_robin.h"
#include "proxy/http/header.h"
#include "proxy/middleware/middleware.h"
#include "proxy/snapshot.h"

namespace berth::proxy::balancer {

/// The load balancer and server an exchange goes to; `endpoint` is -1 when no server is up.
struct Pick {
  static constexpr uint32_t kNoMirroring = UINT32_MAX;
  uint32_t service = 0;  ///< a kLoadBalancer service
  int endpoint = -1;
  uint32_t mirroring = kNoMirroring;  ///< the mirroring service the walk went through, if any
};

class ServicePicker {
 public:
  /// Sizes the per-service state for `snapshot`. Thread: worker.
  void reset(const Snapshot& snapshot);

  /// Picks for `service`. Sticky choices read the request's cookies; a new sticky choice adds its
  /// Set-Cookie to `edits`. An exchange that began under an older snapshot (it waited on an auth
  /// server across a reload) still gets a sound pick: the counters belong to the current snapshot,
  /// so its picks are made without them. Thread: worker.
  Pick pick(const Snapshot& snapshot, uint32_t service, const std::vector<http::Header>& headers,
            middleware::Edits& edits, int64_t now_ms);

  /// Counts one exchange through mirroring service `service` and calls `send(child)` for each mirror
  /// (children[1..]) due a copy of it: Traefik's rule, each mirror gets exactly `percent` of the
  /// exchanges seen so far (per worker). Thread: worker.
  template <typename Send>
  void for_each_due_mirror(const Snapshot& snapshot, uint32_t service, Send&& send) {
    if (snapshot.generation != generation_) return;  // counts are the current snapshot's
    auto& counts = mirror_counts_[service];  // [0]: exchanges; [i]: copies sent to child i
    const Service& s = snapshot.services[service];
    ++counts[0];
    for (size_t i = 1; i < s.children.size(); ++i) {
      if (counts[i] * 100 >= counts[0] * static_cast<uint64_t>(s.weights[i])) continue;
      ++counts[i];
      send(i);
    }
  }

  /// True if `service` has a server in rotation (health propagates up the tree). Thread: any.
  static bool is_up(const Snapshot& snapshot, uint32_t service, int64_t now_ms);
  /// True if the server may take traffic: a weight and healthy. Thread: any.
  static bool is_eligible(const Endpoint& e, int64_t now_ms) { return e.weight > 0 && e.health->is_up(now_ms); }

 private:
  int pick_p2c(const Service& lb, int64_t now_ms);
  /// Without per-snapshot state: the first eligible server from a random start.
  int pick_any(const Service& lb, int64_t now_ms);
  uint64_t next_random();

  uint64_t generation_ = 0;  ///< the snapshot rr_ and mirror_counts_ were sized for
  std::vector<WeightedRoundRobin> rr_;  ///< per service: over endpoints or over children
  std::vector<std::vector<uint64_t>> mirror_counts_;  ///< per mirroring service: exchanges, then copies per child
  uint64_t rng_ = 0x9e3779b97f4a7c15ull;
};

}  // namespace berth::proxy::balancer
