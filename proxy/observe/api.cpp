// The Traefik API's documents; see api.h. Shapes follow Traefik's pkg/api (runtime.RouterInfo,
// ServiceInfo, MiddlewareInfo, the overview and the entry points), plus berth's own fields:
// routers' `requests` and `serverErrors`, the overview's `generation` and `problems`.
#include "proxy/observe/api.h"

#include <time.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <set>

#include "base/text.h"
#include "proxy/snapshot.h"
#include "proxy/snapshot_builder.h"
#include "proxy/upstream/health.h"

namespace berth::proxy::observe {
namespace {

namespace json = boost::json;

// When this process started (the version document's startDate).
const std::string kStartDate = [] {
  const auto now = std::chrono::system_clock::now();
  const time_t t = std::chrono::system_clock::to_time_t(now);
  tm utc{};
  gmtime_r(&t, &utc);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return std::string(buf);
}();

std::string qualify(std::string_view ref, std::string_view owner) {
  std::string r(trim(ref));
  if (r.find('@') != std::string::npos) return r;
  const size_t at = owner.rfind('@');
  return at == std::string_view::npos ? r : r + std::string(owner.substr(at));
}

std::string provider_of(std::string_view name) {
  const size_t at = name.find('@');
  return at == std::string_view::npos ? std::string() : std::string(name.substr(at + 1));
}

json::array strings(const std::vector<std::string>& items) {
  json::array a;
  for (const auto& s : items) a.emplace_back(s);
  return a;
}

json::object header_map(const std::vector<std::pair<std::string, std::string>>& headers) {
  json::object o;
  for (const auto& [k, v] : headers) o[k] = v;
  return o;
}

std::string status_of(const ElementStatus* s) {
  if (!s) return "enabled";
  if (s->disabled) return "disabled";
  return s->errors.empty() ? "enabled" : "warning";
}

void add_status(json::object& doc, const ElementStatus* s) {
  doc["status"] = status_of(s);
  if (s && !s->errors.empty()) doc["error"] = strings(s->errors);
}

json::object tls_doc(const config::RouterTlsConfig& tls) {
  json::object o;
  o["options"] = tls.options.empty() ? std::string(config::kDefaultTlsName) : tls.options;
  if (!tls.cert_resolver.empty()) o["certResolver"] = tls.cert_resolver;
  if (!tls.domains.empty()) {
    json::array domains;
    for (const auto& d : tls.domains) {
      json::object domain;
      domain["main"] = d.main;
      if (!d.sans.empty()) domain["sans"] = strings(d.sans);
      domains.emplace_back(std::move(domain));
    }
    o["domains"] = std::move(domains);
  }
  return o;
}

json::object sticky_doc(const config::StickyCookieConfig& c) {
  json::object cookie;
  if (!c.name.empty()) cookie["name"] = c.name;
  if (c.secure) cookie["secure"] = true;
  if (c.http_only) cookie["httpOnly"] = true;
  if (!c.same_site.empty()) cookie["sameSite"] = c.same_site;
  if (c.max_age != 0) cookie["maxAge"] = c.max_age;
  cookie["path"] = c.path;
  if (!c.domain.empty()) cookie["domain"] = c.domain;
  json::object sticky;
  sticky["cookie"] = std::move(cookie);
  return sticky;
}

json::object health_check_doc(const config::HealthCheckConfig& hc) {
  json::object o;
  if (!hc.scheme.empty()) o["scheme"] = hc.scheme;
  o["mode"] = hc.mode;
  if (!hc.path.empty()) o["path"] = hc.path;
  o["method"] = hc.method;
  if (hc.status != 0) o["status"] = hc.status;
  if (hc.port != 0) o["port"] = hc.port;
  o["interval"] = format_duration(hc.interval);
  if (hc.unhealthy_interval.count() != 0) o["unhealthyInterval"] = format_duration(hc.unhealthy_interval);
  o["timeout"] = format_duration(hc.timeout);
  if (!hc.hostname.empty()) o["hostname"] = hc.hostname;
  o["followRedirects"] = hc.follow_redirects;
  if (!hc.headers.empty()) o["headers"] = header_map(hc.headers);
  return o;
}

// Traefik's dynamic.Service: one key named for the type.
void service_config(const config::ServiceConfig& svc, json::object& doc, std::string& type) {
  using Kind = config::ServiceConfig::Kind;
  json::object body;
  switch (svc.kind) {
    case Kind::kLoadBalancer: {
      type = "loadbalancer";
      json::array servers;
      for (const auto& s : svc.servers) {
        json::object server;
        server["url"] = s.url;
        if (s.weight != 1) server["weight"] = s.weight;
        servers.emplace_back(std::move(server));
      }
      body["servers"] = std::move(servers);
      body["strategy"] = svc.strategy;
      body["passHostHeader"] = svc.pass_host_header;
      if (svc.sticky.enabled) body["sticky"] = sticky_doc(svc.sticky);
      if (svc.health_check.enabled) body["healthCheck"] = health_check_doc(svc.health_check);
      if (svc.passive_health_check.enabled) {
        json::object p;
        p["failureWindow"] = format_duration(svc.passive_health_check.failure_window);
        p["maxFailedAttempts"] = svc.passive_health_check.max_failed_attempts;
        body["passiveHealthCheck"] = std::move(p);
      }
      json::object forwarding;
      forwarding["flushInterval"] = format_duration(svc.flush_interval);
      body["responseForwarding"] = std::move(forwarding);
      if (!svc.servers_transport.empty()) body["serversTransport"] = svc.servers_transport;
      doc["loadBalancer"] = std::move(body);
      break;
    }
    case Kind::kWeighted: {
      type = "weighted";
      json::array services;
      for (const auto& c : svc.children) {
        json::object child;
        child["name"] = c.name;
        child["weight"] = c.weight;
        services.emplace_back(std::move(child));
      }
      body["services"] = std::move(services);
      if (svc.sticky.enabled) body["sticky"] = sticky_doc(svc.sticky);
      if (svc.health_check_section) body["healthCheck"] = json::object();
      doc["weighted"] = std::move(body);
      break;
    }
    case Kind::kFailover:
      type = "failover";
      body["service"] = svc.main;
      body["fallback"] = svc.fallback;
      if (svc.health_check_section) body["healthCheck"] = json::object();
      doc["failover"] = std::move(body);
      break;
    case Kind::kMirroring: {
      type = "mirroring";
      body["service"] = svc.main;
      body["mirrorBody"] = svc.mirror_body;
      if (svc.max_body_size >= 0) body["maxBodySize"] = svc.max_body_size;
      json::array mirrors;
      for (const auto& c : svc.children) {
        json::object mirror;
        mirror["name"] = c.name;
        mirror["percent"] = c.percent;
        mirrors.emplace_back(std::move(mirror));
      }
      body["mirrors"] = std::move(mirrors);
      if (svc.health_check_section) body["healthCheck"] = json::object();
      doc["mirroring"] = std::move(body);
      break;
    }
  }
}

json::object source_criterion(const config::MiddlewareConfig& m) {
  json::object o;
  if (!m.source_header.empty()) o["requestHeaderName"] = m.source_header;
  else if (m.source_host) o["requestHost"] = true;
  else if (m.ip_depth != 0 || !m.excluded_ips.empty()) {
    json::object strategy;
    if (m.ip_depth != 0) strategy["depth"] = m.ip_depth;
    if (!m.excluded_ips.empty()) strategy["excludedIPs"] = strings(m.excluded_ips);
    o["ipStrategy"] = std::move(strategy);
  }
  return o;
}

// Traefik's dynamic.Middleware: one key named for the type with its options. Passwords stay out:
// basicAuth and digestAuth users show their names only.
json::object middleware_options(const config::MiddlewareConfig& m) {
  json::object o;
  const std::string& t = m.type;
  auto users = [&] {
    json::array names;
    for (const auto& u : m.users) names.emplace_back(u.substr(0, u.find(':')));
    return names;
  };
  if (t == "addPrefix") {
    o["prefix"] = m.prefix;
  } else if (t == "stripPrefix") {
    o["prefixes"] = strings(m.prefixes);
  } else if (t == "stripPrefixRegex") {
    o["regex"] = strings(m.regexes);
  } else if (t == "replacePath") {
    o["path"] = m.path;
  } else if (t == "replacePathRegex" || t == "redirectRegex") {
    o["regex"] = m.regexes.empty() ? std::string() : m.regexes.front();
    o["replacement"] = m.replacement;
    if (t == "redirectRegex") o["permanent"] = m.permanent;
  } else if (t == "redirectScheme") {
    o["scheme"] = m.scheme;
    if (!m.port.empty()) o["port"] = m.port;
    o["permanent"] = m.permanent;
  } else if (t == "headers") {
    if (!m.request_headers.empty()) o["customRequestHeaders"] = header_map(m.request_headers);
    if (!m.response_headers.empty()) o["customResponseHeaders"] = header_map(m.response_headers);
    // berth: the security options, as the response headers they produce.
    auto security = m.security_headers;
    if (!m.sts.empty()) security.emplace_back("Strict-Transport-Security", m.sts);
    if (!m.public_key.empty()) security.emplace_back("Public-Key-Pins", m.public_key);
    if (!security.empty()) o["securityHeaders"] = header_map(security);
    if (!m.allowed_hosts.empty()) o["allowedHosts"] = strings(m.allowed_hosts);
    if (!m.hosts_proxy_headers.empty()) o["hostsProxyHeaders"] = strings(m.hosts_proxy_headers);
    if (!m.ssl_proxy_headers.empty()) o["sslProxyHeaders"] = header_map(m.ssl_proxy_headers);
    if (m.is_development) o["isDevelopment"] = true;
    if (m.cors) {
      o["accessControlAllowCredentials"] = m.cors_allow_credentials;
      if (!m.cors_allow_headers.empty()) o["accessControlAllowHeaders"] = strings(m.cors_allow_headers);
      if (!m.cors_allow_methods.empty()) o["accessControlAllowMethods"] = strings(m.cors_allow_methods);
      if (!m.cors_allow_origins.empty()) o["accessControlAllowOriginList"] = strings(m.cors_allow_origins);
      if (!m.cors_allow_origin_regexes.empty())
        o["accessControlAllowOriginListRegex"] = strings(m.cors_allow_origin_regexes);
      if (!m.cors_expose_headers.empty()) o["accessControlExposeHeaders"] = strings(m.cors_expose_headers);
      if (m.cors_max_age_set) o["accessControlMaxAge"] = m.cors_max_age;
      o["addVaryHeader"] = m.cors_add_vary;
    }
  } else if (t == "ipAllowList") {
    o["sourceRange"] = strings(m.source_range);
    if (auto c = source_criterion(m); c.contains("ipStrategy")) o["ipStrategy"] = c["ipStrategy"];
    if (m.reject_status != 403) o["rejectStatusCode"] = m.reject_status;
  } else if (t == "chain") {
    o["middlewares"] = strings(m.chain);
  } else if (t == "basicAuth" || t == "digestAuth") {
    o["users"] = users();
    if (!m.users_file.empty()) o["usersFile"] = m.users_file;
    o["realm"] = m.realm;
    o["removeHeader"] = m.remove_header;
    if (!m.header_field.empty()) o["headerField"] = m.header_field;
  } else if (t == "rateLimit") {
    o["average"] = m.average;
    o["period"] = format_duration(m.period);
    o["burst"] = m.burst;
    if (auto c = source_criterion(m); !c.empty()) o["sourceCriterion"] = std::move(c);
  } else if (t == "inFlightReq") {
    o["amount"] = m.amount;
    if (auto c = source_criterion(m); !c.empty()) o["sourceCriterion"] = std::move(c);
  } else if (t == "retry") {
    o["attempts"] = m.attempts;
    o["initialInterval"] = format_duration(m.initial_interval);
  } else if (t == "errors") {
    o["status"] = strings(m.status);
    o["service"] = m.service;
    o["query"] = m.query;
  } else if (t == "forwardAuth") {
    o["address"] = m.address;
    o["trustForwardHeader"] = m.trust_forward_header;
    if (!m.auth_response_headers.empty()) o["authResponseHeaders"] = strings(m.auth_response_headers);
    if (!m.auth_response_headers_regex.empty()) o["authResponseHeadersRegex"] = m.auth_response_headers_regex;
    if (!m.auth_request_headers.empty()) o["authRequestHeaders"] = strings(m.auth_request_headers);
    if (m.add_auth_cookies_to_response) o["addAuthCookiesToResponse"] = strings(m.auth_cookies);
  } else if (t == "compress") {
    if (!m.excluded_content_types.empty()) o["excludedContentTypes"] = strings(m.excluded_content_types);
    if (!m.included_content_types.empty()) o["includedContentTypes"] = strings(m.included_content_types);
    if (!m.encodings.empty()) o["encodings"] = strings(m.encodings);
    if (!m.default_encoding.empty()) o["defaultEncoding"] = m.default_encoding;
    o["minResponseBodyBytes"] = m.min_response_body_bytes;
  } else if (t == "buffering") {
    o["maxRequestBodyBytes"] = m.max_request_body_bytes;
    o["memRequestBodyBytes"] = m.mem_request_body_bytes;
    o["maxResponseBodyBytes"] = m.max_response_body_bytes;
    o["memResponseBodyBytes"] = m.mem_response_body_bytes;
    if (!m.retry_expression.empty()) o["retryExpression"] = m.retry_expression;
  } else if (t == "contentType") {
    o["autoDetect"] = m.auto_detect;
  } else if (t == "circuitBreaker") {
    o["expression"] = m.expression;
    o["checkPeriod"] = format_duration(m.check_period);
    o["fallbackDuration"] = format_duration(m.fallback_duration);
    o["recoveryDuration"] = format_duration(m.recovery_duration);
    o["responseCode"] = m.response_code;
  } else if (t == "passTLSClientCert") {
    o["pem"] = m.tls_pem;
    if (m.tls_info) {
      json::object info;
      info["notAfter"] = m.info_not_after;
      info["notBefore"] = m.info_not_before;
      info["sans"] = m.info_sans;
      info["serialNumber"] = m.info_serial_number;
      auto dn = [](const config::MiddlewareConfig::DistinguishedName& d) {
        json::object o;
        o["country"] = d.country;
        o["province"] = d.province;
        o["locality"] = d.locality;
        o["organization"] = d.organization;
        o["organizationalUnit"] = d.organizational_unit;
        o["commonName"] = d.common_name;
        o["serialNumber"] = d.serial_number;
        o["domainComponent"] = d.domain_component;
        return o;
      };
      info["subject"] = dn(m.info_subject);
      info["issuer"] = dn(m.info_issuer);
      o["info"] = std::move(info);
    }
  }
  return o;
}

json::object section(const std::vector<ApiDocuments::Item>& items) {
  int64_t warnings = 0, errors = 0;
  for (const auto& i : items) {
    warnings += i.status == "warning";
    errors += i.status == "disabled";
  }
  json::object o;
  o["total"] = static_cast<int64_t>(items.size());
  o["warnings"] = warnings;
  o["errors"] = errors;
  return o;
}

json::object empty_section() {
  json::object o;
  o["total"] = 0;
  o["warnings"] = 0;
  o["errors"] = 0;
  return o;
}

// The merge's "<kind> <name> is defined in A and B with different configurations" messages.
std::vector<std::string> conflict_errors(const std::vector<Error>& errors, std::string_view kind, const std::string& name) {
  std::vector<std::string> out;
  const std::string prefix = std::string(kind) + " " + name + " is defined in ";
  for (const auto& e : errors)
    if (e.message.starts_with(prefix)) out.push_back(e.to_string());
  return out;
}

void finish(ApiDocuments::Item& item) {
  item.doc["name"] = item.name;
  item.doc["provider"] = item.provider;
  if (!item.type.empty()) item.doc["type"] = item.type;
}

// An element that did not decode (or was defined twice): its name, status and errors only.
ApiDocuments::Item dropped_item(const std::string& name, const std::vector<std::string>& errors) {
  ApiDocuments::Item item;
  item.name = name;
  item.provider = provider_of(name);
  item.status = "disabled";
  item.doc["status"] = "disabled";
  item.doc["error"] = strings(errors);
  finish(item);
  return item;
}

std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else if (s[i] == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

// The query's parameters (the first value of each, as Go's Values.Get).
std::map<std::string, std::string> parse_query(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    std::string key = percent_decode(pair.substr(0, eq), true);
    std::string value = eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1), true);
    out.try_emplace(std::move(key), std::move(value));
  }
  return out;
}

ApiReply json_reply(int status, std::string body) {
  ApiReply r;
  r.status = status;
  r.body = std::move(body);
  r.body += '\n';
  return r;
}

ApiReply error_reply(int status, const std::string& message) {
  json::object o;
  o["message"] = message;
  return json_reply(status, json::serialize(o));
}

bool contains_folded(std::string_view haystack, std::string_view needle) {
  return to_lower(haystack).find(to_lower(needle)) != std::string::npos;
}

}  // namespace

std::shared_ptr<const ApiDocuments> ApiDocuments::render(const config::StaticConfig& sc, const config::DynamicConfig& dyn,
                                                         const Snapshot& snap, const BuildReport& report,
                                                         const std::vector<Error>& problems) {
  auto docs = std::make_shared<ApiDocuments>();
  docs->dashboard_ = sc.api_dashboard;
  auto find = [](const std::map<std::string, ElementStatus>& m, const std::string& name) -> const ElementStatus* {
    auto it = m.find(name);
    return it == m.end() ? nullptr : &it->second;
  };

  // Routers: the configured ones, berth's own, and the dropped ones.
  std::map<std::string, std::vector<std::string>> service_users;     // service -> routers
  std::map<std::string, std::set<std::string>> middleware_users;      // middleware -> routers
  std::function<void(const std::string&, const std::string&, int)> use_middleware =
      [&](const std::string& mw, const std::string& router, int depth) {
        if (depth > 16 || !middleware_users[mw].insert(router).second) return;
        auto it = dyn.middlewares.find(mw);
        if (it != dyn.middlewares.end() && it->second.type == "chain")
          for (const auto& inner : it->second.chain) use_middleware(qualify(inner, mw), router, depth + 1);
      };
  auto add_router = [&](const config::RouterConfig& r, const ElementStatus* status) {
    Item item;
    item.name = r.name;
    item.provider = provider_of(r.name);
    item.status = status_of(status);
    item.rule = r.rule;
    item.service = qualify(r.service, r.name);
    item.priority = status && status->priority != 0 ? status->priority : r.priority;
    for (const auto& m : r.middlewares) item.middlewares.push_back(qualify(m, r.name));
    json::object& doc = item.doc;
    const std::vector<std::string>& eps = r.entry_points.empty() && status ? status->entry_points : r.entry_points;
    doc["entryPoints"] = strings(eps);
    if (!item.middlewares.empty()) doc["middlewares"] = strings(item.middlewares);
    doc["service"] = item.service;
    doc["rule"] = r.rule;
    doc["priority"] = item.priority;
    if (r.tls) doc["tls"] = tls_doc(*r.tls);
    add_status(doc, status);
    doc["using"] = strings(status ? status->entry_points : r.entry_points);
    finish(item);
    service_users[item.service].push_back(r.name);
    for (const auto& m : item.middlewares) use_middleware(m, r.name, 0);
    docs->routers_.push_back(std::move(item));
  };
  for (const auto& [name, r] : dyn.routers) add_router(r, find(report.routers, name));
  for (const auto& r : report.internal_routers) add_router(r, nullptr);
  for (const auto& [name, status] : report.routers)
    if (!dyn.routers.contains(name)) docs->routers_.push_back(dropped_item(name, status.errors));
  for (const auto& [name, where] : dyn.conflicting_routers)
    docs->routers_.push_back(dropped_item(name, conflict_errors(dyn.errors, "router", name)));

  // Services, with the index of their load balancer in the snapshot (server health is read live).
  std::map<std::string_view, uint32_t> compiled;
  for (uint32_t i = 0; i < snap.services.size(); ++i) compiled.emplace(snap.services[i].name, i);
  auto used_by = [&](Item& item) {
    auto it = service_users.find(item.name);
    json::array users;
    if (it != service_users.end()) {
      std::sort(it->second.begin(), it->second.end());
      for (const auto& u : it->second) users.emplace_back(u);
    }
    item.doc["usedBy"] = std::move(users);
  };
  for (const auto& [name, svc] : dyn.services) {
    Item item;
    item.name = name;
    item.provider = provider_of(name);
    const ElementStatus* status = find(report.services, name);
    item.status = status_of(status);
    service_config(svc, item.doc, item.type);
    add_status(item.doc, status);
    used_by(item);
    finish(item);
    auto c = compiled.find(name);
    if (c != compiled.end() && item.status != "disabled" && svc.kind == config::ServiceConfig::Kind::kLoadBalancer)
      item.live = c->second;
    docs->services_.push_back(std::move(item));
  }
  std::vector<std::string> internal_services;
  if (sc.api_enabled) internal_services.push_back("api@internal");
  if (sc.api_enabled && sc.api_dashboard) internal_services.push_back("dashboard@internal");
  if (sc.ping.enabled) internal_services.push_back("ping@internal");
  if (sc.prometheus.enabled) internal_services.push_back("prometheus@internal");
  if (service_users.contains("noop@internal")) internal_services.push_back("noop@internal");
  for (const auto& name : internal_services) {
    Item item;
    item.name = name;
    item.provider = "internal";
    item.status = "enabled";
    item.doc["status"] = "enabled";
    used_by(item);
    finish(item);
    docs->services_.push_back(std::move(item));
  }
  for (const auto& [name, status] : report.services)
    if (!dyn.services.contains(name)) docs->services_.push_back(dropped_item(name, status.errors));
  for (const auto& [name, where] : dyn.conflicting_services)
    docs->services_.push_back(dropped_item(name, conflict_errors(dyn.errors, "service", name)));

  // Middlewares.
  for (const auto& [name, m] : dyn.middlewares) {
    Item item;
    item.name = name;
    item.provider = provider_of(name);
    const ElementStatus* status = find(report.middlewares, name);
    item.status = status_of(status);
    item.type = to_lower(m.type);
    item.doc[m.type] = middleware_options(m);
    add_status(item.doc, status);
    json::array users;
    if (auto it = middleware_users.find(name); it != middleware_users.end())
      for (const auto& u : it->second) users.emplace_back(u);
    item.doc["usedBy"] = std::move(users);
    finish(item);
    docs->middlewares_.push_back(std::move(item));
  }
  for (const auto& [name, status] : report.middlewares)
    if (!dyn.middlewares.contains(name)) docs->middlewares_.push_back(dropped_item(name, status.errors));
  for (const auto& [name, where] : dyn.conflicting_middlewares)
    docs->middlewares_.push_back(dropped_item(name, conflict_errors(dyn.errors, "middleware", name)));

  // Entry points (static).
  for (const auto& ep : sc.entry_points) {
    Item item;
    item.name = ep.name;
    json::object& doc = item.doc;
    doc["address"] = ep.address;
    if (ep.as_default) doc["asDefault"] = true;
    json::object life, responding, transport;
    life["requestAcceptGraceTimeout"] = format_duration(ep.request_accept_grace_timeout);
    life["graceTimeOut"] = format_duration(ep.grace_timeout);
    responding["readTimeout"] = format_duration(ep.read_timeout);
    responding["writeTimeout"] = format_duration(ep.write_timeout);
    responding["idleTimeout"] = format_duration(ep.idle_timeout);
    transport["lifeCycle"] = std::move(life);
    transport["respondingTimeouts"] = std::move(responding);
    doc["transport"] = std::move(transport);
    json::object forwarded;
    if (ep.forwarded_insecure) forwarded["insecure"] = true;
    if (!ep.trusted_ips.empty()) forwarded["trustedIPs"] = strings(ep.trusted_ips);
    doc["forwardedHeaders"] = std::move(forwarded);
    json::object http;
    if (ep.redirect) {
      json::object to;
      to["to"] = ep.redirect->to;
      to["scheme"] = ep.redirect->scheme;
      to["permanent"] = ep.redirect->permanent;
      to["priority"] = ep.redirect->priority;
      json::object redirections;
      redirections["entryPoint"] = std::move(to);
      http["redirections"] = std::move(redirections);
    }
    if (!ep.middlewares.empty()) http["middlewares"] = strings(ep.middlewares);
    if (ep.tls) http["tls"] = tls_doc(*ep.tls);
    doc["http"] = std::move(http);
    json::object http2;
    http2["maxConcurrentStreams"] = ep.max_concurrent_streams;
    doc["http2"] = std::move(http2);
    doc["name"] = ep.name;
    docs->entry_points_.push_back(std::move(item));
  }

  auto by_name = [](const Item& a, const Item& b) { return a.name < b.name; };
  for (auto* list : {&docs->entry_points_, &docs->routers_, &docs->services_, &docs->middlewares_})
    std::sort(list->begin(), list->end(), by_name);

  // The overview, Traefik's and berth's: this generation's problems, each with its place.
  json::object http;
  http["routers"] = section(docs->routers_);
  http["services"] = section(docs->services_);
  http["middlewares"] = section(docs->middlewares_);
  json::object tcp, udp;
  tcp["routers"] = empty_section();
  tcp["services"] = empty_section();
  tcp["middlewares"] = empty_section();
  udp["routers"] = empty_section();
  udp["services"] = empty_section();
  json::object features;
  features["tracing"] = "";
  features["metrics"] = sc.prometheus.enabled ? "Prometheus" : "";
  features["accessLog"] = sc.access_log.enabled;
  features["hub"] = false;
  json::array providers;
  if (sc.file.enabled) providers.emplace_back("File");
  if (sc.docker.enabled) providers.emplace_back("Docker");
  json::array problem_list;
  for (const auto* list : {&dyn.errors, &problems}) {
    for (const auto& e : *list) {
      json::object p;
      p["where"] = e.where;
      p["message"] = e.message;
      problem_list.emplace_back(std::move(p));
    }
  }
  json::object overview;
  overview["http"] = std::move(http);
  overview["tcp"] = std::move(tcp);
  overview["udp"] = std::move(udp);
  overview["features"] = std::move(features);
  overview["providers"] = std::move(providers);
  overview["generation"] = snap.generation;
  overview["problems"] = std::move(problem_list);
  docs->overview_json_ = json::serialize(overview);

  json::object version;
  version["Version"] = BERTH_VERSION;
  version["Codename"] = "berth";
  version["startDate"] = kStartDate;
  docs->version_json_ = json::serialize(version);
  return docs;
}

const std::vector<ApiDocuments::Item>& ApiDocuments::items(Kind kind) const {
  switch (kind) {
    case Kind::kEntryPoints: return entry_points_;
    case Kind::kRouters: return routers_;
    case Kind::kServices: return services_;
    case Kind::kMiddlewares: break;
  }
  return middlewares_;
}

json::object ApiDocuments::live_doc(const Snapshot& snap, Kind kind, const Item& item,
                                    const std::unordered_map<std::string, RequestTotals>* totals) const {
  json::object doc = item.doc;
  if (kind == Kind::kServices && item.live < snap.services.size()) {
    const int64_t now = upstream::steady_now_ms();
    json::object servers;
    for (const auto& e : snap.services[item.live].endpoints) servers[e.url] = e.health->is_up(now) ? "UP" : "DOWN";
    doc["serverStatus"] = std::move(servers);
  } else if (kind == Kind::kRouters && totals) {
    auto it = totals->find(item.name);
    doc["requests"] = it == totals->end() ? 0 : it->second.requests;
    doc["serverErrors"] = it == totals->end() ? 0 : it->second.server_errors;
  }
  return doc;
}

ApiReply ApiDocuments::answer(const Snapshot& snap, std::string_view path, std::string_view query,
                              const RouterTotalsSource& totals) const {
  if (path == "/api/rawdata") return rawdata(snap, totals);
  if (path == "/api/overview") return json_reply(200, overview_json_);
  if (path == "/api/version") return json_reply(200, version_json_);
  static constexpr std::pair<std::string_view, Kind> kLists[] = {{"/api/entrypoints", Kind::kEntryPoints},
                                                                 {"/api/http/routers", Kind::kRouters},
                                                                 {"/api/http/services", Kind::kServices},
                                                                 {"/api/http/middlewares", Kind::kMiddlewares}};
  for (const auto& [prefix, kind] : kLists) {
    if (!path.starts_with(prefix)) continue;
    std::string_view rest = path.substr(prefix.size());
    if (rest.empty()) return list(snap, kind, query, totals);
    if (rest.size() > 1 && rest[0] == '/') return one(snap, kind, percent_decode(rest.substr(1), false), totals);
  }
  // berth has no TCP or UDP routers: Traefik's lists are there, and empty.
  for (std::string_view empty : {"/api/tcp/routers", "/api/tcp/services", "/api/tcp/middlewares", "/api/udp/routers",
                                 "/api/udp/services"}) {
    if (path == empty) {
      ApiReply r = json_reply(200, "[]");
      r.next_page = "1";
      return r;
    }
  }
  ApiReply r;
  r.status = 404;
  r.json = false;
  r.body = "404 page not found\n";
  return r;
}

ApiReply ApiDocuments::list(const Snapshot& snap, Kind kind, std::string_view query,
                            const RouterTotalsSource& totals) const {
  const auto params = parse_query(query);
  auto param = [&](const char* key) -> std::string {
    auto it = params.find(key);
    return it == params.end() ? std::string() : it->second;
  };
  const std::string search = param("search"), status = param("status"), service = param("serviceName"),
                    middleware = param("middlewareName");
  std::vector<const Item*> kept;
  for (const Item& item : items(kind)) {
    if (!status.empty() && !iequals(item.status, status)) continue;
    if (!search.empty() && !contains_folded(item.name, search) &&
        !(kind == Kind::kRouters && contains_folded(item.rule, search)))
      continue;
    if (kind == Kind::kRouters && !service.empty()) {
      const bool qualified = service.find('@') != std::string::npos;
      if (qualified ? item.service != service : item.service.substr(0, item.service.find('@')) != service) continue;
    }
    if (kind == Kind::kRouters && !middleware.empty() &&
        std::find(item.middlewares.begin(), item.middlewares.end(), middleware) == item.middlewares.end())
      continue;
    kept.push_back(&item);
  }
  // sortBy (name, provider, status, type, rule, service, priority) and direction (asc, desc).
  const std::string sort_by = param("sortBy");
  const bool desc = iequals(param("direction"), "desc");
  auto key = [&](const Item* i) -> std::string_view {
    if (sort_by == "provider") return i->provider;
    if (sort_by == "status") return i->status;
    if (sort_by == "type") return i->type;
    if (sort_by == "rule") return i->rule;
    if (sort_by == "service") return i->service;
    return i->name;
  };
  std::stable_sort(kept.begin(), kept.end(), [&](const Item* a, const Item* b) {
    if (sort_by == "priority" && a->priority != b->priority) return desc ? a->priority > b->priority : a->priority < b->priority;
    const std::string_view ka = key(a), kb = key(b);
    if (ka != kb) return desc ? ka > kb : ka < kb;
    return a->name < b->name;
  });

  // Traefik's pagination: per_page (default 100) and page (from 1); X-Next-Page is 1 on the last.
  auto int_param = [&](const char* name, int64_t fallback) -> std::optional<int64_t> {
    const std::string raw = param(name);
    if (raw.empty()) return fallback;
    auto v = parse_uint(raw);
    if (!v || *v == 0 || *v > 1'000'000) return std::nullopt;
    return static_cast<int64_t>(*v);
  };
  auto per_page = int_param("per_page", 100);
  auto page = int_param("page", 1);
  if (!per_page) return error_reply(400, "invalid request: per_page: " + param("per_page"));
  if (!page) return error_reply(400, "invalid request: page: " + param("page"));
  const int64_t total = static_cast<int64_t>(kept.size());
  const int64_t start = (*page - 1) * *per_page;
  if (start != 0 && start >= total)
    return error_reply(400, "invalid request: page: " + std::to_string(*page) + ", per_page: " + std::to_string(*per_page));
  const int64_t end = std::min(total, start + *per_page);

  std::unordered_map<std::string, RequestTotals> counts;
  if (kind == Kind::kRouters && totals) counts = totals();
  json::array out;
  for (int64_t i = start; i < end; ++i)
    out.emplace_back(live_doc(snap, kind, *kept[i], kind == Kind::kRouters ? &counts : nullptr));
  ApiReply r = json_reply(200, json::serialize(out));
  r.next_page = std::to_string(*page * *per_page < total ? *page + 1 : 1);
  return r;
}

ApiReply ApiDocuments::one(const Snapshot& snap, Kind kind, std::string_view name,
                           const RouterTotalsSource& totals) const {
  const auto& list = items(kind);
  auto it = std::lower_bound(list.begin(), list.end(), name, [](const Item& i, std::string_view n) { return i.name < n; });
  if (it == list.end() || it->name != name) {
    static constexpr std::string_view kWhat[] = {"entry point", "router", "service", "middleware"};
    return error_reply(404, std::string(kWhat[static_cast<int>(kind)]) + " not found: " + std::string(name));
  }
  std::unordered_map<std::string, RequestTotals> counts;
  if (kind == Kind::kRouters && totals) counts = totals();
  return json_reply(200, json::serialize(live_doc(snap, kind, *it, kind == Kind::kRouters ? &counts : nullptr)));
}

ApiReply ApiDocuments::rawdata(const Snapshot& snap, const RouterTotalsSource& totals) const {
  std::unordered_map<std::string, RequestTotals> counts;
  if (totals) counts = totals();
  json::object out;
  for (auto [kind, key] : {std::pair{Kind::kRouters, "routers"}, std::pair{Kind::kMiddlewares, "middlewares"},
                           std::pair{Kind::kServices, "services"}}) {
    json::object elements;
    for (const Item& item : items(kind)) {
      json::object doc = live_doc(snap, kind, item, &counts);
      doc.erase("name");
      doc.erase("provider");
      doc.erase("type");
      elements[item.name] = std::move(doc);
    }
    out[key] = std::move(elements);
  }
  return json_reply(200, json::serialize(out));
}

}  // namespace berth::proxy::observe
