// The service tree walk; see service_picker.h.
#include "proxy/balancer/service_picker.h"

namespace berth::proxy::balancer {

void ServicePicker::reset(const Snapshot& snapshot) {
  generation_ = snapshot.generation;
  rr_.resize(snapshot.services.size());
  mirror_counts_.assign(snapshot.services.size(), {});
  for (size_t i = 0; i < snapshot.services.size(); ++i) {
    const Service& s = snapshot.services[i];
    std::vector<int> weights;
    if (s.kind == Service::Kind::kLoadBalancer)
      for (const auto& e : s.endpoints) weights.push_back(e.weight);
    else if (s.kind == Service::Kind::kWeighted)
      weights = s.weights;
    rr_[i].reset(std::move(weights));
    if (s.kind == Service::Kind::kMirroring) mirror_counts_[i].assign(s.children.size(), 0);
  }
}

bool ServicePicker::is_up(const Snapshot& snapshot, uint32_t service, int64_t now_ms) {
  const Service& s = snapshot.services[service];
  switch (s.kind) {
    case Service::Kind::kLoadBalancer:
      for (const auto& e : s.endpoints)
        if (is_eligible(e, now_ms)) return true;
      return false;
    case Service::Kind::kWeighted:
      for (size_t i = 0; i < s.children.size(); ++i)
        if (s.weights[i] > 0 && is_up(snapshot, s.children[i], now_ms)) return true;
      return false;
    case Service::Kind::kFailover:
      return is_up(snapshot, s.children[0], now_ms) || is_up(snapshot, s.children[1], now_ms);
    case Service::Kind::kMirroring:
      return is_up(snapshot, s.children[0], now_ms);
  }
  return false;
}

// The sticky choice named by the request's cookie, if it is still valid; -1 otherwise. Cookies
// holding the raw server URL (older Traefik versions) are honoured too.
static int sticky_choice(const StickyCookie& sticky, const std::vector<http::Header>& headers,
                         const std::vector<Endpoint>* endpoints) {
  std::string_view value = http::find_cookie(headers, sticky.name);
  if (value.empty()) return -1;
  for (size_t i = 0; i < sticky.values.size(); ++i)
    if (sticky.values[i] == value || (endpoints && (*endpoints)[i].url == value)) return static_cast<int>(i);
  return -1;
}

Pick ServicePicker::pick(const Snapshot& snapshot, uint32_t service, const std::vector<http::Header>& headers,
                         middleware::Edits& edits, int64_t now_ms) {
  // The builder rejects cycles, so the walk ends; each step goes one level down.
  uint32_t mirroring = Pick::kNoMirroring;
  const bool stale = snapshot.generation != generation_;
  while (true) {
    const Service& s = snapshot.services[service];
    switch (s.kind) {
      case Service::Kind::kLoadBalancer: {
        const bool sticky = !s.sticky.name.empty();
        if (sticky) {
          int i = sticky_choice(s.sticky, headers, &s.endpoints);
          if (i >= 0 && is_eligible(s.endpoints[i], now_ms)) return {service, i, mirroring};
        }
        int i = s.p2c ? pick_p2c(s, now_ms)
                : stale  ? pick_any(s, now_ms)
                         : rr_[service].pick([&](size_t j) { return s.endpoints[j].health->is_up(now_ms); });
        if (i >= 0 && sticky) edits.set_server_cookie(s.sticky.set_cookies[i]);
        return {service, i, mirroring};
      }
      case Service::Kind::kWeighted: {
        auto up = [&](size_t j) { return is_up(snapshot, s.children[j], now_ms); };
        const bool sticky = !s.sticky.name.empty();
        int i = sticky ? sticky_choice(s.sticky, headers, nullptr) : -1;
        if (i < 0 || s.weights[i] == 0 || !up(i)) {
          if (stale) {  // a weighted random choice among the children up, without the counters
            int64_t total = 0;
            for (size_t j = 0; j < s.children.size(); ++j)
              if (s.weights[j] > 0 && up(j)) total += s.weights[j];
            i = -1;
            if (total > 0) {
              int64_t r = static_cast<int64_t>(next_random() % static_cast<uint64_t>(total));
              for (size_t j = 0; j < s.children.size() && i < 0; ++j)
                if (s.weights[j] > 0 && up(j) && (r -= s.weights[j]) < 0) i = static_cast<int>(j);
            }
          } else {
            i = rr_[service].pick(up);
          }
          // No child is up: keep walking the first weighted child, whose answer is a 503.
          for (size_t j = 0; j < s.children.size() && i < 0; ++j)
            if (s.weights[j] > 0) i = static_cast<int>(j);
          if (i < 0) return {service, -1, mirroring};
          if (sticky) edits.add_header("Set-Cookie", s.sticky.set_cookies[i]);
        }
        service = s.children[i];
        break;
      }
      case Service::Kind::kFailover:
        service = is_up(snapshot, s.children[0], now_ms) ? s.children[0] : s.children[1];
        break;
      case Service::Kind::kMirroring:
        if (mirroring == Pick::kNoMirroring) mirroring = service;
        service = s.children[0];
        break;
    }
  }
}

uint64_t ServicePicker::next_random() {
  // xorshift64*: cheap, per worker, good enough to spread picks.
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return rng_ * 2685821657736338717ull;
}

int ServicePicker::pick_any(const Service& lb, int64_t now_ms) {
  const size_t n = lb.endpoints.size();
  if (n == 0) return -1;
  const size_t start = next_random() % n;
  for (size_t k = 0; k < n; ++k)
    if (is_eligible(lb.endpoints[(start + k) % n], now_ms)) return static_cast<int>((start + k) % n);
  return -1;
}

int ServicePicker::pick_p2c(const Service& lb, int64_t now_ms) {
  const size_t n = lb.endpoints.size();
  if (n == 0) return -1;
  // Two distinct random starting points, each moved to the next eligible server.
  auto next_eligible = [&](size_t from, int skip) -> int {
    for (size_t k = 0; k < n; ++k) {
      size_t i = (from + k) % n;
      if (static_cast<int>(i) != skip && is_eligible(lb.endpoints[i], now_ms)) return static_cast<int>(i);
    }
    return -1;
  };
  int a = next_eligible(next_random() % n, -1);
  if (a < 0 || n == 1) return a;
  int b = next_eligible(next_random() % n, a);
  if (b < 0) return a;
  auto load = [&](int i) { return lb.endpoints[i].health->in_flight.load(std::memory_order_relaxed); };
  return load(b) < load(a) ? b : a;
}

}  // namespace berth::proxy::balancer
