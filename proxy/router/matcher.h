// Compiled rule: a tree of matchers evaluated against one request (built once per snapshot, HP-4).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "config/rule.h"

namespace berth::proxy::router {

/// What a matcher may look at. Views into the exchange's head; `host` has no port and any case.
struct RequestView {
  std::string_view host;
  std::string_view path;
  std::string_view method;
};

class Matcher {
 public:
  enum class Kind : uint8_t { kAnd, kOr, kNot, kHost, kHostWildcard, kHostAny, kPath, kPathPrefix, kMethod };

  /// Compiles a parsed rule. Errors name the matcher and its column. Thread: control.
  static Result<std::unique_ptr<Matcher>> compile(const config::RuleNode& node);

  bool matches(const RequestView& req) const;

  /// If every request this matcher accepts must have one of a fixed set of hosts, appends them
  /// (lower-case; "*.example.com" wildcards as written) and returns true. Used by the host index.
  bool required_hosts(std::vector<std::string>& out) const;

 private:
  Kind kind_ = Kind::kAnd;
  std::string arg_;  ///< lower-cased host, path, prefix or method; for wildcards the suffix ".example.com"
  std::unique_ptr<Matcher> left_, right_;
};

/// The host part of a Host header value, as Traefik matches it: "a.com:8080" -> "a.com",
/// "[::1]:80" -> "::1", "a.com." -> "a.com". Thread: any.
std::string_view strip_port(std::string_view host);

/// The port part of a Host header value ("a.com:8080" -> "8080"), empty if none. Thread: any.
std::string_view port_of(std::string_view host);

}  // namespace berth::proxy::router
