// Upstream connection pool; see pool.h.
#include "proxy/upstream/pool.h"

#include <sys/socket.h>

#include "proxy/upstream/health.h"

namespace berth::proxy::upstream {
namespace {

// A pooled connection the backend closed (or wrote to unasked) must not carry the next request:
// a non-blocking peek tells without waiting.
bool still_open(UpstreamConnection& c) {
  if (c.stream.has_buffered()) return false;  // TLS bytes already read: the backend said something
  char byte;
  ssize_t n = ::recv(c.stream.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

constexpr auto kTrustRecent = std::chrono::milliseconds(500);

}  // namespace

std::unique_ptr<UpstreamConnection> Pool::acquire(std::string_view key, std::chrono::milliseconds max_idle) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  auto& list = it->second;
  const int64_t now = steady_now_ms();
  while (!list.empty()) {
    auto conn = std::move(list.back());
    list.pop_back();
    const auto idle = std::chrono::milliseconds(now - conn->idle_since_ms);
    // Peeking costs a syscall; a connection parked moments ago is almost surely open (backends close
    // idle connections after seconds), and a stale one is still caught by the forwarder's retry.
    if (idle < max_idle && (idle < kTrustRecent || still_open(*conn))) return conn;
    boost::system::error_code ec;
    conn->stream.socket().close(ec);
  }
  return nullptr;
}

void Pool::release(std::string_view key, std::unique_ptr<UpstreamConnection> conn, size_t max_idle_per_key,
                   BufferPool& buffers) {
  conn->buffer.release(buffers);
  if (conn->stream.is_h2()) {
    conn->stream.close();  // a stream of an HTTP/2 connection: done; the connection stays with the worker
    return;
  }
  auto it = idle_.find(key);
  if (it == idle_.end()) it = idle_.emplace(std::string(key), std::vector<std::unique_ptr<UpstreamConnection>>{}).first;
  auto& list = it->second;
  if (list.size() >= max_idle_per_key) {
    boost::system::error_code ec;
    conn->stream.socket().close(ec);
    return;
  }
  conn->idle_since_ms = steady_now_ms();
  list.push_back(std::move(conn));
}

void Pool::sweep(std::chrono::milliseconds max_idle) {
  const int64_t now = steady_now_ms();
  for (auto& [_, list] : idle_) {
    size_t keep_from = 0;
    while (keep_from < list.size() && std::chrono::milliseconds(now - list[keep_from]->idle_since_ms) >= max_idle) {
      boost::system::error_code ec;
      list[keep_from]->stream.socket().close(ec);
      ++keep_from;
    }
    if (keep_from) list.erase(list.begin(), list.begin() + static_cast<long>(keep_from));
  }
}

size_t Pool::idle_count() const {
  size_t n = 0;
  for (const auto& [_, list] : idle_) n += list.size();
  return n;
}

}  // namespace berth::proxy::upstream
