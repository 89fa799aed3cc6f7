// Unit tests for the static `api` section: Traefik's defaults (the dashboard is on when `api` is
// present; only `insecure` opens the `traefik` entry point) and ping.manualRouting.
#include <gtest/gtest.h>

#include "config/static_config.h"

namespace berth::config {
namespace {

TEST(StaticConfigApi, PresentTurnsTheDashboardOnButOpensNoEntryPoint) {
  auto load = load_static_config({"--api", "--entryPoints.web.address=:80"});
  ASSERT_TRUE(load.errors.empty());
  EXPECT_TRUE(load.config.api_enabled);
  EXPECT_TRUE(load.config.api_dashboard);
  EXPECT_FALSE(load.config.api_insecure);
  EXPECT_EQ(load.config.find_entry_point("traefik"), nullptr);
}

TEST(StaticConfigApi, InsecureOpensTraefikAndDashboardCanBeTurnedOff) {
  auto load = load_static_config({"--api.insecure=true", "--api.dashboard=false", "--entryPoints.web.address=:80"});
  ASSERT_TRUE(load.errors.empty());
  EXPECT_TRUE(load.config.api_enabled);
  EXPECT_TRUE(load.config.api_insecure);
  EXPECT_FALSE(load.config.api_dashboard);
  ASSERT_NE(load.config.find_entry_point("traefik"), nullptr);
  EXPECT_EQ(load.config.find_entry_point("traefik")->port, 8080);
}

TEST(StaticConfigApi, AbsentOrFalseIsOff) {
  for (auto flags : {std::vector<std::string>{"--entryPoints.web.address=:80"},
                     std::vector<std::string>{"--api=false", "--entryPoints.web.address=:80"}}) {
    auto load = load_static_config(flags);
    ASSERT_TRUE(load.errors.empty());
    EXPECT_FALSE(load.config.api_enabled);
    EXPECT_FALSE(load.config.api_dashboard);
  }
}

TEST(StaticConfigApi, TraefiksOtherKeysAreReadAndUnknownOnesAreErrors) {
  auto ok = load_static_config({"--api.debug=true", "--api.disableDashboardAd=true", "--entryPoints.web.address=:80"});
  EXPECT_TRUE(ok.errors.empty());
  auto bad = load_static_config({"--api.basePath=/x", "--entryPoints.web.address=:80"});
  ASSERT_EQ(bad.errors.size(), 1u);
  EXPECT_NE(bad.errors[0].message.find("basePath"), std::string::npos) << bad.errors[0].to_string();
}

TEST(StaticConfigApi, PingManualRoutingOpensNoEntryPoint) {
  auto load = load_static_config({"--ping.manualRouting=true", "--entryPoints.web.address=:80"});
  ASSERT_TRUE(load.errors.empty());
  EXPECT_TRUE(load.config.ping.enabled);
  EXPECT_TRUE(load.config.ping.manual_routing);
  EXPECT_EQ(load.config.find_entry_point("traefik"), nullptr);
}

}  // namespace
}  // namespace berth::config
