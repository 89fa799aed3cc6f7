// Dynamic config decoding (Traefik's `http:` routers and services) from one provider's YAML, and the
// merge of several providers' or files' configs. A bad element is dropped; the rest still serves.
#include "config/dynamic_config.h"

#include <limits>
#include <optional>

#include "config/merge.h"
#include "config/yaml_decoder.h"

namespace berth::config {
namespace {

// Returns the problem with a server URL, or nullopt when it is usable.
std::optional<std::string> check_server_url(std::string_view url) {
  const size_t sep = url.find("://");
  const std::string_view scheme = sep == std::string_view::npos ? std::string_view() : url.substr(0, sep);
  if (!iequals(scheme, "http") && !iequals(scheme, "https") && !iequals(scheme, "h2c"))
    return "must start with http://, https:// or h2c://";
  std::string_view authority = url.substr(sep + 3);
  authority = authority.substr(0, authority.find_first_of("/?#"));
  if (const size_t at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
  std::string_view host, port;
  bool has_port = false;
  if (authority.starts_with('[')) {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return "has an unterminated IPv6 address";
    host = authority.substr(1, close - 1);
    const std::string_view rest = authority.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return "has junk after the IPv6 address";
    has_port = !rest.empty();
    if (has_port) port = rest.substr(1);
  } else {
    const size_t colon = authority.rfind(':');
    host = authority.substr(0, colon);
    has_port = colon != std::string_view::npos;
    if (has_port) port = authority.substr(colon + 1);
  }
  if (host.empty()) return "has no host";
  if (has_port) {
    const auto n = parse_uint(port);
    if (!n || *n > 65535) return "has an invalid port";
  }
  return std::nullopt;
}

bool same_config(const RouterConfig& a, const RouterConfig& b) {
  return a.name == b.name && a.rule == b.rule && a.service == b.service && a.entry_points == b.entry_points &&
         a.priority == b.priority && a.middlewares == b.middlewares && a.tls == b.tls;
}

bool same_config(const MiddlewareConfig& a, const MiddlewareConfig& b) {
  MiddlewareConfig placed = a;
  placed.where = b.where;
  return placed == b;
}

bool same_config(const ServiceConfig& a, const ServiceConfig& b) { return a == b; }

bool same_config(const NamedServersTransport& a, const NamedServersTransport& b) {
  NamedServersTransport placed = a;
  placed.where = b.where;
  return placed == b;
}

class DynamicDecoder {
 public:
  DynamicDecoder(DynamicConfig& config, const std::string& provider, const DecodeOptions& options)
      : c_(config), d_(config.errors), provider_(provider), options_(options) {}

  void decode(const ConfigNode& root) {
    for (const ConfigNode* e : d_.entries(root, "")) {
      if (iequals(e->key, "http")) decode_http(*e);
      else if (iequals(e->key, "tls")) decode_tls(*e, d_, provider_, c_.tls);
      // tcp and udp routers come with later issues; accepted so Traefik files load unchanged.
      else if (iequals(e->key, "tcp") || iequals(e->key, "udp")) continue;
      else d_.unknown_key(*e, "");
    }
  }

 private:
  void decode_http(const ConfigNode& node) {
    for (const ConfigNode* e : d_.entries(node, "http")) {
      if (iequals(e->key, "routers")) {
        for (const ConfigNode* r : d_.entries(*e, "http.routers"))
          note_dropped(*r, c_.routers, c_.dropped_routers, [&] { decode_router(*r); });
      } else if (iequals(e->key, "services")) {
        for (const ConfigNode* s : d_.entries(*e, "http.services"))
          note_dropped(*s, c_.services, c_.dropped_services, [&] { decode_service(*s); });
      } else if (iequals(e->key, "middlewares")) {
        for (const ConfigNode* m : d_.entries(*e, "http.middlewares"))
          note_dropped(*m, c_.middlewares, c_.dropped_middlewares, [&] { decode_middleware(*m); });
      } else if (iequals(e->key, "serversTransports")) {
        for (const ConfigNode* t : d_.entries(*e, "http.serversTransports")) decode_servers_transport(*t);
      } else {
        d_.unknown_key(*e, "http");
      }
    }
  }

  // Runs `decode` for element `node`; an element it reported problems for and left out is noted
  // in `dropped` with those problems.
  template <typename T, typename Decode>
  void note_dropped(const ConfigNode& node, const std::map<std::string, T>& kept,
                    std::map<std::string, std::vector<Error>>& dropped, Decode&& decode) {
    const size_t before = d_.error_count();
    decode();
    if (d_.error_count() == before || node.key.empty() || node.key.find('@') != std::string::npos) return;
    std::string name = node.key + "@" + provider_;
    if (kept.contains(name)) return;
    auto& problems = dropped[std::move(name)];
    problems.insert(problems.end(), c_.errors.begin() + static_cast<std::ptrdiff_t>(before), c_.errors.end());
  }

  // "<name>@<provider>", or nullopt (reported) when the name cannot be qualified.
  std::optional<std::string> qualify(const ConfigNode& node, std::string_view kind) {
    if (node.key.empty()) {
      d_.error(node.key_where, std::string(kind) + " name must not be empty");
      return std::nullopt;
    }
    if (node.key.find('@') != std::string::npos) {
      d_.error(node.key_where, std::string(kind) + " name \"" + node.key + "\" must not contain '@'");
      return std::nullopt;
    }
    return node.key + "@" + provider_;
  }

  void decode_router(const ConfigNode& node) {
    const size_t errors_before = d_.error_count();
    auto name = qualify(node, "router");
    if (!name) return;
    RouterConfig router;
    router.name = std::move(*name);
    router.where = node.key_where;
    const std::string path = "http.routers." + node.key;
    bool has_rule = false, has_service = false;
    for (const ConfigNode* e : d_.entries(node, path)) {
      const std::string& k = e->key;
      if (iequals(k, "rule")) has_rule = d_.read_string(*e, path, router.rule);
      else if (iequals(k, "service")) has_service = d_.read_string(*e, path, router.service);
      else if (iequals(k, "entryPoints")) d_.read_list(*e, path, router.entry_points);
      else if (iequals(k, "priority"))
        d_.read_int(*e, path, router.priority, std::numeric_limits<int64_t>::min() + 1,
                    std::numeric_limits<int64_t>::max());
      // Decoded by later issues; accepted so Traefik files load unchanged.
      else if (iequals(k, "middlewares")) d_.read_list(*e, path, router.middlewares);
      else if (iequals(k, "tls")) router.tls = decode_router_tls(*e, d_, path);
      else if (iequals(k, "observability")) continue;
      else d_.unknown_key(*e, path);
    }
    if (has_rule && trim(router.rule).empty()) has_rule = false;
    if (has_service && trim(router.service).empty()) has_service = false;
    if (d_.error_count() == errors_before && !options_.routers_may_omit_rule_and_service) {
      if (!has_rule) d_.error(router.where, "router " + router.name + " has no rule");
      if (!has_service) d_.error(router.where, "router " + router.name + " has no service");
    }
    if (d_.error_count() != errors_before) return;
    c_.routers.insert_or_assign(router.name, std::move(router));
  }

  // A map of header name -> value (an empty value removes the header), in document order.
  void read_header_map(const ConfigNode& entry, const std::string& path,
                       std::vector<std::pair<std::string, std::string>>& out) {
    for (const ConfigNode* h : d_.entries(entry, path)) {
      std::string value;
      if (d_.read_string(*h, path, value)) out.emplace_back(h->key, std::move(value));
    }
  }

  // The headers middleware: custom headers, CORS and the security options, as Traefik (unrolled/secure)
  // writes them. Options Traefik v3 no longer has (sslRedirect, featurePolicy...) are reported.
  void decode_headers_options(MiddlewareConfig& m, const std::vector<const ConfigNode*>& options,
                              const std::string& tpath) {
    bool frame_deny = false, nosniff = false, xss = false, sts_subdomains = false, sts_preload = false;
    int64_t sts_seconds = 0;
    std::string frame_value, xss_value, csp, csp_report, referrer, permissions;
    for (const ConfigNode* o : options) {
      const std::string& k = o->key;
      if (iequals(k, "customRequestHeaders")) read_header_map(*o, tpath + "." + k, m.request_headers);
      else if (iequals(k, "customResponseHeaders")) read_header_map(*o, tpath + "." + k, m.response_headers);
      else if (iequals(k, "frameDeny")) d_.read_bool(*o, tpath, frame_deny);
      else if (iequals(k, "customFrameOptionsValue")) d_.read_string(*o, tpath, frame_value);
      else if (iequals(k, "contentTypeNosniff")) d_.read_bool(*o, tpath, nosniff);
      else if (iequals(k, "browserXssFilter")) d_.read_bool(*o, tpath, xss);
      else if (iequals(k, "customBrowserXSSValue")) d_.read_string(*o, tpath, xss_value);
      else if (iequals(k, "contentSecurityPolicy")) d_.read_string(*o, tpath, csp);
      else if (iequals(k, "contentSecurityPolicyReportOnly")) d_.read_string(*o, tpath, csp_report);
      else if (iequals(k, "referrerPolicy")) d_.read_string(*o, tpath, referrer);
      else if (iequals(k, "permissionsPolicy")) d_.read_string(*o, tpath, permissions);
      else if (iequals(k, "stsSeconds")) d_.read_int(*o, tpath, sts_seconds, 0, INT64_MAX / 2);
      else if (iequals(k, "stsIncludeSubdomains")) d_.read_bool(*o, tpath, sts_subdomains);
      else if (iequals(k, "stsPreload")) d_.read_bool(*o, tpath, sts_preload);
      else if (iequals(k, "forceSTSHeader")) d_.read_bool(*o, tpath, m.force_sts);
      else if (iequals(k, "publicKey")) d_.read_string(*o, tpath, m.public_key);
      else if (iequals(k, "allowedHosts")) d_.read_list(*o, tpath, m.allowed_hosts);
      else if (iequals(k, "hostsProxyHeaders")) d_.read_list(*o, tpath, m.hosts_proxy_headers);
      else if (iequals(k, "sslProxyHeaders")) read_header_map(*o, tpath + "." + k, m.ssl_proxy_headers);
      else if (iequals(k, "isDevelopment")) d_.read_bool(*o, tpath, m.is_development);
      else if (iequals(k, "accessControlAllowCredentials")) m.cors |= d_.read_bool(*o, tpath, m.cors_allow_credentials);
      else if (iequals(k, "accessControlAllowHeaders")) m.cors |= d_.read_list(*o, tpath, m.cors_allow_headers);
      else if (iequals(k, "accessControlAllowMethods")) m.cors |= d_.read_list(*o, tpath, m.cors_allow_methods);
      else if (iequals(k, "accessControlAllowOriginList")) m.cors |= d_.read_list(*o, tpath, m.cors_allow_origins);
      else if (iequals(k, "accessControlAllowOriginListRegex"))
        m.cors |= d_.read_list(*o, tpath, m.cors_allow_origin_regexes);
      else if (iequals(k, "accessControlExposeHeaders")) m.cors |= d_.read_list(*o, tpath, m.cors_expose_headers);
      else if (iequals(k, "accessControlMaxAge")) {
        m.cors_max_age_set = d_.read_int(*o, tpath, m.cors_max_age, 0, INT32_MAX);
        m.cors |= m.cors_max_age_set;
      }
      else if (iequals(k, "addVaryHeader")) m.cors |= d_.read_bool(*o, tpath, m.cors_add_vary);
      else d_.error(o->key_where, "middleware " + m.name + ": headers option \"" + k + "\" is not supported yet");
    }
    if (!frame_value.empty()) m.security_headers.emplace_back("X-Frame-Options", frame_value);
    else if (frame_deny) m.security_headers.emplace_back("X-Frame-Options", "DENY");
    if (nosniff) m.security_headers.emplace_back("X-Content-Type-Options", "nosniff");
    if (!xss_value.empty()) m.security_headers.emplace_back("X-XSS-Protection", xss_value);
    else if (xss) m.security_headers.emplace_back("X-XSS-Protection", "1; mode=block");
    if (!csp.empty()) m.security_headers.emplace_back("Content-Security-Policy", csp);
    if (!csp_report.empty()) m.security_headers.emplace_back("Content-Security-Policy-Report-Only", csp_report);
    if (!referrer.empty()) m.security_headers.emplace_back("Referrer-Policy", referrer);
    if (!permissions.empty()) m.security_headers.emplace_back("Permissions-Policy", permissions);
    if (sts_seconds > 0) {
      m.sts = "max-age=" + std::to_string(sts_seconds);
      if (sts_subdomains) m.sts += "; includeSubDomains";
      if (sts_preload) m.sts += "; preload";
    }
  }

  // passTLSClientCert info.subject / info.issuer: which name parts go into the header.
  void read_distinguished_name(const ConfigNode& node, const std::string& parent, MiddlewareConfig::DistinguishedName& dn) {
    const std::string path = parent + "." + node.key;
    for (const ConfigNode* e : d_.entries(node, path)) {
      const std::string& k = e->key;
      bool* field = iequals(k, "country")              ? &dn.country
                    : iequals(k, "province")           ? &dn.province
                    : iequals(k, "locality")           ? &dn.locality
                    : iequals(k, "organization")       ? &dn.organization
                    : iequals(k, "organizationalUnit") ? &dn.organizational_unit
                    : iequals(k, "commonName")         ? &dn.common_name
                    : iequals(k, "serialNumber")       ? &dn.serial_number
                    : iequals(k, "domainComponent")    ? &dn.domain_component
                                                       : nullptr;
      if (field) d_.read_bool(*e, path, *field);
      else d_.unknown_key(*e, path);
    }
  }

  void decode_middleware(const ConfigNode& node) {
    const size_t errors_before = d_.error_count();
    auto name = qualify(node, "middleware");
    if (!name) return;
    MiddlewareConfig m;
    m.name = std::move(*name);
    m.where = node.key_where;
    const std::string path = "http.middlewares." + node.key;
    auto types = d_.entries(node, path);
    if (types.size() != 1) {
      d_.error(m.where, "middleware " + m.name + " must have exactly one type, has " + std::to_string(types.size()));
      return;
    }
    const ConfigNode& t = *types[0];
    const std::string tpath = path + "." + t.key;
    auto options = d_.entries(t, tpath);
    auto type_is = [&](std::string_view ty) {
      if (!iequals(t.key, ty)) return false;
      m.type = std::string(ty);
      return true;
    };
    if (type_is("addPrefix")) {
      for (const ConfigNode* o : options) {
        if (iequals(o->key, "prefix")) d_.read_string(*o, tpath, m.prefix);
        else d_.unknown_key(*o, tpath);
      }
      if (m.prefix.empty()) d_.error(t.where, "middleware " + m.name + ": addPrefix needs a prefix");
    } else if (type_is("stripPrefix")) {
      for (const ConfigNode* o : options) {
        if (iequals(o->key, "prefixes")) d_.read_list(*o, tpath, m.prefixes);
        else if (iequals(o->key, "forceSlash")) { bool ignored; d_.read_bool(*o, tpath, ignored); }  // deprecated, no effect
        else d_.unknown_key(*o, tpath);
      }
    } else if (type_is("stripPrefixRegex")) {
      for (const ConfigNode* o : options) {
        if (iequals(o->key, "regex")) d_.read_list(*o, tpath, m.regexes);
        else d_.unknown_key(*o, tpath);
      }
    } else if (type_is("replacePathRegex") || type_is("redirectRegex")) {
      std::string regex;
      for (const ConfigNode* o : options) {
        if (iequals(o->key, "regex")) d_.read_string(*o, tpath, regex);
        else if (iequals(o->key, "replacement")) d_.read_string(*o, tpath, m.replacement);
        else if (m.type == "redirectRegex" && iequals(o->key, "permanent")) d_.read_bool(*o, tpath, m.permanent);
        else d_.unknown_key(*o, tpath);
      }
      if (regex.empty()) d_.error(t.where, "middleware " + m.name + ": " + m.type + " needs a regex");
      m.regexes.push_back(std::move(regex));
    } else if (type_is("replacePath")) {
      for (const ConfigNode* o : options) {
        if (iequals(o->key, "path")) d_.read_string(*o, tpath, m.path);
        else d_.unknown_key(*o, tpath);
      }
    } else if (type_is("redirectScheme")) {
      for (const ConfigNode* o : options) {
        if (iequals(o->key, "scheme")) d_.read_string(*o, tpath, m.scheme);
        else if (iequals(o->key, "port")) d_.read_string(*o, tpath, m.port);
        else if (iequals(o->key, "permanent")) d_.read_bool(*o, tpath, m.permanent);
        else d_.unknown_key(*o, tpath);
      }
      if (m.scheme.empty()) d_.error(t.where, "middleware " + m.name + ": redirectScheme needs a scheme");
      if (!m.port.empty() && !parse_uint(m.port)) d_.error(t.where, "middleware " + m.name + ": redirectScheme port \"" + m.port + "\" is not a number");
    } else if (type_is("headers")) {
      decode_headers_options(m, options, tpath);
    } else if (type_is("ipAllowList")) {
      for (const ConfigNode* o : options) {
        if (iequals(o->key, "sourceRange")) {
          d_.read_list(*o, tpath, m.source_range);
        } else if (iequals(o->key, "rejectStatusCode")) {
          d_.read_int(*o, tpath, m.reject_status, 100, 599);
        } else if (iequals(o->key, "ipStrategy")) {
          const std::string spath = tpath + ".ipStrategy";
          for (const ConfigNode* i : d_.entries(*o, spath)) {
            if (iequals(i->key, "depth")) d_.read_int(*i, spath, m.ip_depth, 0, 64);
            else if (iequals(i->key, "excludedIPs")) d_.read_list(*i, spath, m.excluded_ips);
            else d_.unknown_key(*i, spath);
          }
        } else {
          d_.unknown_key(*o, tpath);
        }
      }
      if (m.source_range.empty()) d_.error(t.where, "middleware " + m.name + ": ipAllowList needs a sourceRange");
    } else if (type_is("chain")) {
      for (const ConfigNode* o : options) {
        if (iequals(o->key, "middlewares")) d_.read_list(*o, tpath, m.chain);
        else d_.unknown_key(*o, tpath);
      }
    } else if (type_is("basicAuth") || type_is("digestAuth")) {
      for (const ConfigNode* o : options) {
        const std::string& k = o->key;
        if (iequals(k, "users")) d_.read_list(*o, tpath, m.users);
        else if (iequals(k, "usersFile")) d_.read_string(*o, tpath, m.users_file);
        else if (iequals(k, "realm")) d_.read_string(*o, tpath, m.realm);
        else if (iequals(k, "removeHeader")) d_.read_bool(*o, tpath, m.remove_header);
        else if (iequals(k, "headerField")) d_.read_string(*o, tpath, m.header_field);
        else d_.unknown_key(*o, tpath);
      }
      if (m.users.empty() && m.users_file.empty())
        d_.error(t.where, "middleware " + m.name + ": " + m.type + " needs users or usersFile");
    } else if (type_is("rateLimit") || type_is("inFlightReq")) {
      const bool rate = m.type == "rateLimit";
      for (const ConfigNode* o : options) {
        const std::string& k = o->key;
        if (rate && iequals(k, "average")) d_.read_int(*o, tpath, m.average, 0, INT32_MAX);
        else if (rate && iequals(k, "period")) read_positive_duration(*o, tpath, m.period);
        else if (rate && iequals(k, "burst")) d_.read_int(*o, tpath, m.burst, 1, INT32_MAX);
        else if (!rate && iequals(k, "amount")) d_.read_int(*o, tpath, m.amount, 1, INT32_MAX);
        else if (iequals(k, "sourceCriterion")) decode_source_criterion(*o, tpath + ".sourceCriterion", m);
        else d_.unknown_key(*o, tpath);
      }
      if (!rate && m.amount <= 0) d_.error(t.where, "middleware " + m.name + ": inFlightReq needs an amount");
    } else if (type_is("retry")) {
      for (const ConfigNode* o : options) {
        if (iequals(o->key, "attempts")) d_.read_int(*o, tpath, m.attempts, 1, 100);
        else if (iequals(o->key, "initialInterval")) d_.read_duration(*o, tpath, m.initial_interval);
        else d_.unknown_key(*o, tpath);
      }
      if (m.attempts <= 0) d_.error(t.where, "middleware " + m.name + ": retry needs attempts (1 or more)");
    } else if (type_is("errors")) {
      for (const ConfigNode* o : options) {
        if (iequals(o->key, "status")) d_.read_list(*o, tpath, m.status);
        else if (iequals(o->key, "service")) d_.read_string(*o, tpath, m.service);
        else if (iequals(o->key, "query")) d_.read_string(*o, tpath, m.query);
        else d_.unknown_key(*o, tpath);
      }
      if (m.status.empty() || trim(m.service).empty())
        d_.error(t.where, "middleware " + m.name + ": errors needs status and service");
    } else if (type_is("forwardAuth")) {
      for (const ConfigNode* o : options) {
        const std::string& k = o->key;
        if (iequals(k, "address")) d_.read_string(*o, tpath, m.address);
        else if (iequals(k, "trustForwardHeader")) d_.read_bool(*o, tpath, m.trust_forward_header);
        else if (iequals(k, "authResponseHeaders")) d_.read_list(*o, tpath, m.auth_response_headers);
        else if (iequals(k, "authResponseHeadersRegex")) d_.read_string(*o, tpath, m.auth_response_headers_regex);
        else if (iequals(k, "authRequestHeaders")) d_.read_list(*o, tpath, m.auth_request_headers);
        else if (iequals(k, "addAuthCookiesToResponse")) d_.read_list(*o, tpath, m.auth_cookies);
        else d_.error(o->key_where, "middleware " + m.name + ": forwardAuth option \"" + k + "\" is not supported yet");
      }
      if (m.address.empty()) d_.error(t.where, "middleware " + m.name + ": forwardAuth needs an address");
    } else if (type_is("compress")) {
      for (const ConfigNode* o : options) {
        const std::string& k = o->key;
        if (iequals(k, "excludedContentTypes")) d_.read_list(*o, tpath, m.excluded_content_types);
        else if (iequals(k, "includedContentTypes")) d_.read_list(*o, tpath, m.included_content_types);
        else if (iequals(k, "minResponseBodyBytes")) d_.read_int(*o, tpath, m.min_response_body_bytes, 0, INT32_MAX);
        else if (iequals(k, "encodings")) d_.read_list(*o, tpath, m.encodings);
        else if (iequals(k, "defaultEncoding")) d_.read_string(*o, tpath, m.default_encoding);
        else d_.unknown_key(*o, tpath);
      }
    } else if (type_is("buffering")) {
      for (const ConfigNode* o : options) {
        const std::string& k = o->key;
        if (iequals(k, "maxRequestBodyBytes")) d_.read_int(*o, tpath, m.max_request_body_bytes, 0, INT64_MAX);
        else if (iequals(k, "memRequestBodyBytes")) d_.read_int(*o, tpath, m.mem_request_body_bytes, 0, INT64_MAX);
        else if (iequals(k, "maxResponseBodyBytes")) d_.read_int(*o, tpath, m.max_response_body_bytes, 0, INT64_MAX);
        else if (iequals(k, "memResponseBodyBytes")) d_.read_int(*o, tpath, m.mem_response_body_bytes, 0, INT64_MAX);
        else if (iequals(k, "retryExpression")) d_.read_string(*o, tpath, m.retry_expression);
        else d_.unknown_key(*o, tpath);
      }
    } else if (type_is("contentType")) {
      m.auto_detect = true;  // Traefik v3: the middleware turns sniffing on; autoDetect is v2's spelling
      for (const ConfigNode* o : options) {
        if (iequals(o->key, "autoDetect")) d_.read_bool(*o, tpath, m.auto_detect);
        else d_.unknown_key(*o, tpath);
      }
    } else if (type_is("circuitBreaker")) {
      for (const ConfigNode* o : options) {
        const std::string& k = o->key;
        if (iequals(k, "expression")) d_.read_string(*o, tpath, m.expression);
        else if (iequals(k, "checkPeriod")) read_positive_duration(*o, tpath, m.check_period);
        else if (iequals(k, "fallbackDuration")) read_positive_duration(*o, tpath, m.fallback_duration);
        else if (iequals(k, "recoveryDuration")) read_positive_duration(*o, tpath, m.recovery_duration);
        else if (iequals(k, "responseCode")) d_.read_int(*o, tpath, m.response_code, 100, 599);
        else d_.unknown_key(*o, tpath);
      }
      if (trim(m.expression).empty()) d_.error(t.where, "middleware " + m.name + ": circuitBreaker needs an expression");
    } else if (type_is("passTLSClientCert")) {
      for (const ConfigNode* o : options) {
        if (iequals(o->key, "pem")) {
          d_.read_bool(*o, tpath, m.tls_pem);
        } else if (iequals(o->key, "info")) {
          m.tls_info = true;
          const std::string ipath = tpath + ".info";
          for (const ConfigNode* i : d_.entries(*o, ipath)) {
            if (iequals(i->key, "notAfter")) d_.read_bool(*i, ipath, m.info_not_after);
            else if (iequals(i->key, "notBefore")) d_.read_bool(*i, ipath, m.info_not_before);
            else if (iequals(i->key, "sans")) d_.read_bool(*i, ipath, m.info_sans);
            else if (iequals(i->key, "serialNumber")) d_.read_bool(*i, ipath, m.info_serial_number);
            else if (iequals(i->key, "subject")) read_distinguished_name(*i, ipath, m.info_subject);
            else if (iequals(i->key, "issuer")) read_distinguished_name(*i, ipath, m.info_issuer);
            else d_.unknown_key(*i, ipath);
          }
        } else {
          d_.unknown_key(*o, tpath);
        }
      }
    } else {
      d_.error(t.key_where, "middleware " + m.name + ": type \"" + t.key + "\" is not supported yet");
      return;
    }
    if (d_.error_count() != errors_before) return;
    c_.middlewares.insert_or_assign(m.name, std::move(m));
  }

  void decode_servers_transport(const ConfigNode& node) {
    const size_t errors_before = d_.error_count();
    auto name = qualify(node, "serversTransport");
    if (!name) return;
    NamedServersTransport t;
    t.name = std::move(*name);
    t.where = node.key_where;
    const std::string path = "http.serversTransports." + node.key;
    for (const ConfigNode* e : d_.entries(node, path))
      if (!decode_servers_transport_key(*e, d_, path, true, t.settings)) d_.unknown_key(*e, path);
    if (d_.error_count() != errors_before) return;
    c_.servers_transports.insert_or_assign(t.name, std::move(t));
  }

  // sourceCriterion of rateLimit / inFlightReq: one of ipStrategy, requestHeaderName, requestHost.
  void decode_source_criterion(const ConfigNode& node, const std::string& path, MiddlewareConfig& m) {
    int set = 0;
    for (const ConfigNode* e : d_.entries(node, path)) {
      if (iequals(e->key, "ipStrategy")) {
        ++set;
        const std::string spath = path + ".ipStrategy";
        for (const ConfigNode* i : d_.entries(*e, spath)) {
          if (iequals(i->key, "depth")) d_.read_int(*i, spath, m.ip_depth, 0, 64);
          else if (iequals(i->key, "excludedIPs")) d_.read_list(*i, spath, m.excluded_ips);
          else d_.unknown_key(*i, spath);
        }
      } else if (iequals(e->key, "requestHeaderName")) {
        set += d_.read_string(*e, path, m.source_header) && !m.source_header.empty();
      } else if (iequals(e->key, "requestHost")) {
        d_.read_bool(*e, path, m.source_host);
        set += m.source_host;
      } else {
        d_.unknown_key(*e, path);
      }
    }
    if (set > 1) d_.error(node.where, path + ": set only one of ipStrategy, requestHeaderName and requestHost");
  }

  void decode_service(const ConfigNode& node) {
    const size_t errors_before = d_.error_count();
    auto name = qualify(node, "service");
    if (!name) return;
    ServiceConfig service;
    service.name = std::move(*name);
    service.where = node.key_where;
    const std::string path = "http.services." + node.key;
    std::vector<const ConfigNode*> types;
    for (const ConfigNode* e : d_.entries(node, path)) {
      if (iequals(e->key, "loadBalancer") || iequals(e->key, "weighted") || iequals(e->key, "mirroring") ||
          iequals(e->key, "failover"))
        types.push_back(e);
      else
        d_.unknown_key(*e, path);
    }
    if (types.size() > 1) {
      d_.error(service.where, "service " + service.name + " has more than one type (" + types[0]->key + ", " +
                                  types[1]->key + ")");
    } else if (types.empty()) {
      if (d_.error_count() == errors_before)
        d_.error(service.where, "service " + service.name +
                                    " has no type (expected loadBalancer, weighted, failover or mirroring)");
    } else {
      const ConfigNode& t = *types[0];
      const std::string tpath = path + "." + t.key;
      if (iequals(t.key, "loadBalancer")) decode_load_balancer(t, tpath, service);
      else if (iequals(t.key, "weighted")) decode_weighted(t, tpath, service);
      else if (iequals(t.key, "failover")) decode_failover(t, tpath, service);
      else decode_mirroring(t, tpath, service);
    }
    if (d_.error_count() != errors_before) return;
    c_.services.insert_or_assign(service.name, std::move(service));
  }

  void decode_load_balancer(const ConfigNode& node, const std::string& path, ServiceConfig& service) {
    service.kind = ServiceConfig::Kind::kLoadBalancer;
    for (const ConfigNode* e : d_.entries(node, path)) {
      const std::string& k = e->key;
      if (iequals(k, "servers")) {
        decode_servers(*e, path + ".servers", service);
      } else if (iequals(k, "passHostHeader")) {
        d_.read_bool(*e, path, service.pass_host_header);
      } else if (iequals(k, "strategy")) {
        std::string strategy;
        if (d_.read_string(*e, path, strategy)) {
          strategy = to_lower(trim(strategy));
          if (strategy == "wrr" || strategy == "p2c") service.strategy = strategy;
          else d_.error(e->where, "unknown load-balancing strategy \"" + strategy + "\" (expected wrr or p2c)");
        }
      } else if (iequals(k, "sticky")) {
        decode_sticky(*e, path + ".sticky", service.sticky);
      } else if (iequals(k, "healthCheck")) {
        decode_health_check(*e, path + ".healthCheck", service.health_check);
      } else if (iequals(k, "passiveHealthCheck")) {
        auto& p = service.passive_health_check;
        if (!d_.read_section(*e, path, p.enabled)) continue;
        const std::string ppath = path + ".passiveHealthCheck";
        for (const ConfigNode* o : d_.entries(*e, ppath)) {
          if (iequals(o->key, "failureWindow")) read_positive_duration(*o, ppath, p.failure_window);
          else if (iequals(o->key, "maxFailedAttempts")) d_.read_int(*o, ppath, p.max_failed_attempts, 1, 1'000'000);
          else d_.unknown_key(*o, ppath);
        }
      } else if (iequals(k, "responseForwarding")) {
        const std::string rpath = path + ".responseForwarding";
        for (const ConfigNode* o : d_.entries(*e, rpath)) {
          if (iequals(o->key, "flushInterval")) d_.read_duration(*o, rpath, service.flush_interval);
          else d_.unknown_key(*o, rpath);
        }
      } else if (iequals(k, "serversTransport")) {
        d_.read_string(*e, path, service.servers_transport);
      } else {
        d_.unknown_key(*e, path);
      }
    }
  }

  void decode_weighted(const ConfigNode& node, const std::string& path, ServiceConfig& service) {
    service.kind = ServiceConfig::Kind::kWeighted;
    for (const ConfigNode* e : d_.entries(node, path)) {
      if (iequals(e->key, "services")) {
        decode_service_refs(*e, path + ".services", "weight", service.children);
      } else if (iequals(e->key, "sticky")) {
        decode_sticky(*e, path + ".sticky", service.sticky);
      } else if (iequals(e->key, "healthCheck")) {
        decode_empty_health_check(*e, path, service);
      } else {
        d_.unknown_key(*e, path);
      }
    }
    if (service.children.empty()) d_.error(node.where, "weighted service " + service.name + " has no services");
  }

  void decode_failover(const ConfigNode& node, const std::string& path, ServiceConfig& service) {
    service.kind = ServiceConfig::Kind::kFailover;
    for (const ConfigNode* e : d_.entries(node, path)) {
      if (iequals(e->key, "service")) d_.read_string(*e, path, service.main);
      else if (iequals(e->key, "fallback")) d_.read_string(*e, path, service.fallback);
      else if (iequals(e->key, "healthCheck")) decode_empty_health_check(*e, path, service);
      else d_.unknown_key(*e, path);
    }
    if (trim(service.main).empty() || trim(service.fallback).empty())
      d_.error(node.where, "failover service " + service.name + " needs both service and fallback");
  }

  void decode_mirroring(const ConfigNode& node, const std::string& path, ServiceConfig& service) {
    service.kind = ServiceConfig::Kind::kMirroring;
    for (const ConfigNode* e : d_.entries(node, path)) {
      if (iequals(e->key, "service")) d_.read_string(*e, path, service.main);
      else if (iequals(e->key, "mirrors")) decode_service_refs(*e, path + ".mirrors", "percent", service.children);
      else if (iequals(e->key, "mirrorBody")) d_.read_bool(*e, path, service.mirror_body);
      else if (iequals(e->key, "maxBodySize")) d_.read_int(*e, path, service.max_body_size, -1, INT64_MAX);
      else if (iequals(e->key, "healthCheck")) decode_empty_health_check(*e, path, service);
      else d_.unknown_key(*e, path);
    }
    if (trim(service.main).empty()) d_.error(node.where, "mirroring service " + service.name + " has no service");
  }

  // weighted.services / mirroring.mirrors: a list of {name, weight|percent}.
  // Calls `f(item, "path[i]")` for each item of a list (null: none; anything else is reported).
  template <typename F>
  void for_each_item(const ConfigNode& node, const std::string& path, F&& f) {
    if (node.is_null()) return;
    if (node.kind != ConfigNode::Kind::kList) {
      d_.error(node.where, "expected a list for " + path);
      return;
    }
    for (size_t i = 0; i < node.children.size(); ++i) f(node.children[i], path + "[" + std::to_string(i) + "]");
  }

  void decode_service_refs(const ConfigNode& node, const std::string& path, std::string_view amount,
                           std::vector<ServiceRef>& out) {
    if (node.is_scalar()) {
      decode_compact_refs(node, path, amount, out);
      return;
    }
    for_each_item(node, path, [&](const ConfigNode& item, const std::string& item_path) {
      ServiceRef ref;
      ref.where = item.where;
      if (amount == "percent") ref.weight = 0;
      for (const ConfigNode* e : d_.entries(item, item_path)) {
        if (iequals(e->key, "name")) d_.read_string(*e, item_path, ref.name);
        else if (amount == "weight" && iequals(e->key, "weight")) d_.read_int(*e, item_path, ref.weight, 0, 1'000'000);
        else if (amount == "percent" && iequals(e->key, "percent")) d_.read_int(*e, item_path, ref.percent, 0, 100);
        else d_.unknown_key(*e, item_path);
      }
      if (trim(ref.name).empty()) {
        d_.error(item.where, item_path + " has no name");
        return;
      }
      out.push_back(std::move(ref));
    });
  }

  // berth's compact form, one scalar (and so one label): "blue:90,green:10" (name:weight, or
  // name:percent for mirrors). A name without ":n" gets weight 1 (a mirror: 0 percent).
  void decode_compact_refs(const ConfigNode& node, const std::string& path, std::string_view amount,
                           std::vector<ServiceRef>& out) {
    for (const std::string& item : split_list(node.value, ',')) {
      std::string_view text = trim(item);
      ServiceRef ref;
      ref.where = node.where;
      if (amount == "percent") ref.weight = 0;
      const size_t colon = text.rfind(':');
      ref.name = std::string(trim(text.substr(0, colon)));
      if (colon != std::string_view::npos) {
        auto n = parse_uint(trim(text.substr(colon + 1)));
        const uint64_t max = amount == "percent" ? 100 : 1'000'000;
        if (!n || *n > max) {
          d_.error(node.where, "invalid " + std::string(amount) + " in \"" + std::string(text) + "\" for " + path +
                                   " (expected name:" + std::string(amount) + ", " + std::string(amount) +
                                   " from 0 to " + std::to_string(max) + ")");
          continue;
        }
        (amount == "percent" ? ref.percent : ref.weight) = static_cast<int>(*n);
      }
      if (ref.name.empty()) {
        d_.error(node.where, "a service without a name in \"" + node.value + "\" for " + path);
        continue;
      }
      out.push_back(std::move(ref));
    }
  }

  void decode_sticky(const ConfigNode& node, const std::string& path, StickyCookieConfig& sticky) {
    for (const ConfigNode* e : d_.entries(node, path)) {
      if (!iequals(e->key, "cookie")) {
        d_.unknown_key(*e, path);
        continue;
      }
      if (!d_.read_section(*e, path, sticky.enabled)) continue;
      const std::string cpath = path + ".cookie";
      for (const ConfigNode* o : d_.entries(*e, cpath)) {
        const std::string& k = o->key;
        if (iequals(k, "name")) d_.read_string(*o, cpath, sticky.name);
        else if (iequals(k, "secure")) d_.read_bool(*o, cpath, sticky.secure);
        else if (iequals(k, "httpOnly")) d_.read_bool(*o, cpath, sticky.http_only);
        else if (iequals(k, "maxAge")) d_.read_int(*o, cpath, sticky.max_age, INT32_MIN, INT32_MAX);
        else if (iequals(k, "path")) d_.read_string(*o, cpath, sticky.path);
        else if (iequals(k, "domain")) d_.read_string(*o, cpath, sticky.domain);
        else if (iequals(k, "sameSite")) {
          if (d_.read_string(*o, cpath, sticky.same_site)) {
            sticky.same_site = to_lower(trim(sticky.same_site));
            if (!sticky.same_site.empty() && sticky.same_site != "none" && sticky.same_site != "lax" &&
                sticky.same_site != "strict")
              d_.error(o->where, "sameSite must be none, lax or strict, not \"" + sticky.same_site + "\"");
          }
        } else d_.unknown_key(*o, cpath);
      }
      // As Traefik does (RFC 2616 token): any other character of the name becomes one '_' (a
      // UTF-8 sequence counts as one character).
      std::string clean;
      for (char ch : sticky.name) {
        if ((static_cast<unsigned char>(ch) & 0xC0) == 0x80) continue;  // continuation byte
        const bool token = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                           std::string_view("!#$%&'*+-.^`|~_").find(ch) != std::string_view::npos;
        clean += token ? ch : '_';
      }
      sticky.name = std::move(clean);
    }
  }

  void decode_health_check(const ConfigNode& node, const std::string& path, HealthCheckConfig& hc) {
    hc.enabled = true;
    bool path_set = false;
    for (const ConfigNode* e : d_.entries(node, path)) {
      const std::string& k = e->key;
      if (iequals(k, "path")) path_set = d_.read_string(*e, path, hc.path);
      else if (iequals(k, "scheme")) d_.read_string(*e, path, hc.scheme);
      else if (iequals(k, "mode")) {
        if (d_.read_string(*e, path, hc.mode)) {
          hc.mode = to_lower(trim(hc.mode));
          if (hc.mode != "http" && hc.mode != "grpc")
            d_.error(e->where, "health check mode \"" + hc.mode + "\" is not supported (use http or grpc)");
        }
      } else if (iequals(k, "hostname")) d_.read_string(*e, path, hc.hostname);
      else if (iequals(k, "port")) d_.read_int(*e, path, hc.port, 0, 65535);
      else if (iequals(k, "interval")) read_positive_duration(*e, path, hc.interval);
      else if (iequals(k, "unhealthyInterval")) read_positive_duration(*e, path, hc.unhealthy_interval);
      else if (iequals(k, "timeout")) read_positive_duration(*e, path, hc.timeout);
      else if (iequals(k, "headers")) read_header_map(*e, path + ".headers", hc.headers);
      else if (iequals(k, "followRedirects")) d_.read_bool(*e, path, hc.follow_redirects);
      else if (iequals(k, "method")) {
        if (d_.read_string(*e, path, hc.method)) hc.method = to_upper(trim(hc.method));
      } else if (iequals(k, "status")) d_.read_int(*e, path, hc.status, 0, 599);
      else d_.unknown_key(*e, path);
    }
    // gRPC checks call grpc.health.v1.Health/Check: no path.
    if (hc.mode == "http" && (!path_set || hc.path.empty() || hc.path[0] != '/'))
      d_.error(node.where, path + ".path must be set and start with '/'");
  }

  // weighted/failover/mirroring take `healthCheck: {}`: their state follows their children's.
  void decode_empty_health_check(const ConfigNode& e, const std::string& path, ServiceConfig& service) {
    service.health_check_section = true;
    if (!e.is_null() && !(e.is_map() && e.children.empty()))
      d_.error(e.where, path + ".healthCheck takes no options here (it only turns health propagation on)");
  }

  bool read_positive_duration(const ConfigNode& e, std::string_view path, Duration& out) {
    Duration d{};
    if (!d_.read_duration(e, path, d)) return false;
    if (d.count() <= 0) {
      d_.error(e.where, YamlDecoder::join(path, e.key) + " must be positive");
      return false;
    }
    out = d;
    return true;
  }

  void decode_servers(const ConfigNode& node, const std::string& path, ServiceConfig& service) {
    for_each_item(node, path, [&](const ConfigNode& item, const std::string& item_path) {
      ServerConfig server;
      server.where = item.where;
      bool has_url = false;
      for (const ConfigNode* e : d_.entries(item, item_path)) {
        if (iequals(e->key, "url")) {
          has_url = d_.read_string(*e, item_path, server.url);
          server.where = e->where;
        } else if (iequals(e->key, "weight")) {
          d_.read_int(*e, item_path, server.weight, 0, 1'000'000);
        } else {
          d_.unknown_key(*e, item_path);
        }
      }
      if (!has_url || trim(server.url).empty()) {
        if (item.is_map() || item.is_null()) d_.error(item.where, item_path + " has no url");
        return;
      }
      server.url = std::string(trim(server.url));
      if (auto problem = check_server_url(server.url)) {
        d_.error(server.where, "server url \"" + server.url + "\" " + *problem);
        return;
      }
      service.servers.push_back(std::move(server));
    });
  }

  DynamicConfig& c_;
  YamlDecoder d_;
  const std::string& provider_;
  const DecodeOptions& options_;
};

}  // namespace

Result<DynamicConfig> decode_dynamic_yaml(std::string_view yaml_text, const std::string& file_name,
                                          const std::string& provider) {
  auto tree = parse_yaml(yaml_text, file_name);
  if (!tree) return tree.error();
  if (!tree->is_map() && !tree->is_null()) return Error{tree->where, "expected a map at the top level"};
  return decode_dynamic_tree(*tree, provider, {});
}

DynamicConfig decode_dynamic_tree(const ConfigNode& root, const std::string& provider, const DecodeOptions& options) {
  DynamicConfig config;
  DynamicDecoder(config, provider, options).decode(root);
  return config;
}

bool same_except_servers(const ServiceConfig& a, const ServiceConfig& b) {
  ServiceConfig serverless = a;
  serverless.servers = b.servers;
  return serverless == b;
}

void merge_dynamic(DynamicConfig& into, DynamicConfig&& from, Redefinition redefinition) {
  into.errors.insert(into.errors.end(), std::make_move_iterator(from.errors.begin()),
                     std::make_move_iterator(from.errors.end()));
  auto same = [](const auto& a, const auto& b) { return same_config(a, b); };
  merge_named("router", into.routers, into.conflicting_routers, std::move(from.routers),
              std::move(from.conflicting_routers), into.errors, same, redefinition);
  merge_named("service", into.services, into.conflicting_services, std::move(from.services),
              std::move(from.conflicting_services), into.errors, same, redefinition);
  merge_named("middleware", into.middlewares, into.conflicting_middlewares, std::move(from.middlewares),
              std::move(from.conflicting_middlewares), into.errors, same, redefinition);
  merge_named("serversTransport", into.servers_transports, into.conflicting_servers_transports,
              std::move(from.servers_transports), std::move(from.conflicting_servers_transports), into.errors, same,
              redefinition);
  merge_tls(into.tls, std::move(from.tls), into.errors, redefinition);
  for (auto kind : {&DynamicConfig::dropped_routers, &DynamicConfig::dropped_services, &DynamicConfig::dropped_middlewares})
    for (auto& [name, problems] : from.*kind) {
      auto& list = (into.*kind)[name];
      list.insert(list.end(), std::make_move_iterator(problems.begin()), std::make_move_iterator(problems.end()));
    }
  for (auto& c : from.acme.http01) into.acme.http01.push_back(std::move(c));
  for (auto& c : from.acme.tls_alpn01) into.acme.tls_alpn01.push_back(std::move(c));
}

}  // namespace berth::config
