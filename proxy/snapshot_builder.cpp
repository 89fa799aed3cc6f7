// Snapshot compilation; see snapshot_builder.h.
#include "proxy/snapshot_builder.h"

#include <openssl/evp.h>

#include <algorithm>
#include <charconv>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "base/text.h"
#include "config/rule.h"
#include "proxy/middleware/middleware.h"
#include "proxy/observe/api.h"
#include "proxy/observe/metrics.h"
#include "proxy/upstream/address.h"

namespace berth::proxy {
namespace {

std::string html_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// `berth stop --message`: the page a stopped service answers with (503).
std::string render_maintenance_page(const std::string& message) {
  std::string text = message.empty() ? "This service is down for maintenance. Please try again shortly." : message;
  return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Service unavailable</title>"
         "<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:15vh auto;padding:0 1rem;color:#222}"
         "h1{font-size:1.5rem}</style></head>\n<body><h1>Service unavailable</h1>\n<p>" +
         html_escape(text) + "</p>\n</body></html>\n";
}

TransportSettings transport_settings(const config::ServersTransportConfig& c) {
  TransportSettings t;
  t.dial_timeout = c.dial_timeout;
  t.response_header_timeout = c.response_header_timeout;
  t.idle_conn_timeout = c.idle_conn_timeout;
  t.read_idle_timeout = std::max(c.read_idle_timeout, Duration{0});
  t.ping_timeout = c.ping_timeout.count() > 0 ? c.ping_timeout : Duration{15'000};  // Go's: 0 is its default
  // Go's transport, which Traefik configures: 0 means its default of 2, a negative value no pooling.
  t.max_idle_conns_per_host = c.max_idle_conns_per_host == 0 ? 2 : static_cast<size_t>(std::max(0, c.max_idle_conns_per_host));
  return t;
}

Result<Endpoint> compile_endpoint(const config::ServerConfig& server) {
  auto resolved = upstream::resolve_url(server.url, server.where, "server URL");
  if (!resolved) return resolved.error();
  Endpoint ep;
  ep.url = server.url;
  ep.weight = server.weight;
  ep.authority = std::move(resolved->authority);
  ep.address = resolved->address;
  ep.pool_key = ep.address.address().to_string() + ":" + std::to_string(ep.address.port());
  ep.tls = resolved->tls;
  ep.h2c = resolved->h2c;
  if (ep.h2c) ep.pool_key = "h2c:" + ep.pool_key;
  ep.tls_host = std::move(resolved->host);
  return ep;
}

std::string qualify(const std::string& ref, const std::string& owner) {
  if (ref.find('@') != std::string::npos) return ref;
  auto at = owner.rfind('@');
  return at == std::string::npos ? ref : ref + owner.substr(at);
}

// The route target of berth's own services (Traefik's `@internal` ones), or nullopt for other names
// and for internal services the static config leaves off.
std::optional<uint32_t> internal_service(const config::StaticConfig& sc, std::string_view name) {
  if (name == "api@internal" && sc.api_enabled) return router::kApiService;
  if (name == "dashboard@internal" && sc.api_enabled && sc.api_dashboard) return router::kDashboardService;
  if (name == "ping@internal" && sc.ping.enabled) return router::kPingService;
  if (name == "prometheus@internal" && sc.prometheus.enabled) return router::kPrometheusService;
  if (name == "noop@internal") return router::kNoService;
  return std::nullopt;
}

// Go's net/http cookie rendering order: Path, Domain, Max-Age, HttpOnly, Secure, SameSite.
std::string render_set_cookie(const config::StickyCookieConfig& c, const std::string& name, const std::string& value) {
  std::string out = name + "=" + value;
  if (!c.path.empty()) out += "; Path=" + c.path;
  if (!c.domain.empty()) out += "; Domain=" + c.domain;
  if (c.max_age > 0) out += "; Max-Age=" + std::to_string(c.max_age);
  else if (c.max_age < 0) out += "; Max-Age=0";
  if (c.http_only) out += "; HttpOnly";
  if (c.secure) out += "; Secure";
  if (c.same_site == "none") out += "; SameSite=None";
  else if (c.same_site == "lax") out += "; SameSite=Lax";
  else if (c.same_site == "strict") out += "; SameSite=Strict";
  return out;
}

// Traefik's default sticky cookie name: "_" and the first hex digits of SHA-1("_TRAEFIK_BACKEND_" + service).
std::string default_cookie_name(const std::string& service) {
  std::string data = "_TRAEFIK_BACKEND_" + service;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha1(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "_";
  for (unsigned i = 0; out.size() < 6 && i < len; ++i) {
    out += kHex[digest[i] >> 4];
    if (out.size() < 6) out += kHex[digest[i] & 15];
  }
  return out;
}

// The sticky cookie value naming one server or child service: FNV-1a 64 of its URL or name, in hex.
std::string sticky_value(std::string_view key) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
  char buf[17];
  auto r = std::to_chars(buf, buf + sizeof buf, h, 16);
  return std::string(buf, r.ptr);
}

void compile_sticky(const config::StickyCookieConfig& c, const std::string& service,
                    const std::vector<std::string>& keys, StickyCookie& out) {
  if (!c.enabled) return;
  out.name = c.name.empty() ? default_cookie_name(service) : c.name;
  for (const auto& key : keys) {
    out.values.push_back(sticky_value(key));
    out.set_cookies.push_back(render_set_cookie(c, out.name, out.values.back()));
  }
}

// The builder's problems: each goes to the list the log shows and to the element it concerns (the
// API shows it there), which it disables or only warns about.
struct Problems {
  std::vector<Error>& all;
  BuildReport& report;
  void add(std::map<std::string, ElementStatus>& kind, const std::string& name, Error e, bool disables) {
    auto& status = kind[name];
    status.disabled |= disables;
    status.errors.push_back(e.to_string());
    all.push_back(std::move(e));
  }
  void service(const std::string& name, Error e, bool disables) { add(report.services, name, std::move(e), disables); }
  void router(const std::string& name, Error e, bool disables) { add(report.routers, name, std::move(e), disables); }
};

// Compiles every service into snap.services (indexes in `index`); returns which ones are usable.
// A service is unusable when it names a missing, unusable or cyclic service; its routers are then
// disabled with that reason.
std::vector<char> compile_services(const config::DynamicConfig& dyn, const config::ServersTransportConfig& static_transport,
                                   upstream::HealthRegistry& health, Snapshot& snap,
                                   std::map<std::string, uint32_t>& index, Problems& problems) {
  using Kind = config::ServiceConfig::Kind;
  std::vector<const config::ServiceConfig*> configs;
  std::set<uint32_t> bad;  // load balancers that cannot be served (their error is reported)
  // TLS client contexts, built once per transport ("" is the static one) when an https:// server needs one.
  std::map<std::string, Result<std::shared_ptr<const tls::ClientContext>>> tls_contexts;
  for (const auto& [name, svc] : dyn.services) {
    index[name] = static_cast<uint32_t>(snap.services.size());
    configs.push_back(&svc);
    Service out;
    out.name = name;
    out.metric_id = observe::metric_names().id(name);
    out.kind = static_cast<Service::Kind>(svc.kind);
    out.gate = svc.gate;
    if (svc.maintenance) out.maintenance_page = render_maintenance_page(*svc.maintenance);
    if (svc.kind == Kind::kLoadBalancer) {
      out.pass_host_header = svc.pass_host_header;
      out.transport = snap.transport;
      const config::ServersTransportConfig* transport_config = &static_transport;
      std::string transport_name, transport_where = "serversTransport";
      if (!svc.servers_transport.empty()) {
        auto t = dyn.servers_transports.find(qualify(std::string(trim(svc.servers_transport)), name));
        if (t == dyn.servers_transports.end()) {
          bad.insert(static_cast<uint32_t>(snap.services.size()));
          problems.service(name, Error{svc.where, "service " + name + " disabled: serversTransport \"" +
                                                      svc.servers_transport + "\" does not exist"}, true);
        } else {
          out.transport = transport_settings(t->second.settings);
          transport_config = &t->second.settings;
          transport_name = t->first;
          transport_where = t->second.where;
        }
      }
      out.p2c = svc.strategy == "p2c";
      out.passive = svc.passive_health_check.enabled;
      out.failure_window_ms = svc.passive_health_check.failure_window.count();
      out.max_failed_attempts = svc.passive_health_check.max_failed_attempts;
      if (svc.health_check.enabled) {
        if (!svc.health_check.scheme.empty() && !iequals(svc.health_check.scheme, "http") &&
            !iequals(svc.health_check.scheme, "https"))
          problems.service(name, Error{svc.where, "service " + name + ": health check scheme \"" + svc.health_check.scheme +
                                                      "\" is not supported (use http or https); the servers are not checked"},
                           false);
        else
          out.health_check = svc.health_check;
      }
      std::vector<std::string> urls;
      for (const auto& server : svc.servers) {
        auto ep = compile_endpoint(server);
        if (!ep) {
          problems.service(name, Error{ep.error().where, "service " + name + ": " + ep.error().message}, false);
          continue;
        }
        if (ep->tls || (out.health_check && iequals(out.health_check->scheme, "https"))) {
          auto built = tls_contexts.find(transport_name);
          if (built == tls_contexts.end())
            built = tls_contexts.emplace(transport_name, tls::ClientContext::build(*transport_config, transport_where)).first;
          if (!built->second) {
            problems.service(name, Error{server.where, "service " + name + ": server " + ep->url + " left out: " +
                                                           built->second.error().to_string()}, false);
            continue;
          }
          out.transport.tls = *built->second;
        }
        if (ep->tls) {
          // One pool per verified name and transport settings: a connection verified for one name
          // must not serve another, nor one made before a reload changed the transport's rootCAs,
          // client certificates or verification.
          ep->pool_key = "tls:" + ep->pool_key + ":" + std::string(out.transport.tls->verified_name(ep->tls_host)) +
                         ":" + transport_name + ":" + out.transport.tls->fingerprint();
        }
        // An HTTP/2 connection keeps the PING settings of the transport that dialed it: services
        // whose transports ping differently (or a reload that changes them) get pools of their own.
        if ((ep->h2c || ep->tls) && out.transport.read_idle_timeout.count() > 0)
          ep->pool_key += ":ping=" + std::to_string(out.transport.read_idle_timeout.count()) + "/" +
                          std::to_string(out.transport.ping_timeout.count());
        ep->health = health.get(name, ep->url);
        urls.push_back(ep->url);
        out.endpoints.push_back(std::move(*ep));
      }
      compile_sticky(svc.sticky, name, urls, out.sticky);
    } else {
      out.mirror_body = svc.mirror_body;
      out.max_body_size = svc.max_body_size;
    }
    snap.services.push_back(std::move(out));
  }

  // Children, depth first: 0 unvisited, 1 on the current path, 2 usable, 3 unusable.
  std::vector<char> state(configs.size(), 0);
  for (uint32_t i : bad) state[i] = 3;
  std::function<bool(uint32_t)> resolve = [&](uint32_t i) -> bool {
    if (state[i] == 1) return false;
    if (state[i] >= 2) return state[i] == 2;
    state[i] = 1;
    const config::ServiceConfig& c = *configs[i];
    Service& out = snap.services[i];
    std::vector<config::ServiceRef> refs;
    if (c.kind == Kind::kFailover) refs = {{c.main, 1, 0, c.where}, {c.fallback, 1, 0, c.where}};
    else if (c.kind == Kind::kMirroring) refs.push_back({c.main, 1, 100, c.where});
    refs.insert(refs.end(), c.children.begin(), c.children.end());
    bool ok = true;
    std::vector<std::string> names;
    for (const auto& ref : refs) {
      std::string child = qualify(std::string(trim(ref.name)), c.name);
      auto it = index.find(child);
      std::string problem;
      if (it == index.end()) problem = "service \"" + child + "\" does not exist";
      else if (state[it->second] == 1) problem = "service \"" + child + "\" refers back to " + c.name + " (cycle)";
      else if (!resolve(it->second)) problem = "service \"" + child + "\" is invalid";
      if (!problem.empty()) {
        problems.service(c.name, Error{ref.where.empty() ? c.where : ref.where, "service " + c.name + " disabled: " + problem},
                         true);
        ok = false;
        continue;
      }
      out.children.push_back(it->second);
      out.weights.push_back(c.kind == Kind::kMirroring ? ref.percent : ref.weight);
      names.push_back(child);
    }
    if (ok && c.kind == Kind::kWeighted) compile_sticky(c.sticky, c.name, names, out.sticky);
    state[i] = ok ? 2 : 3;
    return ok;
  };
  std::vector<char> usable(configs.size());
  for (uint32_t i = 0; i < configs.size(); ++i) usable[i] = resolve(i);
  return usable;
}

std::string render_dashboard(const config::StaticConfig& sc, const config::DynamicConfig& dyn, const Snapshot& snap,
                             size_t router_count, size_t error_count) {
  std::string h;
  h += "<!doctype html><html><head><meta charset=\"utf-8\"><title>berth</title><style>"
       "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1d2733}"
       "h1{margin-bottom:.2rem}table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}"
       "td,th{border-bottom:1px solid #dde3ea;padding:.35rem .5rem;text-align:left;font-size:.95rem}"
       "code,pre{background:#f3f6f9;border-radius:4px;padding:.1rem .3rem}pre{padding:.8rem;overflow:auto}"
       ".ok{color:#137333;font-weight:600}</style></head><body>";
  h += "<h1>berth is running</h1><p class=\"ok\">version " BERTH_VERSION " &middot; config generation " +
       std::to_string(snap.generation) + " &middot; " + std::to_string(router_count) + " routers active";
  if (error_count) h += " &middot; " + std::to_string(error_count) + " config problems (see the log)";
  h += "</p><h2>Entry points</h2><table><tr><th>name</th><th>address</th></tr>";
  for (const auto& ep : sc.entry_points)
    h += "<tr><td>" + html_escape(ep.name) + "</td><td><code>" + html_escape(ep.address) + "</code></td></tr>";
  h += "</table><h2>Routers</h2>";
  if (dyn.routers.empty()) {
    h += "<p>No routers yet.</p>";
  } else {
    h += "<table><tr><th>router</th><th>rule</th><th>service</th><th>entry points</th></tr>";
    for (const auto& [name, r] : dyn.routers) {
      std::string eps;
      for (const auto& e : r.entry_points) eps += (eps.empty() ? "" : ", ") + e;
      h += "<tr><td>" + html_escape(name) + "</td><td><code>" + html_escape(r.rule) + "</code></td><td>" +
           html_escape(qualify(r.service, name)) + "</td><td>" + html_escape(eps.empty() ? "(default)" : eps) + "</td></tr>";
    }
    h += "</table>";
  }
  h += "<h2>Services</h2>";
  if (snap.services.empty()) {
    h += "<p>No services yet.</p>";
  } else {
    h += "<table><tr><th>service</th><th>servers, or the services it splits between</th></tr>";
    for (const auto& s : snap.services) {
      std::string servers;
      auto add = [&](const std::string& line) { servers += (servers.empty() ? "" : "<br>") + line; };
      for (const auto& e : s.endpoints)
        add(html_escape(e.url) + (e.weight != 1 ? " (weight " + std::to_string(e.weight) + ")" : ""));
      static constexpr const char* kRole[] = {"", "weighted", "failover", "mirroring"};
      for (size_t i = 0; i < s.children.size(); ++i) {
        std::string role = s.kind == Service::Kind::kWeighted    ? "weight " + std::to_string(s.weights[i])
                           : s.kind == Service::Kind::kFailover  ? (i == 0 ? "main" : "fallback")
                           : i == 0                              ? "main"
                                                                 : std::to_string(s.weights[i]) + "% mirrored";
        add(html_escape(snap.services[s.children[i]].name) + " (" + kRole[static_cast<int>(s.kind)] + ", " + role + ")");
      }
      h += "<tr><td>" + html_escape(s.name) + "</td><td>" + servers + "</td></tr>";
    }
    h += "</table>";
  }
  h += "<h2>Add a route</h2><p>Put this in the file named by <code>providers.file.filename</code>"
       " (berth applies it as soon as you save):</p><pre>http:\n  routers:\n    my-app:\n"
       "      rule: \"Host(`app.example.com`)\"\n      service: my-app\n  services:\n    my-app:\n"
       "      loadBalancer:\n        servers:\n          - url: \"http://127.0.0.1:3000\"</pre>"
       "<p>Health check: <code>/ping</code>. For the live dashboard and Traefik's API on this port, add"
       " <code>api: {insecure: true}</code> to the static configuration.</p></body></html>\n";
  return h;
}

}  // namespace

std::string_view EntryPointRoutes::tls_options_for(std::string_view host, bool fqdn) const {
  // Rare (a Host header other than the SNI), so the lower-cased copy may allocate.
  std::string key = to_lower(host);
  auto it = tls_options_by_host.find(key);
  if (it == tls_options_by_host.end() && fqdn && !key.empty()) {
    if (key.back() == '.') key.pop_back();
    else key.push_back('.');
    it = tls_options_by_host.find(key);
  }
  return it != tls_options_by_host.end() ? std::string_view(it->second) : config::kDefaultTlsName;
}

BuildResult build_snapshot(const config::StaticConfig& sc, const config::DynamicConfig& dyn, uint64_t generation,
                           upstream::HealthRegistry& health) {
  BuildResult result;
  auto snap = std::make_shared<Snapshot>();
  snap->generation = generation;
  snap->transport = transport_settings(sc.servers_transport);

  // Services first: routers refer to them by index.
  std::map<std::string, uint32_t> service_index;
  Problems problems{result.errors, result.report};
  std::vector<char> service_ok = compile_services(dyn, sc.servers_transport, health, *snap, service_index, problems);
  snap->longest_idle_conn_timeout = snap->transport.idle_conn_timeout;
  for (const auto& s : snap->services)
    snap->longest_idle_conn_timeout = std::max(snap->longest_idle_conn_timeout, s.transport.idle_conn_timeout);
  // Every entry point answers TLS (Traefik's default certificate and a 404 when nothing routes), so
  // there is always a store, if only with the generated certificate.
  auto store = tls::CertificateStore::build(dyn.tls, result.errors);
  if (store) snap->certificates = std::move(*store);
  else result.errors.push_back(store.error());  // then no TLS at all: routers with tls are disabled
  for (const auto& c : dyn.acme.tls_alpn01) {
    auto ctx = tls::CertificateStore::acme_challenge_context(c.cert_pem, c.key_pem);
    if (ctx) snap->acme_tls_alpn[c.domain] = std::move(*ctx);
    else result.errors.push_back(Error{"acme", "TLS-ALPN-01 challenge for " + c.domain + ": " + ctx.error().message});
  }

  // Middlewares: compile each once; routers point into snapshot->middlewares through flattened chains.
  std::map<std::string, const middleware::Middleware*> compiled;
  for (const auto& [name, m] : dyn.middlewares) {
    if (m.type == "chain") continue;
    middleware::CompileOptions options{sc.worker_count(), [&](const std::string& ref) -> std::optional<uint32_t> {
                                         auto it = service_index.find(qualify(std::string(trim(ref)), name));
                                         if (it == service_index.end() || !service_ok[it->second]) return std::nullopt;
                                         return it->second;
                                       }};
    auto mw = middleware::compile(m, options);
    if (!mw) {
      problems.add(result.report.middlewares, name, mw.error(), true);
      continue;
    }
    compiled[name] = mw->get();
    snap->middlewares.push_back(std::move(*mw));
  }
  // Expands `ref` (a middleware or a chain) into `out`; an Error names what is missing or cyclic.
  std::function<std::optional<Error>(const std::string&, const std::string&, std::vector<const middleware::Middleware*>&, int)>
      expand = [&](const std::string& ref, const std::string& owner, std::vector<const middleware::Middleware*>& out,
                   int depth) -> std::optional<Error> {
    std::string qualified = qualify(ref, owner);
    if (depth > 16) return Error{"", "middleware chain through \"" + qualified + "\" is cyclic or too deep"};
    auto cfg = dyn.middlewares.find(qualified);
    if (cfg == dyn.middlewares.end()) return Error{"", "middleware \"" + qualified + "\" does not exist"};
    if (cfg->second.type == "chain") {
      for (const auto& inner : cfg->second.chain)
        if (auto e = expand(inner, qualified, out, depth + 1)) return e;
      return std::nullopt;
    }
    auto it = compiled.find(qualified);
    if (it == compiled.end()) return Error{"", "middleware \"" + qualified + "\" is invalid"};
    out.push_back(it->second);
    return std::nullopt;
  };

  // Default entry points: every one but the internal `traefik`, or only the asDefault ones if any.
  bool any_as_default = false;
  for (const auto& ep : sc.entry_points) any_as_default |= ep.as_default;
  std::vector<std::string> defaults;
  for (const auto& ep : sc.entry_points)
    if ((any_as_default ? ep.as_default : true) && !iequals(ep.name, "traefik")) defaults.push_back(ep.name);

  for (const auto& ep : sc.entry_points) {
    EntryPointRoutes routes;
    routes.name = ep.name;
    routes.serves_ping = sc.ping.enabled && !sc.ping.manual_routing && iequals(sc.ping.entry_point, ep.name);
    routes.serves_dashboard = iequals(ep.name, "traefik");
    routes.serves_metrics = sc.prometheus.enabled && !sc.prometheus.manual_routing &&
                            iequals(sc.prometheus.entry_point, ep.name);
    for (const auto& c : dyn.acme.http01)
      if (iequals(c.entry_point, ep.name)) routes.acme_http01[c.token] = c.key_authorization;
    snap->entry_points.push_back(std::move(routes));
  }
  auto entry_point_index = [&](const std::string& name) -> int {
    for (size_t i = 0; i < sc.entry_points.size(); ++i)
      if (iequals(sc.entry_points[i].name, name)) return static_cast<int>(i);
    return -1;
  };

  size_t active_routers = 0;
  std::set<std::pair<int, std::string>> tls_conflicts;  // (entry point, host) with disagreeing routers
  for (const auto& [name, r] : dyn.routers) {
    ElementStatus& status = result.report.routers[name];
    status.priority = r.priority != 0 ? r.priority : static_cast<int64_t>(r.rule.size());
    auto fail = [&](const std::string& message) {
      problems.router(name, Error{r.where, "router " + name + " disabled: " + message}, true);
    };
    auto warn = [&](const std::string& message) { problems.router(name, Error{r.where, message}, false); };
    // A route that cannot apply all its middlewares is disabled: serving it without them could
    // skip authentication or filtering.
    std::vector<const middleware::Middleware*> chain;
    std::optional<Error> chain_error;
    for (const auto& ref : r.middlewares)
      if ((chain_error = expand(ref, name, chain, 0))) break;
    if (chain_error) {
      fail(chain_error->message);
      continue;
    }
    auto ast = config::parse_rule(r.rule);
    if (!ast) {
      fail("rule \"" + r.rule + "\": " + ast.error().to_string());
      continue;
    }
    auto matcher = router::Matcher::compile(**ast);
    if (!matcher) {
      fail("rule \"" + r.rule + "\": " + matcher.error().to_string());
      continue;
    }
    std::string service = qualify(r.service, name);
    uint32_t service_id = 0;
    if (auto internal = internal_service(sc, service)) {
      service_id = *internal;
    } else {
      auto svc = service_index.find(service);
      if (svc == service_index.end()) {
        fail("service \"" + service + "\" does not exist");
        continue;
      }
      if (!service_ok[svc->second]) {
        fail("service \"" + service + "\" is invalid");
        continue;
      }
      service_id = svc->second;
    }
    std::vector<int> eps;
    for (const auto& e : r.entry_points.empty() ? defaults : r.entry_points) {
      int i = entry_point_index(e);
      if (i < 0) warn("router " + name + ": entry point \"" + e + "\" does not exist");
      else eps.push_back(i);
    }
    std::sort(eps.begin(), eps.end());
    eps.erase(std::unique(eps.begin(), eps.end()), eps.end());
    if (eps.empty()) {
      fail("no valid entry point");
      continue;
    }
    std::shared_ptr<const router::Matcher> shared_matcher = std::move(*matcher);
    auto make_route = [&](std::vector<const middleware::Middleware*> middlewares) {
      auto route = std::make_shared<router::Route>();
      route->name = name;
      route->metric_id = observe::metric_names().id(name);
      route->priority = status.priority;
      route->matcher = shared_matcher;
      route->service = service_id;
      route->middlewares = std::move(middlewares);
      return std::shared_ptr<const router::Route>(std::move(route));
    };
    std::shared_ptr<const router::Route> plain;  // for entry points without middlewares of their own
    std::vector<std::string> domains;            // Host() domains: TLS options by SNI
    bool added = false;
    for (int i : eps) {
      // A router's own tls section, else its entry point's http.tls, makes it an HTTPS router.
      const auto& ep_config = sc.entry_points[i];
      const config::RouterTlsConfig* tls = r.tls ? &*r.tls : ep_config.tls ? &*ep_config.tls : nullptr;
      if (tls) {
        std::string options = tls->options.empty() || tls->options == config::kDefaultTlsName
                                  ? std::string(config::kDefaultTlsName)
                                  : qualify(tls->options, name);
        if (!snap->certificates || snap->certificates->context(options) == nullptr) {
          warn("router " + name + " disabled on entry point " + ep_config.name + ": TLS options \"" + options +
               "\" do not exist or are invalid");
          continue;
        }
        if (domains.empty()) domains = config::rule_domains(**ast);
        for (const auto& domain : domains) {
          auto [it, inserted] = snap->entry_points[i].tls_options_by_host.emplace(domain, options);
          if (inserted || it->second == options || tls_conflicts.contains({i, domain})) continue;
          // Traefik: routers on one host that want different options get the default ones.
          warn("routers for host " + domain + " on entry point " + ep_config.name + " ask for different TLS options (\"" +
               it->second + "\", \"" + options + "\"); the default options apply");
          it->second = std::string(config::kDefaultTlsName);
          tls_conflicts.insert({i, domain});
        }
      }
      router::RouteTable& table = tls ? snap->entry_points[i].tls_routes : snap->entry_points[i].routes;
      const auto& ep_middlewares = ep_config.middlewares;
      if (ep_middlewares.empty()) {
        if (!plain) plain = make_route(chain);
        table.add(plain);
        added = true;
        status.entry_points.push_back(ep_config.name);
        continue;
      }
      // entryPoints.<ep>.http.middlewares run before the router's own, named in the router's provider.
      std::vector<const middleware::Middleware*> full;
      std::optional<Error> ep_error;
      for (const auto& ref : ep_middlewares)
        if ((ep_error = expand(ref, name, full, 0))) break;
      if (ep_error) {
        warn("router " + name + " disabled on entry point " + sc.entry_points[i].name + ": " + ep_error->message);
        continue;
      }
      full.insert(full.end(), chain.begin(), chain.end());
      table.add(make_route(std::move(full)));
      added = true;
      status.entry_points.push_back(ep_config.name);
    }
    if (added) ++active_routers;
    else status.disabled = true;  // every entry point refused it (each with its error)
  }

  // Traefik's internal routers: api.insecure serves the API and the dashboard on `traefik`; ping and
  // /metrics are answered before routing (serve_exchange), and listed here for the API.
  auto internal_router = [&](std::string name, std::string rule, std::string service, const std::string& ep,
                             int64_t priority) -> config::RouterConfig& {
    config::RouterConfig& r = result.report.internal_routers.emplace_back();
    r.name = std::move(name);
    r.rule = std::move(rule);
    r.service = std::move(service);
    r.entry_points = {ep};
    r.priority = priority;
    return r;
  };
  constexpr int64_t kMaxPriority = std::numeric_limits<int64_t>::max();
  if (sc.ping.enabled && !sc.ping.manual_routing)
    internal_router("ping@internal", "PathPrefix(`/ping`)", "ping@internal", sc.ping.entry_point, kMaxPriority);
  if (sc.prometheus.enabled && !sc.prometheus.manual_routing)
    internal_router("prometheus@internal", "PathPrefix(`/metrics`)", "prometheus@internal", sc.prometheus.entry_point,
                    kMaxPriority - 1);
  if (const int traefik = entry_point_index("traefik"); sc.api_enabled && sc.api_insecure && traefik >= 0) {
    auto add = [&](const config::RouterConfig& r, uint32_t service) {
      auto ast = config::parse_rule(r.rule);
      auto matcher = router::Matcher::compile(**ast);  // fixed rules: cannot fail
      auto route = std::make_shared<router::Route>();
      route->name = r.name;
      route->priority = r.priority;
      route->matcher = std::move(*matcher);
      route->service = service;
      // Both tables: a `traefik` entry point with http.tls serves the API over TLS too.
      std::shared_ptr<const router::Route> shared = std::move(route);
      snap->entry_points[traefik].routes.add(shared);
      snap->entry_points[traefik].tls_routes.add(std::move(shared));
    };
    add(internal_router("api@internal", "PathPrefix(`/api`)", "api@internal", "traefik", kMaxPriority - 1),
        router::kApiService);
    // Traefik's is PathPrefix(`/`): berth leaves other paths of `traefik` to the user's routers.
    if (sc.api_dashboard)
      add(internal_router("dashboard@internal", "Path(`/`) || PathPrefix(`/dashboard`)", "dashboard@internal",
                          "traefik", kMaxPriority - 2),
          router::kDashboardService);
  }

  // entryPoints.<ep>.http.redirections.entryPoint: a catch-all route that only redirects.
  for (size_t i = 0; i < sc.entry_points.size(); ++i) {
    const auto& ep = sc.entry_points[i];
    if (!ep.redirect) continue;
    config::MiddlewareConfig redirect;
    redirect.name = ep.name + "-to-" + ep.redirect->to + "@internal";
    redirect.type = "redirectScheme";
    redirect.scheme = ep.redirect->scheme;
    redirect.permanent = ep.redirect->permanent;
    if (const auto* target = sc.find_entry_point(ep.redirect->to)) redirect.port = std::to_string(target->port);
    else redirect.port = ep.redirect->to.substr(1);  // ":443"
    auto mw = middleware::compile(redirect);
    auto ast = config::parse_rule("PathPrefix(`/`)");
    auto matcher = router::Matcher::compile(**ast);
    if (!mw || !matcher) continue;  // cannot fail for these fixed inputs
    auto route = std::make_shared<router::Route>();
    route->name = redirect.name;
    route->priority = ep.redirect->priority;
    route->matcher = std::move(*matcher);
    route->service = router::kNoService;
    route->middlewares.push_back(mw->get());
    internal_router(redirect.name, "PathPrefix(`/`)", "noop@internal", ep.name, ep.redirect->priority);
    snap->middlewares.push_back(std::move(*mw));
    snap->entry_points[i].routes.add(std::move(route));
  }
  for (auto& ep : snap->entry_points) {
    ep.routes.freeze();
    ep.tls_routes.freeze();
  }
  snap->dashboard_html = render_dashboard(sc, dyn, *snap, active_routers, result.errors.size() + dyn.errors.size());
  // Elements the decoder dropped are disabled with their problems (a builder's report wins: it is
  // about a definition that did decode).
  auto dropped = [](const auto& from, std::map<std::string, ElementStatus>& into) {
    for (const auto& [name, errors] : from) {
      auto [it, inserted] = into.try_emplace(name);
      if (!inserted) continue;
      it->second.disabled = true;
      for (const auto& e : errors) it->second.errors.push_back(e.to_string());
    }
  };
  dropped(dyn.dropped_routers, result.report.routers);
  dropped(dyn.dropped_services, result.report.services);
  dropped(dyn.dropped_middlewares, result.report.middlewares);
  if (sc.api_enabled) snap->api = observe::ApiDocuments::render(sc, dyn, *snap, result.report, result.errors);
  result.snapshot = std::move(snap);
  return result;
}

}  // namespace berth::proxy
