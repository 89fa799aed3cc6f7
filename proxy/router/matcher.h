// Compiled rule: a tree of matchers evaluated against one request (built once per snapshot, HP-4).
#pragma once

#include <boost/asio/ip/address.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "config/rule.h"
#include "proxy/http/header.h"
#include "proxy/ip_net.h"

namespace re2 {
class RE2;
}

namespace berth::proxy::router {

/// What a matcher may look at. Views into the exchange's head; `host` has no port and any case.
struct RequestView {
  std::string_view host;
  std::string_view path;
  std::string_view method;
  std::string_view query = {};                         ///< raw, without the '?'
  const std::vector<http::Header>* headers = nullptr;
  const boost::asio::ip::address* client = nullptr;    ///< the peer address (not X-Forwarded-For)
};

class Matcher {
 public:
  enum class Kind : uint8_t {
    kAnd, kOr, kNot,
    kHost, kHostWildcard, kHostAny, kHostRegexp,
    kPath, kPathPrefix, kPathRegexp,
    kMethod,
    kHeader, kHeaderRegexp,
    kQuery, kQueryRegexp,
    kClientIp,
  };

  Matcher();
  ~Matcher();

  /// Compiles a parsed rule. Errors name the matcher and its column. Thread: control.
  static Result<std::unique_ptr<Matcher>> compile(const config::RuleNode& node);

  bool matches(const RequestView& req) const;

  /// If every request this matcher accepts must have one of a fixed set of hosts, appends them
  /// (lower-case; "*.example.com" wildcards as written) and returns true. Used by the host index.
  bool required_hosts(std::vector<std::string>& out) const;

 private:
  bool any_query_value(const RequestView& req) const;

  Kind kind_ = Kind::kAnd;
  bool any_value_ = false;  ///< Query(`key`) with no value: the key's presence is enough
  std::string arg_;    ///< lower-cased host, path, prefix, method, header or query key; for wildcards ".example.com"
  std::string value_;  ///< Header/Query value to compare
  std::unique_ptr<re2::RE2> regex_;
  std::optional<IpNet> net_;
  std::unique_ptr<Matcher> left_, right_;
};

/// The host part of a Host header value, as Traefik matches it: "a.com:8080" -> "a.com",
/// "[::1]:80" -> "::1", "a.com." -> "a.com". Thread: any.
std::string_view strip_port(std::string_view host);

/// The port part of a Host header value ("a.com:8080" -> "8080"), empty if none. Thread: any.
std::string_view port_of(std::string_view host);

}  // namespace berth::proxy::router
