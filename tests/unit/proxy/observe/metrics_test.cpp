#include "proxy/observe/metrics.h"

#include <gtest/gtest.h>

#include "proxy/snapshot.h"

namespace berth::proxy::observe {
namespace {

config::StaticConfig static_config() {
  config::StaticConfig sc;
  config::EntryPointConfig web, secure;
  web.name = "web";
  secure.name = "websecure";
  sc.entry_points = {web, secure};
  sc.prometheus.enabled = true;
  return sc;
}

ExchangeRecord exchange(std::string_view router, std::string_view service, int code, int64_t duration_ns) {
  ExchangeRecord r;
  r.entry_point = 0;
  r.entry_point_name = "web";
  r.method = "GET";
  r.router = router;
  r.router_metric = metric_names().id(router);
  r.router_service = r.service = service;
  r.router_service_metric = r.service_metric = metric_names().id(service);
  r.status = r.code = code;
  r.duration_ns = duration_ns;
  r.request_bytes = 10;
  r.response_bytes = 100;
  return r;
}

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.starts_with(line + "\n");
}

TEST(Metrics, SumsWorkersPerLabelSet) {
  Metrics m(static_config(), 2);
  m.worker(0).record(exchange("shop@file", "shop@file", 200, 50'000'000));
  m.worker(1).record(exchange("shop@file", "shop@file", 200, 200'000'000));
  m.worker(1).record(exchange("shop@file", "shop@file", 502, 2'000'000'000));
  Snapshot snap;
  const std::string text = m.scrape(snap);
  EXPECT_TRUE(has_line(text, R"(berth_entrypoint_requests_total{code="200",method="GET",protocol="http",entrypoint="web"} 2)")) << text;
  EXPECT_TRUE(has_line(text, R"(berth_entrypoint_requests_total{code="502",method="GET",protocol="http",entrypoint="web"} 1)"));
  EXPECT_TRUE(has_line(text, R"(berth_service_requests_total{code="200",method="GET",protocol="http",service="shop@file"} 2)"));
  EXPECT_TRUE(has_line(text, R"(berth_entrypoint_requests_bytes_total{code="200",method="GET",protocol="http",entrypoint="web"} 20)"));
  EXPECT_TRUE(has_line(text, R"(berth_entrypoint_responses_bytes_total{code="200",method="GET",protocol="http",entrypoint="web"} 200)"));
  // Routers are off by default (addRoutersLabels: false), as in Traefik.
  EXPECT_EQ(text.find("berth_router_requests_total"), std::string::npos);
}

TEST(Metrics, HistogramBucketsAreCumulativeWithTraefikDefaults) {
  Metrics m(static_config(), 1);
  for (int64_t ms : {50, 200, 1000, 3000, 9000}) m.worker(0).record(exchange("a@file", "a@file", 200, ms * 1'000'000));
  Snapshot snap;
  const std::string text = m.scrape(snap);
  const std::string base = R"(berth_entrypoint_request_duration_seconds_bucket{code="200",method="GET",protocol="http",entrypoint="web",le=")";
  EXPECT_TRUE(has_line(text, base + R"(0.1"} 1)")) << text;
  EXPECT_TRUE(has_line(text, base + R"(0.3"} 2)"));
  EXPECT_TRUE(has_line(text, base + R"(1.2"} 3)"));
  EXPECT_TRUE(has_line(text, base + R"(5"} 4)"));
  EXPECT_TRUE(has_line(text, base + R"(+Inf"} 5)"));
  EXPECT_TRUE(has_line(text, R"(berth_entrypoint_request_duration_seconds_count{code="200",method="GET",protocol="http",entrypoint="web"} 5)"));
  EXPECT_TRUE(has_line(text, R"(berth_entrypoint_request_duration_seconds_sum{code="200",method="GET",protocol="http",entrypoint="web"} 13.25)"));
}

TEST(Metrics, TraefikPrefixAndRouterLabels) {
  auto sc = static_config();
  sc.prometheus.prefix = "traefik";
  sc.prometheus.add_routers_labels = true;
  sc.prometheus.add_services_labels = false;
  Metrics m(sc, 1);
  auto r = exchange("web@docker", "web@docker", 200, 1000);
  r.method = "FROB";
  r.protocol = Protocol::kGrpc;
  r.retry_attempts = 2;
  m.worker(0).record(r);
  Snapshot snap;
  const std::string text = m.scrape(snap);
  EXPECT_TRUE(has_line(text, R"(traefik_router_requests_total{code="200",method="EXTENSION_METHOD",protocol="grpc",router="web@docker",service="web@docker"} 1)")) << text;
  EXPECT_TRUE(has_line(text, "# TYPE traefik_config_reloads_total counter"));
  EXPECT_EQ(text.find("berth_"), std::string::npos);
  EXPECT_EQ(text.find("traefik_service_requests_total"), std::string::npos);
}

TEST(Metrics, TlsRequestsByVersionAndCipher) {
  Metrics m(static_config(), 1);
  auto r = exchange("a@file", "a@file", 200, 1000);
  r.tls = true;
  r.tls_version = "1.3";
  r.tls_cipher = "TLS_AES_256_GCM_SHA384";
  r.tls_cipher_id = 0x1302;
  m.worker(0).record(r);
  m.worker(0).record(r);
  m.worker(0).record_handshake(1, true);
  m.worker(0).record_handshake(1, false);
  Snapshot snap;
  const std::string text = m.scrape(snap);
  EXPECT_TRUE(has_line(text, R"(berth_entrypoint_requests_tls_total{tls_version="1.3",tls_cipher="TLS_AES_256_GCM_SHA384",entrypoint="web"} 2)")) << text;
  EXPECT_TRUE(has_line(text, R"(berth_tls_handshakes_total{entrypoint="websecure",result="failed"} 1)"));
}

TEST(Metrics, EscapesLabelValues) {
  Metrics m(static_config(), 1);
  m.worker(0).record(exchange("r@file", "we\"ird\\svc\n@file", 200, 1000));
  Snapshot snap;
  const std::string text = m.scrape(snap);
  EXPECT_NE(text.find(R"(service="we\"ird\\svc\n@file")"), std::string::npos) << text;
}

TEST(Metrics, RouterTotalsCountServerErrors) {
  Metrics m(static_config(), 2);
  m.worker(0).record(exchange("r@file", "s@file", 200, 1000));
  m.worker(1).record(exchange("r@file", "s@file", 503, 1000));
  m.worker(1).record(exchange("r@file", "s@file", 404, 1000));
  auto totals = m.router_totals();
  ASSERT_EQ(totals.count("r@file"), 1u);
  EXPECT_EQ(totals["r@file"].requests, 3u);
  EXPECT_EQ(totals["r@file"].server_errors, 1u);
}

TEST(Metrics, ReloadsAndProcessSource) {
  Metrics m(static_config(), 1);
  m.record_reload();
  m.record_reload();
  m.set_process_source([](Exposition& out) {
    out.family("docker_events_total", "counter", "Docker events.");
    out.sample({}, 7);
  });
  Snapshot snap;
  const std::string text = m.scrape(snap);
  EXPECT_TRUE(has_line(text, "berth_config_reloads_total 2")) << text;
  EXPECT_TRUE(has_line(text, "berth_docker_events_total 7"));
  EXPECT_EQ(text.find("berth_config_last_reload_success 0\n"), std::string::npos);
}

TEST(NameIds, SameNameSameId) {
  NameIds ids;
  uint32_t a = ids.id("a@file");
  EXPECT_EQ(ids.id("b@file"), a + 1);
  EXPECT_EQ(ids.id("a@file"), a);
  EXPECT_EQ(ids.name(a), "a@file");
}

}  // namespace
}  // namespace berth::proxy::observe
