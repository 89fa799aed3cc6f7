// ExchangeRecord: what one finished exchange looked like, handed by the worker that served it to
// the metrics (metrics.h) and the access log (access_log.h) at its end. Views only: it lives for
// one call, on the worker's stack, and points into the exchange's state.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <cstdint>
#include <string_view>
#include <vector>

#include "proxy/http/header.h"

namespace berth::proxy::observe {

/// The `protocol` label of Traefik's metrics.
enum class Protocol : uint8_t { kHttp, kWebSocket, kSse, kGrpc, kGrpcWeb };
std::string_view protocol_name(Protocol p);

struct ExchangeRecord {
  // Where and when.
  uint32_t entry_point = 0;                 ///< index in the static config's entry points
  std::string_view entry_point_name;
  int64_t start_unix_ns = 0;                ///< wall clock when the request head was read
  int64_t duration_ns = 0;                  ///< head read -> last response byte written
  uint64_t request_count = 0;               ///< RequestCount: exchanges of this process so far (this one included)
  // The client and its request.
  boost::asio::ip::address client;          ///< ClientHost (IPv4-mapped addresses unmapped)
  uint16_t client_port = 0;
  std::string_view username;                ///< ClientUsername (basicAuth), empty if none
  std::string_view method;                  ///< RequestMethod
  std::string_view target;                  ///< RequestPath: path and query as received
  std::string_view http_version;            ///< RequestProtocol: "HTTP/1.0", "HTTP/1.1", "HTTP/2.0"
  bool tls = false;                         ///< RequestScheme https
  std::string_view host;                    ///< RequestAddr: the Host (authority), port included
  std::string_view forwarded_for;           ///< X-Forwarded-For as a trusted peer sent it (Traefik logs it as ClientHost); empty otherwise
  const std::vector<http::Header>* request_headers = nullptr;
  uint64_t request_bytes = 0;               ///< RequestContentSize: body bytes read
  std::string_view tls_version;             ///< "1.2", "1.3" (empty without TLS)
  std::string_view tls_cipher;              ///< IANA name, e.g. "TLS_AES_128_GCM_SHA256"
  uint16_t tls_cipher_id = 0;               ///< its IANA number (the metrics' key)
  std::string_view tls_client_subject;      ///< TLSClientSubject: the client certificate's subject ("CN=x,O=y"), empty if none
  Protocol protocol = Protocol::kHttp;
  // Routing. Empty names: berth answered before a router matched (404, ping, 400...).
  std::string_view router;                  ///< RouterName, qualified ("web@docker")
  std::string_view router_service;          ///< the router's own service (the `service` label of router metrics)
  uint32_t router_service_metric = UINT32_MAX;
  std::string_view service;                 ///< ServiceName of the load balancer that served it
  uint32_t router_metric = UINT32_MAX;      ///< stable ids of the names (metrics keys); UINT32_MAX: none
  uint32_t service_metric = UINT32_MAX;
  std::string_view service_url;             ///< ServiceURL: the server as configured ("http://10.0.0.5:80")
  uint32_t retry_attempts = 0;              ///< RetryAttempts: tries beyond the first
  // The server's answer (origin_status 0: no server answered).
  int origin_status = 0;
  int64_t origin_duration_ns = 0;
  uint64_t origin_bytes = 0;                ///< OriginContentSize
  const std::vector<http::Header>* origin_headers = nullptr;
  // What the client got.
  int status = 0;                           ///< DownstreamStatus
  int code = 0;                             ///< the metrics' `code`: the status, or gRPC's Grpc-Status
  uint64_t response_bytes = 0;              ///< DownstreamContentSize: body bytes written
};

/// The steady clock in ns (exchange durations). Thread: any.
inline int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// Traefik's `method` label: the standard methods as they are, others EXTENSION_METHOD.
std::string_view metric_method(std::string_view method);

}  // namespace berth::proxy::observe
