// Smooth weighted round robin; see weighted_round_robin.h.
#include "proxy/balancer/weighted_round_robin.h"

#include <algorithm>

namespace berth::proxy::balancer {

void WeightedRoundRobin::reset(std::vector<int> weights) {
  weights_ = std::move(weights);
  current_.assign(weights_.size(), 0);
  total_ = 0;
  for (int w : weights_) total_ += w;
  uniform_ = total_ > 0 && std::all_of(weights_.begin(), weights_.end(), [&](int w) { return w == weights_[0]; });
  next_ = 0;
}

}  // namespace berth::proxy::balancer
