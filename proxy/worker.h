// Worker: one thread with its own io_context, its SO_REUSEPORT listeners, the current Snapshot, and
// per-worker state (buffer pool, upstream pool, balancer counters). Nothing here is shared between
// workers except through posted snapshots and atomics (HP-2).
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <unordered_map>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "config/static_config.h"
#include "proxy/balancer/service_picker.h"
#include "proxy/deadline_wheel.h"
#include "proxy/http/compressor.h"
#include "proxy/io_buffer.h"
#include "proxy/ip_net.h"
#include "proxy/park_set.h"
#include "proxy/snapshot.h"
#include "proxy/upstream/pool.h"

namespace berth::proxy {

class H2Client;

class DownstreamConnection;
struct ExchangeState;
namespace observe {
class Metrics;
class AccessLog;
}  // namespace observe

/// Static, per-entry-point settings the data plane reads (compiled once at start).
struct EntryPointSettings {
  std::string name;
  uint16_t port = 0;
  std::chrono::milliseconds read_timeout{60'000};
  std::chrono::milliseconds write_timeout{0};
  std::chrono::milliseconds idle_timeout{180'000};
  std::vector<IpNet> trusted;
  bool trust_all = false;   ///< forwardedHeaders.insecure
  size_t max_header_bytes = 1 << 20;
  uint32_t max_concurrent_streams = 250;  ///< http2.maxConcurrentStreams
  std::chrono::milliseconds websocket_max_lifetime{0};  ///< webSocket.maxLifetime (0: none)
};

/// Process-wide facts the workers read after start (never written again).
struct ProcessInfo {
  std::string hostname;      ///< X-Forwarded-Server
  std::vector<EntryPointSettings> entry_points;
  int ping_terminating_status = 503;
  bool io_uring = true;  ///< ioUring: workers send each turn's writes in one io_uring_enter
  observe::Metrics* metrics = nullptr;       ///< never null in a running server (lives as long as the process)
  observe::AccessLog* access_log = nullptr;  ///< null when accessLog is off
};

/// What a deploy's drain waits for: exchanges on its old servers, and exchanges routed to its
/// service by a snapshot older than the switch that have not reached a server yet (in a middleware,
/// reading a body to buffer). Shared by the control plane and the workers while they look.
struct DrainTarget {
  std::vector<std::shared_ptr<upstream::EndpointHealth>> servers;
  std::string service;              ///< qualified ("": the servers only)
  uint64_t before_generation = 0;   ///< the switch's snapshot generation
};

class Worker {
 public:
  Worker(int index, std::shared_ptr<const ProcessInfo> info);
  ~Worker();

  /// Opens this worker's listener for every entry point (SO_REUSEPORT), or takes over `inherited`
  /// (per entry point: listening sockets of the berth this one replaces; it owns them from now on).
  /// Thread: control, before start().
  Result<bool> listen(const std::vector<config::EntryPointConfig>& entry_points,
                      const std::vector<std::vector<int>>& inherited = {});
  /// Its listening sockets, as (entry point index, descriptor), for a successor. Thread: control,
  /// before drain().
  std::vector<std::pair<size_t, int>> listeners() const;
  /// Starts the thread. Thread: control.
  void start();
  /// Hands a new snapshot to the worker; exchanges already running keep the old one. Thread: any.
  void publish(std::shared_ptr<const Snapshot> snapshot);
  /// Marks the worker terminating (ping answers the terminating status). Thread: any.
  void begin_terminating();
  /// Closes the listener of entry point `ep` and its idle connections; busy ones close after their
  /// exchange. Thread: any.
  void drain(size_t ep);
  /// Ends the exchanges and WebSockets still on the servers in `gone` (a deploy's drain timeout).
  /// Thread: any.
  void evict(std::shared_ptr<const DrainTarget> gone);
  /// Counts the exchanges (WebSockets included) `target` waits for and calls `done` with the
  /// count, on this worker's thread (a drain waits for zero). Thread: any.
  void count_on(std::shared_ptr<const DrainTarget> target, std::function<void(size_t)> done);
  /// Stops the io_context and joins the thread. Thread: control.
  void stop();

  /// Open downstream connections on entry point `ep`. Thread: any.
  size_t open_connections(size_t ep) const { return open_[ep].load(std::memory_order_relaxed); }
  /// drain(ep) took effect: no more accepts on `ep`, and every connection accepted is counted in
  /// open_connections(ep). Thread: any.
  bool drained(size_t ep) const { return drained_[ep].load(std::memory_order_acquire); }
  /// Idle HTTP/1 connections to servers in this worker's pool, as of its last sweep (each second). Thread: any.
  size_t idle_upstreams() const { return idle_upstreams_.load(std::memory_order_relaxed); }

  int index() const { return index_; }

  // Worker-thread API used by connections.
  boost::asio::io_context& context() { return io_; }
  const std::shared_ptr<const Snapshot>& snapshot() const { return snapshot_; }
  /// The generation this worker serves from (it took the snapshot). Thread: any.
  uint64_t live_generation() const { return live_generation_.load(std::memory_order_acquire); }
  const ProcessInfo& info() const { return *info_; }
  BufferPool& buffers() { return buffers_; }
  upstream::Pool& upstreams() { return upstreams_; }
  /// HTTP/2 connections to servers by pool key (h2c:// and https:// servers that chose h2): usually
  /// one, more when a server's stream limit is reached.
  std::unordered_map<std::string, std::vector<std::shared_ptr<H2Client>>>& h2_clients() { return h2_clients_; }
  DeadlineWheel& deadlines() { return deadlines_; }
  ParkSet& parks() { return parks_; }
  bool draining(size_t ep) const { return draining_[ep]; }
  bool terminating() const { return terminating_.load(std::memory_order_relaxed); }
  /// Balancer state for the current snapshot.
  balancer::ServicePicker& picker() { return picker_; }
  std::unique_ptr<ExchangeState> take_exchange_state();
  /// Compressor contexts are big (zstd ~2 MiB): a few are kept per worker and lent per response.
  std::unique_ptr<http::Compressor> take_compressor();
  void give_compressor(std::unique_ptr<http::Compressor> c);
  void give_exchange_state(std::unique_ptr<ExchangeState> state);
  /// `counted`: a connection (open_connections); an HTTP/2 stream's exchange is tracked, not counted.
  void track(DownstreamConnection* c, size_t ep, bool counted = true);
  void untrack(DownstreamConnection* c, size_t ep, bool counted = true);

 private:
  void accept_loop(size_t slot);
  void schedule_sweep();

  int index_;
  std::shared_ptr<const ProcessInfo> info_;
  // Sockets and timers are only touched by this worker's thread, so the reactor needs no
  // per-descriptor locks; posting (snapshots, drain) from other threads stays locked.
  boost::asio::io_context io_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  struct Listener {
    size_t ep;  ///< entry point index
    std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor;
  };
  std::vector<Listener> acceptors_;  ///< one per entry point, more when it took over a predecessor's
  std::shared_ptr<const Snapshot> snapshot_;
  std::atomic<uint64_t> live_generation_{0};
  balancer::ServicePicker picker_;  ///< per service of snapshot_
  BufferPool buffers_;
  upstream::Pool upstreams_;
  std::unordered_map<std::string, std::vector<std::shared_ptr<H2Client>>> h2_clients_;
  /// Enough for every stream of a busy HTTP/2 worker (64 connections x 10 streams is common in
  /// front of a load test); sweep() frees what the last second did not use.
  static constexpr size_t kMaxFreeStates = 4096;
  std::vector<std::unique_ptr<ExchangeState>> free_states_;
  std::vector<std::unique_ptr<http::Compressor>> free_compressors_;
  size_t compressors_low_water_ = 0;
  size_t states_low_water_ = 0;
  bool states_overflowed_ = false;
  DownstreamConnection* connections_ = nullptr;  ///< intrusive list head
  std::unique_ptr<std::atomic<size_t>[]> open_;  ///< per entry point
  std::unique_ptr<std::atomic<bool>[]> drained_;  ///< per entry point: drain() done
  std::vector<char> draining_;                    ///< per entry point
  std::atomic<bool> terminating_{false};
  std::atomic<size_t> idle_upstreams_{0};
  DeadlineWheel deadlines_{io_};
  ParkSet parks_{io_};
  boost::asio::steady_timer sweep_timer_{io_};
  std::thread thread_;
};

}  // namespace berth::proxy
