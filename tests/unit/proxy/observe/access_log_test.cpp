// Unit tests for the access log: Traefik's common, genericCLF and json lines field by field, the
// filters, the field and header modes, escaping, and the rings and writer (drops, reopen, flush).
#include "proxy/observe/access_log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <fstream>
#include <sstream>
#include <thread>

namespace berth::proxy::observe {
namespace {

using http::Header;
using http::HeaderId;
using namespace std::chrono_literals;

constexpr int64_t kStart = 1784889195LL * 1'000'000'000 + 123'456'789;  // 2026-07-24T10:33:15.123456789Z
constexpr int32_t kPlus2h = 7200;

// A proxied HTTP/2 exchange over TLS, with every field Traefik logs set.
struct Exchange {
  std::vector<Header> request{{"Host", "example.com:8443", HeaderId::kHost},
                              {"user-agent", "curl/8.7.1", HeaderId::kOther},
                              {"Referer", "https://ref.example/", HeaderId::kOther},
                              {"Accept", "*/*", HeaderId::kOther},
                              {"X-Multi", "a", HeaderId::kOther},
                              {"x-multi", "b", HeaderId::kOther},
                              {"Authorization", "Basic eHl6", HeaderId::kAuthorization}};
  std::vector<Header> origin{{"Content-Type", "text/plain", HeaderId::kContentType},
                             {"X-Backend", "b1", HeaderId::kOther},
                             {"set-cookie", "s=1", HeaderId::kOther}};
  ExchangeRecord r;

  Exchange() {
    r.entry_point_name = "websecure";
    r.start_unix_ns = kStart;
    r.duration_ns = 42'500'000;
    r.request_count = 42;
    r.client = boost::asio::ip::make_address("203.0.113.7");
    r.client_port = 54321;
    r.method = "GET";
    r.target = "/api/x?y=1";
    r.http_version = "HTTP/2.0";
    r.tls = true;
    r.host = "example.com:8443";
    r.request_headers = &request;
    r.request_bytes = 12;
    r.tls_version = "1.3";
    r.tls_cipher = "TLS_AES_128_GCM_SHA256";
    r.router = "web-shop@docker";
    r.service = "shop@docker";
    r.service_url = "http://172.18.0.5:8080";
    r.retry_attempts = 1;
    r.origin_status = 200;
    r.origin_duration_ns = 40'000'000;
    r.origin_bytes = 512;
    r.origin_headers = &origin;
    r.status = 200;
    r.code = 200;
    r.response_bytes = 512;
  }
};

// An answer berth gave itself before any router matched (a 404 on an HTTP/1.0 request without Host).
ExchangeRecord unrouted() {
  ExchangeRecord r;
  r.entry_point_name = "web";
  r.start_unix_ns = 1784889195LL * 1'000'000'000;
  r.duration_ns = 300'000;
  r.request_count = 7;
  r.client = boost::asio::ip::make_address("10.1.2.3");
  r.client_port = 40000;
  r.method = "GET";
  r.target = "/nowhere";
  r.http_version = "HTTP/1.0";
  r.status = 404;
  r.response_bytes = 19;
  return r;
}

config::AccessLogConfig config_for(std::string format) {
  config::AccessLogConfig c;
  c.enabled = true;
  c.format = std::move(format);
  return c;
}

std::string line(const LineFormatter& f, const ExchangeRecord& r, int32_t offset = 0) {
  std::string out(1 << 16, '\0');
  out.resize(f.format(r, offset, out.data(), out.size()));
  return out;
}

std::string line(const config::AccessLogConfig& c, const ExchangeRecord& r, int32_t offset = 0) {
  return line(LineFormatter(c), r, offset);
}

boost::json::object json_of(const std::string& text) {
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  return boost::json::parse(text).as_object();
}

std::vector<std::string> keys_of(const boost::json::object& o) {
  std::vector<std::string> keys;
  for (const auto& kv : o) keys.emplace_back(kv.key());
  return keys;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

size_t count_lines(const std::string& text) { return static_cast<size_t>(std::count(text.begin(), text.end(), '\n')); }

// A temp directory removed when the test ends.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("berth_access_log_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(std::string_view name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return done();
}

// ---- common and genericCLF -------------------------------------------------------------------

TEST(AccessLogCommon, WritesTraefiksLayoutFieldByField) {
  Exchange ex;
  EXPECT_EQ(line(config_for("common"), ex.r),
            "203.0.113.7 - - [24/Jul/2026:10:33:15 +0000] \"GET /api/x?y=1 HTTP/2.0\" 200 512 \"-\" \"-\" 42 "
            "\"web-shop@docker\" \"http://172.18.0.5:8080\" 42ms\n");
}

TEST(AccessLogCommon, ShowsRefererAndUserAgentOnlyWhenTheHeaderModesKeepThem) {
  Exchange ex;
  auto c = config_for("common");
  c.header_modes = {{"User-Agent", "keep"}, {"referer", "keep"}};
  EXPECT_EQ(line(c, ex.r),
            "203.0.113.7 - - [24/Jul/2026:10:33:15 +0000] \"GET /api/x?y=1 HTTP/2.0\" 200 512 "
            "\"https://ref.example/\" \"curl/8.7.1\" 42 \"web-shop@docker\" \"http://172.18.0.5:8080\" 42ms\n");
  c.header_modes = {{"User-Agent", "redact"}};
  c.headers_default_mode = "keep";
  EXPECT_NE(line(c, ex.r).find("\"https://ref.example/\" \"REDACTED\" 42"), std::string::npos) << line(c, ex.r);
}

TEST(AccessLogCommon, RendersMissingValuesAsDashes) {
  ExchangeRecord r = unrouted();
  EXPECT_EQ(line(config_for("common"), r),
            "10.1.2.3 - - [24/Jul/2026:10:33:15 +0000] \"GET /nowhere HTTP/1.0\" 404 19 \"-\" \"-\" 7 \"-\" \"-\" 0ms\n");
  r.method = "";
  r.target = "";
  r.http_version = "";
  r.username = "alice";
  EXPECT_EQ(line(config_for("common"), r),
            "10.1.2.3 - alice [24/Jul/2026:10:33:15 +0000] \"- - -\" 404 19 \"-\" \"-\" 7 \"-\" \"-\" 0ms\n");
}

TEST(AccessLogGenericClf, StopsAfterTheUserAgent) {
  Exchange ex;
  auto c = config_for("genericCLF");
  c.header_modes = {{"User-Agent", "keep"}};
  EXPECT_EQ(line(c, ex.r),
            "203.0.113.7 - - [24/Jul/2026:10:33:15 +0000] \"GET /api/x?y=1 HTTP/2.0\" 200 512 \"-\" \"curl/8.7.1\"\n");
}

TEST(AccessLogCommon, UsesLocalTimeWhenStartUTCIsDropped) {
  Exchange ex;
  auto c = config_for("common");
  c.field_modes = {{"StartUTC", "drop"}};
  EXPECT_NE(line(c, ex.r, -27000).find("[24/Jul/2026:03:03:15 -0730]"), std::string::npos) << line(c, ex.r, -27000);
  c.field_modes = {{"StartUTC", "drop"}, {"StartLocal", "drop"}};
  EXPECT_NE(line(c, ex.r).find(" [-] "), std::string::npos);
}

TEST(AccessLogCommon, DroppedFieldsBecomeDashes) {
  Exchange ex;
  auto c = config_for("common");
  c.fields_default_mode = "drop";
  EXPECT_EQ(line(c, ex.r), "- - - [-] \"- - -\" - - \"-\" \"-\" - \"-\" \"-\" 0ms\n");
  c.field_modes = {{"routername", "keep"}, {"Duration", "keep"}};
  EXPECT_EQ(line(c, ex.r), "- - - [-] \"- - -\" - - \"-\" \"-\" - \"web-shop@docker\" \"-\" 42ms\n");
}

TEST(AccessLogCommon, EscapesQuotesBackslashesAndControlBytes) {
  Exchange ex;
  ex.r.target = "/a\"b\\c\x01\x7f<&>\xc3\xa9";
  ex.request[1].value = "evil\"agent\nsecond line";
  auto c = config_for("common");
  c.header_modes = {{"User-Agent", "keep"}};
  const std::string l = line(c, ex.r);
  EXPECT_NE(l.find("\"GET /a\\\"b\\\\c\\x01\\x7f<&>\xc3\xa9 HTTP/2.0\""), std::string::npos) << l;
  EXPECT_NE(l.find("\"evil\\\"agent\\x0asecond line\""), std::string::npos) << l;
  EXPECT_EQ(count_lines(l), 1u);
}

TEST(AccessLogCommon, ShowsAForwardedForFromATrustedPeerAsClientHost) {
  Exchange ex;
  ex.r.forwarded_for = "198.51.100.1, 10.0.0.1";
  EXPECT_EQ(line(config_for("common"), ex.r).rfind("198.51.100.1, 10.0.0.1 - - [", 0), 0u);
}

// ---- json ------------------------------------------------------------------------------------

TEST(AccessLogJson, WritesTraefiksFieldsInSortedOrder) {
  Exchange ex;
  EXPECT_EQ(line(config_for("json"), ex.r, kPlus2h),
            R"({"ClientAddr":"203.0.113.7:54321","ClientHost":"203.0.113.7","ClientPort":"54321",)"
            R"("ClientUsername":"-","DownstreamContentSize":512,"DownstreamStatus":200,"Duration":42500000,)"
            R"("OriginContentSize":512,"OriginDuration":40000000,"OriginStatus":200,"Overhead":2500000,)"
            R"("RequestAddr":"example.com:8443","RequestContentSize":12,"RequestCount":42,)"
            R"("RequestHost":"example.com","RequestMethod":"GET","RequestPath":"/api/x?y=1","RequestPort":"8443",)"
            R"("RequestProtocol":"HTTP/2.0","RequestScheme":"https","RetryAttempts":1,)"
            R"("RouterName":"web-shop@docker","ServiceAddr":"172.18.0.5:8080","ServiceName":"shop@docker",)"
            R"("ServiceURL":"http://172.18.0.5:8080","StartLocal":"2026-07-24T12:33:15.123456789+02:00",)"
            R"("StartUTC":"2026-07-24T10:33:15.123456789Z","TLSCipher":"TLS_AES_128_GCM_SHA256","TLSVersion":"1.3",)"
            R"("entryPointName":"websecure","level":"info","msg":"","time":"2026-07-24T12:33:15+02:00"})"
            "\n");
}

TEST(AccessLogJson, EachFieldHasTraefiksType) {
  Exchange ex;
  auto o = json_of(line(config_for("json"), ex.r));
  EXPECT_EQ(o.at("ClientAddr").as_string(), "203.0.113.7:54321");
  EXPECT_EQ(o.at("ClientHost").as_string(), "203.0.113.7");
  EXPECT_EQ(o.at("ClientPort").as_string(), "54321");  // a string, as Go's SplitHostPort gives it
  EXPECT_EQ(o.at("ClientUsername").as_string(), "-");
  EXPECT_EQ(o.at("DownstreamContentSize").as_int64(), 512);
  EXPECT_EQ(o.at("DownstreamStatus").as_int64(), 200);
  EXPECT_EQ(o.at("Duration").as_int64(), 42'500'000);
  EXPECT_FALSE(o.contains("GzipRatio"));  // same size both sides
  EXPECT_EQ(o.at("OriginContentSize").as_int64(), 512);
  EXPECT_EQ(o.at("OriginDuration").as_int64(), 40'000'000);
  EXPECT_EQ(o.at("OriginStatus").as_int64(), 200);
  EXPECT_EQ(o.at("Overhead").as_int64(), 2'500'000);
  EXPECT_EQ(o.at("RequestAddr").as_string(), "example.com:8443");
  EXPECT_EQ(o.at("RequestContentSize").as_int64(), 12);
  EXPECT_EQ(o.at("RequestCount").as_int64(), 42);
  EXPECT_EQ(o.at("RequestHost").as_string(), "example.com");
  EXPECT_EQ(o.at("RequestMethod").as_string(), "GET");
  EXPECT_EQ(o.at("RequestPath").as_string(), "/api/x?y=1");
  EXPECT_EQ(o.at("RequestPort").as_string(), "8443");
  EXPECT_EQ(o.at("RequestProtocol").as_string(), "HTTP/2.0");
  EXPECT_EQ(o.at("RequestScheme").as_string(), "https");
  EXPECT_EQ(o.at("RetryAttempts").as_int64(), 1);
  EXPECT_EQ(o.at("RouterName").as_string(), "web-shop@docker");
  EXPECT_EQ(o.at("ServiceAddr").as_string(), "172.18.0.5:8080");
  EXPECT_EQ(o.at("ServiceName").as_string(), "shop@docker");
  EXPECT_EQ(o.at("ServiceURL").as_string(), "http://172.18.0.5:8080");
  EXPECT_EQ(o.at("StartLocal").as_string(), "2026-07-24T10:33:15.123456789Z");
  EXPECT_EQ(o.at("StartUTC").as_string(), "2026-07-24T10:33:15.123456789Z");
  EXPECT_EQ(o.at("TLSCipher").as_string(), "TLS_AES_128_GCM_SHA256");
  EXPECT_EQ(o.at("TLSVersion").as_string(), "1.3");
  EXPECT_FALSE(o.contains("TLSClientSubject"));
  EXPECT_EQ(o.at("entryPointName").as_string(), "websecure");
  EXPECT_EQ(o.at("level").as_string(), "info");
  EXPECT_EQ(o.at("msg").as_string(), "");
  EXPECT_EQ(o.at("time").as_string(), "2026-07-24T10:33:15Z");
  auto keys = keys_of(o);
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  EXPECT_EQ(keys.size(), 33u);
}

TEST(AccessLogJson, LeavesOutWhatTraefikLeavesOutBeforeARouterMatched) {
  auto o = json_of(line(config_for("json"), unrouted()));
  for (const char* absent : {"OriginContentSize", "OriginDuration", "OriginStatus", "RouterName", "ServiceName",
                             "ServiceURL", "ServiceAddr", "RequestAddr", "RequestHost", "RequestPort", "TLSCipher",
                             "TLSVersion", "GzipRatio"})
    EXPECT_FALSE(o.contains(absent)) << absent;
  EXPECT_EQ(o.at("Overhead").as_int64(), 300'000);  // all of it: no server took part
  EXPECT_EQ(o.at("RequestScheme").as_string(), "http");
  EXPECT_EQ(o.at("StartUTC").as_string(), "2026-07-24T10:33:15Z");  // no fraction at all
  EXPECT_EQ(o.at("DownstreamStatus").as_int64(), 404);
}

TEST(AccessLogJson, AnsweredByAMiddlewareKeepsZeroOriginFields) {
  ExchangeRecord r = unrouted();
  r.router = "redirect@file";
  auto o = json_of(line(config_for("json"), r));
  EXPECT_EQ(o.at("OriginStatus").as_int64(), 0);
  EXPECT_EQ(o.at("OriginContentSize").as_int64(), 0);
  EXPECT_EQ(o.at("OriginDuration").as_int64(), 0);
}

TEST(AccessLogJson, TrimsTrailingZerosOfTheFractionAsGoDoes) {
  Exchange ex;
  ex.r.start_unix_ns = 1784889195LL * 1'000'000'000 + 120'000'000;
  auto o = json_of(line(config_for("json"), ex.r, -27000));
  EXPECT_EQ(o.at("StartUTC").as_string(), "2026-07-24T10:33:15.12Z");
  EXPECT_EQ(o.at("StartLocal").as_string(), "2026-07-24T03:03:15.12-07:30");
  ex.r.start_unix_ns = 946684799LL * 1'000'000'000 + 1;  // and a year boundary
  o = json_of(line(config_for("json"), ex.r));
  EXPECT_EQ(o.at("StartUTC").as_string(), "1999-12-31T23:59:59.000000001Z");
  ex.r.start_unix_ns = 1709164800LL * 1'000'000'000;  // a leap day
  EXPECT_NE(line(config_for("common"), ex.r).find("[29/Feb/2024:00:00:00 +0000]"), std::string::npos);
}

TEST(AccessLogJson, WritesAddressesPortsAndPathsAsGoSplitsThem) {
  Exchange ex;
  ex.r.client = boost::asio::ip::make_address("2001:db8::7");
  ex.r.client_port = 443;
  ex.r.host = "[2001:db8::1]:8080";
  ex.r.target = "http://example.com/p?q=1";
  ex.r.service_url = "https://user:pw@backend.internal:9443/base";
  auto o = json_of(line(config_for("json"), ex.r));
  EXPECT_EQ(o.at("ClientAddr").as_string(), "[2001:db8::7]:443");
  EXPECT_EQ(o.at("ClientHost").as_string(), "2001:db8::7");
  EXPECT_EQ(o.at("RequestHost").as_string(), "2001:db8::1");
  EXPECT_EQ(o.at("RequestPort").as_string(), "8080");
  EXPECT_EQ(o.at("RequestPath").as_string(), "/p?q=1");
  EXPECT_EQ(o.at("ServiceAddr").as_string(), "backend.internal:9443");
  ex.r.host = "example.com";
  o = json_of(line(config_for("json"), ex.r));
  EXPECT_EQ(o.at("RequestHost").as_string(), "example.com");
  EXPECT_EQ(o.at("RequestPort").as_string(), "-");
}

TEST(AccessLogJson, AddsGzipRatioWhenTheSizesDiffer) {
  Exchange ex;
  ex.r.origin_bytes = 1000;
  ex.r.response_bytes = 400;
  auto o = json_of(line(config_for("json"), ex.r));
  EXPECT_DOUBLE_EQ(o.at("GzipRatio").to_number<double>(), 2.5);
}

TEST(AccessLogJson, ShowsUsernameSubjectAndForwardedFor) {
  Exchange ex;
  ex.r.username = "alice";
  ex.r.tls_client_subject = "CN=client,O=Acme";
  ex.r.forwarded_for = "198.51.100.1";
  auto o = json_of(line(config_for("json"), ex.r));
  EXPECT_EQ(o.at("ClientUsername").as_string(), "alice");
  EXPECT_EQ(o.at("TLSClientSubject").as_string(), "CN=client,O=Acme");
  EXPECT_EQ(o.at("ClientHost").as_string(), "198.51.100.1");
  EXPECT_EQ(o.at("ClientAddr").as_string(), "203.0.113.7:54321");
}

TEST(AccessLogJson, KeepsAndDropsFieldsByName) {
  Exchange ex;
  auto c = config_for("json");
  c.field_modes = {{"clientusername", "drop"}, {"StartLocal", "drop"}, {"entryPointName", "drop"}};
  auto o = json_of(line(c, ex.r));
  EXPECT_FALSE(o.contains("ClientUsername"));
  EXPECT_FALSE(o.contains("StartLocal"));
  EXPECT_FALSE(o.contains("entryPointName"));
  EXPECT_TRUE(o.contains("StartUTC"));
  c.fields_default_mode = "drop";
  c.field_modes = {{"RouterName", "keep"}};
  EXPECT_EQ(line(c, ex.r),
            R"({"RouterName":"web-shop@docker","level":"info","msg":"","time":"2026-07-24T10:33:15Z"})" "\n");
  c.field_modes.clear();
  EXPECT_EQ(line(c, ex.r), R"({"level":"info","msg":"","time":"2026-07-24T10:33:15Z"})" "\n");
}

TEST(AccessLogJson, DropsHeadersByDefault) {
  Exchange ex;
  const std::string l = line(config_for("json"), ex.r);
  EXPECT_EQ(l.find("request_"), std::string::npos);
  EXPECT_EQ(l.find("origin_"), std::string::npos);
  EXPECT_EQ(l.find("downstream_"), std::string::npos);
}

TEST(AccessLogJson, WritesHeadersByModeCanonicalSortedAndJoined) {
  Exchange ex;
  auto c = config_for("json");
  c.headers_default_mode = "keep";
  c.header_modes = {{"authorization", "redact"}, {"X-Backend", "drop"}};
  const std::string l = line(c, ex.r);
  auto o = json_of(l);
  EXPECT_EQ(o.at("request_Accept").as_string(), "*/*");
  EXPECT_EQ(o.at("request_Authorization").as_string(), "REDACTED");
  EXPECT_EQ(o.at("request_Referer").as_string(), "https://ref.example/");
  EXPECT_EQ(o.at("request_User-Agent").as_string(), "curl/8.7.1");
  EXPECT_EQ(o.at("request_X-Multi").as_string(), "a,b");
  EXPECT_FALSE(o.contains("request_Host"));  // Go keeps Host out of the header map
  EXPECT_EQ(o.at("origin_Content-Type").as_string(), "text/plain");
  EXPECT_EQ(o.at("origin_Set-Cookie").as_string(), "s=1");
  EXPECT_FALSE(o.contains("origin_X-Backend"));
  EXPECT_EQ(o.at("downstream_Content-Type").as_string(), "text/plain");  // the origin headers
  EXPECT_EQ(o.at("downstream_Set-Cookie").as_string(), "s=1");
  auto keys = keys_of(o);
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end())) << l;
  EXPECT_NE(l.find(R"("TLSVersion":"1.3","downstream_Content-Type":"text/plain","downstream_Set-Cookie":"s=1",)"
                   R"("entryPointName":"websecure","level":"info","msg":"","origin_Content-Type":"text/plain",)"
                   R"("origin_Set-Cookie":"s=1","request_Accept":"*/*","request_Authorization":"REDACTED",)"
                   R"("request_Referer":"https://ref.example/","request_User-Agent":"curl/8.7.1",)"
                   R"("request_X-Multi":"a,b","time":)"),
            std::string::npos)
      << l;
}

TEST(AccessLogJson, KeepsOnlyTheNamedHeadersWhenTheDefaultDrops) {
  Exchange ex;
  auto c = config_for("json");
  c.header_modes = {{"user-agent", "keep"}, {"Content-Type", "redact"}};
  auto o = json_of(line(c, ex.r));
  EXPECT_EQ(o.at("request_User-Agent").as_string(), "curl/8.7.1");
  EXPECT_EQ(o.at("origin_Content-Type").as_string(), "REDACTED");
  EXPECT_EQ(o.at("downstream_Content-Type").as_string(), "REDACTED");
  EXPECT_FALSE(o.contains("request_Accept"));
  EXPECT_FALSE(o.contains("origin_Set-Cookie"));
}

TEST(AccessLogJson, EscapesStringsAsGoDoes) {
  Exchange ex;
  ex.r.target = "/a\"b\\c\x01\t<&>\xff\xe2\x80\xa8\xc3\xa9";
  ex.r.username = "line\nbreak";
  auto c = config_for("json");
  c.header_modes = {{"User-Agent", "keep"}};
  ex.request[1].value = "ua\x1b[31m";
  const std::string l = line(c, ex.r);
  EXPECT_NE(l.find(R"("RequestPath":"/a\"b\\c\u0001\t\u003c\u0026\u003e\ufffd\u2028)" "\xc3\xa9" R"(")"),
            std::string::npos)
      << l;
  EXPECT_NE(l.find(R"("ClientUsername":"line\nbreak")"), std::string::npos) << l;
  EXPECT_NE(l.find(R"("request_User-Agent":"ua\u001b[31m")"), std::string::npos) << l;
  auto o = json_of(l);  // and it parses
  EXPECT_EQ(o.at("ClientUsername").as_string(), "line\nbreak");
}

TEST(AccessLogJson, LeavesOutTheHeadersOfALineTooLongForTheBuffer) {
  Exchange ex;
  const std::string huge(70'000, 'x');
  ex.request.push_back({"X-Huge", huge, HeaderId::kOther});
  auto c = config_for("json");
  c.headers_default_mode = "keep";
  LineFormatter f(c);
  std::string out(64 * 1024, '\0');
  out.resize(f.format(ex.r, 0, out.data(), out.size()));
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.find("request_"), std::string::npos);
  EXPECT_EQ(json_of(out).at("RouterName").as_string(), "web-shop@docker");
  std::string tiny(40, '\0');
  EXPECT_EQ(f.format(ex.r, 0, tiny.data(), tiny.size()), 0u);
}

// ---- filters ---------------------------------------------------------------------------------

TEST(AccessLogFilters, KeepEverythingWithoutFilters) {
  LineFormatter f(config_for("common"));
  ExchangeRecord r = unrouted();
  EXPECT_TRUE(f.keep(r));
  r.status = 200;
  EXPECT_TRUE(f.keep(r));
}

TEST(AccessLogFilters, KeepStatusesInTheRanges) {
  auto c = config_for("common");
  c.status_codes = {{200, 200}, {300, 302}};
  LineFormatter f(c);
  ExchangeRecord r = unrouted();
  for (int status : {200, 300, 301, 302}) {
    r.status = status;
    EXPECT_TRUE(f.keep(r)) << status;
  }
  for (int status : {201, 303, 404, 500}) {
    r.status = status;
    EXPECT_FALSE(f.keep(r)) << status;
  }
}

TEST(AccessLogFilters, KeepRetriedExchanges) {
  auto c = config_for("common");
  c.retry_attempts = true;
  LineFormatter f(c);
  ExchangeRecord r = unrouted();
  EXPECT_FALSE(f.keep(r));
  r.retry_attempts = 2;
  EXPECT_TRUE(f.keep(r));
}

TEST(AccessLogFilters, KeepExchangesLongerThanMinDuration) {
  auto c = config_for("common");
  c.min_duration = 10ms;
  LineFormatter f(c);
  ExchangeRecord r = unrouted();
  r.duration_ns = 10'000'000;
  EXPECT_FALSE(f.keep(r));  // strictly longer, as Traefik
  r.duration_ns = 10'000'001;
  EXPECT_TRUE(f.keep(r));
}

TEST(AccessLogFilters, KeepWhenAnyFilterMatches) {
  auto c = config_for("common");
  c.status_codes = {{500, 599}};
  c.retry_attempts = true;
  c.min_duration = 1s;
  LineFormatter f(c);
  ExchangeRecord r = unrouted();
  r.status = 200;
  EXPECT_FALSE(f.keep(r));
  r.retry_attempts = 1;
  EXPECT_TRUE(f.keep(r));
  r.retry_attempts = 0;
  r.duration_ns = 2'000'000'000;
  EXPECT_TRUE(f.keep(r));
  r.duration_ns = 0;
  r.status = 503;
  EXPECT_TRUE(f.keep(r));
}

TEST(AccessLogFilters, LeaveOutInternalRoutersUnlessAddInternals) {
  auto c = config_for("common");
  ExchangeRecord r = unrouted();
  r.router = "ping@internal";
  EXPECT_FALSE(LineFormatter(c).keep(r));
  c.add_internals = true;
  EXPECT_TRUE(LineFormatter(c).keep(r));
}

// ---- the log: rings, writer, drops, reopen ---------------------------------------------------

TEST(AccessLog, WritesEveryRecordedLineToTheFileByStop) {
  TempDir dir;
  auto c = config_for("common");
  c.file_path = dir.file("logs/access.log");  // the directory is created
  auto log = AccessLog::open(c, 2);
  ASSERT_TRUE(log) << log.error().to_string();
  Exchange ex;
  for (int i = 0; i < 100; ++i) (*log)->record(static_cast<size_t>(i % 2), ex.r);
  (*log)->stop();
  const std::string text = read_file(c.file_path);
  EXPECT_EQ(count_lines(text), 100u);
  EXPECT_EQ((*log)->written_lines(), 100u);
  EXPECT_EQ((*log)->dropped_lines(), 0u);
  EXPECT_EQ(text.substr(0, text.find('\n') + 1), line(c, ex.r));
}

TEST(AccessLog, WritesALineSoonWithoutBuffering) {
  TempDir dir;
  auto c = config_for("json");
  c.file_path = dir.file("access.log");
  auto log = AccessLog::open(c, 1);
  ASSERT_TRUE(log);
  Exchange ex;
  (*log)->record(0, ex.r);
  EXPECT_TRUE(wait_for([&] { return count_lines(read_file(c.file_path)) == 1; }, 2s));
}

TEST(AccessLog, BufferingSizeStillWritesWithinATenthOfASecond) {
  TempDir dir;
  auto c = config_for("common");
  c.file_path = dir.file("access.log");
  c.buffering_size = 10'000;
  auto log = AccessLog::open(c, 1);
  ASSERT_TRUE(log);
  Exchange ex;
  std::this_thread::sleep_for(150ms);  // the writer is asleep, waiting for bufferingSize lines
  const auto start = std::chrono::steady_clock::now();
  (*log)->record(0, ex.r);
  ASSERT_TRUE(wait_for([&] { return (*log)->written_lines() == 1; }, 2s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);  // ~100 ms; generous for a loaded machine
}

TEST(AccessLog, AFullRingDropsLinesAndCountsThem) {
  TempDir dir;
  auto c = config_for("common");
  c.file_path = dir.file("access.log");
  auto log = AccessLog::open(c, 1, AccessLog::Options{4096, false});
  ASSERT_TRUE(log);
  Exchange ex;
  const size_t size = line(c, ex.r).size();
  const size_t fit = 4096 / size;
  for (int i = 0; i < 100; ++i) (*log)->record(0, ex.r);
  EXPECT_EQ((*log)->dropped_lines(), 100 - fit);
  (*log)->drain();
  EXPECT_EQ((*log)->written_lines(), fit);
  EXPECT_EQ(count_lines(read_file(c.file_path)), fit);
  // Drained, the ring takes lines again.
  (*log)->record(0, ex.r);
  (*log)->stop();
  EXPECT_EQ(count_lines(read_file(c.file_path)), fit + 1);
  EXPECT_EQ((*log)->dropped_lines(), 100 - fit);
}

TEST(AccessLog, AFailingDiskDropsLinesAndCountsThem) {
  if (::access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no /dev/full";
  auto c = config_for("common");
  c.file_path = "/dev/full";  // every write fails with ENOSPC
  auto log = AccessLog::open(c, 2);
  ASSERT_TRUE(log) << log.error().to_string();
  Exchange ex;
  for (int i = 0; i < 50; ++i) (*log)->record(static_cast<size_t>(i % 2), ex.r);
  (*log)->stop();
  EXPECT_EQ((*log)->dropped_lines(), 50u);
  EXPECT_EQ((*log)->written_lines(), 0u);
}

TEST(AccessLog, ReopensThePathAfterARename) {
  TempDir dir;
  auto c = config_for("common");
  c.file_path = dir.file("access.log");
  auto log = AccessLog::open(c, 1);
  ASSERT_TRUE(log);
  Exchange ex;
  ex.r.request_count = 1;
  (*log)->record(0, ex.r);
  ASSERT_TRUE(wait_for([&] { return (*log)->written_lines() == 1; }));
  std::filesystem::rename(c.file_path, dir.file("access.log.1"));
  (*log)->reopen();
  ASSERT_TRUE(wait_for([&] { return std::filesystem::exists(c.file_path); }));
  ex.r.request_count = 2;
  (*log)->record(0, ex.r);
  (*log)->stop();
  const std::string old_text = read_file(dir.file("access.log.1"));
  const std::string new_text = read_file(c.file_path);
  EXPECT_EQ(count_lines(old_text), 1u);
  EXPECT_NE(old_text.find("\" 1 \"web-shop@docker\""), std::string::npos) << old_text;
  EXPECT_EQ(count_lines(new_text), 1u);
  EXPECT_NE(new_text.find("\" 2 \"web-shop@docker\""), std::string::npos) << new_text;
}

TEST(AccessLog, ReopenFailureKeepsTheOldFile) {
  TempDir dir;
  auto c = config_for("common");
  c.file_path = dir.file("sub/access.log");
  auto log = AccessLog::open(c, 1, AccessLog::Options{0, false});
  ASSERT_TRUE(log);
  Exchange ex;
  std::filesystem::rename(dir.file("sub"), dir.file("moved"));
  std::ofstream(dir.file("sub")) << "a file where the directory was";  // the path cannot be reopened
  (*log)->reopen();
  (*log)->record(0, ex.r);
  (*log)->drain();
  EXPECT_EQ(count_lines(read_file(dir.file("moved/access.log"))), 1u);
  EXPECT_EQ((*log)->dropped_lines(), 0u);
}

TEST(AccessLog, OpenFailsWithTheFileNamed) {
  TempDir dir;
  std::ofstream(dir.file("blocker")) << "x";
  auto c = config_for("common");
  c.file_path = dir.file("blocker/access.log");
  auto log = AccessLog::open(c, 1);
  ASSERT_FALSE(log);
  EXPECT_NE(log.error().to_string().find("blocker"), std::string::npos) << log.error().to_string();
  EXPECT_NE(log.error().to_string().find("accessLog.filePath"), std::string::npos);
}

TEST(AccessLog, FiltersBeforeFormatting) {
  TempDir dir;
  auto c = config_for("common");
  c.file_path = dir.file("access.log");
  c.status_codes = {{500, 599}};
  auto log = AccessLog::open(c, 1, AccessLog::Options{0, false});
  ASSERT_TRUE(log);
  Exchange ex;
  (*log)->record(0, ex.r);
  ex.r.status = 502;
  (*log)->record(0, ex.r);
  (*log)->record(5, ex.r);  // no such worker: ignored
  (*log)->stop();
  const std::string text = read_file(c.file_path);
  EXPECT_EQ(count_lines(text), 1u);
  EXPECT_NE(text.find("\" 502 512 "), std::string::npos) << text;
}

TEST(AccessLog, ManyLinesFromTwoWorkersWhileTheWriterRuns) {
  TempDir dir;
  auto c = config_for("json");
  c.file_path = dir.file("access.log");
  auto log = AccessLog::open(c, 2);
  ASSERT_TRUE(log);
  std::vector<std::thread> workers;
  for (size_t w = 0; w < 2; ++w)
    workers.emplace_back([&, w] {
      Exchange ex;
      for (int i = 0; i < 20'000; ++i) {
        ex.r.request_count = static_cast<uint64_t>(i);
        (*log)->record(w, ex.r);
      }
    });
  for (auto& t : workers) t.join();
  (*log)->stop();
  const std::string text = read_file(c.file_path);
  EXPECT_EQ(count_lines(text) + (*log)->dropped_lines(), 40'000u);
  EXPECT_EQ((*log)->written_lines(), count_lines(text));
  // Every line written is whole.
  std::istringstream lines(text);
  std::string l;
  size_t parsed = 0;
  while (std::getline(lines, l)) {
    ASSERT_FALSE(l.empty());
    ASSERT_EQ(l.front(), '{');
    ASSERT_EQ(l.back(), '}');
    ++parsed;
  }
  EXPECT_EQ(parsed, count_lines(text));
}

TEST(ExchangeRecord, NamesMethodsAndProtocolsAsTraefikLabels) {
  EXPECT_EQ(metric_method("GET"), "GET");
  EXPECT_EQ(metric_method("PRI"), "PRI");
  EXPECT_EQ(metric_method("PATCH"), "PATCH");
  EXPECT_EQ(metric_method("get"), "EXTENSION_METHOD");
  EXPECT_EQ(metric_method("PROPFIND"), "EXTENSION_METHOD");
  EXPECT_EQ(metric_method("\xff"), "NON_UTF8_HTTP_METHOD");
  EXPECT_EQ(protocol_name(Protocol::kHttp), "http");
  EXPECT_EQ(protocol_name(Protocol::kWebSocket), "websocket");
  EXPECT_EQ(protocol_name(Protocol::kSse), "sse");
  EXPECT_EQ(protocol_name(Protocol::kGrpc), "grpc");
  EXPECT_EQ(protocol_name(Protocol::kGrpcWeb), "grpc-web");
}

}  // namespace
}  // namespace berth::proxy::observe
