// Middlewares, compiled once per snapshot (HP-4) and applied by the request flow (forwarder.cpp) in
// the router's order. A middleware edits the request on its way upstream, adds response header
// edits, or answers the request itself (redirects). Edits live in the pooled exchange state and
// point into the snapshot or the request, so applying a chain allocates nothing (HP-1).
#pragma once

#include <boost/asio/ip/address.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "config/dynamic_config.h"
#include "proxy/http/h1/parser.h"
#include "proxy/ip_net.h"

namespace berth::proxy::middleware {

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
  // A local answer (redirect).
  int status = 0;
  std::string location;

  void clear() {
    path_set = false;
    request.clear();
    response.clear();
    status = 0;
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
};

class Middleware {
 public:
  virtual ~Middleware() = default;
  /// Applies the middleware; returns false when it answered the request (edits.status set).
  virtual bool on_request(Context& ctx) const = 0;
};

/// Compiles one middleware config (chains are flattened by the snapshot builder). Thread: control.
Result<std::unique_ptr<Middleware>> compile(const config::MiddlewareConfig& config);

/// Applies a router's middlewares in order; false when one answered the request.
bool apply(const std::vector<const Middleware*>& chain, Context& ctx);

/// True if `edits` changes the header `name` (so the original is not forwarded).
bool edits_header(const HeaderEdits& edits, std::string_view name);

}  // namespace berth::proxy::middleware
