// Idle upstream HTTP/1.1 connections of one worker, keyed by endpoint ("ip:port"). Survives snapshot
// swaps, so a reload keeps backend keep-alive. Thread: worker.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proxy/io_buffer.h"
#include "proxy/net.h"
#include "proxy/stream.h"

namespace berth::proxy::upstream {

struct UpstreamConnection {
  explicit UpstreamConnection(Executor ex) : stream(ex) {}
  /// A stream of an HTTP/2 connection to the server (h2_session.h).
  UpstreamConnection(Executor ex, std::shared_ptr<H2Stream> h2) : stream(ex, std::move(h2), false) {}
  Stream stream;
  IoBuffer buffer;
  int64_t idle_since_ms = 0;  ///< steady_now_ms() when it was parked (a coarse clock: no rdtsc per exchange)
};

class Pool {
 public:
  /// Takes the most recently used idle connection to `key` that is still open and younger than
  /// `max_idle`, or returns nullptr.
  std::unique_ptr<UpstreamConnection> acquire(std::string_view key, std::chrono::milliseconds max_idle);

  /// Parks a connection whose last response was read completely (its buffer must be empty).
  void release(std::string_view key, std::unique_ptr<UpstreamConnection> conn, size_t max_idle_per_key,
               BufferPool& buffers);

  /// Closes connections idle longer than `max_idle`. Called by the worker's periodic sweep.
  void sweep(std::chrono::milliseconds max_idle);

  size_t idle_count() const;

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  // Each list is ordered oldest first; acquire takes from the back (warmest connection).
  std::unordered_map<std::string, std::vector<std::unique_ptr<UpstreamConnection>>, StringHash, std::equal_to<>> idle_;
};

}  // namespace berth::proxy::upstream
