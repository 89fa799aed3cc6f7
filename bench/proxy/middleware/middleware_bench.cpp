// Micro-benchmark of the middlewares on the request path (HP-8): time and heap allocations per
// request for each middleware the snapshot can hold, applied to a parsed browser request (HP-1:
// the non-regex ones must not allocate once the exchange state has warmed up).
#include "proxy/middleware/middleware.h"

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "bench/support/alloc_counter.h"
#include "proxy/middleware/traffic.h"

namespace berth::proxy::middleware {
namespace {

constexpr std::string_view kRequest =
    "GET /api/v1/users/42?expand=roles HTTP/1.1\r\n"
    "Host: app.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n"
    "Accept: application/json\r\n"
    "X-Forwarded-For: 203.0.113.9, 10.0.0.2\r\n"
    "Cookie: session=abc123\r\n\r\n";

// What a browser sends to an API behind auth, CORS and compression.
constexpr std::string_view kApiRequest =
    "GET /api/v1/users/42?expand=roles HTTP/1.1\r\n"
    "Host: app.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n"
    "Accept: application/json\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\n"
    "Origin: https://app.example\r\n"
    "Authorization: Basic YWxpY2U6c2VjcmV0\r\n"
    "X-Forwarded-For: 203.0.113.9, 10.0.0.2\r\n"
    "Cookie: session=abc123\r\n\r\n";

std::unique_ptr<Middleware> make(config::MiddlewareConfig c) {
  c.name = "bench@file";
  auto m = compile(c);
  if (!m) std::abort();
  return std::move(*m);
}

void run(benchmark::State& state, const Middleware& m, std::string_view request = kRequest) {
  http::h1::RequestHead head;
  head.headers.reserve(16);
  if (http::h1::parse_request(request, head) != http::h1::ParseStatus::kOk) std::abort();
  auto peer = boost::asio::ip::make_address("10.0.0.2");
  Edits edits;
  boost::asio::io_context io;
  uint64_t before = 0;
  int64_t iterations = 0;
  for (auto _ : state) {
    if (iterations++ == 1) before = berth::bench::allocation_count();  // the first one grows the buffers
    edits.clear();
    Context ctx{head, peer, "/api/v1/users/42", "expand=roles", true, edits, io.get_executor()};
    benchmark::DoNotOptimize(m.on_request(ctx));
    release_in_flight(edits);  // as the request flow does when the exchange ends
  }
  state.counters["allocs_per_iter"] =
      iterations > 1 ? double(berth::bench::allocation_count() - before) / double(iterations - 1) : 0;
}

void BM_StripPrefix(benchmark::State& state) {
  config::MiddlewareConfig c;
  c.type = "stripPrefix";
  c.prefixes = {"/web", "/api"};
  run(state, *make(c));
}
BENCHMARK(BM_StripPrefix);

void BM_AddPrefix(benchmark::State& state) {
  config::MiddlewareConfig c;
  c.type = "addPrefix";
  c.prefix = "/internal";
  run(state, *make(c));
}
BENCHMARK(BM_AddPrefix);

void BM_Headers(benchmark::State& state) {
  config::MiddlewareConfig c;
  c.type = "headers";
  c.request_headers = {{"X-Tenant", "acme"}, {"Cookie", ""}};
  c.response_headers = {{"X-Served-By", "berth"}};
  c.security_headers = {{"X-Frame-Options", "DENY"}, {"X-Content-Type-Options", "nosniff"}};
  run(state, *make(c));
}
BENCHMARK(BM_Headers);

void BM_IpAllowListPeer(benchmark::State& state) {
  config::MiddlewareConfig c;
  c.type = "ipAllowList";
  c.source_range = {"192.168.0.0/16", "10.0.0.0/8"};
  run(state, *make(c));
}
BENCHMARK(BM_IpAllowListPeer);

void BM_IpAllowListDepth(benchmark::State& state) {
  config::MiddlewareConfig c;
  c.type = "ipAllowList";
  c.source_range = {"203.0.113.0/24"};
  c.ip_depth = 2;
  run(state, *make(c));
}
BENCHMARK(BM_IpAllowListDepth);

void BM_RedirectScheme(benchmark::State& state) {
  config::MiddlewareConfig c;
  c.type = "redirectScheme";
  c.scheme = "https";
  run(state, *make(c));
}
BENCHMARK(BM_RedirectScheme);

void BM_ReplacePathRegex(benchmark::State& state) {
  config::MiddlewareConfig c;
  c.type = "replacePathRegex";
  c.regexes = {"^/api/v1/(.*)"};
  c.replacement = "/v2/$1";
  run(state, *make(c));
}
BENCHMARK(BM_ReplacePathRegex);

void BM_StripPrefixRegex(benchmark::State& state) {
  config::MiddlewareConfig c;
  c.type = "stripPrefixRegex";
  c.regexes = {"/api/v[0-9]+"};
  run(state, *make(c));
}
BENCHMARK(BM_StripPrefixRegex);

void BM_BasicAuthRemembered(benchmark::State& state) {
  config::MiddlewareConfig c;
  c.type = "basicAuth";
  c.users = {"alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/"};
  c.header_field = "X-User";
  run(state, *make(c), kApiRequest);
}
BENCHMARK(BM_BasicAuthRemembered);

void BM_RateLimit(benchmark::State& state) {
  config::MiddlewareConfig c;
  c.type = "rateLimit";
  c.average = 1'000'000'000;  // never reached: measures the allowed path
  c.burst = 1'000'000;
  run(state, *make(c));
}
BENCHMARK(BM_RateLimit);

void BM_InFlightReq(benchmark::State& state) {
  config::MiddlewareConfig c;
  c.type = "inFlightReq";
  c.amount = 100;
  run(state, *make(c));
}
BENCHMARK(BM_InFlightReq);

void BM_CorsSimpleRequest(benchmark::State& state) {
  config::MiddlewareConfig c;
  c.type = "headers";
  c.cors = true;
  c.cors_allow_origins = {"https://app.example"};
  c.cors_allow_methods = {"GET", "POST"};
  c.cors_expose_headers = {"X-Total"};
  c.cors_add_vary = true;
  run(state, *make(c), kApiRequest);
}
BENCHMARK(BM_CorsSimpleRequest);

void BM_CompressNegotiation(benchmark::State& state) {
  config::MiddlewareConfig c;
  c.type = "compress";
  run(state, *make(c), kApiRequest);
}
BENCHMARK(BM_CompressNegotiation);

void BM_CircuitBreakerClosed(benchmark::State& state) {
  config::MiddlewareConfig c;
  c.type = "circuitBreaker";
  c.expression = "NetworkErrorRatio() > 0.5 || LatencyAtQuantileMS(50.0) > 100";
  run(state, *make(c));
}
BENCHMARK(BM_CircuitBreakerClosed);

void BM_Retry(benchmark::State& state) {
  config::MiddlewareConfig c;
  c.type = "retry";
  c.attempts = 3;
  run(state, *make(c));
}
BENCHMARK(BM_Retry);

void BM_Buffering(benchmark::State& state) {
  config::MiddlewareConfig c;
  c.type = "buffering";
  c.max_request_body_bytes = 1 << 20;
  run(state, *make(c));
}
BENCHMARK(BM_Buffering);

void BM_ContentType(benchmark::State& state) {
  config::MiddlewareConfig c;
  c.type = "contentType";
  c.auto_detect = true;
  run(state, *make(c));
}
BENCHMARK(BM_ContentType);

void BM_Errors(benchmark::State& state) {
  config::MiddlewareConfig c;
  c.type = "errors";
  c.status = {"500-599"};
  c.service = "pages";
  c.query = "/{status}.html";
  c.name = "bench@file";
  CompileOptions options;
  options.find_service = [](const std::string&) { return std::optional<uint32_t>(0); };
  auto m = compile(c, options);
  if (!m) std::abort();
  run(state, **m);  // keeps the request's Host and target: copies into reused strings
}
BENCHMARK(BM_Errors);

void BM_DigestAuthChallenge(benchmark::State& state) {
  config::MiddlewareConfig c;
  c.type = "digestAuth";
  c.users = {"dave:traefik:e550659286a2a9ce47e3a9da5e97f84d"};
  run(state, *make(c));  // no credentials: a fresh nonce and challenge (allocates, as any 401 may)
}
BENCHMARK(BM_DigestAuthChallenge);

}  // namespace
}  // namespace berth::proxy::middleware

BENCHMARK_MAIN();
