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

int WeightedRoundRobin::pick() {
  if (total_ <= 0) return -1;
  if (uniform_) return static_cast<int>(next_++ % weights_.size());
  // Each server gains its weight; the richest is picked and pays the total back.
  size_t best = 0;
  for (size_t i = 0; i < weights_.size(); ++i) {
    current_[i] += weights_[i];
    if (current_[i] > current_[best]) best = i;
  }
  current_[best] -= total_;
  return static_cast<int>(best);
}

}  // namespace berth::proxy::balancer
