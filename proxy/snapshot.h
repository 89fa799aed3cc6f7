// Snapshot: the immutable compiled config a worker serves from. Built on the control thread by
// snapshot_builder, posted to every worker, never changed after (principle 1 of the design guide).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "proxy/router/route_table.h"

namespace berth::proxy {

/// One backend address of a service.
struct Endpoint {
  std::string url;                        ///< as configured
  std::string authority;                  ///< "host:port" as written in the URL (Host when passHostHeader is false)
  boost::asio::ip::tcp::endpoint address;  ///< resolved when the snapshot was built
  std::string pool_key;                   ///< "ip:port": upstream connections are pooled per key, across snapshots
  int weight = 1;                         ///< share of the service's traffic (0: none)
};

struct Service {
  std::string name;                       ///< qualified
  std::vector<Endpoint> endpoints;
  bool pass_host_header = true;
};

/// Per entry point: its routes and which built-in answers it gives.
struct EntryPointRoutes {
  std::string name;
  router::RouteTable routes;
  bool serves_ping = false;               ///< GET/HEAD /ping answers here
  bool serves_dashboard = false;          ///< the built-in page answers here when no router matches
};

/// Forwarding limits, copied from the static config so workers read them without locks.
struct TransportSettings {
  std::chrono::milliseconds dial_timeout{30'000};
  std::chrono::milliseconds response_header_timeout{0};
  std::chrono::milliseconds idle_conn_timeout{90'000};
  size_t max_idle_conns_per_host = 200;
};

struct Snapshot {
  uint64_t generation = 0;
  std::vector<Service> services;
  std::vector<EntryPointRoutes> entry_points;  ///< same order as the static config's entry points
  TransportSettings transport;
  std::string dashboard_html;                  ///< the built-in page, rendered once per snapshot
  std::vector<std::unique_ptr<middleware::Middleware>> middlewares;  ///< what routes' chains point to
};

}  // namespace berth::proxy
