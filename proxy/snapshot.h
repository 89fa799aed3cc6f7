// Snapshot: the immutable compiled config a worker serves from. Built on the control thread by
// snapshot_builder, posted to every worker, never changed after (principle 1 of the design guide).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/dynamic_config.h"
#include "proxy/router/route_table.h"
#include "proxy/tls/certificate_store.h"
#include "proxy/tls/client_context.h"
#include "proxy/upstream/health.h"

namespace berth::proxy {

namespace observe {
class ApiDocuments;
}

/// One backend address of a load-balancer service.
struct Endpoint {
  std::string url;                        ///< as configured
  std::string authority;                  ///< "host:port" as written in the URL (Host when passHostHeader is false)
  boost::asio::ip::tcp::endpoint address;  ///< resolved when the snapshot was built
  std::string pool_key;                   ///< "ip:port" (https: "tls:ip:port:name:transport:settings digest"): pooled per key, across snapshots
  bool tls = false;                       ///< https://: TLS with the service's transport (HTTP/2 if ALPN picks it)
  bool h2c = false;                       ///< h2c://: HTTP/2 with prior knowledge
  std::string tls_host;                   ///< https://: the URL's host (SNI and the verified name, unless serverName)
  int weight = 1;                         ///< share of the service's traffic (0: none)
  std::shared_ptr<upstream::EndpointHealth> health;  ///< shared with the health checker; never null
};

/// Forwarding limits: the static serversTransport, or a service's named one (http.serversTransports).
struct TransportSettings {
  std::chrono::milliseconds dial_timeout{30'000};
  std::chrono::milliseconds response_header_timeout{0};
  std::chrono::milliseconds idle_conn_timeout{90'000};
  std::chrono::milliseconds read_idle_timeout{0};  ///< HTTP/2 servers: PING after this long without a frame (0: never)
  std::chrono::milliseconds ping_timeout{15'000};   ///< ...and close the connection if nothing came back by then
  size_t max_idle_conns_per_host = 200;
  /// For https:// servers: the transport's TLS client context (null until a server needs it).
  std::shared_ptr<const tls::ClientContext> tls;
};

/// sticky.cookie, compiled: the Set-Cookie value for each choice is rendered once per snapshot.
struct StickyCookie {
  std::string name;                       ///< empty: not sticky
  std::vector<std::string> values;        ///< per endpoint (load balancer) or child (weighted)
  std::vector<std::string> set_cookies;   ///< "name=value; Path=/; ..." per endpoint or child
};

/// A node of the service tree: a load balancer over endpoints, or a weighted, failover or
/// mirroring service over other services (indexes into Snapshot::services, acyclic).
struct Service {
  enum class Kind : uint8_t { kLoadBalancer, kWeighted, kFailover, kMirroring };
  std::string name;                       ///< qualified
  uint32_t metric_id = UINT32_MAX;        ///< the name's id in observe::metric_names()
  Kind kind = Kind::kLoadBalancer;
  // kLoadBalancer
  std::vector<Endpoint> endpoints;
  bool pass_host_header = true;
  TransportSettings transport;            ///< its serversTransport
  bool p2c = false;                       ///< strategy p2c: the less busy of two random servers
  bool passive = false;                   ///< passiveHealthCheck
  int64_t failure_window_ms = 10'000;
  int32_t max_failed_attempts = 1;
  // kWeighted: children with weights; kFailover: {service, fallback}; kMirroring: {service, mirrors...}
  std::vector<uint32_t> children;
  std::vector<int> weights;               ///< kWeighted: per child; kMirroring: percent per child (main: 100)
  bool mirror_body = true;
  int64_t max_body_size = -1;
  StickyCookie sticky;                    ///< kLoadBalancer and kWeighted
  std::optional<config::HealthCheckConfig> health_check;  ///< kLoadBalancer: run by the control plane
  // A service under `berth deploy` (app/deploy.h).
  std::shared_ptr<upstream::ServiceGate> gate;  ///< berth pause / resume (null: not deployed)
  std::string maintenance_page;           ///< berth stop: the 503 page answered instead (empty: serving)
};

/// Per entry point: its routes and which built-in answers it gives.
struct EntryPointRoutes {
  std::string name;
  router::RouteTable routes;              ///< routers without TLS: plain HTTP connections
  router::RouteTable tls_routes;          ///< routers with a tls section (or the entry point's http.tls)
  /// The TLS options (qualified name) of the TLS routers' Host() domains here, lower-cased
  /// (Traefik's tlsOptionsForHost). A host with routers that disagree maps to "default".
  std::unordered_map<std::string, std::string> tls_options_by_host;
  /// The options set for a host name: its entry, else "default". `fqdn`: "a.com." and "a.com" are
  /// the same host (Traefik's findTLSOptionName; the SNI side passes false). Thread: any.
  std::string_view tls_options_for(std::string_view host, bool fqdn) const;
  bool serves_ping = false;               ///< GET/HEAD /ping answers here
  bool serves_metrics = false;            ///< GET/HEAD /metrics answers here (metrics.prometheus.entryPoint)
  bool serves_dashboard = false;          ///< the built-in page answers `/` here when no router matches
  /// ACME HTTP-01 challenges in progress for resolvers whose httpChallenge.entryPoint is this one:
  /// token -> key authorization, answered at /.well-known/acme-challenge/<token> before any router.
  std::map<std::string, std::string, std::less<>> acme_http01;
};

struct Snapshot {
  uint64_t generation = 0;
  std::vector<Service> services;
  std::vector<EntryPointRoutes> entry_points;  ///< same order as the static config's entry points
  TransportSettings transport;                 ///< the static serversTransport
  std::chrono::milliseconds longest_idle_conn_timeout{90'000};  ///< over all transports: the pool sweep's bound
  std::string dashboard_html;                  ///< the built-in page, rendered once per snapshot
  /// The Traefik API's documents of this snapshot (null when `api` is off).
  std::shared_ptr<const observe::ApiDocuments> api;
  std::vector<std::unique_ptr<middleware::Middleware>> middlewares;  ///< what routes' chains point to
  /// Certificates and TLS options of the `tls:` section, compiled (null only if not even the
  /// generated default certificate could be made). Every entry point answers a TLS ClientHello
  /// with it (404 when it has no TLS routers).
  std::shared_ptr<const tls::CertificateStore> certificates;
  /// ACME TLS-ALPN-01 challenges in progress: domain -> a context that serves only its challenge
  /// certificate with ALPN acme-tls/1 (RFC 8737), chosen when a ClientHello offers acme-tls/1.
  std::map<std::string, std::shared_ptr<SSL_CTX>, std::less<>> acme_tls_alpn;
};

}  // namespace berth::proxy
