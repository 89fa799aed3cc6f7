// Mirror requests; see mirror.h.
#include "proxy/mirror.h"

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "base/log.h"
#include "proxy/net.h"
#include "proxy/worker.h"

namespace berth::proxy {

namespace asio = boost::asio;

namespace {
thread_local size_t in_flight = 0;  // each worker counts its own
}

size_t mirrors_in_flight() { return in_flight; }

coro::Task<void> send_mirror(Worker& worker, asio::ip::tcp::endpoint address, std::string request,
                             std::chrono::milliseconds timeout) {
  // Mirrors are a copy of the traffic, so they may cost a socket, a timer and a string each; the
  // client's exchange stays on the allocation-free path.
  struct Count {
    Count() { ++in_flight; }
    ~Count() { --in_flight; }
  } count;
  // The timer's handler may run after this coroutine ended (it expired just as the exchange did),
  // so it holds the socket by a weak reference.
  auto socket = std::make_shared<Socket>(worker.context().get_executor());
  Timer timer(worker.context().get_executor());
  timer.expires_after(timeout);
  timer.async_wait([weak = std::weak_ptr<Socket>(socket)](boost::system::error_code ec) {
    auto s = weak.lock();
    if (ec || !s) return;
    boost::system::error_code ignored;
    s->close(ignored);
  });
  auto [ec] = co_await socket->async_connect(address, coro::use_task);
  if (!ec) {
    auto [wec, w] = co_await asio::async_write(*socket, asio::buffer(request), coro::use_task);
    ec = wec;
  }
  char sink[4096];
  while (!ec) {
    auto [rec, n] = co_await socket->async_read_some(asio::buffer(sink), coro::use_task);
    ec = rec;
  }
  if (ec != asio::error::eof) LOG_DEBUG("mirror request to ", address, " failed: ", ec.message());
  timer.cancel();
  boost::system::error_code ignored;
  socket->close(ignored);
}

}  // namespace berth::proxy
