// Containers -> dynamic config, as Traefik's docker provider builds it (label_config.h), and the
// defaultRule template and constraints it compiles.
#include "discovery/docker/label_config.h"

#include <gtest/gtest.h>

namespace berth::discovery::docker {
namespace {

ProviderSettings settings(config::DockerProviderConfig c = {}) {
  auto s = ProviderSettings::compile(c);
  EXPECT_TRUE(s) << s.error().to_string();
  return std::move(*s);
}

Container host_container(std::string name, std::map<std::string, std::string> labels, uint16_t exposed = 0) {
  Container c;
  c.id = name + "-id-0123456789abcdef";
  c.name = std::move(name);
  c.labels = std::move(labels);
  c.status = "running";
  c.network_mode = "host";
  if (exposed) c.ports.push_back({exposed, "tcp", {}});
  return c;
}

config::DynamicConfig build(const std::vector<Container>& list, const ProviderSettings& s,
                            const std::set<std::string>& stopping = {}) {
  std::map<std::string, Container> all;
  for (const auto& c : list) all.emplace(c.id, c);
  return build_config(all, stopping, "", s);
}

std::string errors_of(const config::DynamicConfig& c) {
  std::string out;
  for (const auto& e : c.errors) out += e.to_string() + "\n";
  return out;
}

std::vector<std::string> urls(const config::ServiceConfig& s) {
  std::vector<std::string> out;
  for (const auto& server : s.servers) out.push_back(server.url);
  return out;
}

TEST(DockerLabels, ExplicitRouterAndServiceWithPort) {
  auto c = build({host_container("web", {{"traefik.enable", "true"},
                                         {"traefik.http.routers.app.rule", "Host(`app.test`)"},
                                         {"traefik.http.routers.app.entrypoints", "web,websecure"},
                                         {"traefik.http.services.app.loadbalancer.server.port", "8080"}},
                                 80)},
                 settings());
  ASSERT_TRUE(c.errors.empty()) << errors_of(c);
  ASSERT_EQ(c.routers.count("app@docker"), 1u);
  const auto& r = c.routers.at("app@docker");
  EXPECT_EQ(r.rule, "Host(`app.test`)");
  EXPECT_EQ(r.service, "app@docker");  // linked automatically: the container's only service
  EXPECT_EQ(r.entry_points, (std::vector<std::string>{"web", "websecure"}));
  EXPECT_EQ(urls(c.services.at("app@docker")), std::vector<std::string>{"http://127.0.0.1:8080"});
}

TEST(DockerLabels, NoLabelsGiveDefaultRouterServiceAndLowestPort) {
  Container c = host_container("my_app.1", {});
  c.ports = {{80, "tcp", {}}, {443, "tcp", {}}};
  auto cfg = build({c}, settings());
  ASSERT_TRUE(cfg.errors.empty()) << errors_of(cfg);
  ASSERT_EQ(cfg.routers.count("my-app-1@docker"), 1u);
  EXPECT_EQ(cfg.routers.at("my-app-1@docker").rule, "Host(`my-app-1`)");
  EXPECT_EQ(cfg.routers.at("my-app-1@docker").service, "my-app-1@docker");
  EXPECT_EQ(urls(cfg.services.at("my-app-1@docker")), std::vector<std::string>{"http://127.0.0.1:80"});
}

TEST(DockerLabels, ComposeNamingAndCustomDefaultRule) {
  config::DockerProviderConfig pc;
  pc.default_rule = "Host(`{{ normalize .Name }}.docker.test`) || Host(`{{ index .Labels \"alias\" | lower }}.test`)";
  auto cfg = build({host_container("shop_web_1", {{"com.docker.compose.project", "shop"},
                                                  {"com.docker.compose.service", "web"},
                                                  {"alias", "FRONT"}},
                                   3000)},
                   settings(pc));
  ASSERT_TRUE(cfg.errors.empty()) << errors_of(cfg);
  ASSERT_EQ(cfg.routers.count("web-shop@docker"), 1u);
  EXPECT_EQ(cfg.routers.at("web-shop@docker").rule, "Host(`web-shop.docker.test`) || Host(`front.test`)");
}

TEST(DockerLabels, ReplicasMergeIntoOneServiceInIdOrder) {
  std::map<std::string, std::string> labels = {{"com.docker.compose.project", "shop"},
                                               {"com.docker.compose.service", "web"},
                                               {"traefik.http.routers.web.rule", "Host(`shop.test`)"}};
  auto a = host_container("shop_web_1", labels, 0);
  auto b = host_container("shop_web_2", labels, 0);
  a.labels["traefik.http.services.web.loadbalancer.server.port"] = "8001";
  b.labels["traefik.http.services.web.loadbalancer.server.port"] = "8002";
  auto cfg = build({b, a}, settings());
  ASSERT_TRUE(cfg.errors.empty()) << errors_of(cfg);
  EXPECT_EQ(cfg.routers.size(), 1u);
  EXPECT_EQ(urls(cfg.services.at("web@docker")),
            (std::vector<std::string>{"http://127.0.0.1:8001", "http://127.0.0.1:8002"}));
}

TEST(DockerLabels, DifferentDefinitionsOfOneRouterAreBothDropped) {
  auto a = host_container("a", {{"traefik.http.routers.r.rule", "Host(`a.test`)"}}, 80);
  auto b = host_container("b", {{"traefik.http.routers.r.rule", "Host(`b.test`)"}}, 81);
  auto cfg = build({a, b}, settings());
  EXPECT_EQ(cfg.routers.count("r@docker"), 0u);
  EXPECT_NE(errors_of(cfg).find("router r@docker is defined in container"), std::string::npos) << errors_of(cfg);
}

TEST(DockerLabels, StoppingContainerKeepsRoutesWithoutServerAndNeverDisplacesServingOne) {
  auto old_one = host_container("old", {{"traefik.http.routers.r.rule", "Host(`old.test`)"},
                                        {"traefik.http.services.s.loadbalancer.server.port", "8001"}});
  // Alone and stopping: the router stays, its service has no server (503, not 404).
  auto alone = build({old_one}, settings(), {old_one.id});
  ASSERT_EQ(alone.routers.count("r@docker"), 1u);
  EXPECT_TRUE(alone.services.at("s@docker").servers.empty());
  // Its replacement changed the rule: the serving container's definition wins, without a conflict.
  auto fresh = host_container("new", {{"traefik.http.routers.r.rule", "Host(`new.test`)"},
                                      {"traefik.http.services.s.loadbalancer.server.port", "8002"}});
  auto both = build({old_one, fresh}, settings(), {old_one.id});
  ASSERT_TRUE(both.errors.empty()) << errors_of(both);
  EXPECT_EQ(both.routers.at("r@docker").rule, "Host(`new.test`)");
  EXPECT_EQ(urls(both.services.at("s@docker")), std::vector<std::string>{"http://127.0.0.1:8002"});
}

TEST(DockerLabels, HealthAndStateGateParticipation) {
  auto s = settings();
  auto c = host_container("c", {}, 80);
  EXPECT_EQ(participation(c, false, s), Participation::kServing);
  c.health = "starting";
  EXPECT_EQ(participation(c, false, s), Participation::kSkip);
  c.health = "healthy";
  EXPECT_EQ(participation(c, false, s), Participation::kServing);
  EXPECT_EQ(participation(c, true, s), Participation::kEmpty);
  c.health = "unhealthy";
  config::DockerProviderConfig allow;
  allow.allow_empty_services = true;
  EXPECT_EQ(participation(c, false, settings(allow)), Participation::kEmpty);
  c.health = "";
  c.status = "paused";
  EXPECT_EQ(participation(c, false, s), Participation::kSkip);
  c.labels["traefik.docker.allownonrunning"] = "true";
  EXPECT_EQ(participation(c, false, s), Participation::kEmpty);
}

TEST(DockerLabels, EnableExposedByDefaultAndConstraints) {
  config::DockerProviderConfig pc;
  pc.exposed_by_default = false;
  pc.constraints = "Label(`team`, `a`) && !LabelRegex(`tier`, `^test`)";
  auto s = settings(pc);
  EXPECT_EQ(participation(host_container("x", {{"team", "a"}}, 80), false, s), Participation::kSkip);
  EXPECT_EQ(participation(host_container("x", {{"traefik.enable", "true"}, {"team", "a"}}, 80), false, s),
            Participation::kServing);
  EXPECT_EQ(participation(host_container("x", {{"berth.enable", "true"}, {"team", "a"}, {"tier", "testing"}}, 80),
                          false, s),
            Participation::kSkip);
  EXPECT_EQ(participation(host_container("x", {{"traefik.enable", "true"}, {"team", "b"}}, 80), false, s),
            Participation::kSkip);
}

TEST(DockerLabels, CaseInsensitiveKeysListsIndexesAndBerthPrefix) {
  auto cfg = build({host_container("c", {{"traefik.http.Routers.R.Rule", "Host(`c.test`)"},
                                         {"traefik.http.routers.r.middlewares", "strip, add"},
                                         {"traefik.http.routers.r.tls", "true"},
                                         {"traefik.http.routers.r.tls.domains[0].main", "c.test"},
                                         {"traefik.http.routers.r.tls.domains[0].sans", "a.c.test,b.c.test"},
                                         {"traefik.http.routers.r.tls.domains[1].main", "d.test"},
                                         {"traefik.http.middlewares.strip.stripprefix.prefixes", "/a,/b"},
                                         {"traefik.http.middlewares.add.headers.customresponseheaders.X-Test", "yes"},
                                         {"berth.http.routers.r.priority", "42"}},
                                   80)},
                   settings());
  ASSERT_TRUE(cfg.errors.empty()) << errors_of(cfg);
  const auto& r = cfg.routers.at("R@docker");
  EXPECT_EQ(r.middlewares, (std::vector<std::string>{"strip", "add"}));
  EXPECT_EQ(r.priority, 42);
  ASSERT_TRUE(r.tls);
  ASSERT_EQ(r.tls->domains.size(), 2u);
  EXPECT_EQ(r.tls->domains[0].main, "c.test");
  EXPECT_EQ(r.tls->domains[0].sans, (std::vector<std::string>{"a.c.test", "b.c.test"}));
  EXPECT_EQ(r.tls->domains[1].main, "d.test");
  EXPECT_EQ(cfg.middlewares.at("strip@docker").prefixes, (std::vector<std::string>{"/a", "/b"}));
  EXPECT_EQ(cfg.middlewares.at("add@docker").response_headers.at(0).second, "yes");
}

TEST(DockerLabels, InvalidLabelsLeaveOnlyThatContainerOutAndNameTheLabel) {
  auto bad = host_container("bad", {{"traefik.http.services.s.loadbalancer.server.port", "notaport"}});
  auto typo = host_container("typo", {{"traefik.http.routers.t.rulez", "Host(`t.test`)"}}, 80);
  auto good = host_container("good", {{"traefik.http.routers.g.rule", "Host(`g.test`)"}}, 80);
  auto cfg = build({bad, typo, good}, settings());
  EXPECT_EQ(cfg.routers.size(), 1u);
  EXPECT_EQ(cfg.routers.count("g@docker"), 1u);
  const std::string errors = errors_of(cfg);
  EXPECT_NE(errors.find("container bad label traefik.http.services.s.loadbalancer.server.port: \"notaport\" is not a port"),
            std::string::npos) << errors;
  EXPECT_NE(errors.find("container typo label traefik.http.routers.t.rulez"), std::string::npos) << errors;
  EXPECT_NE(errors.find("container typo: left out"), std::string::npos) << errors;
}

TEST(DockerLabels, DefaultTlsStoreFromLabelsAndTcpLabelsIgnoredWithAWord) {
  auto cfg = build({host_container("c", {{"traefik.tls.stores.default.defaultgeneratedcert.resolver", "le"},
                                         {"traefik.tls.stores.default.defaultgeneratedcert.domain.main", "c.test"},
                                         {"traefik.tls.options.x.minversion", "VersionTLS13"},  // not by label
                                         {"traefik.tcp.routers.t.rule", "HostSNI(`*`)"}},
                                   80)},
                   settings());
  ASSERT_EQ(cfg.tls.stores.count("default"), 1u) << errors_of(cfg);
  ASSERT_TRUE(cfg.tls.stores.at("default").default_generated_cert);
  EXPECT_EQ(cfg.tls.stores.at("default").default_generated_cert->resolver, "le");
  EXPECT_EQ(cfg.tls.stores.at("default").default_generated_cert->main, "c.test");
  EXPECT_TRUE(cfg.tls.options.empty());
  // A container with tcp labels only gets no HTTP router or service, and is told so.
  EXPECT_TRUE(cfg.routers.empty());
  EXPECT_NE(errors_of(cfg).find("container c: its traefik.tcp.* and traefik.udp.* labels are ignored"), std::string::npos)
      << errors_of(cfg);
}

TEST(DockerLabels, RouterWithoutServiceAmongSeveralIsDropped) {
  auto cfg = build({host_container("c", {{"traefik.http.routers.a.rule", "Host(`a.test`)"},
                                         {"traefik.http.routers.a.service", "one"},
                                         {"traefik.http.routers.b.rule", "Host(`b.test`)"},
                                         {"traefik.http.services.one.loadbalancer.server.port", "8001"},
                                         {"traefik.http.services.two.loadbalancer.server.port", "8002"}})},
                   settings());
  EXPECT_EQ(cfg.routers.count("a@docker"), 1u);
  EXPECT_EQ(cfg.routers.count("b@docker"), 0u);
  EXPECT_NE(errors_of(cfg).find("cannot be linked automatically"), std::string::npos) << errors_of(cfg);
  EXPECT_EQ(urls(cfg.services.at("two@docker")), std::vector<std::string>{"http://127.0.0.1:8002"});
}

TEST(DockerLabels, MissingPortIsAnError) {
  auto cfg = build({host_container("noport", {})}, settings());
  EXPECT_TRUE(cfg.routers.empty());
  EXPECT_NE(errors_of(cfg).find("port is missing"), std::string::npos) << errors_of(cfg);
}

TEST(DockerLabels, ServerUrlSchemeAndWeight) {
  auto cfg = build({host_container("c", {{"traefik.http.services.s.loadbalancer.server.scheme", "h2c"},
                                         {"traefik.http.services.s.loadbalancer.server.weight", "3"},
                                         {"traefik.http.services.u.loadbalancer.server.url", "https://10.1.2.3:8443"}},
                                   50051)},
                   settings());
  ASSERT_TRUE(cfg.errors.empty()) << errors_of(cfg);
  EXPECT_EQ(urls(cfg.services.at("s@docker")), std::vector<std::string>{"h2c://127.0.0.1:50051"});
  EXPECT_EQ(cfg.services.at("s@docker").servers[0].weight, 3);
  EXPECT_EQ(urls(cfg.services.at("u@docker")), std::vector<std::string>{"https://10.1.2.3:8443"});
  EXPECT_TRUE(cfg.routers.empty());  // two services and no router: none is made
}

Container bridged(std::string name, std::vector<NetworkAddress> networks, std::map<std::string, std::string> labels = {}) {
  Container c = host_container(std::move(name), std::move(labels), 80);
  c.network_mode = "bridge";
  c.networks = std::move(networks);
  return c;
}

TEST(DockerLabels, NetworkChoice) {
  const std::vector<NetworkAddress> nets = {{"front", "10.0.1.5", ""}, {"shop_back", "10.0.2.5", ""}, {"v6", "", "fd00::5"}};
  auto url_of = [](const Container& c, config::DockerProviderConfig pc = {}, std::vector<Container> more = {}) {
    more.push_back(c);
    auto cfg = build(more, settings(pc));
    EXPECT_TRUE(cfg.errors.empty()) << errors_of(cfg);
    auto it = cfg.services.find(normalize_name(c.name) + "@docker");
    return it == cfg.services.end() || it->second.servers.empty() ? std::string() : it->second.servers[0].url;
  };
  EXPECT_EQ(url_of(bridged("a", nets)), "http://10.0.1.5:80");  // first by name
  EXPECT_EQ(url_of(bridged("a", nets, {{"traefik.docker.network", "shop_back"}})), "http://10.0.2.5:80");
  // A compose network named without its project prefix.
  EXPECT_EQ(url_of(bridged("a", nets, {{"traefik.docker.network", "back"}, {"com.docker.compose.project", "shop"}})),
            "http://10.0.2.5:80");
  config::DockerProviderConfig pc;
  pc.network = "v6";
  EXPECT_EQ(url_of(bridged("a", nets), pc), "http://[fd00::5]:80");
  // network_mode container:<name>: the other container's address.
  Container sidecar = bridged("sidecar", {});
  sidecar.network_mode = "container:main";
  Container main = bridged("main", {{"front", "10.0.1.9", ""}});
  main.labels["traefik.enable"] = "false";
  EXPECT_EQ(url_of(sidecar, {}, {main}), "http://10.0.1.9:80");
}

TEST(DockerLabels, UseBindPortIp) {
  Container c = bridged("a", {{"front", "10.0.1.5", ""}});
  c.ports = {{80, "tcp", {{"0.0.0.0", 8080}, {"127.0.0.1", 8081}}}};
  config::DockerProviderConfig pc;
  pc.use_bind_port_ip = true;
  auto cfg = build({c}, settings(pc));
  EXPECT_EQ(urls(cfg.services.at("a@docker")), std::vector<std::string>{"http://127.0.0.1:8081"});
}

TEST(RuleTemplate, RendersTraefikDefaultAndReportsProblemsAtCompileTime) {
  auto t = RuleTemplate::compile("Host(`{{ normalize .Name }}`)");
  ASSERT_TRUE(t);
  auto out = t->render({"web-shop", "shop_web_1", nullptr});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, "Host(`web-shop`)");
  auto pipes = RuleTemplate::compile("{{- .ContainerName | trimPrefix \"x_\" | upper -}} ({{ default \"none\" .Labels.missing }})");
  ASSERT_TRUE(pipes) << pipes.error().to_string();
  EXPECT_EQ(*pipes->render({"n", "x_box", nullptr}), "BOX(none)");  // -}} trims the space after
  auto bad = RuleTemplate::compile("Host(`{{ snakecase .Name }}`)");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("unknown function \"snakecase\""), std::string::npos) << bad.error().message;
  EXPECT_FALSE(RuleTemplate::compile("Host(`{{ .Name `)"));
  EXPECT_FALSE(RuleTemplate::compile("{{ .Nmae }}"));
  EXPECT_EQ(normalize_name("/my_app.1"), "my-app-1");
  EXPECT_EQ(normalize_name("web_shop"), "web-shop");
}

TEST(Constraints, RejectsUnknownMatchersAndBadRegexes) {
  EXPECT_FALSE(Constraints::compile("Host(`a`)"));
  EXPECT_FALSE(Constraints::compile("LabelRegex(`a`, `(`)"));
  EXPECT_FALSE(Constraints::compile("Label(`a`)"));
  EXPECT_TRUE(Constraints::compile(""));
}

}  // namespace
}  // namespace berth::discovery::docker
