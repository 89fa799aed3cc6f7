// Unit tests for compiled routes: host index, wildcard hosts, priority order and the matchers they hold.
#include "proxy/router/route_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "config/rule.h"
#include "proxy/router/matcher.h"

namespace berth::proxy::router {
namespace {

std::unique_ptr<Matcher> compile(std::string_view rule) {
  auto ast = config::parse_rule(rule);
  EXPECT_TRUE(ast.ok()) << rule << ": " << (ast ? "" : ast.error().to_string());
  if (!ast) return nullptr;
  auto m = Matcher::compile(**ast);
  EXPECT_TRUE(m.ok()) << rule << ": " << (m ? "" : m.error().to_string());
  if (!m) return nullptr;
  return std::move(*m);
}

// Builds a route the way snapshot_builder does: priority 0 means "the rule's length".
std::shared_ptr<const Route> make_route(std::string name, std::string_view rule, int64_t priority = 0,
                                        uint32_t service = 0) {
  auto r = std::make_shared<Route>();
  r->name = std::move(name);
  r->priority = priority != 0 ? priority : static_cast<int64_t>(rule.size());
  r->matcher = compile(rule);
  r->service = service;
  return r;
}

// A table with its routes added in order and frozen.
struct Table {
  RouteTable table;
  Table& add(std::string name, std::string_view rule, int64_t priority = 0, uint32_t service = 0) {
    table.add(make_route(std::move(name), rule, priority, service));
    return *this;
  }
  Table& freeze() {
    table.freeze();
    return *this;
  }
  // The name of the matching route, or "" when none matches.
  std::string match(std::string_view host, std::string_view path = "/", std::string_view method = "GET") const {
    const Route* r = table.match(RequestView{host, path, method});
    return r ? r->name : "";
  }
};

std::vector<std::string> required_hosts(std::string_view rule, bool* restricted = nullptr) {
  std::vector<std::string> out;
  auto m = compile(rule);
  bool ok = m && m->required_hosts(out);
  if (restricted) *restricted = ok;
  std::sort(out.begin(), out.end());
  return out;
}

// ---- hosts -----------------------------------------------------------------------------------

TEST(RouteTable, MatchesHostCaseInsensitively) {
  Table t;
  t.add("web", "Host(`Example.COM`)").freeze();
  EXPECT_EQ(t.match("example.com"), "web");
  EXPECT_EQ(t.match("EXAMPLE.com"), "web");
  EXPECT_EQ(t.match("example.org"), "");
  EXPECT_EQ(t.match(""), "");
}

TEST(StripPort, RemovesThePortFromHostValues) {
  EXPECT_EQ(strip_port("a.com:8080"), "a.com");
  EXPECT_EQ(strip_port("a.com"), "a.com");
  EXPECT_EQ(strip_port("a.com:"), "a.com");
  EXPECT_EQ(strip_port("10.0.0.1:80"), "10.0.0.1");
  EXPECT_EQ(strip_port("[::1]:80"), "::1");  // brackets go too, as Go's SplitHostPort does
  EXPECT_EQ(strip_port("[::1]"), "::1");
  EXPECT_EQ(strip_port("example.com."), "example.com");  // a fully qualified name matches its host
  EXPECT_EQ(strip_port("::1"), "::1");  // a bare IPv6 address has no port to strip
  EXPECT_EQ(strip_port(""), "");
}

TEST(RouteTable, MatchesHostAfterStrippingThePort) {
  Table t;
  t.add("web", "Host(`example.com`)").freeze();
  EXPECT_EQ(t.match(strip_port("Example.com:8443")), "web");
  EXPECT_EQ(t.match("example.com:8443"), "");  // the caller strips the port, the table does not
}

TEST(RouteTable, MatchesWildcardHostForExactlyOneLabel) {
  Table t;
  t.add("wild", "Host(`*.example.com`)").freeze();
  EXPECT_EQ(t.match("a.example.com"), "wild");
  EXPECT_EQ(t.match("API.Example.Com"), "wild");
  EXPECT_EQ(t.match("example.com"), "");
  EXPECT_EQ(t.match("b.a.example.com"), "");
  EXPECT_EQ(t.match("aexample.com"), "");
  EXPECT_EQ(t.match(".example.com"), "");
  EXPECT_EQ(t.match("a.example.org"), "");
}

TEST(RouteTable, MatchesAnyHostWithHostStar) {
  Table t;
  t.add("any", "Host(`*`)").add("exact", "Host(`a.com`)").freeze();
  EXPECT_EQ(t.match("a.com"), "exact");  // the longer rule wins
  EXPECT_EQ(t.match("b.com"), "any");
  EXPECT_EQ(t.match("x.y.z"), "any");
  EXPECT_EQ(t.match(""), "any");
}

TEST(RouteTable, MatchesHostlessRoutesForAnyHostIncludingNone) {
  Table t;
  t.add("api", "PathPrefix(`/api`)").add("a", "Host(`a.com`) && PathPrefix(`/web`)").freeze();
  EXPECT_EQ(t.match("a.com", "/api/v1"), "api");
  EXPECT_EQ(t.match("", "/api/v1"), "api");
  EXPECT_EQ(t.match("a.com", "/web"), "a");
  EXPECT_EQ(t.match("", "/web"), "");
}

TEST(RouteTable, ReturnsNullWhenEmptyOrNothingMatches) {
  Table t;
  t.freeze();
  EXPECT_EQ(t.match("a.com"), "");
  t.add("a", "Host(`a.com`) && Path(`/x`)").freeze();
  EXPECT_EQ(t.match("a.com", "/y"), "");
  EXPECT_EQ(t.table.size(), 1u);
}

// ---- priority --------------------------------------------------------------------------------

TEST(RouteTable, PrefersTheLongerRuleByDefault) {
  Table t;
  t.add("root", "PathPrefix(`/`)").add("api", "PathPrefix(`/api`)").freeze();
  EXPECT_EQ(t.match("a.com", "/api/users"), "api");
  EXPECT_EQ(t.match("a.com", "/other"), "root");
}

TEST(RouteTable, PrefersLongerPathPrefixUnderTheSameHost) {
  Table t;
  t.add("root", "Host(`a.com`) && PathPrefix(`/`)")
      .add("api", "Host(`a.com`) && PathPrefix(`/api`)")
      .add("v2", "Host(`a.com`) && PathPrefix(`/api/v2`)")
      .freeze();
  EXPECT_EQ(t.match("a.com", "/api/v2/x"), "v2");
  EXPECT_EQ(t.match("a.com", "/api/v1/x"), "api");
  EXPECT_EQ(t.match("a.com", "/"), "root");
}

TEST(RouteTable, PrefersExplicitPriority) {
  Table t;
  t.add("api", "PathPrefix(`/api`)").add("root", "PathPrefix(`/`)", 1000).freeze();
  EXPECT_EQ(t.match("a.com", "/api/users"), "root");
  Table low;
  low.add("api", "PathPrefix(`/api`)", 1).add("root", "PathPrefix(`/`)", 2).freeze();
  EXPECT_EQ(low.match("a.com", "/api/users"), "root");
}

TEST(RouteTable, BreaksPriorityTiesByName) {
  for (bool reversed : {false, true}) {
    Table t;
    if (reversed) t.add("b@file", "PathPrefix(`/`)", 5).add("a@file", "PathPrefix(`/x`)", 5);
    else t.add("a@file", "PathPrefix(`/x`)", 5).add("b@file", "PathPrefix(`/`)", 5);
    t.freeze();
    EXPECT_EQ(t.match("h", "/x"), "a@file") << "reversed " << reversed;
    EXPECT_EQ(t.match("h", "/y"), "b@file") << "reversed " << reversed;
  }
}

TEST(RouteTable, BreaksPriorityTiesByNameAcrossHostAndHostlessLists) {
  Table t;
  t.add("z-host", "Host(`a.com`)", 10).add("a-any", "PathPrefix(`/`)", 10).freeze();
  EXPECT_EQ(t.match("a.com"), "a-any");
  Table u;
  u.add("a-host", "Host(`a.com`)", 10).add("z-any", "PathPrefix(`/`)", 10).freeze();
  EXPECT_EQ(u.match("a.com"), "a-host");
}

TEST(RouteTable, MergesExactHostAndHostlessRoutesByPriority) {
  Table t;
  t.add("site", "Host(`a.com`) && PathPrefix(`/`)")          // priority 32
      .add("health", "Path(`/health`)", 1000)                // host-less, above every host route
      .add("fallback", "PathPrefix(`/`)", 1)                 // host-less, below every host route
      .add("metrics", "PathPrefix(`/metrics`)")              // host-less, priority 22 < 33
      .freeze();
  EXPECT_EQ(t.match("a.com", "/health"), "health");
  EXPECT_EQ(t.match("a.com", "/page"), "site");
  EXPECT_EQ(t.match("a.com", "/metrics"), "site");  // the longer host rule outranks it
  EXPECT_EQ(t.match("b.com", "/metrics"), "metrics");
  EXPECT_EQ(t.match("b.com", "/page"), "fallback");
}

TEST(RouteTable, MergesExactWildcardAndHostlessRoutesByPriority) {
  Table t;
  t.add("exact", "Host(`x.a.com`)", 20)
      .add("wild", "Host(`*.a.com`)", 30)
      .add("any", "PathPrefix(`/`)", 10)
      .add("top", "Path(`/top`)", 40)
      .freeze();
  EXPECT_EQ(t.match("x.a.com", "/"), "wild");
  EXPECT_EQ(t.match("y.a.com", "/"), "wild");
  EXPECT_EQ(t.match("x.a.com", "/top"), "top");
  EXPECT_EQ(t.match("a.com", "/"), "any");

  Table u;
  u.add("exact", "Host(`x.a.com`) && PathPrefix(`/e`)", 30)
      .add("wild", "Host(`*.a.com`) && PathPrefix(`/w`)", 20)
      .add("any", "PathPrefix(`/`)", 25)
      .freeze();
  EXPECT_EQ(u.match("x.a.com", "/e"), "exact");
  EXPECT_EQ(u.match("x.a.com", "/w"), "any");  // the host-less route outranks the wildcard
  EXPECT_EQ(u.match("y.a.com", "/w"), "any");
  EXPECT_EQ(u.match("x.a.com", "/z"), "any");
}

TEST(RouteTable, FallsBackToWildcardWhenTheExactHostRouteDoesNotMatch) {
  Table t;
  t.add("exact", "Host(`x.a.com`) && Path(`/only`)").add("wild", "Host(`*.a.com`)").freeze();
  EXPECT_EQ(t.match("x.a.com", "/only"), "exact");
  EXPECT_EQ(t.match("x.a.com", "/other"), "wild");
}

// ---- matchers --------------------------------------------------------------------------------

TEST(RouteTable, DistinguishesPathFromPathPrefix) {
  Table t;
  t.add("exact", "Path(`/a`)", 20).add("prefix", "PathPrefix(`/b`)", 10).freeze();
  EXPECT_EQ(t.match("h", "/a"), "exact");
  EXPECT_EQ(t.match("h", "/a/"), "");
  EXPECT_EQ(t.match("h", "/ab"), "");
  EXPECT_EQ(t.match("h", "/b"), "prefix");
  EXPECT_EQ(t.match("h", "/b/c"), "prefix");
  EXPECT_EQ(t.match("h", "/bc"), "prefix");  // Traefik prefixes are plain string prefixes
  EXPECT_EQ(t.match("h", "/A"), "");         // paths are case-sensitive
}

TEST(RouteTable, MatchesMethodCaseInsensitivelyInTheRule) {
  Table t;
  t.add("post", "Method(`post`) && PathPrefix(`/`)").add("get", "Method(`GET`)").freeze();
  EXPECT_EQ(t.match("h", "/", "POST"), "post");
  EXPECT_EQ(t.match("h", "/", "GET"), "get");
  EXPECT_EQ(t.match("h", "/", "PUT"), "");
}

TEST(RouteTable, NegatesMatchers) {
  Table t;
  t.add("public", "Host(`a.com`) && !PathPrefix(`/admin`)").freeze();
  EXPECT_EQ(t.match("a.com", "/page"), "public");
  EXPECT_EQ(t.match("a.com", "/admin/x"), "");
  Table u;
  u.add("not-a", "!Host(`a.com`)").freeze();
  EXPECT_EQ(u.match("b.com"), "not-a");
  EXPECT_EQ(u.match("A.com"), "");
  EXPECT_EQ(u.match(""), "not-a");
}

TEST(RouteTable, MatchesEitherHostOfAnOr) {
  Table t;
  t.add("ab", "(Host(`a.com`) || Host(`b.com`)) && PathPrefix(`/x`)").freeze();
  EXPECT_EQ(t.match("a.com", "/x"), "ab");
  EXPECT_EQ(t.match("B.com", "/x/y"), "ab");
  EXPECT_EQ(t.match("c.com", "/x"), "");
  EXPECT_EQ(t.match("a.com", "/y"), "");
}

TEST(RouteTable, MatchesOrOfHostAndHostlessMatcher) {
  Table t;
  t.add("mixed", "Host(`a.com`) || PathPrefix(`/shared`)").freeze();
  EXPECT_EQ(t.match("a.com", "/"), "mixed");
  EXPECT_EQ(t.match("z.com", "/shared/x"), "mixed");
  EXPECT_EQ(t.match("z.com", "/"), "");
}

// ---- required_hosts --------------------------------------------------------------------------

TEST(Matcher, ExtractsRequiredHostsFromAnOrUnderAnAnd) {
  bool restricted = false;
  EXPECT_EQ(required_hosts("(Host(`a.com`) || Host(`B.com`)) && PathPrefix(`/x`)", &restricted),
            (std::vector<std::string>{"a.com", "b.com"}));
  EXPECT_TRUE(restricted);
  // Without parentheses && binds tighter: Host(a) || (Host(b) && PathPrefix): still only a or b.
  EXPECT_EQ(required_hosts("Host(`a.com`) || Host(`b.com`) && PathPrefix(`/x`)", &restricted),
            (std::vector<std::string>{"a.com", "b.com"}));
  EXPECT_TRUE(restricted);
}

TEST(Matcher, ExtractsRequiredHostsFromEitherSideOfAnAnd) {
  bool restricted = false;
  EXPECT_EQ(required_hosts("PathPrefix(`/`) && Host(`a.com`)", &restricted), (std::vector<std::string>{"a.com"}));
  EXPECT_TRUE(restricted);
  EXPECT_EQ(required_hosts("Host(`*.a.com`) && Method(`GET`)", &restricted), (std::vector<std::string>{"*.a.com"}));
  EXPECT_TRUE(restricted);
}

TEST(Matcher, FindsNoRequiredHostsWhenAnyHostCanMatch) {
  bool restricted = true;
  EXPECT_TRUE(required_hosts("Host(`a.com`) || PathPrefix(`/x`)", &restricted).empty());
  EXPECT_FALSE(restricted);
  EXPECT_TRUE(required_hosts("!Host(`a.com`)", &restricted).empty());
  EXPECT_FALSE(restricted);
  EXPECT_TRUE(required_hosts("Host(`*`)", &restricted).empty());
  EXPECT_FALSE(restricted);
  EXPECT_TRUE(required_hosts("PathPrefix(`/`)", &restricted).empty());
  EXPECT_FALSE(restricted);
  EXPECT_TRUE(required_hosts("Host(`a.com`) || Host(`*`)", &restricted).empty());
  EXPECT_FALSE(restricted);
}

// ---- scale -----------------------------------------------------------------------------------

TEST(RouteTable, MatchesTheRightRouteAmongTenThousandHosts) {
  RouteTable table;
  constexpr uint32_t kRoutes = 10'000;
  for (uint32_t i = 0; i < kRoutes; ++i) {
    std::string n = std::to_string(i);
    table.add(make_route(std::string("r").append(n), "Host(`h" + n + ".example.com`) && PathPrefix(`/`)", 0, i));
  }
  table.add(make_route("health", "Path(`/health`)", 100'000, kRoutes));
  table.add(make_route("wild", "Host(`*.apps.example.com`)", 0, kRoutes + 1));
  table.freeze();
  ASSERT_EQ(table.size(), kRoutes + 2);
  for (uint32_t i : {0u, 1u, 9u, 10u, 99u, 1234u, 5000u, 9999u}) {
    std::string host = std::string("H").append(std::to_string(i)).append(".Example.com");
    const Route* r = table.match(RequestView{host, "/x", "GET"});
    ASSERT_NE(r, nullptr) << host;
    EXPECT_EQ(r->service, i) << host;
  }
  const Route* health = table.match(RequestView{"h42.example.com", "/health", "GET"});
  ASSERT_NE(health, nullptr);
  EXPECT_EQ(health->name, "health");
  const Route* wild = table.match(RequestView{"h42.apps.example.com", "/", "GET"});
  ASSERT_NE(wild, nullptr);
  EXPECT_EQ(wild->name, "wild");
  EXPECT_EQ(table.match(RequestView{"h10000.example.com", "/", "GET"}), nullptr);
  EXPECT_EQ(table.match(RequestView{"h1.example.co", "/", "GET"}), nullptr);
}

}  // namespace
}  // namespace berth::proxy::router

TEST(PortOf, ReturnsThePortOfAHostHeaderValue) {
  EXPECT_EQ(berth::proxy::router::port_of("a.com:8080"), "8080");
  EXPECT_EQ(berth::proxy::router::port_of("a.com"), "");
  EXPECT_EQ(berth::proxy::router::port_of("[::1]:443"), "443");
  EXPECT_EQ(berth::proxy::router::port_of("[::1]"), "");
  EXPECT_EQ(berth::proxy::router::port_of("::1"), "");
}
