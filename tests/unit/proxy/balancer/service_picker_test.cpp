// Unit tests for the service tree walk: health-aware weighted round robin, sticky cookies at both
// levels, weighted health propagation, failover, and p2c preferring the less busy server.
#include "proxy/balancer/service_picker.h"

#include <gtest/gtest.h>

#include <string>

namespace berth::proxy::balancer {
namespace {

Endpoint endpoint(const std::string& url, int weight = 1) {
  Endpoint e;
  e.url = url;
  e.weight = weight;
  e.health = std::make_shared<upstream::EndpointHealth>();
  return e;
}

Service lb(std::string name, std::vector<Endpoint> endpoints) {
  Service s;
  s.name = std::move(name);
  s.endpoints = std::move(endpoints);
  return s;
}

Service parent(Service::Kind kind, std::vector<uint32_t> children, std::vector<int> weights) {
  Service s;
  s.name = "parent";
  s.kind = kind;
  s.children = std::move(children);
  s.weights = std::move(weights);
  return s;
}

struct Fixture {
  Snapshot snap;
  ServicePicker picker;
  middleware::Edits edits;
  std::vector<http::Header> headers;

  void ready() { picker.reset(snap); }
  // "service/endpoint" of the next pick.
  std::string pick(uint32_t service) {
    edits.clear();
    Pick p = picker.pick(snap, service, headers, edits, 1000);
    if (p.endpoint < 0) return "none";
    return snap.services[p.service].endpoints[p.endpoint].url;
  }
};

TEST(ServicePicker, SkipsUnhealthyServersAndKeepsTheOthersRatio) {
  Fixture f;
  f.snap.services.push_back(lb("s", {endpoint("a", 2), endpoint("b", 1), endpoint("c", 1)}));
  f.ready();
  f.snap.services[0].endpoints[2].health->active_up = false;
  std::string seq;
  for (int i = 0; i < 30; ++i) seq += f.pick(0);
  EXPECT_EQ(std::count(seq.begin(), seq.end(), 'a'), 20);
  EXPECT_EQ(std::count(seq.begin(), seq.end(), 'b'), 10);
  EXPECT_EQ(seq.find('c'), std::string::npos);
}

TEST(ServicePicker, NoHealthyServerPicksNothing) {
  Fixture f;
  f.snap.services.push_back(lb("s", {endpoint("a"), endpoint("b")}));
  f.ready();
  for (auto& e : f.snap.services[0].endpoints) e.health->active_up = false;
  EXPECT_EQ(f.pick(0), "none");
}

TEST(ServicePicker, PassiveFailuresTakeServerOutForTheWindow) {
  Fixture f;
  f.snap.services.push_back(lb("s", {endpoint("a"), endpoint("b")}));
  f.ready();
  auto& b = *f.snap.services[0].endpoints[1].health;
  EXPECT_FALSE(b.record_failure(900, 500, 2));  // one of two allowed failures
  EXPECT_TRUE(b.record_failure(950, 500, 2));
  EXPECT_FALSE(b.is_up(1000));
  EXPECT_TRUE(b.is_up(1450));
  EXPECT_EQ(f.pick(0) + f.pick(0) + f.pick(0), "aaa");
}

TEST(ServicePicker, FailuresOutsideTheWindowDoNotAddUp) {
  upstream::EndpointHealth h;
  EXPECT_FALSE(h.record_failure(0, 100, 2));
  EXPECT_FALSE(h.record_failure(200, 100, 2));  // the first one has expired
  EXPECT_TRUE(h.is_up(200));
}

TEST(ServicePicker, StickyCookieSelectsItsServerWithoutNewCookie) {
  Fixture f;
  Service s = lb("s", {endpoint("a"), endpoint("b")});
  s.sticky = {"srv", {"va", "vb"}, {"srv=va", "srv=vb"}};
  f.snap.services.push_back(std::move(s));
  f.ready();
  f.headers.push_back({"Cookie", "x=1; srv=vb", http::HeaderId::kCookie});
  EXPECT_EQ(f.pick(0) + f.pick(0), "bb");
  EXPECT_EQ(f.edits.added_count, 0);
  // The pinned server goes down: another is picked and the client is re-pinned.
  f.snap.services[0].endpoints[1].health->active_up = false;
  EXPECT_EQ(f.pick(0), "a");
  ASSERT_EQ(f.edits.added_count, 1);
  EXPECT_EQ(f.edits.added[0].second, "srv=va");
}

TEST(ServicePicker, WeightedSplitsAndSkipsChildrenWithNothingUp) {
  Fixture f;
  f.snap.services.push_back(lb("v1", {endpoint("a")}));
  f.snap.services.push_back(lb("v2", {endpoint("b")}));
  f.snap.services.push_back(parent(Service::Kind::kWeighted, {0, 1}, {3, 1}));
  f.ready();
  std::string seq;
  for (int i = 0; i < 8; ++i) seq += f.pick(2);
  EXPECT_EQ(std::count(seq.begin(), seq.end(), 'a'), 6);
  f.snap.services[0].endpoints[0].health->active_up = false;
  EXPECT_EQ(f.pick(2) + f.pick(2) + f.pick(2), "bbb");
  EXPECT_TRUE(ServicePicker::is_up(f.snap, 2, 1000));
  f.snap.services[1].endpoints[0].health->active_up = false;
  EXPECT_FALSE(ServicePicker::is_up(f.snap, 2, 1000));
  EXPECT_EQ(f.pick(2), "none");
}

TEST(ServicePicker, WeightedStickyAndServerStickySetTwoCookies) {
  Fixture f;
  Service v1 = lb("v1", {endpoint("a")});
  v1.sticky = {"srv", {"va"}, {"srv=va"}};
  f.snap.services.push_back(std::move(v1));
  Service w = parent(Service::Kind::kWeighted, {0}, {1});
  w.sticky = {"ver", {"v1"}, {"ver=v1"}};
  f.snap.services.push_back(std::move(w));
  f.ready();
  EXPECT_EQ(f.pick(1), "a");
  ASSERT_EQ(f.edits.added_count, 2);
  EXPECT_EQ(f.edits.added[0], (std::pair<std::string_view, std::string_view>{"Set-Cookie", "ver=v1"}));
  EXPECT_EQ(f.edits.added[1].second, "srv=va");
}

TEST(ServicePicker, FailoverUsesFallbackOnlyWhileMainIsDown) {
  Fixture f;
  f.snap.services.push_back(lb("main", {endpoint("m")}));
  f.snap.services.push_back(lb("spare", {endpoint("s")}));
  f.snap.services.push_back(parent(Service::Kind::kFailover, {0, 1}, {1, 1}));
  f.ready();
  EXPECT_EQ(f.pick(2), "m");
  f.snap.services[0].endpoints[0].health->active_up = false;
  EXPECT_EQ(f.pick(2), "s");
  f.snap.services[0].endpoints[0].health->active_up = true;
  EXPECT_EQ(f.pick(2), "m");
}

TEST(ServicePicker, P2cPrefersTheServerWithFewerExchangesInFlight) {
  Fixture f;
  Service s = lb("s", {endpoint("a"), endpoint("b")});
  s.p2c = true;
  f.snap.services.push_back(std::move(s));
  f.ready();
  f.snap.services[0].endpoints[0].health->in_flight = 3;
  for (int i = 0; i < 20; ++i) EXPECT_EQ(f.pick(0), "b");
  f.snap.services[0].endpoints[1].health->active_up = false;
  EXPECT_EQ(f.pick(0), "a");  // busy, but the only one up
}

}  // namespace
}  // namespace berth::proxy::balancer
