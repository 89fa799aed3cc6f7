// Dynamic configuration (Traefik's `http:` schema) as decoded from one provider, before compilation.
// Decoded by dynamic_config.cpp (YAML) and later by the docker label decoder; compiled by proxy/snapshot_builder.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/text.h"
#include "config/static_config.h"
#include "config/tls_config.h"

namespace berth::proxy::upstream {
struct ServiceGate;
}

namespace berth::config {

struct RouterConfig {
  std::string name;                       ///< qualified: "<name>@<provider>"
  std::string rule;
  std::string service;                    ///< as written; qualified by the builder if it has no '@'
  std::vector<std::string> entry_points;  ///< empty: the default entry points
  int64_t priority = 0;                   ///< 0: length of the rule
  std::vector<std::string> middlewares;   ///< as written, applied in order
  std::optional<RouterTlsConfig> tls;     ///< a `tls` section: serves HTTPS only
  std::string where;                      ///< "file:line:col" of the router, for errors
};

struct ServerConfig {
  std::string url;
  int weight = 1;  ///< servers[].weight: share in the smooth weighted round robin (0: no traffic)
  std::string where;
  bool operator==(const ServerConfig& o) const { return url == o.url && weight == o.weight; }
};

/// sticky.cookie of a loadBalancer or weighted service.
struct StickyCookieConfig {
  bool enabled = false;
  std::string name;       ///< empty: Traefik's derived name ("_" + 6 hex digits of a SHA-1 of the service)
  bool secure = false;
  bool http_only = false;
  std::string same_site;  ///< "", "none", "lax" or "strict"
  int64_t max_age = 0;    ///< seconds; 0: a session cookie; negative: expire now
  std::string path = "/";
  std::string domain;
  bool operator==(const StickyCookieConfig&) const = default;
};

/// loadBalancer.healthCheck: active checks, run by the control plane.
struct HealthCheckConfig {
  bool enabled = false;
  std::string path;
  std::string scheme;      ///< empty: the server's
  std::string mode = "http";
  std::string hostname;    ///< Host header; empty: the server's
  int port = 0;            ///< 0: the server's
  Duration interval{30'000};
  Duration unhealthy_interval{0};  ///< 0: `interval`
  Duration timeout{5'000};
  std::vector<std::pair<std::string, std::string>> headers;
  bool follow_redirects = true;
  std::string method = "GET";
  int status = 0;          ///< 0: any 2xx or 3xx is healthy
  bool operator==(const HealthCheckConfig&) const = default;
};

/// loadBalancer.passiveHealthCheck: servers that fail live traffic leave rotation for a while.
struct PassiveHealthCheckConfig {
  bool enabled = false;
  Duration failure_window{10'000};
  int max_failed_attempts = 1;
  bool operator==(const PassiveHealthCheckConfig&) const = default;
};

/// A service named by a weighted, failover or mirroring service.
struct ServiceRef {
  std::string name;  ///< as written; qualified by the builder if it has no '@'
  int weight = 1;    ///< weighted.services[].weight
  int percent = 0;   ///< mirroring.mirrors[].percent
  std::string where;
  bool operator==(const ServiceRef& o) const { return name == o.name && weight == o.weight && percent == o.percent; }
};

/// http.serversTransports.<name>: how berth talks to the servers of the services that name it.
struct NamedServersTransport {
  std::string name;                        ///< qualified
  std::string where;
  ServersTransportConfig settings;
  bool operator==(const NamedServersTransport&) const = default;
};

struct ServiceConfig {
  enum class Kind : uint8_t { kLoadBalancer, kWeighted, kFailover, kMirroring };
  std::string name;                        ///< qualified
  Kind kind = Kind::kLoadBalancer;
  std::string where;
  // loadBalancer
  std::vector<ServerConfig> servers;
  bool pass_host_header = true;
  std::string strategy = "wrr";            ///< "wrr" or "p2c"
  HealthCheckConfig health_check;
  PassiveHealthCheckConfig passive_health_check;
  Duration flush_interval{100};            ///< responseForwarding.flushInterval (berth always streams)
  std::string servers_transport;           ///< loadBalancer.serversTransport, as written (empty: the static one)
  // loadBalancer and weighted
  StickyCookieConfig sticky;
  // weighted: services; mirroring: mirrors; failover: none
  std::vector<ServiceRef> children;
  std::string main;                        ///< failover.service, mirroring.service
  std::string fallback;                    ///< failover.fallback
  bool mirror_body = true;                 ///< mirroring.mirrorBody
  int64_t max_body_size = -1;              ///< mirroring.maxBodySize (-1: unlimited)
  bool health_check_section = false;       ///< `healthCheck: {}` on weighted/failover/mirroring
  // Set by berth's deploy state (app/deploy.h), never by a provider.
  std::shared_ptr<proxy::upstream::ServiceGate> gate;  ///< a deployed service: pause / resume
  std::optional<std::string> maintenance;  ///< `berth stop --message`: answered with a 503 page

  /// Same configuration (places aside).
  bool operator==(const ServiceConfig& o) const {
    return name == o.name && kind == o.kind && servers == o.servers && pass_host_header == o.pass_host_header &&
           strategy == o.strategy && health_check == o.health_check &&
           passive_health_check == o.passive_health_check && flush_interval == o.flush_interval &&
           sticky == o.sticky && children == o.children && main == o.main && fallback == o.fallback &&
           mirror_body == o.mirror_body && max_body_size == o.max_body_size &&
           health_check_section == o.health_check_section && servers_transport == o.servers_transport &&
           gate == o.gate && maintenance == o.maintenance;
  }
};

/// http.middlewares.<name>: one middleware of one type. Only the options of `type` are set.
/// Types: addPrefix, stripPrefix, stripPrefixRegex, replacePath, replacePathRegex, redirectScheme,
/// redirectRegex, headers, ipAllowList, chain, basicAuth, digestAuth, rateLimit, inFlightReq, retry,
/// errors, forwardAuth, compress, buffering, contentType, circuitBreaker.
struct MiddlewareConfig {
  std::string name;                        ///< qualified
  std::string type;                        ///< Traefik's spelling: "addPrefix", "stripPrefix", ...
  std::string where;
  std::string prefix;                      ///< addPrefix.prefix
  std::vector<std::string> prefixes;       ///< stripPrefix.prefixes
  std::string path;                        ///< replacePath.path
  std::vector<std::string> regexes;        ///< stripPrefixRegex.regex; replacePathRegex/redirectRegex: one
  std::string replacement;                 ///< replacePathRegex / redirectRegex replacement (Go's $1 syntax)
  std::string scheme;                      ///< redirectScheme.scheme
  std::string port;                        ///< redirectScheme.port
  bool permanent = false;                  ///< redirectScheme.permanent
  std::vector<std::pair<std::string, std::string>> request_headers;   ///< headers.customRequestHeaders ("" removes)
  std::vector<std::pair<std::string, std::string>> response_headers;  ///< headers.customResponseHeaders ("" removes)
  /// headers security options (frameDeny, stsSeconds, ...), already turned into the response headers
  /// they produce; `sts` is kept apart because it only applies to HTTPS requests unless forced.
  std::vector<std::pair<std::string, std::string>> security_headers;
  std::string sts;          ///< Strict-Transport-Security value, empty if stsSeconds is 0
  bool force_sts = false;   ///< headers.forceSTSHeader
  std::string public_key;   ///< headers.publicKey: the Public-Key-Pins value (HTTPS only, as STS)
  std::vector<std::string> allowed_hosts;        ///< headers.allowedHosts (empty: any); others get 500 Bad Host
  std::vector<std::string> hosts_proxy_headers;  ///< headers.hostsProxyHeaders: where a proxy puts the host
  /// headers.sslProxyHeaders: a request carrying one of these name/value pairs counts as HTTPS.
  std::vector<std::pair<std::string, std::string>> ssl_proxy_headers;
  bool is_development = false;  ///< headers.isDevelopment: no host check, STS or Public-Key-Pins
  // headers: CORS
  bool cors = false;                       ///< any accessControl* option is set
  bool cors_allow_credentials = false;
  std::vector<std::string> cors_allow_headers, cors_allow_methods, cors_allow_origins, cors_allow_origin_regexes,
      cors_expose_headers;
  int64_t cors_max_age = 0;
  bool cors_max_age_set = false;           ///< accessControlMaxAge given (Traefik sends it only then)
  bool cors_add_vary = false;
  std::vector<std::string> chain;          ///< chain.middlewares, as written
  std::vector<std::string> source_range;   ///< ipAllowList.sourceRange (IPs or CIDRs)
  /// ipAllowList.ipStrategy.depth; rateLimit/inFlightReq sourceCriterion.ipStrategy.depth (0: the peer)
  int ip_depth = 0;
  std::vector<std::string> excluded_ips;   ///< ipStrategy.excludedIPs
  int reject_status = 403;                 ///< ipAllowList.rejectStatusCode
  // basicAuth, digestAuth
  std::vector<std::string> users;          ///< users entries ("user:hash" / "user:realm:ha1")
  std::string users_file;
  std::string realm = "traefik";
  bool remove_header = false;
  std::string header_field;
  // rateLimit, inFlightReq
  int64_t average = 0;                     ///< rateLimit.average (per period; 0: no limit)
  Duration period{1000};
  int64_t burst = 1;
  int64_t amount = 0;                      ///< inFlightReq.amount
  std::string source_header;               ///< sourceCriterion.requestHeaderName
  bool source_host = false;                ///< sourceCriterion.requestHost
  // retry
  int attempts = 0;
  Duration initial_interval{100};
  // errors
  std::vector<std::string> status;         ///< "500-599", "404"
  std::string service;                     ///< errors.service
  std::string query;                       ///< errors.query ("/{status}.html")
  // forwardAuth
  std::string address;
  bool trust_forward_header = false;
  std::vector<std::string> auth_response_headers;
  std::string auth_response_headers_regex;
  std::vector<std::string> auth_request_headers;
  bool add_auth_cookies_to_response = false;
  std::vector<std::string> auth_cookies;   ///< addAuthCookiesToResponse
  // compress
  std::vector<std::string> excluded_content_types, included_content_types, encodings;
  std::string default_encoding;
  int64_t min_response_body_bytes = 1024;
  // buffering
  int64_t max_request_body_bytes = 0, mem_request_body_bytes = 1 << 20;
  int64_t max_response_body_bytes = 0, mem_response_body_bytes = 1 << 20;
  std::string retry_expression;
  // contentType
  bool auto_detect = false;
  // circuitBreaker
  std::string expression;
  Duration check_period{100}, fallback_duration{10'000}, recovery_duration{10'000};
  int response_code = 503;
  // passTLSClientCert
  struct DistinguishedName {
    bool country = false, province = false, locality = false, organization = false, organizational_unit = false,
         common_name = false, serial_number = false, domain_component = false;
    bool operator==(const DistinguishedName&) const = default;
  };
  bool tls_pem = false;                    ///< pem: X-Forwarded-Tls-Client-Cert
  bool tls_info = false;                   ///< info present: X-Forwarded-Tls-Client-Cert-Info
  bool info_not_after = false, info_not_before = false, info_sans = false, info_serial_number = false;
  DistinguishedName info_subject, info_issuer;

  /// Same configuration, places included; merge compares copies with equal places.
  bool operator==(const MiddlewareConfig&) const = default;
};

/// The ACME provider's challenges in progress (acme/): the data plane answers them from the snapshot.
struct AcmeChallenges {
  struct Http01 {
    std::string token, key_authorization;
    std::string entry_point;  ///< httpChallenge.entryPoint: answered there only
  };
  struct TlsAlpn01 {
    std::string domain;  ///< lower-case
    std::string cert_pem, key_pem;
  };
  std::vector<Http01> http01;
  std::vector<TlsAlpn01> tls_alpn01;
};

/// One provider's dynamic config. Elements that failed to decode are absent; their errors are in `errors`.
struct DynamicConfig {
  std::map<std::string, RouterConfig> routers;    ///< by qualified name
  std::map<std::string, ServiceConfig> services;  ///< by qualified name
  std::map<std::string, MiddlewareConfig> middlewares;  ///< by qualified name
  std::map<std::string, NamedServersTransport> servers_transports;  ///< by qualified name
  TlsConfig tls;                                  ///< the `tls:` section (certificates, options, stores)
  AcmeChallenges acme;                            ///< from the ACME provider only
  std::vector<Error> errors;                      ///< element-level problems (the element was dropped)
  /// Names merge_dynamic dropped because two definitions differ -> place of the first definition;
  /// kept so a third definition of the same name stays dropped.
  std::map<std::string, std::string> conflicting_routers;
  std::map<std::string, std::string> conflicting_services;
  std::map<std::string, std::string> conflicting_middlewares;
  std::map<std::string, std::string> conflicting_servers_transports;
  /// Elements the decoder dropped, by qualified name -> their problems: the API lists them as
  /// disabled with these errors.
  std::map<std::string, std::vector<Error>> dropped_routers;
  std::map<std::string, std::vector<Error>> dropped_services;
  std::map<std::string, std::vector<Error>> dropped_middlewares;
};

/// Decodes one YAML document (the content of `file_name`) for provider `provider` ("file").
/// A YAML syntax error returns an Error (the caller keeps the last good config); a bad element is
/// dropped and reported in DynamicConfig::errors. Unknown keys are element errors. Thread: control.
Result<DynamicConfig> decode_dynamic_yaml(std::string_view yaml_text, const std::string& file_name,
                                          const std::string& provider);

/// How lenient decode_dynamic_tree is.
struct DecodeOptions {
  /// Routers may lack `rule` and `service` (the docker provider fills them in, as Traefik does).
  bool routers_may_omit_rule_and_service = false;
};

/// Decodes a config tree already built (from YAML, or from container labels by the docker
/// provider) for `provider`. A bad element is dropped and reported in DynamicConfig::errors.
DynamicConfig decode_dynamic_tree(const ConfigNode& root, const std::string& provider, const DecodeOptions& options);

/// Same configuration apart from the server lists (the docker provider merges replicas' servers).
bool same_except_servers(const ServiceConfig& a, const ServiceConfig& b);

/// Merges `from` into `into`; a name defined twice is an error naming both places and both copies
/// are dropped, as Traefik does (kFirstWins: `from`'s copy is dropped). Thread: control.
void merge_dynamic(DynamicConfig& into, DynamicConfig&& from, Redefinition redefinition = Redefinition::kConflict);

}  // namespace berth::config
