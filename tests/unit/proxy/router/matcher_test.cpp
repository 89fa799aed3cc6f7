// Unit tests for the rule matchers beyond Host/Path: regexps (Go/RE2 syntax), headers, query
// parameters (decoded as Go does), client IPs, and the compile errors users see.
#include "proxy/router/matcher.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/rule.h"

namespace berth::proxy::router {
namespace {

Result<std::unique_ptr<Matcher>> compile(std::string_view rule) {
  auto ast = config::parse_rule(rule);
  if (!ast) return ast.error();
  return Matcher::compile(**ast);
}

struct Request {
  std::string host = "a.example.com";
  std::string path = "/";
  std::string method = "GET";
  std::string query;
  std::vector<http::Header> headers;
  boost::asio::ip::address client = boost::asio::ip::make_address("192.0.2.10");

  bool matched_by(std::string_view rule) {
    auto m = compile(rule);
    EXPECT_TRUE(m.ok()) << rule << ": " << (m ? "" : m.error().to_string());
    if (!m) return false;
    RequestView view{host, path, method, query, &headers, &client};
    return (*m)->matches(view);
  }
};

TEST(Matcher, HostRegexpIsUnanchoredAndSeesTheLowerCaseHost) {
  Request r;
  r.host = "API.Example.com";
  EXPECT_TRUE(r.matched_by("HostRegexp(`^api\\.example\\.com$`)"));
  EXPECT_TRUE(r.matched_by("HostRegexp(`example`)"));
  EXPECT_FALSE(r.matched_by("HostRegexp(`^example`)"));
  EXPECT_TRUE(r.matched_by("HostRegexp(`^[a-z]+\\.example\\.com$`)"));
}

TEST(Matcher, PathRegexpUsesGoSyntax) {
  Request r;
  r.path = "/users/42/edit";
  EXPECT_TRUE(r.matched_by("PathRegexp(`^/users/[0-9]+/`)"));
  EXPECT_TRUE(r.matched_by("PathRegexp(`/edit$`)"));
  EXPECT_FALSE(r.matched_by("PathRegexp(`^/users/[a-z]+`)"));
  EXPECT_TRUE(r.matched_by("PathRegexp(`(?i)^/USERS`)"));
}

TEST(Matcher, HeaderComparesNameCaseInsensitivelyAndValueExactly) {
  Request r;
  r.headers = {{"X-Env", "staging", http::HeaderId::kOther}, {"x-env", "canary", http::HeaderId::kOther}};
  EXPECT_TRUE(r.matched_by("Header(`X-ENV`, `canary`)"));
  EXPECT_TRUE(r.matched_by("Header(`x-env`, `staging`)"));
  EXPECT_FALSE(r.matched_by("Header(`X-Env`, `Staging`)"));
  EXPECT_FALSE(r.matched_by("Header(`X-Other`, `staging`)"));
  EXPECT_TRUE(r.matched_by("HeaderRegexp(`X-Env`, `^can`)"));
  EXPECT_FALSE(r.matched_by("HeaderRegexp(`X-Env`, `^prod`)"));
}

TEST(Matcher, QueryDecodesKeysAndValuesAsGoDoes) {
  Request r;
  r.query = "a=1&tag=blue+green&name=J%C3%BCrgen&flag&empty=";
  EXPECT_TRUE(r.matched_by("Query(`a`, `1`)"));
  EXPECT_TRUE(r.matched_by("Query(`tag`, `blue green`)"));
  EXPECT_TRUE(r.matched_by("Query(`name`, `Jürgen`)"));
  EXPECT_TRUE(r.matched_by("Query(`flag`)"));
  EXPECT_TRUE(r.matched_by("Query(`empty`)"));
  EXPECT_FALSE(r.matched_by("Query(`missing`)"));
  EXPECT_FALSE(r.matched_by("Query(`a`, `2`)"));
  EXPECT_TRUE(r.matched_by("QueryRegexp(`tag`, `^blue`)"));
  EXPECT_FALSE(r.matched_by("QueryRegexp(`a`, `^[a-z]+$`)"));
}

TEST(Matcher, QueryPairWithABrokenEscapeIsIgnored) {
  Request r;
  r.query = "a=%zz&a=ok";
  EXPECT_TRUE(r.matched_by("Query(`a`, `ok`)"));
  EXPECT_FALSE(r.matched_by("Query(`a`, `%zz`)"));
}

TEST(Matcher, ClientIpMatchesAddressesAndRanges) {
  Request r;
  EXPECT_TRUE(r.matched_by("ClientIP(`192.0.2.10`)"));
  EXPECT_TRUE(r.matched_by("ClientIP(`192.0.2.0/24`)"));
  EXPECT_FALSE(r.matched_by("ClientIP(`198.51.100.0/24`)"));
  r.client = boost::asio::ip::make_address("2001:db8::7");
  EXPECT_TRUE(r.matched_by("ClientIP(`2001:db8::/32`)"));
  EXPECT_FALSE(r.matched_by("ClientIP(`192.0.2.0/24`)"));
}

TEST(Matcher, CombinesTheNewMatchersWithBooleans) {
  Request r;
  r.method = "POST";
  r.query = "v=2";
  EXPECT_TRUE(r.matched_by("Method(`POST`) && (Query(`v`, `2`) || Header(`X-V`, `2`)) && !ClientIP(`10.0.0.0/8`)"));
}

TEST(Matcher, CompileErrorsNameTheMatcherAndColumn) {
  auto m = compile("Host(`a`) && PathRegexp(`([`)");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().where, "column 14");
  EXPECT_NE(m.error().message.find("PathRegexp: invalid regular expression"), std::string::npos);
  m = compile("ClientIP(`10.0.0.300`)");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().message.find("not an IP address or CIDR range"), std::string::npos);
  m = compile("Header(`X-Only-Name`)");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().message.find("takes a name and a value"), std::string::npos);
  m = compile("Query()");
  ASSERT_FALSE(m.ok());
  m = compile("Hots(`a`)");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().message.find("unknown matcher \"Hots\""), std::string::npos);
}

}  // namespace
}  // namespace berth::proxy::router
