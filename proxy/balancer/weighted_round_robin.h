// Smooth weighted round robin (the nginx algorithm Traefik's default `wrr` strategy uses): over any
// window of sum(weights) picks each server gets exactly its weight, spread out rather than in runs.
// One instance per worker and service; its state is the only thing a pick changes (HP-2).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace berth::proxy::balancer {

class WeightedRoundRobin {
 public:
  /// Sets the weights (0: never picked). Thread: worker, when a snapshot arrives.
  void reset(std::vector<int> weights);

  /// Index of the next server, or -1 when every weight is 0. Thread: worker.
  int pick();

  size_t size() const { return weights_.size(); }

 private:
  std::vector<int> weights_;
  std::vector<int64_t> current_;
  int64_t total_ = 0;
  bool uniform_ = true;  ///< all weights equal: plain rotation, no arithmetic
  size_t next_ = 0;
};

}  // namespace berth::proxy::balancer
