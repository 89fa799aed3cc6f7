// Active health checks (loadBalancer.healthCheck): one probe loop per checked server, run on the
// control plane's io_context. Results go to the server's shared EndpointHealth, which workers read
// when they pick (HP-2); a server that fails leaves rotation at once and returns when it passes.
#pragma once

#include <boost/asio/io_context.hpp>
#include <map>
#include <memory>
#include <string>

#include "proxy/io_buffer.h"
#include "proxy/snapshot.h"

namespace berth::proxy::upstream {

class HealthChecker {
 public:
  explicit HealthChecker(boost::asio::io_context& io) : io_(io) {}
  ~HealthChecker();

  /// Checks the servers of `snapshot`'s load balancers that have a healthCheck. Probes of servers
  /// whose check did not change keep their rhythm; removed ones stop, and a server that is no
  /// longer checked is put back in rotation. Thread: control.
  void update(const Snapshot& snapshot);
  /// Stops every probe. Thread: control.
  void stop();

  struct Probe;

 private:
  boost::asio::io_context& io_;
  BufferPool buffers_;  ///< for the HTTP/2 clients of probes
  std::map<std::string, std::shared_ptr<Probe>> probes_;  ///< by service, URL and check options
};

}  // namespace berth::proxy::upstream
