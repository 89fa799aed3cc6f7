// The CORS part of Traefik's `headers` middleware, compiled once per snapshot (HP-4): the request
// flow asks it whether to answer a preflight itself and which Access-Control-* headers to add.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "proxy/middleware/middleware.h"

namespace re2 {
class RE2;
}

namespace berth::proxy::middleware {

/// The CORS options of Traefik's `headers` middleware, as decoded (no splitting or trimming here).
struct CorsConfig {
  bool allow_credentials = false;                    ///< accessControlAllowCredentials
  std::vector<std::string> allow_headers;            ///< accessControlAllowHeaders
  std::vector<std::string> allow_methods;            ///< accessControlAllowMethods
  std::vector<std::string> allow_origin_list;        ///< accessControlAllowOriginList ("*": any)
  std::vector<std::string> allow_origin_list_regex;  ///< accessControlAllowOriginListRegex (Go syntax)
  std::vector<std::string> expose_headers;           ///< accessControlExposeHeaders
  std::optional<int64_t> max_age;                    ///< accessControlMaxAge, seconds; unset: no header
  bool add_vary_header = false;                      ///< addVaryHeader
};

/// Compiled CORS options with Traefik v3.7.6+ semantics (pkg/middlewares/headers/header.go after
/// traefik#13368 and #13371). Lists are joined with "," (no space) at compile time; every output
/// value views this object, a static literal, or the request's own header values, so answering
/// allocates nothing (HP-1). An empty output value follows HeaderEdits: on a proxied response it
/// removes the backend's header (Traefik overwrites it with an empty value); a local reply skips it.
/// Thread: any (immutable after compile; RE2 matching is thread-safe).
class Cors {
 public:
  /// Compiles the regexes (Go syntax, unanchored search as Go's MatchString). Fails on the first
  /// regex RE2 rejects, naming it. Thread: control.
  static Result<Cors> compile(const CorsConfig& config);

  Cors(Cors&&) noexcept;
  Cors& operator=(Cors&&) noexcept;
  ~Cors();

  /// Traefik's HasCorsHeadersDefined: any CORS option set. When false, preflights are not
  /// answered (they go to the backend) and response_headers() adds nothing.
  bool is_enabled() const { return enabled_; }

  /// True for a CORS preflight that Traefik answers itself: CORS enabled, method exactly "OPTIONS"
  /// (case-sensitive), and non-empty Origin and Access-Control-Request-Method values. Pass the
  /// first value of each header (Go's Header.Get). Thread: any.
  bool is_preflight(std::string_view method, std::string_view origin, std::string_view request_method) const;

  /// The headers of the preflight answer, appended to `out` in Traefik's order:
  /// Allow-Credentials ("true" when configured, whatever the origin); Allow-Headers (joined list, or
  /// the Access-Control-Request-Headers value when the list holds "*" and credentials are on);
  /// Allow-Methods (joined list, or the Access-Control-Request-Method value under the same rule);
  /// Allow-Origin (only for an allowed origin, see allowed_origin()); Max-Age (when configured);
  /// Expose-Headers (unless the list holds "*" and credentials are on). The answer itself is
  /// 200 with an empty body (Traefik sends Content-Length: 0); the backend is not called.
  /// `origin`, `request_method`, `request_headers` must outlive `out`'s use. Thread: any.
  void preflight_headers(std::string_view origin, std::string_view request_method,
                         std::string_view request_headers, HeaderEdits& out) const;

  /// The headers Traefik sets on a proxied (non-preflight) response: Allow-Origin for an allowed
  /// origin; Allow-Credentials "true" when configured; Expose-Headers (same rule as above). These
  /// do not depend on the backend's response; Vary does, see vary(). `origin` is the request's
  /// first Origin value, empty when absent (Traefik still matches it: "*" allows an absent origin).
  /// Thread: any.
  void response_headers(std::string_view origin, HeaderEdits& out) const;

  /// The Vary value to set on a proxied response (replacing every Vary line), or empty to leave
  /// Vary alone. With addVaryHeader, Traefik appends ",Origin" to the backend's first Vary value
  /// (or sets "Origin" when there is none), unless that value is exactly "Origin". It does so on
  /// every response, whatever the Origin header and the origin list. Builds into `scratch`, which
  /// the caller reuses per exchange. Thread: any.
  std::string_view vary(std::string_view upstream_vary, std::string& scratch) const;

  /// Traefik's matchOrigin: the Access-Control-Allow-Origin value for `origin`, or nullopt.
  /// The first list entry equal to `origin` or "*" decides ("*" gives "*", or `origin` itself when
  /// credentials are on); otherwise the first regex found in `origin` gives `origin`. Thread: any.
  std::optional<std::string_view> allowed_origin(std::string_view origin) const;

 private:
  Cors() = default;

  bool enabled_ = false;
  bool allow_credentials_ = false;
  bool add_vary_ = false;
  bool echo_request_headers_ = false;  ///< allowHeaders holds "*" and credentials are on
  bool echo_request_method_ = false;   ///< allowMethods holds "*" and credentials are on
  bool has_expose_ = false;            ///< send Expose-Headers (non-empty list, not "*" + credentials)
  bool has_max_age_ = false;
  std::string allow_headers_;  ///< joined with ","
  std::string allow_methods_;
  std::string expose_headers_;
  std::string max_age_;  ///< decimal seconds
  std::vector<std::string> origins_;
  std::vector<std::unique_ptr<re2::RE2>> origin_regexes_;
};

}  // namespace berth::proxy::middleware
