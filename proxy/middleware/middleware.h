// Middlewares, compiled once per snapshot (HP-4) and applied by the request flow (forwarder.cpp) in
// the router's order. A middleware edits the request on its way upstream, adds response header
// edits, or answers the request itself (redirects). Edits live in the pooled exchange state and
// point into the snapshot or the request, so applying a chain allocates nothing (HP-1).
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <atomic>
#include <deque>
#include <boost/asio/ip/address.hpp>
#include <functional>
#include <optional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "base/text.h"
#include "config/dynamic_config.h"
#include "proxy/http/h1/parser.h"
#include "proxy/coro/task.h"
#include "proxy/http/compressor.h"
#include "proxy/ip_net.h"
#include "proxy/upstream/http_fetch.h"
#include "proxy/net.h"

namespace berth::proxy::middleware {

class Cors;
class CircuitBreaker;
class RetryExpression;

/// The buffering middleware's limits (0: no limit), read by the request flow.
struct BufferingPolicy {
  int64_t max_request_body_bytes = 0;
  int64_t max_response_body_bytes = 0;
  const RetryExpression* retry_expression = nullptr;  ///< owned by the middleware
};

/// The compress middleware's response-side rules (the encoding is chosen from the request).
struct CompressPolicy {
  http::ContentTypeFilter filter;
  int64_t min_bytes = 1024;  ///< minResponseBodyBytes: smaller bodies of known length go as they are
};

/// The errors middleware: which statuses get a page from which service, read by the request flow.
struct ErrorPages {
  std::vector<std::pair<int, int>> ranges;  ///< inclusive status ranges
  uint32_t service = 0;                     ///< index into Snapshot::services
  std::string query;                        ///< "/{status}.html": {status}, {originalStatus}, {url}
  bool matches(int status) const {
    if (status < 200 || status == 204 || status == 304) return false;  // answers that carry no body
    for (const auto& [lo, hi] : ranges)
      if (status >= lo && status <= hi) return true;
    return false;
  }
};

/// The retry middleware's policy, read by the request flow when a try fails.
struct RetryPolicy {
  int attempts = 1;
  Duration initial_interval{100};
};

/// Header changes: (name, value) pairs; an empty value removes the header.
using HeaderEdits = std::vector<std::pair<std::string_view, std::string_view>>;

/// What the middlewares of one exchange decided. Thread: worker (part of the exchange state).
struct Edits {
  bool path_set = false;
  std::string path;           ///< the rewritten path (the query is kept)
  std::string scratch;        ///< to build the next path without aliasing `path`
  std::string replaced_path;  ///< X-Replaced-Path value
  std::string stripped;       ///< X-Forwarded-Prefix value cut by a regex (own copy: `path` moves)
  HeaderEdits request;
  HeaderEdits response;
  /// Headers added to the response besides the backend's own (Set-Cookie of sticky sessions, a
  /// sniffed Content-Type), unlike `response` edits, which replace the backend's.
  std::array<std::pair<std::string_view, std::string_view>, 4> added{};
  uint8_t added_count = 0;
  int8_t server_cookie = -1;  ///< the slot holding the load balancer's sticky cookie, if any
  bool sniff_content_type = false;  ///< contentType: set Content-Type from the body when missing
  // A local answer (redirect, 401, 429...): status, optional Location and body; headers from `response`.
  int status = 0;
  std::string location;
  std::string_view reply_body;  ///< no data (default): the reason phrase; ""sv: an empty body
  // Per-exchange scratch of the auth middlewares (capacity reused).
  std::string user, password;   ///< from Authorization: Basic
  std::string challenge;        ///< WWW-Authenticate value (Retry-After for rateLimit)
  const RetryPolicy* retry = nullptr;  ///< set by a retry middleware
  const BufferingPolicy* buffering = nullptr;  ///< set by a buffering middleware
  const ErrorPages* error_pages = nullptr;     ///< set by an errors middleware (the innermost wins)
  const CompressPolicy* compress = nullptr;    ///< set by a compress middleware when the client takes `encoding`
  http::Encoding encoding = http::Encoding::kIdentity;
  std::string page_host, page_uri;  ///< the request's Host and target, kept for the error page request
  /// forwardAuth answers and error pages, each kept whole (edits view them) until the exchange ends.
  std::deque<upstream::FetchResponse> fetched;
  std::string cors_origin, cors_method, cors_headers;  ///< the request's CORS values, owned: edits outlive the head
  std::string client_cert, client_cert_info;  ///< passTLSClientCert header values
  std::string_view reply_content_type;  ///< of a local answer; empty: text/plain
  /// The worker's circuit breaker of this route, told how the exchange ended (record_outcome).
  CircuitBreaker* breaker = nullptr;
  int64_t started_us = 0;
  int final_status = 0;         ///< the status sent downstream
  bool network_error = false;   ///< berth answered 502/504 itself: no backend answer
  const Cors* cors = nullptr;  ///< merges Vary on the proxied response (headers.addVaryHeader)
  std::string vary;                  ///< scratch for that Vary value
  /// inFlightReq slots this exchange holds, given back when it ends (release_in_flight).
  std::array<std::atomic<int32_t>*, 2> in_flight{};
  uint8_t in_flight_count = 0;

  /// Sets the load balancer's sticky cookie (replacing an earlier choice of the same exchange).
  void set_server_cookie(std::string_view value) {
    if (server_cookie < 0) {
      if (added_count == added.size()) return;
      server_cookie = static_cast<int8_t>(added_count++);
    }
    added[server_cookie] = {"Set-Cookie", value};
  }
  /// Adds a response header (a weighted service's sticky cookie, a sniffed Content-Type).
  void add_header(std::string_view name, std::string_view value) {
    if (added_count < added.size()) added[added_count++] = {name, value};
  }

  void clear() {
    path_set = false;
    request.clear();
    response.clear();
    added_count = 0;
    server_cookie = -1;
    sniff_content_type = false;
    status = 0;
    reply_body = {};
    cors = nullptr;
    retry = nullptr;
    buffering = nullptr;
    error_pages = nullptr;
    compress = nullptr;
    fetched.clear();
    reply_content_type = {};
    breaker = nullptr;
    final_status = 0;
    network_error = false;
  }
};

/// The request as middlewares see it.
struct Context {
  const http::h1::RequestHead& request;
  const boost::asio::ip::address& peer;  ///< the client's address (not X-Forwarded-For)
  std::string_view path;   ///< current path (after earlier middlewares)
  std::string_view query;  ///< raw, without '?'
  bool trusted;            ///< the peer may set X-Forwarded-* (forwardedHeaders)
  Edits& edits;
  Executor executor;       ///< the worker's, for asynchronous middlewares to come back to
  uint32_t worker = 0;     ///< the worker's index, for per-worker middleware state
  bool tls = false;        ///< the request came over TLS (its scheme is https)
  SSL* ssl = nullptr;      ///< the client's TLS session (passTLSClientCert), when TLS
};

class Middleware {
 public:
  virtual ~Middleware() = default;
  /// Applies the middleware; returns false when it answered the request (edits.status set).
  /// Thread: worker.
  virtual bool on_request(Context& ctx) const = 0;
  /// True for middlewares that may wait (a bcrypt check on the blocking pool, an auth server): the
  /// request flow co_awaits on_request_async instead of calling on_request.
  virtual bool is_async() const { return false; }
  virtual coro::Task<bool> on_request_async(Context& ctx) const;
};

/// Traefik's ipStrategy: which address is "the client". depth 0 and no exclusions: the peer;
/// depth N: the Nth address from the right of X-Forwarded-For; excludedIPs: the rightmost address
/// not excluded. Only a trusted peer's X-Forwarded-For counts.
struct IpStrategy {
  int depth = 0;
  std::vector<IpNet> excluded;
  /// False when the header does not name a usable address. Thread: any.
  bool client_ip(const Context& ctx, boost::asio::ip::address& out) const;
};

/// Parses IPs / CIDRs of option `option` of middleware `c`. Thread: control.
Result<std::vector<IpNet>> parse_nets(const config::MiddlewareConfig& c, const std::vector<std::string>& texts,
                                      std::string_view option);

/// What compiling needs to know beyond the middleware's own options.
struct CompileOptions {
  uint32_t workers = 1;  ///< per-worker state (circuit breakers) is sized for this many workers
  /// The index of service `name` (as written in the middleware), if it exists and is usable.
  std::function<std::optional<uint32_t>(const std::string& name)> find_service;
};

/// Compiles one middleware config (chains are flattened by the snapshot builder). Thread: control.
Result<std::unique_ptr<Middleware>> compile(const config::MiddlewareConfig& config, const CompileOptions& options = {});

/// Tells the exchange's circuit breaker (if any) how it ended. Thread: worker, when the exchange ends.
void record_outcome(Edits& edits);

/// Applies a router's synchronous middlewares in order; false when one answered the request.
/// (The request flow awaits asynchronous ones itself.)
bool apply(const std::vector<const Middleware*>& chain, Context& ctx);

/// True if `edits` changes the header `name` (so the original is not forwarded).
bool edits_header(const HeaderEdits& edits, std::string_view name);

}  // namespace berth::proxy::middleware
