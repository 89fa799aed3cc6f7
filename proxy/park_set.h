// ParkSet: where a worker keeps its idle keep-alive connections. A parked connection is one
// EPOLLONESHOT registration in a worker-private epoll set, watched through a single Asio wait, so it
// costs no Asio operation (about 240 bytes each) while it waits (HP-6). Thread: worker.
#pragma once

#include <boost/asio/posix/stream_descriptor.hpp>

#include "base/result.h"
#include "proxy/net.h"

namespace berth::proxy {

class ParkSet {
 public:
  /// Called when a parked socket becomes readable (or hung up). Thread: worker.
  class Sleeper {
   public:
    virtual void on_ready() = 0;

   protected:
    ~Sleeper() = default;
  };

  explicit ParkSet(boost::asio::io_context& io);
  ~ParkSet();

  /// Waits for `fd` to become readable, then calls `s->on_ready()` once. `registered` tells whether
  /// `fd` was parked here before (its registration is reused); it is set to true. Closing `fd`
  /// removes it. Returns false if the kernel refused (the caller then closes the connection).
  bool park(int fd, Sleeper* s, bool& registered);

  /// Stops watching `fd` without closing it. Thread: worker.
  void unpark(int fd);

  void stop();

 private:
  void wait();

  int epoll_fd_ = -1;
  boost::asio::posix::basic_stream_descriptor<Executor> watch_;
  bool waiting_ = false;
  bool stopped_ = false;
};

}  // namespace berth::proxy
