// Health of one backend server, shared by every snapshot that names it, the workers that pick it
// and the control plane's health checker. Atomics only (HP-2): the checker writes `active_up`,
// workers count live failures (passive checks) and in-flight exchanges (p2c).
#pragma once

#include <atomic>
#include <vector>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

namespace berth::proxy::upstream {

struct EndpointHealth {
  std::atomic<bool> active_up{true};           ///< last active check result (true until one fails)
  std::atomic<int64_t> passive_down_until{0};  ///< steady clock, ms: out of rotation until then
  std::atomic<int64_t> window_start{0};        ///< start of the current failure window, ms
  std::atomic<int32_t> failures{0};            ///< live failures within the window
  std::atomic<int32_t> in_flight{0};           ///< exchanges on this server right now, all workers

  /// In rotation at `now_ms` (steady clock, ms). Thread: any.
  bool is_up(int64_t now_ms) const {
    return active_up.load(std::memory_order_relaxed) &&
           passive_down_until.load(std::memory_order_relaxed) <= now_ms;
  }
  /// Counts a failed exchange; after `max_failures` within `window_ms` the server leaves rotation
  /// for `window_ms`. Returns true when this failure took it out. Thread: any.
  bool record_failure(int64_t now_ms, int64_t window_ms, int32_t max_failures);
};

/// The switch of a service that `berth pause` / `berth resume` flip without a new snapshot: while
/// paused, new requests are held (up to `max_pause_ms`, then 504). Thread: any (atomics).
struct ServiceGate {
  std::atomic<bool> paused{false};
  std::atomic<int64_t> max_pause_ms{30'000};
};

/// The EndpointHealth of each (service, server URL), so that health survives reloads for as long
/// as some snapshot still names the server. Thread: control.
class HealthRegistry {
 public:
  std::shared_ptr<EndpointHealth> get(const std::string& service, const std::string& url);
  /// Forgets servers no snapshot names any more.
  void prune();
  /// The servers the active checks found down, as (service, url): what a hot upgrade hands over.
  std::vector<std::pair<std::string, std::string>> down() const;
  /// Marks a server down until its next passing check (a predecessor's verdict); unknown ones are skipped.
  void mark_down(const std::string& service, const std::string& url);

 private:
  std::map<std::pair<std::string, std::string>, std::weak_ptr<EndpointHealth>> entries_;
};

/// Milliseconds of CLOCK_MONOTONIC_COARSE, the time base of EndpointHealth (cheap enough per exchange). Thread: any.
int64_t steady_now_ms();

}  // namespace berth::proxy::upstream
