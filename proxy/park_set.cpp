// ParkSet implementation; see park_set.h.
#include "proxy/park_set.h"

#include <sys/epoll.h>
#include <unistd.h>

#include "base/log.h"

namespace berth::proxy {

ParkSet::ParkSet(boost::asio::io_context& io) : watch_(io.get_executor()) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw std::system_error(errno, std::system_category(), "epoll_create1");
  watch_.assign(epoll_fd_);
}

ParkSet::~ParkSet() {
  boost::system::error_code ec;
  watch_.close(ec);  // closes epoll_fd_
}

bool ParkSet::park(int fd, Sleeper* s, bool& registered) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
  ev.data.ptr = s;
  if (::epoll_ctl(epoll_fd_, registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0) {
    // The registration may have gone (the kernel drops it with the last descriptor); try adding.
    if (!registered || errno != ENOENT || ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) return false;
  }
  registered = true;
  if (!waiting_) wait();
  return true;
}

void ParkSet::unpark(int fd) {
  epoll_event ev{};
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, &ev);
}

void ParkSet::stop() {
  stopped_ = true;
  boost::system::error_code ec;
  watch_.cancel(ec);
}

void ParkSet::wait() {
  if (stopped_) return;
  waiting_ = true;
  watch_.async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
    waiting_ = false;
    if (ec) return;
    epoll_event events[64];
    int n;
    // Drain what is ready now; each wake-up hands the connection back to its coroutine.
    do {
      n = ::epoll_wait(epoll_fd_, events, 64, 0);
      for (int i = 0; i < n; ++i) static_cast<Sleeper*>(events[i].data.ptr)->on_ready();
    } while (n == 64);
    wait();
  });
}

}  // namespace berth::proxy
