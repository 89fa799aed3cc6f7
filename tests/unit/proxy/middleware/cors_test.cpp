// Unit tests for cors.h: preflight detection and answers, response headers and Vary, with the
// expectations of Traefik v3.7.6+ (pkg/middlewares/headers/header_test.go and traefik#13368).
#include "proxy/middleware/cors.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace berth::proxy::middleware {
namespace {

using namespace std::string_view_literals;

constexpr auto kAbsent = "<absent>"sv;

Cors make(const CorsConfig& config) {
  auto cors = Cors::compile(config);
  EXPECT_TRUE(cors.ok()) << cors.error().to_string();
  return std::move(*cors);
}

/// The value of `name` in `edits`, or kAbsent; fails the test if the name appears twice.
std::string_view find(const HeaderEdits& edits, std::string_view name) {
  std::string_view found = kAbsent;
  for (const auto& [k, v] : edits) {
    if (k != name) continue;
    EXPECT_EQ(found, kAbsent) << name << " emitted twice";
    found = v;
  }
  return found;
}

HeaderEdits preflight(const Cors& cors, std::string_view origin, std::string_view method = "GET",
                      std::string_view request_headers = {}) {
  HeaderEdits out;
  cors.preflight_headers(origin, method, request_headers, out);
  return out;
}

HeaderEdits response(const Cors& cors, std::string_view origin) {
  HeaderEdits out;
  cors.response_headers(origin, out);
  return out;
}

// ---- compile

TEST(Cors, RejectsAMalformedRegexNamingIt) {
  CorsConfig c;
  c.allow_origin_list_regex = {"^https://ok\\.org$", "a(b"};
  auto cors = Cors::compile(c);
  ASSERT_FALSE(cors.ok());
  EXPECT_NE(cors.error().message.find("\"a(b\""), std::string::npos) << cors.error().message;
  EXPECT_NE(cors.error().message.find("accessControlAllowOriginListRegex"), std::string::npos);
}

TEST(Cors, IsEnabledByAnyCorsOption) {
  EXPECT_FALSE(make({}).is_enabled());
  CorsConfig c;
  c.max_age = 0;  // set, even to zero
  EXPECT_TRUE(make(c).is_enabled());
  c = {};
  c.allow_origin_list_regex = {"x"};
  EXPECT_TRUE(make(c).is_enabled());
  c = {};
  c.add_vary_header = true;
  EXPECT_TRUE(make(c).is_enabled());
  c = {};
  c.allow_credentials = true;
  EXPECT_TRUE(make(c).is_enabled());
}

// ---- preflight detection

TEST(Cors, PreflightIsOptionsWithOriginAndRequestMethod) {
  CorsConfig c;
  c.allow_origin_list = {"*"};
  Cors cors = make(c);
  EXPECT_TRUE(cors.is_preflight("OPTIONS", "https://foo.bar.org", "GET"));
  EXPECT_FALSE(cors.is_preflight("GET", "https://foo.bar.org", "GET"));
  EXPECT_FALSE(cors.is_preflight("options", "https://foo.bar.org", "GET"));  // Go compares exactly
  EXPECT_FALSE(cors.is_preflight("OPTIONS", "", "GET"));
  EXPECT_FALSE(cors.is_preflight("OPTIONS", "https://foo.bar.org", ""));
}

TEST(Cors, WithoutCorsOptionsPreflightsGoToTheBackend) {
  EXPECT_FALSE(make({}).is_preflight("OPTIONS", "https://foo.bar.org", "GET"));
}

// ---- preflight answers (Traefik's TestNewHeader_CORSPreflights)

TEST(Cors, SimplePreflight) {
  CorsConfig c;
  c.allow_methods = {"GET", "OPTIONS", "PUT"};
  c.allow_origin_list = {"https://foo.bar.org"};
  c.max_age = 600;
  Cors cors = make(c);
  auto out = preflight(cors, "https://foo.bar.org");
  EXPECT_EQ(out.size(), 3u);
  EXPECT_EQ(find(out, "Access-Control-Allow-Origin"), "https://foo.bar.org");
  EXPECT_EQ(find(out, "Access-Control-Max-Age"), "600");
  EXPECT_EQ(find(out, "Access-Control-Allow-Methods"), "GET,OPTIONS,PUT");  // no space, as Go's Join
  EXPECT_EQ(find(out, "Access-Control-Allow-Credentials"), kAbsent);
  EXPECT_EQ(find(out, "Access-Control-Allow-Headers"), kAbsent);
}

TEST(Cors, WildcardOriginPreflightAnswersStar) {
  CorsConfig c;
  c.allow_methods = {"GET", "OPTIONS", "PUT"};
  c.allow_origin_list = {"*"};
  c.max_age = 600;
  Cors cors = make(c);
  auto out = preflight(cors, "https://foo.bar.org");
  EXPECT_EQ(find(out, "Access-Control-Allow-Origin"), "*");
}

TEST(Cors, CredentialsTurnWildcardsIntoTheRequestValues) {
  CorsConfig c;
  c.allow_methods = {"*"};
  c.allow_headers = {"X-A", "*"};
  c.allow_origin_list = {"*"};
  c.allow_credentials = true;
  Cors cors = make(c);
  std::string_view origin = "https://foo.bar.org";
  std::string_view acrh = "content-type,x-token";
  auto out = preflight(cors, origin, "PATCH", acrh);
  EXPECT_EQ(find(out, "Access-Control-Allow-Credentials"), "true");
  EXPECT_EQ(find(out, "Access-Control-Allow-Origin"), origin);
  EXPECT_EQ(find(out, "Access-Control-Allow-Origin").data(), origin.data());  // a view, not a copy
  EXPECT_EQ(find(out, "Access-Control-Allow-Methods"), "PATCH");
  EXPECT_EQ(find(out, "Access-Control-Allow-Headers"), acrh);
  // Without Access-Control-Request-Headers there is nothing to echo.
  EXPECT_EQ(find(preflight(cors, origin, "PATCH"), "Access-Control-Allow-Headers"), kAbsent);
}

TEST(Cors, WithoutCredentialsWildcardsAreSentAsConfigured) {
  CorsConfig c;
  c.allow_methods = {"*"};
  c.allow_headers = {"*"};
  c.allow_origin_list = {"*"};
  Cors cors = make(c);
  auto out = preflight(cors, "https://foo.bar.org", "PATCH", "x-token");
  EXPECT_EQ(find(out, "Access-Control-Allow-Methods"), "*");
  EXPECT_EQ(find(out, "Access-Control-Allow-Headers"), "*");
  EXPECT_EQ(find(out, "Access-Control-Allow-Origin"), "*");
}

TEST(Cors, PreflightAllowHeadersAreJoined) {
  CorsConfig c;
  c.allow_methods = {"GET", "OPTIONS", "PUT"};
  c.allow_origin_list = {"*"};
  c.allow_headers = {"origin", "X-Forwarded-For"};
  c.max_age = 600;
  Cors cors = make(c);
  auto out = preflight(cors, "https://foo.bar.org", "GET", "origin");
  EXPECT_EQ(find(out, "Access-Control-Allow-Headers"), "origin,X-Forwarded-For");
  EXPECT_EQ(out.size(), 4u);
}

TEST(Cors, MaxAgeOnlyWhenConfigured) {
  CorsConfig c;
  c.allow_origin_list = {"*"};
  EXPECT_EQ(find(preflight(make(c), "https://a.org"), "Access-Control-Max-Age"), kAbsent);
  c.max_age = 0;
  EXPECT_EQ(find(preflight(make(c), "https://a.org"), "Access-Control-Max-Age"), "0");
  c.max_age = -1;
  EXPECT_EQ(find(preflight(make(c), "https://a.org"), "Access-Control-Max-Age"), "-1");
}

TEST(Cors, PreflightCarriesExposeHeadersUnlessWildcardWithCredentials) {
  CorsConfig c;
  c.allow_origin_list = {"*"};
  c.expose_headers = {"X-Total", "X-Page"};
  EXPECT_EQ(find(preflight(make(c), "https://a.org"), "Access-Control-Expose-Headers"), "X-Total,X-Page");
  c.expose_headers = {"*"};
  EXPECT_EQ(find(preflight(make(c), "https://a.org"), "Access-Control-Expose-Headers"), "*");
  c.allow_credentials = true;
  EXPECT_EQ(find(preflight(make(c), "https://a.org"), "Access-Control-Expose-Headers"), kAbsent);
}

TEST(Cors, DisallowedOriginPreflightGetsEverythingButAllowOrigin) {
  CorsConfig c;
  c.allow_methods = {"GET"};
  c.allow_origin_list = {"https://foo.bar.org"};
  c.allow_credentials = true;
  c.max_age = 60;
  Cors cors = make(c);
  auto out = preflight(cors, "https://evil.org");
  EXPECT_EQ(find(out, "Access-Control-Allow-Origin"), kAbsent);
  EXPECT_EQ(find(out, "Access-Control-Allow-Credentials"), "true");  // Traefik sends it regardless
  EXPECT_EQ(find(out, "Access-Control-Allow-Methods"), "GET");
  EXPECT_EQ(find(out, "Access-Control-Max-Age"), "60");
}

// ---- origin matching

TEST(Cors, FirstListEntryEqualToOriginOrStarDecides) {
  CorsConfig c;
  c.allow_origin_list = {"https://a.org", "*"};
  Cors cors = make(c);
  EXPECT_EQ(cors.allowed_origin("https://a.org"), "https://a.org");
  EXPECT_EQ(cors.allowed_origin("https://b.org"), "*");
  EXPECT_EQ(cors.allowed_origin(""), "*");  // "*" matches an absent Origin too
  c.allow_origin_list = {"https://a.org"};
  EXPECT_EQ(make(c).allowed_origin("https://A.org"), std::nullopt);  // case-sensitive
}

TEST(Cors, RegexesSearchAnywhereAndAnswerTheOrigin) {
  CorsConfig c;
  c.allow_origin_list_regex = {"^https?://([a-z]+)\\.bar\\.org$"};
  EXPECT_EQ(make(c).allowed_origin("https://foo.bar.org"), "https://foo.bar.org");
  EXPECT_EQ(make(c).allowed_origin("https://foo.bar.org.evil"), std::nullopt);
  c.allow_origin_list_regex = {"([a-z]+)\\.bar"};  // unanchored, like Go's MatchString
  EXPECT_EQ(make(c).allowed_origin("https://foo.bar.org"), "https://foo.bar.org");
  c.allow_origin_list_regex = {"([a-z]+)\\.bar\\.org"};
  EXPECT_EQ(make(c).allowed_origin("https://bar.org"), std::nullopt);
}

TEST(Cors, ListIsCheckedBeforeRegexes) {
  CorsConfig c;
  c.allow_origin_list = {"*"};
  c.allow_origin_list_regex = {"foo"};
  EXPECT_EQ(make(c).allowed_origin("https://foo.org"), "*");
}

// ---- proxied responses (Traefik's TestNewHeader_CORSResponses)

TEST(Cors, ResponseAllowsAListedOrigin) {
  CorsConfig c;
  c.allow_origin_list = {"https://foo.bar.org"};
  Cors cors = make(c);
  auto out = response(cors, "https://foo.bar.org");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(find(out, "Access-Control-Allow-Origin"), "https://foo.bar.org");
  EXPECT_TRUE(response(cors, "").empty());             // no Origin header
  EXPECT_TRUE(response(cors, "https://evil.org").empty());
}

TEST(Cors, ResponseWildcardOrigin) {
  CorsConfig c;
  c.allow_origin_list = {"*"};
  EXPECT_EQ(find(response(make(c), "https://foo.bar.org"), "Access-Control-Allow-Origin"), "*");
}

TEST(Cors, ResponseWithRegexOrigin) {
  CorsConfig c;
  c.allow_origin_list_regex = {"^https?://([a-z]+)\\.bar\\.org$"};
  Cors cors = make(c);
  std::string origin = "https://foo.bar.org";
  auto out = response(cors, origin);
  EXPECT_EQ(find(out, "Access-Control-Allow-Origin"), origin);
  EXPECT_EQ(find(out, "Access-Control-Allow-Origin").data(), origin.data());
  EXPECT_TRUE(response(cors, "https://bar.org").empty());
}

TEST(Cors, ResponseWithCredentialsEchoesTheOriginForStar) {
  CorsConfig c;
  c.allow_origin_list = {"*"};
  c.allow_credentials = true;
  Cors cors = make(c);
  auto out = response(cors, "https://foo.bar.org");
  EXPECT_EQ(find(out, "Access-Control-Allow-Origin"), "https://foo.bar.org");
  EXPECT_EQ(find(out, "Access-Control-Allow-Credentials"), "true");
}

TEST(Cors, ResponseSendsCredentialsAndExposeHeadersWhateverTheOrigin) {
  CorsConfig c;
  c.allow_origin_list = {"https://foo.bar.org"};
  c.allow_credentials = true;
  c.expose_headers = {"origin", "X-Forwarded-For"};
  Cors cors = make(c);
  auto out = response(cors, "https://evil.org");
  EXPECT_EQ(find(out, "Access-Control-Allow-Origin"), kAbsent);
  EXPECT_EQ(find(out, "Access-Control-Allow-Credentials"), "true");
  EXPECT_EQ(find(out, "Access-Control-Expose-Headers"), "origin,X-Forwarded-For");
}

TEST(Cors, ResponseExposeHeaders) {
  CorsConfig c;
  c.allow_origin_list = {"*"};
  c.expose_headers = {"origin", "X-Forwarded-For"};
  Cors cors = make(c);
  auto out = response(cors, "https://foo.bar.org");
  EXPECT_EQ(find(out, "Access-Control-Allow-Origin"), "*");
  EXPECT_EQ(find(out, "Access-Control-Expose-Headers"), "origin,X-Forwarded-For");
  c.expose_headers = {"*"};
  c.allow_credentials = true;
  EXPECT_EQ(find(response(make(c), "https://foo.bar.org"), "Access-Control-Expose-Headers"), kAbsent);
}

TEST(Cors, ResponseAppendsToAReusedBuffer) {
  CorsConfig c;
  c.allow_origin_list = {"*"};
  Cors cors = make(c);
  HeaderEdits out;
  out.emplace_back("X-Earlier", "1");
  cors.response_headers("https://a.org", out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].first, "X-Earlier");
}

// ---- Vary

TEST(Cors, VaryAppendsOriginToTheBackendsValue) {
  CorsConfig c;
  c.allow_origin_list = {"https://foo.bar.org"};
  c.add_vary_header = true;
  Cors cors = make(c);
  std::string scratch;
  EXPECT_EQ(cors.vary("", scratch), "Origin");
  EXPECT_EQ(cors.vary("Testing", scratch), "Testing,Origin");
  EXPECT_EQ(cors.vary("Origin", scratch), "");  // already there: leave Vary alone
  EXPECT_EQ(cors.vary("origin", scratch), "origin,Origin");  // Traefik compares case-sensitively
  EXPECT_EQ(cors.vary("Accept-Encoding, Origin", scratch), "Accept-Encoding, Origin,Origin");
}

TEST(Cors, VaryEvenForAWildcardOriginList) {
  CorsConfig c;
  c.allow_origin_list = {"*"};
  c.add_vary_header = true;
  std::string scratch;
  EXPECT_EQ(make(c).vary("", scratch), "Origin");
}

TEST(Cors, NoVaryWithoutAddVaryHeader) {
  CorsConfig c;
  c.allow_origin_list = {"https://foo.bar.org"};
  std::string scratch;
  EXPECT_EQ(make(c).vary("Testing", scratch), "");
}

}  // namespace
}  // namespace berth::proxy::middleware
