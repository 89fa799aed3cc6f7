// Shared server health; see health.h.
#include "proxy/upstream/health.h"

#include <time.h>

namespace berth::proxy::upstream {

bool EndpointHealth::record_failure(int64_t now_ms, int64_t window_ms, int32_t max_failures) {
  // Races between workers only blur the window's edge by a failure or two, which a passive
  // check tolerates; no lock on the request path.
  int64_t start = window_start.load(std::memory_order_relaxed);
  if (now_ms - start >= window_ms) {
    if (window_start.compare_exchange_strong(start, now_ms, std::memory_order_relaxed))
      failures.store(0, std::memory_order_relaxed);
  }
  if (failures.fetch_add(1, std::memory_order_relaxed) + 1 < max_failures) return false;
  failures.store(0, std::memory_order_relaxed);
  window_start.store(now_ms, std::memory_order_relaxed);
  passive_down_until.store(now_ms + window_ms, std::memory_order_relaxed);
  return true;
}

std::shared_ptr<EndpointHealth> HealthRegistry::get(const std::string& service, const std::string& url) {
  auto& slot = entries_[{service, url}];
  if (auto live = slot.lock()) return live;
  auto fresh = std::make_shared<EndpointHealth>();
  slot = fresh;
  return fresh;
}

std::vector<std::pair<std::string, std::string>> HealthRegistry::down() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [key, weak] : entries_)
    if (auto h = weak.lock(); h && !h->active_up.load(std::memory_order_relaxed)) out.push_back(key);
  return out;
}

void HealthRegistry::mark_down(const std::string& service, const std::string& url) {
  auto it = entries_.find({service, url});
  if (it == entries_.end()) return;
  if (auto h = it->second.lock()) h->active_up.store(false, std::memory_order_relaxed);
}

void HealthRegistry::prune() {
  std::erase_if(entries_, [](const auto& e) { return e.second.expired(); });
}

int64_t steady_now_ms() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

}  // namespace berth::proxy::upstream
