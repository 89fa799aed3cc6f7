// Unit tests for the Traefik API's documents: Traefik's shapes, each element's status and errors
// with their places (dropped by the decoder or disabled by the builder), live server health,
// request counts, berth's internal routers, and Traefik's search, status and page parameters.
#include "proxy/observe/api.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "proxy/snapshot_builder.h"

namespace berth::proxy::observe {
namespace {

namespace json = boost::json;

struct Built {
  config::StaticConfig sc;
  config::DynamicConfig dyn;
  upstream::HealthRegistry health;
  BuildResult result;

  const Snapshot& snap() const { return *result.snapshot; }
  ApiReply get(std::string_view path, std::string_view query = {}, RouterTotalsSource totals = nullptr) const {
    return snap().api->answer(snap(), path, query, totals);
  }
  json::value get_json(std::string_view path, std::string_view query = {}, RouterTotalsSource totals = nullptr) const {
    ApiReply r = get(path, query, std::move(totals));
    EXPECT_EQ(r.status, 200) << path << ": " << r.body;
    EXPECT_TRUE(r.json);
    return json::parse(r.body);
  }
};

std::unique_ptr<Built> build(std::string_view dynamic_yaml,
                             std::vector<std::string> flags = {"--api.insecure=true", "--entryPoints.web.address=:80"}) {
  auto b = std::make_unique<Built>();
  auto load = config::load_static_config(flags);
  EXPECT_TRUE(load.errors.empty()) << (load.errors.empty() ? "" : load.errors[0].to_string());
  b->sc = load.config;
  auto dyn = config::decode_dynamic_yaml(dynamic_yaml, "dyn.yml", "file");
  EXPECT_TRUE(dyn.ok());
  b->dyn = *dyn;
  b->result = build_snapshot(b->sc, b->dyn, 7, b->health);
  EXPECT_NE(b->result.snapshot->api, nullptr);
  return b;
}

const json::object* find_named(const json::value& list, std::string_view name) {
  for (const auto& v : list.as_array())
    if (v.as_object().at("name").as_string() == name) return &v.as_object();
  return nullptr;
}

std::string joined_errors(const json::object& o) {
  std::string out;
  if (auto* e = o.if_contains("error"))
    for (const auto& s : e->as_array()) out += std::string(s.as_string()) + "\n";
  return out;
}

constexpr std::string_view kConfig = R"yaml(http:
  routers:
    app:
      rule: "Host(`app.test`)"
      service: app
      middlewares: [secured]
    lost:
      rule: "Path(`/lost`)"
      service: nowhere
    typo:
      rule: "Path(`/typo`)"
      servce: app
  services:
    app:
      loadBalancer:
        servers:
          - url: "http://127.0.0.1:1"
          - url: "http://127.0.0.1:2"
  middlewares:
    secured:
      chain:
        middlewares: [auth]
    auth:
      basicAuth:
        users: ["alice:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/"]
)yaml";

TEST(Api, RoutersShowStatusUsingAndTheErrorsWithTheirPlace) {
  auto b = build(kConfig);
  json::value routers = b->get_json("/api/http/routers");

  const json::object* app = find_named(routers, "app@file");
  ASSERT_NE(app, nullptr);
  EXPECT_EQ(app->at("status").as_string(), "enabled");
  EXPECT_EQ(app->at("rule").as_string(), "Host(`app.test`)");
  EXPECT_EQ(app->at("service").as_string(), "app@file");
  EXPECT_EQ(app->at("provider").as_string(), "file");
  EXPECT_EQ(json::serialize(app->at("using")), R"(["web"])");
  EXPECT_EQ(json::serialize(app->at("middlewares")), R"(["secured@file"])");
  EXPECT_EQ(app->at("priority").as_int64(), 16);
  EXPECT_FALSE(app->contains("error"));

  // Disabled by the builder: its service does not exist.
  const json::object* lost = find_named(routers, "lost@file");
  ASSERT_NE(lost, nullptr);
  EXPECT_EQ(lost->at("status").as_string(), "disabled");
  EXPECT_NE(joined_errors(*lost).find("dyn.yml:7:5: router lost@file disabled: service \"nowhere@file\" does not exist"),
            std::string::npos)
      << joined_errors(*lost);

  // Dropped by the decoder: an unknown key, named with its place.
  const json::object* typo = find_named(routers, "typo@file");
  ASSERT_NE(typo, nullptr);
  EXPECT_EQ(typo->at("status").as_string(), "disabled");
  EXPECT_NE(joined_errors(*typo).find("dyn.yml:12:7"), std::string::npos) << joined_errors(*typo);
  EXPECT_NE(joined_errors(*typo).find("servce"), std::string::npos) << joined_errors(*typo);

  // berth's own routers on `traefik` (api.insecure).
  const json::object* api = find_named(routers, "api@internal");
  ASSERT_NE(api, nullptr);
  EXPECT_EQ(api->at("provider").as_string(), "internal");
  EXPECT_EQ(api->at("service").as_string(), "api@internal");
  EXPECT_EQ(json::serialize(api->at("using")), R"(["traefik"])");
  EXPECT_NE(find_named(routers, "dashboard@internal"), nullptr);
}

TEST(Api, OneRouterByEscapedNameAndNotFound) {
  auto b = build(kConfig);
  json::value app = b->get_json("/api/http/routers/app%40file");
  EXPECT_EQ(app.as_object().at("name").as_string(), "app@file");
  ApiReply missing = b->get("/api/http/routers/nope@file");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(json::parse(missing.body).as_object().at("message").as_string(), "router not found: nope@file");
  EXPECT_EQ(b->get("/api/nothing-here").status, 404);
}

TEST(Api, ServerStatusIsReadLiveFromTheSnapshot) {
  auto b = build(kConfig);
  auto status = [&] {
    json::value svc = b->get_json("/api/http/services/app@file");
    return json::serialize(svc.as_object().at("serverStatus"));
  };
  EXPECT_EQ(status(), R"({"http://127.0.0.1:1":"UP","http://127.0.0.1:2":"UP"})");
  b->snap().services[0].endpoints[1].health->active_up = false;
  EXPECT_EQ(status(), R"({"http://127.0.0.1:1":"UP","http://127.0.0.1:2":"DOWN"})");
  b->snap().services[0].endpoints[1].health->active_up = true;
  EXPECT_EQ(status(), R"({"http://127.0.0.1:1":"UP","http://127.0.0.1:2":"UP"})");

  json::value svc = b->get_json("/api/http/services/app@file");
  const auto& o = svc.as_object();
  EXPECT_EQ(o.at("type").as_string(), "loadbalancer");
  EXPECT_EQ(o.at("status").as_string(), "enabled");
  EXPECT_EQ(json::serialize(o.at("usedBy")), R"(["app@file"])");
  EXPECT_EQ(o.at("loadBalancer").as_object().at("servers").as_array().size(), 2u);
}

TEST(Api, RoutersCarryTheirRequestCounts) {
  auto b = build(kConfig);
  RouterTotalsSource totals = [] {
    return std::unordered_map<std::string, RequestTotals>{{"app@file", RequestTotals{42, 3}}};
  };
  json::value app = b->get_json("/api/http/routers/app@file", {}, totals);
  EXPECT_EQ(app.as_object().at("requests").to_number<int64_t>(), 42u);
  EXPECT_EQ(app.as_object().at("serverErrors").to_number<int64_t>(), 3u);
  json::value lost = b->get_json("/api/http/routers/lost@file", {}, totals);
  EXPECT_EQ(lost.as_object().at("requests").to_number<int64_t>(), 0u);
}

TEST(Api, MiddlewaresShowTypeUsersThroughChainsAndNoPasswords) {
  auto b = build(kConfig);
  json::value auth = b->get_json("/api/http/middlewares/auth@file");
  const auto& o = auth.as_object();
  EXPECT_EQ(o.at("type").as_string(), "basicauth");
  EXPECT_EQ(json::serialize(o.at("basicAuth").as_object().at("users")), R"(["alice"])");
  EXPECT_EQ(json::serialize(o.at("usedBy")), R"(["app@file"])");
  EXPECT_EQ(b->get("/api/http/middlewares/auth@file").body.find("$apr1$"), std::string::npos);
}

TEST(Api, HeadersMiddlewareShowsItsHostChecksAndSecurityHeaders) {
  auto b = build(R"yaml(http:
  middlewares:
    secure:
      headers:
        allowedHosts: [a.test]
        hostsProxyHeaders: [X-Forwarded-Host]
        sslProxyHeaders: {X-Edge-Proto: https}
        publicKey: 'pin-sha256="cGlu"'
        frameDeny: true
        isDevelopment: true
)yaml");
  json::value got = b->get_json("/api/http/middlewares/secure@file");
  const auto& h = got.as_object().at("headers").as_object();
  EXPECT_EQ(json::serialize(h.at("allowedHosts")), R"(["a.test"])");
  EXPECT_EQ(json::serialize(h.at("hostsProxyHeaders")), R"(["X-Forwarded-Host"])");
  EXPECT_EQ(json::serialize(h.at("sslProxyHeaders")), R"({"X-Edge-Proto":"https"})");
  EXPECT_EQ(json::serialize(h.at("securityHeaders")),
            R"({"X-Frame-Options":"DENY","Public-Key-Pins":"pin-sha256=\"cGlu\""})");
  EXPECT_TRUE(h.at("isDevelopment").as_bool());
}

TEST(Api, OverviewCountsAndProblems) {
  auto b = build(kConfig);
  json::value overview = b->get_json("/api/overview");
  const auto& routers = overview.at("http").at("routers").as_object();
  EXPECT_EQ(routers.at("total").as_int64(), 5);  // app, lost, typo, api@internal, dashboard@internal
  EXPECT_EQ(routers.at("errors").as_int64(), 2);
  EXPECT_EQ(routers.at("warnings").as_int64(), 0);
  EXPECT_EQ(overview.at("tcp").at("routers").at("total").as_int64(), 0);
  EXPECT_EQ(overview.at("generation").to_number<int64_t>(), 7u);
  EXPECT_EQ(overview.at("features").at("metrics").as_string(), "");
  EXPECT_EQ(overview.at("problems").as_array().size(), 2u);
  const std::string problems = json::serialize(overview.at("problems"));
  EXPECT_NE(problems.find(R"("where":"dyn.yml:7:5")"), std::string::npos) << problems;
}

TEST(Api, SearchStatusAndPages) {
  auto b = build(kConfig);
  json::value disabled = b->get_json("/api/http/routers", "status=disabled");
  ASSERT_EQ(disabled.as_array().size(), 2u);
  EXPECT_EQ(disabled.as_array()[0].at("name").as_string(), "lost@file");

  json::value by_rule = b->get_json("/api/http/routers", "search=APP.TEST");
  ASSERT_EQ(by_rule.as_array().size(), 1u);
  EXPECT_EQ(by_rule.as_array()[0].at("name").as_string(), "app@file");

  ApiReply page1 = b->get("/api/http/routers", "per_page=2&page=1");
  EXPECT_EQ(page1.next_page, "2");
  EXPECT_EQ(json::parse(page1.body).as_array().size(), 2u);
  ApiReply page3 = b->get("/api/http/routers", "per_page=2&page=3");
  EXPECT_EQ(page3.next_page, "1");
  EXPECT_EQ(json::parse(page3.body).as_array().size(), 1u);
  EXPECT_EQ(b->get("/api/http/routers", "per_page=2&page=4").status, 400);
  EXPECT_EQ(b->get("/api/http/routers", "page=0").status, 400);

  json::value by_service = b->get_json("/api/http/routers", "serviceName=app");
  EXPECT_EQ(by_service.as_array().size(), 1u);
}

TEST(Api, RawdataEntryPointsAndVersion) {
  auto b = build(kConfig);
  json::value raw = b->get_json("/api/rawdata");
  EXPECT_TRUE(raw.at("routers").as_object().contains("app@file"));
  EXPECT_FALSE(raw.at("routers").at("app@file").as_object().contains("name"));
  EXPECT_TRUE(raw.at("services").at("app@file").as_object().contains("serverStatus"));
  EXPECT_TRUE(raw.at("middlewares").as_object().contains("secured@file"));

  json::value eps = b->get_json("/api/entrypoints");
  ASSERT_EQ(eps.as_array().size(), 2u);
  EXPECT_EQ(eps.as_array()[0].at("name").as_string(), "traefik");
  EXPECT_EQ(eps.as_array()[1].at("address").as_string(), ":80");
  EXPECT_EQ(eps.as_array()[1].at("transport").at("respondingTimeouts").at("readTimeout").as_string(), "1m");
  EXPECT_EQ(b->get_json("/api/entrypoints/web").at("name").as_string(), "web");
  EXPECT_EQ(b->get("/api/entrypoints/nope").status, 404);

  EXPECT_EQ(b->get_json("/api/version").at("Version").as_string(), BERTH_VERSION);
  EXPECT_EQ(b->get("/api/tcp/routers").body, "[]\n");
}

TEST(Api, WithoutInsecureOnlyRoutersNamingApiInternalServeIt) {
  constexpr std::string_view kDash = R"yaml(http:
  routers:
    dash:
      rule: "PathPrefix(`/api`) || PathPrefix(`/dashboard`)"
      service: api@internal
    nope:
      rule: "Path(`/x`)"
      service: prometheus@internal
)yaml";
  auto b = build(kDash, {"--api", "--entryPoints.web.address=:80"});
  EXPECT_EQ(b->sc.find_entry_point("traefik"), nullptr);  // only api.insecure adds it
  json::value routers = b->get_json("/api/http/routers");
  EXPECT_EQ(find_named(routers, "api@internal"), nullptr);
  ASSERT_NE(find_named(routers, "dash@file"), nullptr);
  EXPECT_EQ(find_named(routers, "dash@file")->at("status").as_string(), "enabled");
  // metrics are off: prometheus@internal does not exist, as in Traefik.
  const json::object* nope = find_named(routers, "nope@file");
  ASSERT_NE(nope, nullptr);
  EXPECT_EQ(nope->at("status").as_string(), "disabled");
  EXPECT_NE(joined_errors(*nope).find("service \"prometheus@internal\" does not exist"), std::string::npos);

  const auto* route = b->snap().entry_points[0].routes.match(
      router::RequestView{"x", "/api/overview", "GET", "", nullptr, nullptr});
  ASSERT_NE(route, nullptr);
  EXPECT_EQ(route->service, router::kApiService);

  json::value services = b->get_json("/api/http/services");
  const json::object* api = find_named(services, "api@internal");
  ASSERT_NE(api, nullptr);
  EXPECT_EQ(json::serialize(api->at("usedBy")), R"(["dash@file"])");
  EXPECT_NE(find_named(services, "dashboard@internal"), nullptr);  // api.dashboard defaults to true
}

TEST(Api, ServiceWarningsAndDisabledServices) {
  constexpr std::string_view kServices = R"yaml(http:
  routers:
    r:
      rule: "Path(`/`)"
      service: split
  services:
    split:
      weighted:
        services:
          - name: missing
            weight: 1
    half:
      loadBalancer:
        healthCheck: {path: /, scheme: ftp}
        servers:
          - url: "http://127.0.0.1:1"
)yaml";
  auto b = build(kServices);
  json::value services = b->get_json("/api/http/services");
  const json::object* split = find_named(services, "split@file");
  ASSERT_NE(split, nullptr);
  EXPECT_EQ(split->at("status").as_string(), "disabled");
  EXPECT_EQ(split->at("type").as_string(), "weighted");
  EXPECT_NE(joined_errors(*split).find("service \"missing@file\" does not exist"), std::string::npos);
  const json::object* half = find_named(services, "half@file");
  ASSERT_NE(half, nullptr);
  EXPECT_EQ(half->at("status").as_string(), "warning");
  EXPECT_NE(joined_errors(*half).find("health check scheme \"ftp\" is not supported"), std::string::npos);
  EXPECT_EQ(half->at("serverStatus").as_object().size(), 1u);
  json::value routers = b->get_json("/api/http/routers");
  EXPECT_EQ(find_named(routers, "r@file")->at("status").as_string(), "disabled");
}

}  // namespace
}  // namespace berth::proxy::observe
