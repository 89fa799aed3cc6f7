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
  int pick() {
    return pick([](size_t) { return true; });
  }

  /// Index of the next server among those `eligible(i)` accepts (healthy ones), or -1 when none
  /// with a weight is. Ineligible servers neither gain nor pay, so the others keep their ratio.
  template <typename Eligible>
  int pick(Eligible&& eligible) {
    if (total_ <= 0) return -1;
    const size_t n = weights_.size();
    if (uniform_) {
      for (size_t tries = 0; tries < n; ++tries) {
        size_t i = next_++ % n;
        if (eligible(i)) return static_cast<int>(i);
      }
      return -1;
    }
    // Each server gains its weight; the richest is picked and pays the total back.
    int best = -1;
    int64_t total = 0;
    for (size_t i = 0; i < n; ++i) {
      if (weights_[i] == 0 || !eligible(i)) continue;
      current_[i] += weights_[i];
      total += weights_[i];
      if (best < 0 || current_[i] > current_[best]) best = static_cast<int>(i);
    }
    if (best >= 0) current_[best] -= total;
    return best;
  }

  size_t size() const { return weights_.size(); }

 private:
  std::vector<int> weights_;
  std::vector<int64_t> current_;
  int64_t total_ = 0;
  bool uniform_ = true;  ///< all weights equal: plain rotation, no arithmetic
  size_t next_ = 0;
};

}  // namespace berth::proxy::balancer
