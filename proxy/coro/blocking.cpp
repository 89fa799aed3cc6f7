// The blocking pool; see blocking.h.
#include "proxy/coro/blocking.h"

namespace berth::proxy::coro {

boost::asio::thread_pool& blocking_pool() {
  static boost::asio::thread_pool pool(2);
  return pool;
}

std::atomic<size_t>& blocking_backlog() {
  static std::atomic<size_t> backlog{0};
  return backlog;
}

}  // namespace berth::proxy::coro
