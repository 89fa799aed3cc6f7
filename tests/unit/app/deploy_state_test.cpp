// The deploy state: its file round-trips, and laying it over the providers' config gives the
// services the commands promised.
#include "app/deploy_state.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "proxy/upstream/health.h"

namespace berth::app {
namespace {

config::DynamicConfig provider_config() {
  config::DynamicConfig dyn;
  config::ServiceConfig app;
  app.name = "app@docker";
  app.servers.push_back({"http://10.0.0.1:80", 1, "label"});
  app.health_check.enabled = true;
  app.health_check.path = "/health";
  dyn.services[app.name] = app;
  config::ServiceConfig split;
  split.name = "split@file";
  split.kind = config::ServiceConfig::Kind::kWeighted;
  dyn.services[split.name] = split;
  return dyn;
}

ServiceDeploy deployed(const std::string& name, std::vector<std::string> targets) {
  ServiceDeploy d;
  d.service = name;
  d.targets = std::move(targets);
  return d;
}

TEST(DeployState, RoundTripsThroughItsFile) {
  DeployState state;
  ServiceDeploy d = deployed("app@docker", {"10.0.0.2:80"});
  d.previous = {"http://10.0.0.1:80"};
  d.canary = {"10.0.0.3:80"};
  d.percent = 10;
  d.auto_rollback.enabled = true;
  d.auto_rollback.error_margin = 0.1;
  d.stopped = true;
  d.message = "back soon";
  d.health.path = "/up";
  d.health.interval = std::chrono::milliseconds(250);
  d.last = "rollout";
  d.updated = 1700000000;
  state.services[d.service] = d;
  ServiceDeploy made = deployed("shop@deploy", {"10.0.0.9:3000"});
  made.created = true;
  made.hosts = {"shop.example.com"};
  state.services[made.service] = made;

  const auto dir = std::filesystem::temp_directory_path() / ("berth-deploy-" + std::to_string(::getpid()));
  const std::string path = (dir / "sub" / "deploy.json").string();
  ASSERT_TRUE(state.save(path));
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::all, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto loaded = DeployState::load(path);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->to_json(), state.to_json());
  const auto& back = loaded->services.at("app@docker");
  EXPECT_EQ(back.percent, 10);
  EXPECT_DOUBLE_EQ(back.auto_rollback.error_margin, 0.1);
  EXPECT_EQ(back.health.interval, std::chrono::milliseconds(250));
  EXPECT_TRUE(loaded->services.at("shop@deploy").created);
  std::filesystem::remove_all(dir);
}

TEST(DeployState, MissingFileIsEmptyAndGarbageIsAnErrorNamingTheFile) {
  auto missing = DeployState::load("/nonexistent/berth/deploy.json");
  ASSERT_TRUE(missing);
  EXPECT_TRUE(missing->services.empty());
  auto bad = DeployState::from_json("{not json", "/var/lib/berth/deploy.json");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().where, "/var/lib/berth/deploy.json");
}

TEST(DeployState, TargetsReplaceTheProvidersServersAndKeepItsSettings) {
  DeployState state;
  state.services["app@docker"] = deployed("app@docker", {"10.0.0.2:80", "https://10.0.0.3"});
  auto dyn = provider_config();
  auto gate = std::make_shared<proxy::upstream::ServiceGate>();
  apply_deploys(state, {{"app@docker", gate}}, dyn);
  const auto& app = dyn.services.at("app@docker");
  ASSERT_EQ(app.servers.size(), 2u);
  EXPECT_EQ(app.servers[0].url, "http://10.0.0.2:80");
  EXPECT_EQ(app.servers[1].url, "https://10.0.0.3");
  EXPECT_EQ(app.health_check.path, "/health");
  EXPECT_EQ(app.gate, gate);
  EXPECT_FALSE(app.maintenance);
  EXPECT_TRUE(dyn.errors.empty());
}

TEST(DeployState, RolloutMakesAStickyWeightedServiceOverTwoHalves) {
  DeployState state;
  ServiceDeploy d = deployed("app@docker", {});
  d.canary = {"10.0.0.3:80"};
  d.percent = 10;
  state.services[d.service] = d;
  auto dyn = provider_config();
  apply_deploys(state, {}, dyn);
  const auto& app = dyn.services.at("app@docker");
  ASSERT_EQ(app.kind, config::ServiceConfig::Kind::kWeighted);
  ASSERT_EQ(app.children.size(), 2u);
  EXPECT_EQ(app.children[0].name, "app~stable@docker");
  EXPECT_EQ(app.children[0].weight, 90);
  EXPECT_EQ(app.children[1].name, "app~canary@docker");
  EXPECT_EQ(app.children[1].weight, 10);
  EXPECT_TRUE(app.sticky.enabled);
  EXPECT_EQ(dyn.services.at("app~stable@docker").servers[0].url, "http://10.0.0.1:80");  // the provider's
  EXPECT_EQ(dyn.services.at("app~canary@docker").servers[0].url, "http://10.0.0.3:80");
  EXPECT_EQ(dyn.services.at("app~canary@docker").health_check.path, "/health");
}

TEST(DeployState, StopSetsTheMaintenancePage) {
  DeployState state;
  ServiceDeploy d = deployed("app@docker", {});
  d.stopped = true;
  d.message = "upgrading";
  state.services[d.service] = d;
  auto dyn = provider_config();
  apply_deploys(state, {}, dyn);
  EXPECT_EQ(dyn.services.at("app@docker").maintenance, "upgrading");
  EXPECT_EQ(dyn.services.at("app@docker").servers[0].url, "http://10.0.0.1:80");
}

TEST(DeployState, BerthsOwnServiceGetsARouterForItsHosts) {
  DeployState state;
  ServiceDeploy d = deployed("shop@deploy", {"10.0.0.9:3000"});
  d.created = true;
  d.hosts = {"shop.example.com", "www.shop.example.com"};
  state.services[d.service] = d;
  ServiceDeploy any = deployed("all@deploy", {"10.0.0.8:3000"});
  any.created = true;
  state.services[any.service] = any;
  config::DynamicConfig dyn;
  apply_deploys(state, {}, dyn);
  EXPECT_EQ(dyn.routers.at("shop@deploy").rule, "Host(`shop.example.com`) || Host(`www.shop.example.com`)");
  EXPECT_EQ(dyn.routers.at("shop@deploy").service, "shop@deploy");
  EXPECT_EQ(dyn.routers.at("all@deploy").rule, "PathPrefix(`/`)");
  EXPECT_EQ(dyn.routers.at("all@deploy").priority, 1);  // below every other router
  EXPECT_EQ(dyn.routers.at("shop@deploy").priority, 0);
  EXPECT_EQ(dyn.services.at("shop@deploy").servers[0].url, "http://10.0.0.9:3000");
}

TEST(DeployState, ADeployWhoseServiceIsGoneOrNotALoadBalancerIsReportedAndLeftOut) {
  DeployState state;
  state.services["gone@docker"] = deployed("gone@docker", {"10.0.0.2:80"});
  state.services["split@file"] = deployed("split@file", {"10.0.0.2:80"});
  auto dyn = provider_config();
  apply_deploys(state, {}, dyn);
  ASSERT_EQ(dyn.errors.size(), 2u);
  EXPECT_NE(dyn.errors[0].message.find("gone@docker is under berth deploy but no provider has it"), std::string::npos);
  EXPECT_NE(dyn.errors[1].message.find("split@file is not a loadBalancer service"), std::string::npos);
  EXPECT_FALSE(dyn.services.count("gone@docker"));
  EXPECT_TRUE(dyn.services.at("split@file").servers.empty());
}

}  // namespace
}  // namespace berth::app
