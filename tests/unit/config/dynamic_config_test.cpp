// Unit tests for dynamic config decoding (http routers and services) and merging across files.
#include "config/dynamic_config.h"

#include <gtest/gtest.h>

namespace berth::config {
namespace {

DynamicConfig decode_ok(std::string_view yaml, const std::string& file = "a.yml") {
  auto result = decode_dynamic_yaml(yaml, file, "file");
  EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().to_string());
  return result.ok() ? std::move(*result) : DynamicConfig{};
}

std::string all_errors(const DynamicConfig& c) {
  std::string out;
  for (const auto& e : c.errors) out += e.to_string() + "\n";
  return out;
}

bool has_error(const DynamicConfig& c, std::string_view where, std::string_view message) {
  for (const auto& e : c.errors)
    if (e.where == where && e.message.find(message) != std::string::npos) return true;
  return false;
}

TEST(DynamicConfig, DecodesRouterAndService) {
  auto c = decode_ok(R"y(
http:
  routers:
    web:
      rule: "Host(`example.com`)"
      service: app
      entryPoints: [web, websecure]
      priority: -5
      middlewares: [auth]
      tls: {}
      observability:
        accessLogs: false
  services:
    app:
      loadBalancer:
        passHostHeader: false
        servers:
          - url: "http://10.0.0.1:8080"
          - url: "https://backend.internal/"
            weight: 3
          - url: "h2c://[::1]:9000"
        healthCheck:
          path: /health
        sticky:
          cookie: {}
  middlewares:
    strip:
      stripPrefix:
        prefixes: ["/api", "/v1"]
)y");
  ASSERT_TRUE(c.errors.empty()) << all_errors(c);
  ASSERT_EQ(c.middlewares.size(), 1u);
  EXPECT_EQ(c.middlewares.at("strip@file").type, "stripPrefix");
  EXPECT_EQ(c.middlewares.at("strip@file").prefixes, (std::vector<std::string>{"/api", "/v1"}));
  ASSERT_EQ(c.routers.size(), 1u);
  const RouterConfig& r = c.routers.at("web@file");
  EXPECT_EQ(r.name, "web@file");
  EXPECT_EQ(r.rule, "Host(`example.com`)");
  EXPECT_EQ(r.service, "app");
  EXPECT_EQ(r.entry_points, (std::vector<std::string>{"web", "websecure"}));
  EXPECT_EQ(r.priority, -5);
  EXPECT_EQ(r.where, "a.yml:4:5");
  ASSERT_EQ(c.services.size(), 1u);
  const ServiceConfig& s = c.services.at("app@file");
  EXPECT_EQ(s.name, "app@file");
  EXPECT_FALSE(s.pass_host_header);
  ASSERT_EQ(s.servers.size(), 3u);
  EXPECT_EQ(s.servers[0].url, "http://10.0.0.1:8080");
  EXPECT_EQ(s.servers[0].where, "a.yml:18:18");
  EXPECT_EQ(s.servers[2].url, "h2c://[::1]:9000");
  EXPECT_EQ(s.where, "a.yml:14:5");
}

TEST(DynamicConfig, NamesAreQualifiedWithProvider) {
  auto result = decode_dynamic_yaml("http:\n  routers:\n    r:\n      rule: Path(`/`)\n      service: s@docker\n",
                                    "x.yml", "docker");
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->routers.count("r@docker"), 1u);
  EXPECT_EQ(result->routers.at("r@docker").service, "s@docker");  // kept as written
}

TEST(DynamicConfig, KeysAreCaseInsensitiveAndEntryPointsAcceptCommaString) {
  auto c = decode_ok(R"y(
HTTP:
  Routers:
    web:
      RULE: PathPrefix(`/`)
      Service: app
      entrypoints: "web, websecure"
  SERVICES:
    app:
      loadbalancer:
        SERVERS:
          - URL: http://a:1
        passhostheader: true
)y");
  ASSERT_TRUE(c.errors.empty()) << all_errors(c);
  EXPECT_EQ(c.routers.at("web@file").entry_points, (std::vector<std::string>{"web", "websecure"}));
  EXPECT_TRUE(c.services.at("app@file").pass_host_header);
  EXPECT_EQ(c.services.at("app@file").servers.size(), 1u);
}

TEST(DynamicConfig, PassHostHeaderDefaultsToTrue) {
  auto c = decode_ok("http:\n  services:\n    s:\n      loadBalancer:\n        servers: [{url: 'http://a'}]\n");
  ASSERT_TRUE(c.errors.empty()) << all_errors(c);
  EXPECT_TRUE(c.services.at("s@file").pass_host_header);
}

TEST(DynamicConfig, UnknownRouterKeyDropsOnlyThatRouter) {
  auto c = decode_ok(R"y(http:
  routers:
    bad:
      rule: Path(`/`)
      service: s
      rul: oops
    good:
      rule: Path(`/x`)
      service: s
)y");
  ASSERT_EQ(c.errors.size(), 1u) << all_errors(c);
  EXPECT_EQ(c.errors[0].where, "a.yml:6:7");
  EXPECT_EQ(c.errors[0].message, "unknown key \"rul\" in http.routers.bad");
  EXPECT_EQ(c.routers.count("bad@file"), 0u);
  EXPECT_EQ(c.routers.count("good@file"), 1u);
}

TEST(DynamicConfig, RouterWithoutRuleOrServiceIsDropped) {
  auto c = decode_ok("http:\n  routers:\n    a:\n      service: s\n    b:\n      rule: Path(`/`)\n");
  EXPECT_TRUE(has_error(c, "a.yml:3:5", "router a@file has no rule")) << all_errors(c);
  EXPECT_TRUE(has_error(c, "a.yml:5:5", "router b@file has no service")) << all_errors(c);
  EXPECT_TRUE(c.routers.empty());
}

TEST(DynamicConfig, BadPriorityDropsRouter) {
  auto c = decode_ok("http:\n  routers:\n    a:\n      rule: Path(`/`)\n      service: s\n      priority: high\n");
  EXPECT_TRUE(has_error(c, "a.yml:6:17", "invalid integer \"high\"")) << all_errors(c);
  EXPECT_TRUE(c.routers.empty());
}

TEST(DynamicConfig, DecodesWeightedFailoverAndMirroringServices) {
  auto c = decode_ok(R"y(http:
  services:
    canary:
      weighted:
        services:
          - name: a
            weight: 3
          - name: b@docker
        sticky: {cookie: {name: v, sameSite: Lax}}
        healthCheck: {}
    safe:
      failover: {service: a, fallback: b}
    shadow:
      mirroring:
        service: a
        mirrorBody: false
        maxBodySize: 1024
        mirrors: [{name: b, percent: 10}]
)y");
  ASSERT_TRUE(c.errors.empty()) << all_errors(c);
  const auto& w = c.services.at("canary@file");
  EXPECT_EQ(w.kind, ServiceConfig::Kind::kWeighted);
  ASSERT_EQ(w.children.size(), 2u);
  EXPECT_EQ(w.children[0].name, "a");
  EXPECT_EQ(w.children[0].weight, 3);
  EXPECT_EQ(w.children[1].name, "b@docker");
  EXPECT_EQ(w.children[1].weight, 1);  // Traefik's default weight
  EXPECT_TRUE(w.sticky.enabled);
  EXPECT_EQ(w.sticky.name, "v");
  EXPECT_EQ(w.sticky.same_site, "lax");
  EXPECT_TRUE(w.health_check_section);
  const auto& f = c.services.at("safe@file");
  EXPECT_EQ(f.kind, ServiceConfig::Kind::kFailover);
  EXPECT_EQ(f.main, "a");
  EXPECT_EQ(f.fallback, "b");
  const auto& m = c.services.at("shadow@file");
  EXPECT_EQ(m.kind, ServiceConfig::Kind::kMirroring);
  EXPECT_EQ(m.main, "a");
  EXPECT_FALSE(m.mirror_body);
  EXPECT_EQ(m.max_body_size, 1024);
  ASSERT_EQ(m.children.size(), 1u);
  EXPECT_EQ(m.children[0].percent, 10);
}

TEST(DynamicConfig, DecodesLoadBalancerHealthStickyAndStrategy) {
  auto c = decode_ok(R"y(http:
  services:
    app:
      loadBalancer:
        strategy: P2C
        servers: [{url: "http://a:80"}]
        sticky:
          cookie: {name: srv, secure: true, httpOnly: true, maxAge: 60, path: /x, domain: a.com}
        healthCheck:
          path: /health
          interval: 2s
          unhealthyInterval: 500ms
          timeout: 1s
          port: 8081
          hostname: h.example
          method: head
          status: 204
          followRedirects: false
          headers: {X-A: b}
        passiveHealthCheck: {failureWindow: 30s, maxFailedAttempts: 3}
        responseForwarding: {flushInterval: 1ms}
)y");
  ASSERT_TRUE(c.errors.empty()) << all_errors(c);
  const auto& s = c.services.at("app@file");
  EXPECT_EQ(s.strategy, "p2c");
  EXPECT_TRUE(s.sticky.enabled);
  EXPECT_TRUE(s.sticky.secure && s.sticky.http_only);
  EXPECT_EQ(s.sticky.max_age, 60);
  EXPECT_EQ(s.sticky.path, "/x");
  const auto& hc = s.health_check;
  EXPECT_TRUE(hc.enabled);
  EXPECT_EQ(hc.path, "/health");
  EXPECT_EQ(hc.interval, Duration(2000));
  EXPECT_EQ(hc.unhealthy_interval, Duration(500));
  EXPECT_EQ(hc.timeout, Duration(1000));
  EXPECT_EQ(hc.port, 8081);
  EXPECT_EQ(hc.hostname, "h.example");
  EXPECT_EQ(hc.method, "HEAD");
  EXPECT_EQ(hc.status, 204);
  EXPECT_FALSE(hc.follow_redirects);
  ASSERT_EQ(hc.headers.size(), 1u);
  EXPECT_TRUE(s.passive_health_check.enabled);
  EXPECT_EQ(s.passive_health_check.failure_window, Duration(30000));
  EXPECT_EQ(s.passive_health_check.max_failed_attempts, 3);
  EXPECT_EQ(s.flush_interval, Duration(1));
}

TEST(DynamicConfig, DecodesServersTransportsAndMergesThem) {
  auto a = decode_ok(R"y(http:
  serversTransports:
    short:
      forwardingTimeouts: {dialTimeout: 2s, responseHeaderTimeout: 500ms, idleConnTimeout: 1m}
      maxIdleConnsPerHost: 7
      insecureSkipVerify: true
      serverName: backend.internal
      rootCAs: [/etc/ca.pem]
      certificates: [{certFile: c.pem, keyFile: k.pem}]
      disableHTTP2: true
      peerCertURI: spiffe://x/y
  services:
    app:
      loadBalancer:
        serversTransport: short
        servers: [{url: "http://a:80"}]
)y");
  ASSERT_TRUE(a.errors.empty()) << all_errors(a);
  const auto& t = a.servers_transports.at("short@file");
  EXPECT_EQ(t.settings.dial_timeout, Duration(2000));
  EXPECT_EQ(t.settings.response_header_timeout, Duration(500));
  EXPECT_EQ(t.settings.idle_conn_timeout, Duration(60'000));
  EXPECT_EQ(t.settings.max_idle_conns_per_host, 7);
  EXPECT_TRUE(t.settings.insecure_skip_verify);
  EXPECT_EQ(t.settings.server_name, "backend.internal");
  EXPECT_EQ(t.settings.root_cas, std::vector<std::string>{"/etc/ca.pem"});
  ASSERT_EQ(t.settings.certificates.size(), 1u);
  EXPECT_EQ(t.settings.certificates[0].key_file, "k.pem");
  EXPECT_TRUE(t.settings.disable_http2);
  EXPECT_EQ(t.settings.peer_cert_uri, "spiffe://x/y");
  EXPECT_EQ(a.services.at("app@file").servers_transport, "short");
  auto b = decode_ok("http:\n  serversTransports:\n    short:\n      maxIdleConnsPerHost: 8\n", "b.yml");
  merge_dynamic(a, std::move(b));
  EXPECT_EQ(a.servers_transports.count("short@file"), 0u);
  EXPECT_NE(all_errors(a).find("serversTransport short@file is defined in a.yml:3:5 and b.yml:3:5"), std::string::npos)
      << all_errors(a);
}

TEST(DynamicConfig, StickyCookieLabelStyleTrueEnablesDefaults) {
  auto c = decode_ok("http:\n  services:\n    app:\n      loadBalancer:\n        sticky:\n          cookie: true\n"
                     "        servers: [{url: \"http://a:80\"}]\n");
  ASSERT_TRUE(c.errors.empty()) << all_errors(c);
  EXPECT_TRUE(c.services.at("app@file").sticky.enabled);
  EXPECT_EQ(c.services.at("app@file").sticky.path, "/");
}

TEST(DynamicConfig, BadServiceOptionsDropOnlyThatServiceWithTheirPlace) {
  auto c = decode_ok(R"y(http:
  services:
    nopath:
      loadBalancer:
        servers: [{url: "http://a:80"}]
        healthCheck: {interval: 1s}
    badsite:
      loadBalancer:
        servers: [{url: "http://a:80"}]
        sticky: {cookie: {sameSite: sometimes}}
    half:
      failover: {service: a}
    empty:
      weighted: {services: []}
    zero:
      loadBalancer:
        servers: [{url: "http://a:80"}]
        healthCheck: {path: /, interval: 0s}
    opts:
      weighted:
        services: [{name: a}]
        healthCheck: {path: /}
    fine:
      loadBalancer:
        servers: [{url: "http://a:80"}]
)y");
  EXPECT_EQ(c.services.size(), 1u) << all_errors(c);
  EXPECT_EQ(c.services.count("fine@file"), 1u);
  EXPECT_TRUE(has_error(c, "a.yml:6:22", "healthCheck.path must be set")) << all_errors(c);
  EXPECT_TRUE(has_error(c, "a.yml:10:37", "sameSite must be none, lax or strict")) << all_errors(c);
  EXPECT_TRUE(has_error(c, "a.yml:12:17", "needs both service and fallback")) << all_errors(c);
  EXPECT_TRUE(has_error(c, "a.yml:14:17", "has no services")) << all_errors(c);
  EXPECT_TRUE(has_error(c, "a.yml:18:42", "interval must be positive")) << all_errors(c);
  EXPECT_TRUE(has_error(c, "a.yml:22:22", "takes no options here")) << all_errors(c);
}

TEST(DynamicConfig, BadServerUrlDropsOnlyThatService) {
  auto c = decode_ok(R"y(http:
  services:
    a:
      loadBalancer:
        servers:
          - url: ftp://x
    b:
      loadBalancer:
        servers:
          - url: http://
    c:
      loadBalancer:
        servers:
          - weight: 1
    d:
      loadBalancer:
        servers:
          - url: http://ok:8080/base
)y");
  EXPECT_TRUE(has_error(c, "a.yml:6:18", "must start with http://, https:// or h2c://")) << all_errors(c);
  EXPECT_TRUE(has_error(c, "a.yml:10:18", "has no host")) << all_errors(c);
  EXPECT_TRUE(has_error(c, "a.yml:14:13", "has no url")) << all_errors(c);
  EXPECT_EQ(c.errors.size(), 3u) << all_errors(c);
  ASSERT_EQ(c.services.size(), 1u);
  EXPECT_EQ(c.services.count("d@file"), 1u);
}

TEST(DynamicConfig, TcpUdpAndTlsSectionsAreAccepted) {
  auto c = decode_ok(R"y(
tcp:
  routers:
    t: {rule: "HostSNI(`*`)", service: s}
udp:
  services: {}
tls:
  certificates:
    - certFile: a.pem
      keyFile: a.key
)y");
  EXPECT_TRUE(c.errors.empty()) << all_errors(c);
}

TEST(DynamicConfig, UnknownTopLevelKeyIsAnError) {
  auto c = decode_ok("htp:\n  routers: {}\n");
  EXPECT_TRUE(has_error(c, "a.yml:1:1", "unknown key \"htp\" at the top level")) << all_errors(c);
}

TEST(DynamicConfig, EmptyDocumentIsAValidEmptyConfig) {
  for (std::string_view text : {"", "\n", "# only a comment\n", "---\n", "http:\n", "http:\n  routers:\n"}) {
    auto c = decode_ok(text);
    EXPECT_TRUE(c.errors.empty()) << text << all_errors(c);
    EXPECT_TRUE(c.routers.empty());
  }
}

TEST(DynamicConfig, YamlSyntaxErrorReturnsErrorWithLine) {
  auto result = decode_dynamic_yaml("http:\n  routers:\n    web: {rule: x\n", "bad.yml", "file");
  ASSERT_FALSE(result.ok());
  EXPECT_TRUE(result.error().where.starts_with("bad.yml:")) << result.error().where;
  EXPECT_NE(result.error().where, "bad.yml");
  EXPECT_FALSE(result.error().message.empty());

  auto tabs = decode_dynamic_yaml("http:\n  routers:\n\t- x\n", "tabs.yml", "file");
  ASSERT_FALSE(tabs.ok());
  EXPECT_EQ(tabs.error().where.rfind("tabs.yml:3:", 0), 0u) << tabs.error().where;
}

TEST(DynamicConfig, NonMapDocumentIsAnError) {
  auto result = decode_dynamic_yaml("- a\n- b\n", "list.yml", "file");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().where, "list.yml:1:1");
}

TEST(DynamicConfig, AliasBombIsRejected) {
  // Each level lists the previous one eight times: 10 * 8^8 nodes once expanded.
  std::string yaml = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 9; ++i) {
    const std::string n = std::to_string(i), previous = std::to_string(i - 1);
    yaml.append("a").append(n).append(": &a").append(n).append(" [");
    for (int k = 0; k < 8; ++k) yaml.append(k == 0 ? "*a" : ", *a").append(previous);
    yaml.append("]\n");
  }
  auto result = decode_dynamic_yaml(yaml, "bomb.yml", "file");
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.error().message.find("aliases expand to too many nodes"), std::string::npos);
}

TEST(DynamicConfig, AnchorsAliasesAndMergeKeysWork) {
  auto c = decode_ok(R"y(
x-defaults: &defaults
  service: app
  entryPoints: [web]
http:
  routers:
    a:
      <<: *defaults
      rule: Path(`/a`)
    b:
      <<: *defaults
      rule: Path(`/b`)
      service: other
  services:
    app:
      loadBalancer: &lb
        servers: [{url: "http://a:1"}]
    other:
      loadBalancer: *lb
)y");
  // `x-defaults` is an unknown top-level key, reported; everything else decodes.
  ASSERT_EQ(c.errors.size(), 1u) << all_errors(c);
  EXPECT_EQ(c.routers.at("a@file").service, "app");
  EXPECT_EQ(c.routers.at("a@file").entry_points, (std::vector<std::string>{"web"}));
  EXPECT_EQ(c.routers.at("b@file").service, "other");
  EXPECT_EQ(c.services.at("other@file").servers.at(0).url, "http://a:1");
}

TEST(DynamicConfig, MergeKeepsOneCopyOfIdenticalDefinitions) {
  const char* yaml = "http:\n  routers:\n    web:\n      rule: Path(`/`)\n      service: s\n";
  auto into = decode_ok(yaml, "a.yml");
  merge_dynamic(into, decode_ok(std::string("\n") + yaml, "b.yml"));
  EXPECT_TRUE(into.errors.empty()) << all_errors(into);
  ASSERT_EQ(into.routers.size(), 1u);
  EXPECT_EQ(into.routers.at("web@file").where, "a.yml:3:5");
}

TEST(DynamicConfig, MergeConflictDropsBothAndNamesBothPlaces) {
  auto into = decode_ok("http:\n  routers:\n    web:\n      rule: Path(`/`)\n      service: s\n"
                        "  services:\n    s:\n      loadBalancer:\n        servers: [{url: 'http://a'}]\n",
                        "a.yml");
  merge_dynamic(into, decode_ok("http:\n  routers:\n    web:\n      rule: Path(`/other`)\n      service: s\n"
                                "    api:\n      rule: Path(`/api`)\n      service: s\n",
                                "b.yml"));
  ASSERT_EQ(into.errors.size(), 1u) << all_errors(into);
  EXPECT_EQ(into.errors[0].message,
            "router web@file is defined in a.yml:3:5 and b.yml:3:5 with different configurations");
  EXPECT_EQ(into.routers.count("web@file"), 0u);
  EXPECT_EQ(into.routers.count("api@file"), 1u);
  EXPECT_EQ(into.services.count("s@file"), 1u);

  // A third, identical to the first, stays dropped.
  merge_dynamic(into, decode_ok("http:\n  routers:\n    web:\n      rule: Path(`/`)\n      service: s\n", "c.yml"));
  EXPECT_EQ(into.routers.count("web@file"), 0u);
  EXPECT_EQ(into.errors.size(), 2u) << all_errors(into);
}

TEST(DynamicConfig, MergeFirstWinsKeepsTheFirstDefinitionAndNamesTheLaterOne) {
  // The files of one file provider directory, as in Traefik: a later, different definition is
  // dropped and reported; the first one serves.
  auto into = decode_ok("http:\n  routers:\n    web:\n      rule: Path(`/`)\n      service: s\n"
                        "tls:\n  options:\n    strict: {minVersion: VersionTLS13}\n",
                        "a.yml");
  merge_dynamic(into,
                decode_ok("http:\n  routers:\n    web:\n      rule: Path(`/other`)\n      service: s\n"
                          "    api:\n      rule: Path(`/api`)\n      service: s\n"
                          "tls:\n  options:\n    strict: {minVersion: VersionTLS12}\n",
                          "b.yml"),
                Redefinition::kFirstWins);
  ASSERT_EQ(into.errors.size(), 2u) << all_errors(into);
  EXPECT_EQ(into.errors[0].to_string(), "b.yml:3:5: router web@file is defined already in a.yml:3:5: "
                                        "the first definition is used");
  EXPECT_NE(all_errors(into).find("TLS options strict@file is defined already in a.yml:8:5"), std::string::npos)
      << all_errors(into);
  ASSERT_EQ(into.routers.count("web@file"), 1u);
  EXPECT_EQ(into.routers.at("web@file").where, "a.yml:3:5");
  EXPECT_EQ(into.routers.count("api@file"), 1u);
}

TEST(DynamicConfig, MergeComparesServersIgnoringPlaces) {
  auto into = decode_ok("http:\n  services:\n    s:\n      loadBalancer:\n        servers: [{url: 'http://a'}]\n",
                        "a.yml");
  merge_dynamic(into, decode_ok("http:\n  services:\n    s:\n      loadBalancer:\n        servers:\n"
                                "          - url: http://a\n",
                                "b.yml"));
  EXPECT_TRUE(into.errors.empty()) << all_errors(into);
  merge_dynamic(into, decode_ok("http:\n  services:\n    s:\n      loadBalancer:\n        servers: [{url: 'http://b'}]\n",
                                "c.yml"));
  ASSERT_EQ(into.errors.size(), 1u);
  EXPECT_EQ(into.errors[0].message, "service s@file is defined in a.yml:3:5 and c.yml:3:5 with different configurations");
  EXPECT_TRUE(into.services.empty());
}

TEST(DynamicConfig, MergeCarriesElementErrors) {
  auto into = decode_ok("");
  merge_dynamic(into, decode_ok("http:\n  routers:\n    x: {rule: a}\n", "b.yml"));
  ASSERT_EQ(into.errors.size(), 1u);
  EXPECT_EQ(into.errors[0].where, "b.yml:3:5");
}

}  // namespace
}  // namespace berth::config

namespace berth::config {
namespace {

TEST(DynamicConfig, DecodesMiddlewaresAndRejectsUnsupportedOnes) {
  auto decoded = decode_dynamic_yaml(R"y(
http:
  middlewares:
    hdr:
      headers:
        customRequestHeaders:
          X-A: "1"
          X-Gone: ""
        customResponseHeaders:
          X-B: "2"
    go:
      redirectScheme:
        scheme: https
        port: "8443"
        permanent: true
    both:
      chain:
        middlewares: [hdr, go]
    auth:
      grpcWeb:
        allowOrigins: ["*"]
    cors:
      headers:
        accessControlAllowOrigin: "*"
    two:
      addPrefix:
        prefix: /a
      stripPrefix:
        prefixes: [/b]
)y", "m.yml", "file");
  ASSERT_TRUE(decoded.ok());
  const DynamicConfig& c = *decoded;
  ASSERT_EQ(c.middlewares.size(), 3u);
  const auto& hdr = c.middlewares.at("hdr@file");
  EXPECT_EQ(hdr.request_headers, (std::vector<std::pair<std::string, std::string>>{{"X-A", "1"}, {"X-Gone", ""}}));
  EXPECT_EQ(hdr.response_headers, (std::vector<std::pair<std::string, std::string>>{{"X-B", "2"}}));
  const auto& go = c.middlewares.at("go@file");
  EXPECT_EQ(go.scheme, "https");
  EXPECT_EQ(go.port, "8443");
  EXPECT_TRUE(go.permanent);
  EXPECT_EQ(c.middlewares.at("both@file").chain, (std::vector<std::string>{"hdr", "go"}));
  std::string errors;
  for (const auto& e : c.errors) errors += e.to_string() + "\n";
  EXPECT_NE(errors.find("m.yml:20:7: middleware auth@file: type \"grpcWeb\" is not supported yet"), std::string::npos)
      << errors;
  EXPECT_NE(errors.find("headers option \"accessControlAllowOrigin\" is not supported yet"), std::string::npos) << errors;
  EXPECT_NE(errors.find("middleware two@file must have exactly one type, has 2"), std::string::npos) << errors;
}

TEST(DynamicConfig, DecodesTrafficAuthAndErrorMiddlewares) {
  auto decoded = decode_dynamic_yaml(R"y(
http:
  middlewares:
    auth: {basicAuth: {users: ["a:{SHA}x"], usersFile: /f, realm: r, removeHeader: true, headerField: X-U}}
    limit:
      rateLimit:
        average: 100
        period: 1m
        burst: 50
        sourceCriterion: {ipStrategy: {depth: 2, excludedIPs: [10.0.0.1]}}
    busy: {inFlightReq: {amount: 10, sourceCriterion: {requestHeaderName: X-Tenant}}}
    again: {retry: {attempts: 4, initialInterval: 50ms}}
    pages: {errors: {status: ["500-599", "404"], service: errsvc, query: "/{status}.html"}}
    fa:
      forwardAuth:
        address: http://127.0.0.1:9/auth
        trustForwardHeader: true
        authResponseHeaders: [X-User]
        authRequestHeaders: [Cookie]
    zip: {compress: {excludedContentTypes: [text/event-stream], minResponseBodyBytes: 200, encodings: [zstd, gzip]}}
    buf: {buffering: {maxRequestBodyBytes: 2000}}
    ct: {contentType: {}}
    cb: {circuitBreaker: {expression: "NetworkErrorRatio() > 0.5", fallbackDuration: 3s, responseCode: 502}}
    both: {rateLimit: {average: 1, sourceCriterion: {requestHost: true, requestHeaderName: X}}}
    noamount: {inFlightReq: {}}
)y", "m.yml", "file");
  ASSERT_TRUE(decoded.ok());
  const DynamicConfig& c = *decoded;
  std::string errors;
  for (const auto& e : c.errors) errors += e.to_string() + "\n";
  EXPECT_EQ(c.middlewares.size(), 10u) << errors;
  const auto& auth = c.middlewares.at("auth@file");
  EXPECT_EQ(auth.users, std::vector<std::string>{"a:{SHA}x"});
  EXPECT_EQ(auth.users_file, "/f");
  EXPECT_EQ(auth.realm, "r");
  EXPECT_TRUE(auth.remove_header);
  EXPECT_EQ(auth.header_field, "X-U");
  const auto& limit = c.middlewares.at("limit@file");
  EXPECT_EQ(limit.average, 100);
  EXPECT_EQ(limit.period, Duration(60'000));
  EXPECT_EQ(limit.burst, 50);
  EXPECT_EQ(limit.ip_depth, 2);
  EXPECT_EQ(c.middlewares.at("busy@file").source_header, "X-Tenant");
  EXPECT_EQ(c.middlewares.at("again@file").attempts, 4);
  EXPECT_EQ(c.middlewares.at("again@file").initial_interval, Duration(50));
  EXPECT_EQ(c.middlewares.at("pages@file").status, (std::vector<std::string>{"500-599", "404"}));
  EXPECT_TRUE(c.middlewares.at("fa@file").trust_forward_header);
  EXPECT_EQ(c.middlewares.at("zip@file").min_response_body_bytes, 200);
  EXPECT_EQ(c.middlewares.at("buf@file").max_request_body_bytes, 2000);
  EXPECT_TRUE(c.middlewares.at("ct@file").auto_detect);
  EXPECT_EQ(c.middlewares.at("cb@file").fallback_duration, Duration(3000));
  EXPECT_NE(errors.find("set only one of ipStrategy, requestHeaderName and requestHost"), std::string::npos) << errors;
  EXPECT_NE(errors.find("inFlightReq needs an amount"), std::string::npos) << errors;
}

}  // namespace
}  // namespace berth::config

namespace berth::config {
namespace {

TEST(DynamicConfig, CompactWeightedServicesAndMirrors) {
  auto c = decode_ok(R"y(http:
  services:
    app:
      weighted:
        services: "app-blue:90, app-green:10, other"
        sticky: {cookie: {name: color}}
    copy:
      mirroring:
        service: app
        mirrors: "shadow:25"
    bad:
      weighted:
        services: "a:x, :5"
)y");
  ASSERT_EQ(c.services.count("app@file"), 1u) << all_errors(c);
  const auto& app = c.services.at("app@file");
  ASSERT_EQ(app.children.size(), 3u);
  EXPECT_EQ(app.children[0].name, "app-blue");
  EXPECT_EQ(app.children[0].weight, 90);
  EXPECT_EQ(app.children[1].name, "app-green");
  EXPECT_EQ(app.children[1].weight, 10);
  EXPECT_EQ(app.children[2].weight, 1);
  EXPECT_EQ(app.sticky.name, "color");
  const auto& copy = c.services.at("copy@file");
  ASSERT_EQ(copy.children.size(), 1u);
  EXPECT_EQ(copy.children[0].percent, 25);
  EXPECT_EQ(c.services.count("bad@file"), 0u);
  EXPECT_TRUE(has_error(c, "a.yml:13:19", "invalid weight in \"a:x\"")) << all_errors(c);
  EXPECT_TRUE(has_error(c, "a.yml:13:19", "a service without a name")) << all_errors(c);
}

}  // namespace
}  // namespace berth::config
