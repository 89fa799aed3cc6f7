// Unit tests for static config loading: --configFile YAML overlaid by flags, defaults and checks.
#include "config/static_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>

namespace berth::config {
namespace {

using namespace std::chrono_literals;

// A YAML file in the temp directory, removed when the test ends.
class TempFile {
 public:
  explicit TempFile(std::string_view text, std::string_view extension = ".yml") {
    static std::atomic<int> counter{0};
    path_ = (std::filesystem::temp_directory_path() /
             ("berth_static_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + std::string(extension)))
                .string();
    std::ofstream(path_) << text;
  }
  ~TempFile() { std::filesystem::remove(path_); }
  const std::string& path() const { return path_; }
  std::string flag() const { return "--configFile=" + path_; }

 private:
  std::string path_;
};

std::string all_errors(const StaticLoad& load) {
  std::string out;
  for (const auto& e : load.errors) out += e.to_string() + "\n";
  return out;
}

bool has_error(const StaticLoad& load, std::string_view where, std::string_view message) {
  for (const auto& e : load.errors)
    if (e.where.find(where) != std::string::npos && e.message.find(message) != std::string::npos) return true;
  return false;
}

TEST(StaticConfig, NoArgumentsGiveHttpOnPort80) {
  auto load = load_static_config({});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  ASSERT_EQ(load.config.entry_points.size(), 1u);
  EXPECT_EQ(load.config.entry_points[0].name, "http");
  EXPECT_EQ(load.config.entry_points[0].port, 80);
  EXPECT_EQ(load.config.entry_points[0].host, "");
  EXPECT_EQ(load.config.log_level, "INFO");
  EXPECT_FALSE(load.config.ping.enabled);
  EXPECT_FALSE(load.config.file.enabled);
}

TEST(StaticConfig, DecodesFileWithEveryKey) {
  TempFile file(R"(
entryPoints:
  web:
    address: ":8000"
    asDefault: true
    transport:
      respondingTimeouts:
        readTimeout: 5s
        writeTimeout: 1m30s
        idleTimeout: 42
      lifeCycle:
        requestAcceptGraceTimeout: 2s
        graceTimeOut: 3s
    forwardedHeaders:
      trustedIPs: ["10.0.0.0/8", "::1", 192.168.1.7]
      insecure: true
  websecure:
    address: "127.0.0.1:8443/tcp"
providers:
  providersThrottleDuration: 500ms
  file:
    directory: ./dynamic
    watch: false
serversTransport:
  forwardingTimeouts:
    dialTimeout: 1s
    responseHeaderTimeout: 2s
    idleConnTimeout: 3s
  maxIdleConnsPerHost: 7
log:
  level: debug
workers: 3
ioUring: false
global:
  checkNewVersion: false
  sendAnonymousUsage: false
)");
  auto load = load_static_config({file.flag()});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  const StaticConfig& c = load.config;
  EXPECT_EQ(c.config_file, file.path());
  ASSERT_EQ(c.entry_points.size(), 2u);
  const EntryPointConfig& web = c.entry_points[0];
  EXPECT_EQ(web.name, "web");
  EXPECT_EQ(web.port, 8000);
  EXPECT_TRUE(web.as_default);
  EXPECT_EQ(web.read_timeout, 5s);
  EXPECT_EQ(web.write_timeout, 90s);
  EXPECT_EQ(web.idle_timeout, 42s);
  EXPECT_EQ(web.request_accept_grace_timeout, 2s);
  EXPECT_EQ(web.grace_timeout, 3s);
  EXPECT_EQ(web.trusted_ips, (std::vector<std::string>{"10.0.0.0/8", "::1", "192.168.1.7"}));
  EXPECT_TRUE(web.forwarded_insecure);
  EXPECT_EQ(c.entry_points[1].host, "127.0.0.1");
  EXPECT_EQ(c.entry_points[1].port, 8443);
  EXPECT_TRUE(c.file.enabled);
  EXPECT_EQ(c.file.directory, "./dynamic");
  EXPECT_FALSE(c.file.watch);
  EXPECT_EQ(c.providers_throttle_duration, 500ms);
  EXPECT_EQ(c.servers_transport.dial_timeout, 1s);
  EXPECT_EQ(c.servers_transport.response_header_timeout, 2s);
  EXPECT_EQ(c.servers_transport.idle_conn_timeout, 3s);
  EXPECT_EQ(c.servers_transport.max_idle_conns_per_host, 7);
  EXPECT_EQ(c.log_level, "DEBUG");
  EXPECT_EQ(c.workers, 3);
  EXPECT_FALSE(c.io_uring);
  EXPECT_TRUE(StaticConfig{}.io_uring);
}

TEST(StaticConfig, KeysAreCaseInsensitiveInFileAndFlags) {
  TempFile file(R"(
ENTRYPOINTS:
  Web:
    ADDRESS: ":81"
    Transport:
      RESPONDINGTIMEOUTS:
        readtimeout: 7s
LOG:
  Level: WARN
)");
  auto load = load_static_config({"--CONFIGFILE=" + file.path(), "--entrypoints.web.transport.respondingtimeouts.idletimeout=9s"});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  ASSERT_EQ(load.config.entry_points.size(), 1u);
  EXPECT_EQ(load.config.entry_points[0].name, "Web");  // the file's spelling is kept
  EXPECT_EQ(load.config.entry_points[0].read_timeout, 7s);
  EXPECT_EQ(load.config.entry_points[0].idle_timeout, 9s);
  EXPECT_EQ(load.config.log_level, "WARN");
}

TEST(StaticConfig, FindEntryPointIgnoresCase) {
  auto load = load_static_config({"--entryPoints.WebSecure.address=:443"});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  ASSERT_NE(load.config.find_entry_point("websecure"), nullptr);
  EXPECT_EQ(load.config.find_entry_point("websecure")->name, "WebSecure");
  EXPECT_EQ(load.config.find_entry_point("web"), nullptr);
}

TEST(StaticConfig, FlagOverridesFileValue) {
  TempFile file("entryPoints:\n  web:\n    address: \":80\"\nlog:\n  level: ERROR\n");
  auto load = load_static_config({file.flag(), "--entryPoints.web.address=:9090", "--log.level=TRACE"});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  ASSERT_EQ(load.config.entry_points.size(), 1u);
  EXPECT_EQ(load.config.entry_points[0].port, 9090);
  EXPECT_EQ(load.config.entry_points[0].address, ":9090");
  EXPECT_EQ(load.config.log_level, "TRACE");
}

TEST(StaticConfig, FlagsAddToFileMaps) {
  TempFile file("entryPoints:\n  web:\n    address: \":80\"\n");
  auto load = load_static_config({file.flag(), "--entryPoints.admin.address=127.0.0.1:9000"});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  ASSERT_EQ(load.config.entry_points.size(), 2u);
  EXPECT_EQ(load.config.entry_points[0].name, "admin");  // sorted by name
  EXPECT_EQ(load.config.entry_points[1].name, "web");
}

TEST(StaticConfig, ConfigFileAcceptsTwoArgumentForm) {
  TempFile file("log:\n  level: PANIC\n");
  auto load = load_static_config({"--configfile", file.path()});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  EXPECT_EQ(load.config.log_level, "PANIC");
}

TEST(StaticConfig, BoolFlagWithoutValueMeansTrue) {
  auto load = load_static_config({"--ping", "--entryPoints.web.address=:80", "--entryPoints.web.asDefault"});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  EXPECT_TRUE(load.config.ping.enabled);
  ASSERT_NE(load.config.find_entry_point("web"), nullptr);
  EXPECT_TRUE(load.config.find_entry_point("web")->as_default);
}

TEST(StaticConfig, PingEnabledAddsTraefikEntryPointOn8080) {
  auto load = load_static_config({"--ping=true"});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  ASSERT_EQ(load.config.entry_points.size(), 2u);
  EXPECT_EQ(load.config.entry_points[0].name, "http");
  EXPECT_EQ(load.config.entry_points[0].port, 80);
  EXPECT_EQ(load.config.entry_points[1].name, "traefik");
  EXPECT_EQ(load.config.entry_points[1].port, 8080);
}

TEST(StaticConfig, PingAcceptsEmptyMapTrueAndOptions) {
  TempFile empty_map("ping: {}\n");
  TempFile truthy("ping: true\n");
  TempFile options("ping:\n  entryPoint: web\n  terminatingStatusCode: 204\n  manualRouting: false\n"
                   "entryPoints:\n  web:\n    address: ':80'\n");
  for (const TempFile* f : {&empty_map, &truthy}) {
    auto load = load_static_config({f->flag()});
    ASSERT_TRUE(load.errors.empty()) << all_errors(load);
    EXPECT_TRUE(load.config.ping.enabled);
    EXPECT_NE(load.config.find_entry_point("traefik"), nullptr);
  }
  auto load = load_static_config({options.flag()});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  EXPECT_TRUE(load.config.ping.enabled);
  EXPECT_EQ(load.config.ping.entry_point, "web");
  EXPECT_EQ(load.config.ping.terminating_status_code, 204);
  EXPECT_EQ(load.config.find_entry_point("traefik"), nullptr);  // ping lives on web
}

TEST(StaticConfig, PrometheusDefaultsAreTraefiksOnTheTraefikEntryPoint) {
  auto load = load_static_config({"--metrics.prometheus=true"});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  const auto& p = load.config.prometheus;
  EXPECT_TRUE(p.enabled);
  EXPECT_EQ(p.buckets, (std::vector<double>{0.1, 0.3, 1.2, 5.0}));
  EXPECT_TRUE(p.add_entry_points_labels);
  EXPECT_FALSE(p.add_routers_labels);
  EXPECT_TRUE(p.add_services_labels);
  EXPECT_EQ(p.prefix, "berth");
  EXPECT_NE(load.config.find_entry_point("traefik"), nullptr);
}

TEST(StaticConfig, PrometheusOptions) {
  TempFile f("entryPoints:\n  web:\n    address: ':80'\nmetrics:\n  addInternals: false\n  prometheus:\n"
             "    buckets: [0.05, 0.5, 2]\n    addRoutersLabels: true\n    addEntryPointsLabels: false\n"
             "    entryPoint: web\n    prefix: traefik\n    manualRouting: true\n");
  auto load = load_static_config({f.flag()});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  const auto& p = load.config.prometheus;
  EXPECT_EQ(p.buckets, (std::vector<double>{0.05, 0.5, 2}));
  EXPECT_TRUE(p.add_routers_labels);
  EXPECT_FALSE(p.add_entry_points_labels);
  EXPECT_EQ(p.entry_point, "web");
  EXPECT_EQ(p.prefix, "traefik");
  EXPECT_TRUE(p.manual_routing);
  EXPECT_EQ(load.config.find_entry_point("traefik"), nullptr);  // manualRouting: no traefik entry point needed
}

TEST(StaticConfig, PrometheusBadValuesAreErrorsWithPlace) {
  TempFile f("metrics:\n  prometheus:\n    buckets: [1, 0.5]\n    prefix: 'a-b'\n    headerLabels: {x: X}\n"
             "    entryPoint: nope\n    color: red\n");
  auto load = load_static_config({f.flag()});
  EXPECT_TRUE(has_error(load, f.path() + ":3", "increasing positive numbers")) << all_errors(load);
  EXPECT_TRUE(has_error(load, f.path() + ":4", "\"a-b\" is not a valid metric name prefix")) << all_errors(load);
  EXPECT_TRUE(has_error(load, f.path() + ":5", "headerLabels is not supported")) << all_errors(load);
  EXPECT_TRUE(has_error(load, f.path() + ":6", "\"nope\" is not a defined entry point")) << all_errors(load);
  EXPECT_TRUE(has_error(load, f.path() + ":7", "unknown key \"color\"")) << all_errors(load);
}

TEST(StaticConfig, PingOnUndefinedEntryPointIsAnError) {
  auto load = load_static_config({"--ping.entryPoint=nope"});
  EXPECT_TRUE(has_error(load, "flag --ping.entryPoint", "\"nope\" is not a defined entry point")) << all_errors(load);
}

TEST(StaticConfig, ApiInsecureAddsTraefikEntryPoint) {
  auto load = load_static_config({"--api.insecure=true", "--entryPoints.web.address=:80"});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  EXPECT_TRUE(load.config.api_dashboard);
  ASSERT_NE(load.config.find_entry_point("traefik"), nullptr);
  EXPECT_EQ(load.config.find_entry_point("traefik")->port, 8080);
}

TEST(StaticConfig, ExistingTraefikEntryPointIsKept) {
  auto load = load_static_config({"--ping", "--entryPoints.traefik.address=:9999"});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  ASSERT_EQ(load.config.entry_points.size(), 1u);  // an entry point exists, so no `http` default either
  EXPECT_EQ(load.config.entry_points[0].port, 9999);
}

TEST(StaticConfig, ParsesAddressForms) {
  std::string host;
  uint16_t port = 0;
  EXPECT_TRUE(parse_address(":8080", host, port));
  EXPECT_EQ(host, "");
  EXPECT_EQ(port, 8080);
  EXPECT_TRUE(parse_address("127.0.0.1:80", host, port));
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 80);
  EXPECT_TRUE(parse_address("[::1]:8080", host, port));
  EXPECT_EQ(host, "::1");
  EXPECT_TRUE(parse_address("localhost:81/tcp", host, port));
  EXPECT_EQ(host, "localhost");
  EXPECT_EQ(port, 81);
  EXPECT_FALSE(parse_address(":80/udp", host, port));
  EXPECT_FALSE(parse_address(":65536", host, port));
  EXPECT_FALSE(parse_address(":http", host, port));
  EXPECT_FALSE(parse_address("8080", host, port));
  EXPECT_FALSE(parse_address("::1:80", host, port));
  EXPECT_FALSE(parse_address("[::1]", host, port));
  EXPECT_FALSE(parse_address("[nothost]:80", host, port));
  EXPECT_FALSE(parse_address(":", host, port));
}

TEST(StaticConfig, BadAddressIsAnErrorWithPlace) {
  TempFile file("entryPoints:\n  web:\n    address: \":99999\"\n");
  auto load = load_static_config({file.flag()});
  EXPECT_TRUE(has_error(load, file.path() + ":3:14", "invalid address \":99999\"")) << all_errors(load);
  EXPECT_EQ(load.config.find_entry_point("web"), nullptr);
}

TEST(StaticConfig, UdpEntryPointIsAnError) {
  auto load = load_static_config({"--entryPoints.dns.address=:53/udp"});
  EXPECT_TRUE(has_error(load, "flag --entryPoints.dns.address", "udp entry points are not supported"))
      << all_errors(load);
}

TEST(StaticConfig, MissingAddressIsAnError) {
  TempFile file("entryPoints:\n  web:\n    asDefault: true\n");
  auto load = load_static_config({file.flag()});
  EXPECT_TRUE(has_error(load, file.path() + ":2:3", "entry point \"web\" has no address")) << all_errors(load);
}

TEST(StaticConfig, UnknownKeyErrorHasFileLineAndColumn) {
  TempFile file("entryPoints:\n  web:\n    adress: \":80\"\n");
  auto load = load_static_config({file.flag()});
  ASSERT_FALSE(load.errors.empty());
  EXPECT_EQ(load.errors[0].where, file.path() + ":3:5");
  EXPECT_EQ(load.errors[0].message, "unknown key \"adress\" in entryPoints.web");
}

TEST(StaticConfig, UnknownFlagErrorNamesTheFlag) {
  auto load = load_static_config({"--entryPoints.web.adress=:80"});
  ASSERT_FALSE(load.errors.empty());
  EXPECT_EQ(load.errors[0].to_string(), "flag --entryPoints.web.adress: unknown key \"adress\" in entryPoints.web");
}

TEST(StaticConfig, UnknownTopLevelKeyIsAnError) {
  auto load = load_static_config({"--tracing"});
  EXPECT_TRUE(has_error(load, "flag --tracing", "unknown key \"tracing\" at the top level")) << all_errors(load);
}

TEST(StaticConfig, InvalidDurationIsAnErrorWithPlace) {
  TempFile file("entryPoints:\n  web:\n    address: ':80'\n    transport:\n      respondingTimeouts:\n"
                "        readTimeout: soon\n");
  auto load = load_static_config({file.flag()});
  EXPECT_TRUE(has_error(load, file.path() + ":6:22",
                        "invalid duration \"soon\" for entryPoints.web.transport.respondingTimeouts.readTimeout"))
      << all_errors(load);
}

TEST(StaticConfig, TrustedIpsAcceptCidrsAndRejectGarbage) {
  auto load = load_static_config(
      {"--entryPoints.web.address=:80", "--entryPoints.web.forwardedHeaders.trustedIPs=10.0.0.0/8,fd00::/8,1.2.3.4"});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  EXPECT_EQ(load.config.entry_points[0].trusted_ips, (std::vector<std::string>{"10.0.0.0/8", "fd00::/8", "1.2.3.4"}));

  TempFile file("entryPoints:\n  web:\n    address: ':80'\n    forwardedHeaders:\n      trustedIPs:\n"
                "        - 10.0.0.0/33\n        - 192.168.0.0/16\n        - not-an-ip\n");
  load = load_static_config({file.flag()});
  EXPECT_TRUE(has_error(load, file.path() + ":6:11", "\"10.0.0.0/33\"")) << all_errors(load);
  EXPECT_TRUE(has_error(load, file.path() + ":8:11", "\"not-an-ip\"")) << all_errors(load);
  EXPECT_EQ(load.errors.size(), 2u);
}

TEST(StaticConfig, CollectsEveryError) {
  TempFile file(R"(
entryPoints:
  web:
    address: ":abc"
  api:
    address: ":81"
    transport:
      respondingTimeouts:
        idleTimeout: forever
log:
  level: LOUD
workers: -1
bogus: 1
ioUring: sometimes
)");
  auto load = load_static_config({file.flag(), "--ping.terminatingStatusCode=abc", "stray"});
  EXPECT_EQ(load.errors.size(), 8u) << all_errors(load);
  EXPECT_TRUE(has_error(load, ":14:10", "invalid boolean \"sometimes\" for ioUring")) << all_errors(load);
  EXPECT_TRUE(has_error(load, ":4:14", "invalid address")) << all_errors(load);
  EXPECT_TRUE(has_error(load, ":9:22", "invalid duration \"forever\"")) << all_errors(load);
  EXPECT_TRUE(has_error(load, ":11:10", "invalid log.level \"LOUD\"")) << all_errors(load);
  EXPECT_TRUE(has_error(load, ":12:10", "out of range")) << all_errors(load);
  EXPECT_TRUE(has_error(load, ":13:1", "unknown key \"bogus\"")) << all_errors(load);
  EXPECT_TRUE(has_error(load, "flag --ping.terminatingStatusCode", "invalid integer")) << all_errors(load);
  EXPECT_TRUE(has_error(load, "argument \"stray\"", "expected a flag")) << all_errors(load);
}

TEST(StaticConfig, DuplicateKeysDifferingInCaseAreAnError) {
  TempFile file("entryPoints:\n  web:\n    address: ':80'\n  WEB:\n    address: ':81'\n");
  auto load = load_static_config({file.flag()});
  EXPECT_TRUE(has_error(load, file.path() + ":4:3", "duplicate key \"WEB\" in entryPoints")) << all_errors(load);
}

TEST(StaticConfig, UnreadableFileIsAnErrorNamingIt) {
  auto load = load_static_config({"--configFile=/nonexistent/berth.yml"});
  ASSERT_EQ(load.errors.size(), 1u);
  EXPECT_EQ(load.errors[0].where, "/nonexistent/berth.yml");
  EXPECT_NE(load.errors[0].message.find("cannot read config file"), std::string::npos);
}

TEST(StaticConfig, YamlSyntaxErrorNamesFileAndLine) {
  TempFile file("entryPoints:\n  web:\n    address: [\":80\"\n");
  auto load = load_static_config({file.flag()});
  ASSERT_EQ(load.errors.size(), 1u) << all_errors(load);
  EXPECT_TRUE(load.errors[0].where.starts_with(file.path() + ":")) << load.errors[0].where;
  EXPECT_NE(load.errors[0].where, file.path());
}

TEST(StaticConfig, EmptyFileIsValid) {
  TempFile file("");
  auto load = load_static_config({file.flag()});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  EXPECT_EQ(load.config.entry_points.size(), 1u);
}

TEST(StaticConfig, FileProviderRejectsFilenameWithDirectory) {
  auto load = load_static_config({"--providers.file.filename=a.yml", "--providers.file.directory=conf"});
  EXPECT_TRUE(has_error(load, "flag --providers.file", "mutually exclusive")) << all_errors(load);
}

TEST(StaticConfig, FileProviderKeepsRelativePathAsWritten) {
  auto load = load_static_config({"--providers.file.filename=conf/dynamic.yml"});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  EXPECT_TRUE(load.config.file.enabled);
  EXPECT_EQ(load.config.file.filename, "conf/dynamic.yml");
  EXPECT_TRUE(load.config.file.watch);
}

TEST(StaticConfig, TomlConfigFileIsRejected) {
  TempFile file("[entryPoints]\n", ".toml");
  auto load = load_static_config({file.flag()});
  EXPECT_TRUE(has_error(load, file.path(), "TOML")) << all_errors(load);
}

TEST(StaticConfig, DecodesEntryPointHttpRedirectionsAndMiddlewares) {
  TempFile file(R"(
entryPoints:
  web:
    address: ":80"
    http:
      redirections:
        entryPoint:
          to: websecure
      middlewares: [auth@file, "compress@docker"]
  websecure:
    address: ":443"
  bad:
    address: ":81"
    http:
      redirections:
        entryPoint:
          to: nowhere
          colour: red
)");
  auto load = load_static_config({file.flag()});
  const auto* web = load.config.find_entry_point("web");
  ASSERT_NE(web, nullptr);
  ASSERT_TRUE(web->redirect.has_value());
  EXPECT_EQ(web->redirect->to, "websecure");
  EXPECT_EQ(web->redirect->scheme, "https");  // Traefik's defaults
  EXPECT_TRUE(web->redirect->permanent);
  EXPECT_EQ(web->redirect->priority, INT64_MAX - 1);
  EXPECT_EQ(web->middlewares, (std::vector<std::string>{"auth@file", "compress@docker"}));
  EXPECT_TRUE(has_error(load, ":16:9", "\"nowhere\" is neither an entry point nor a :port")) << all_errors(load);
  EXPECT_TRUE(has_error(load, ":18:11", "unknown key \"colour\"")) << all_errors(load);
}

TEST(StaticConfig, DockerProviderKeysDefaultsAndFlags) {
  auto defaults = load_static_config({"--providers.docker=true"});
  ASSERT_TRUE(defaults.errors.empty()) << all_errors(defaults);
  const auto& d = defaults.config.docker;
  EXPECT_TRUE(d.enabled);
  EXPECT_EQ(d.endpoint, "unix:///var/run/docker.sock");  // Traefik's defaults
  EXPECT_TRUE(d.exposed_by_default);
  EXPECT_TRUE(d.watch);
  EXPECT_EQ(d.default_rule, "Host(`{{ normalize .Name }}`)");
  EXPECT_FALSE(defaults.config.file.enabled);

  TempFile file(R"yml(
providers:
  docker:
    endpoint: tcp://127.0.0.1:2375
    exposedByDefault: false
    network: shop_front
    constraints: "Label(`team`, `a`)"
    allowEmptyServices: true
    useBindPortIP: true
    httpClientTimeout: 5s
    tls:
      ca: /ca.pem
)yml");
  auto load = load_static_config({file.flag(), "--providers.docker.defaultRule=Host(`{{ .Name }}.test`)",
                                  "--providers.docker.watch=false"});
  const auto& c = load.config.docker;
  EXPECT_EQ(c.endpoint, "tcp://127.0.0.1:2375");
  EXPECT_FALSE(c.exposed_by_default);
  EXPECT_EQ(c.network, "shop_front");
  EXPECT_EQ(c.constraints, "Label(`team`, `a`)");
  EXPECT_TRUE(c.allow_empty_services);
  EXPECT_TRUE(c.use_bind_port_ip);
  EXPECT_EQ(c.http_client_timeout, Duration(5000));
  EXPECT_EQ(c.default_rule, "Host(`{{ .Name }}.test`)");
  EXPECT_FALSE(c.watch);
  EXPECT_TRUE(has_error(load, ":11:5", "TLS to the Docker daemon is not supported yet")) << all_errors(load);
}

TEST(StaticConfig, FlagListIndexesBuildLists) {
  auto load = load_static_config({"--entryPoints.web.address=:80", "--entryPoints.web.http.tls.domains[1].main=b.test",
                                  "--entryPoints.web.http.tls.domains[0].main=a.test",
                                  "--entryPoints.web.http.tls.domains[0].sans=x.a.test,y.a.test"});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  const auto* web = load.config.find_entry_point("web");
  ASSERT_TRUE(web && web->tls);
  ASSERT_EQ(web->tls->domains.size(), 2u);
  EXPECT_EQ(web->tls->domains[0].main, "a.test");  // by index, not by flag order
  EXPECT_EQ(web->tls->domains[0].sans, (std::vector<std::string>{"x.a.test", "y.a.test"}));
  EXPECT_EQ(web->tls->domains[1].main, "b.test");
}

TEST(StaticConfig, AccessLogIsOffUnlessPresent) {
  auto load = load_static_config({});
  EXPECT_FALSE(load.config.access_log.enabled);
  load = load_static_config({"--accessLog"});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  const AccessLogConfig& a = load.config.access_log;
  EXPECT_TRUE(a.enabled);
  EXPECT_EQ(a.format, "common");
  EXPECT_EQ(a.file_path, "");
  EXPECT_EQ(a.buffering_size, 0);
  EXPECT_EQ(a.fields_default_mode, "keep");
  EXPECT_EQ(a.headers_default_mode, "drop");
  EXPECT_FALSE(a.has_filters);
  TempFile empty("accessLog: {}\n");
  load = load_static_config({empty.flag()});
  EXPECT_TRUE(load.config.access_log.enabled) << all_errors(load);
  TempFile off("accessLog: false\n");
  load = load_static_config({off.flag()});
  EXPECT_FALSE(load.config.access_log.enabled) << all_errors(load);
}

TEST(StaticConfig, DecodesEveryAccessLogKey) {
  TempFile file(R"(
accessLog:
  filePath: /var/log/berth/access.log
  format: JSON
  bufferingSize: 100
  addInternals: true
  filters:
    statusCodes: ["200", "300-302"]
    retryAttempts: true
    minDuration: 10ms
  fields:
    defaultMode: drop
    names:
      ClientUsername: keep
      startutc: Drop
    headers:
      defaultMode: keep
      names:
        User-Agent: redact
        Authorization: drop
        Content-Type: KEEP
)");
  auto load = load_static_config({file.flag()});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  const AccessLogConfig& a = load.config.access_log;
  EXPECT_TRUE(a.enabled);
  EXPECT_EQ(a.file_path, "/var/log/berth/access.log");
  EXPECT_EQ(a.format, "json");
  EXPECT_EQ(a.buffering_size, 100);
  EXPECT_TRUE(a.add_internals);
  EXPECT_EQ(a.status_codes, (std::vector<std::pair<int, int>>{{200, 200}, {300, 302}}));
  EXPECT_TRUE(a.retry_attempts);
  EXPECT_EQ(a.min_duration, 10ms);
  EXPECT_TRUE(a.has_filters);
  EXPECT_EQ(a.fields_default_mode, "drop");
  EXPECT_EQ(a.field_modes,
            (std::vector<std::pair<std::string, std::string>>{{"ClientUsername", "keep"}, {"startutc", "drop"}}));
  EXPECT_EQ(a.headers_default_mode, "keep");
  EXPECT_EQ(a.header_modes, (std::vector<std::pair<std::string, std::string>>{
                                {"User-Agent", "redact"}, {"Authorization", "drop"}, {"Content-Type", "keep"}}));
}

TEST(StaticConfig, AccessLogFlagsAsTraefiksCommandLine) {
  auto load = load_static_config({"--accesslog=true", "--accesslog.format=genericCLF",
                                  "--accesslog.filters.statuscodes=200,300-302, 500-599",
                                  "--accesslog.filters.minduration=2", "--accesslog.fields.names.ClientUsername=drop",
                                  "--accesslog.fields.headers.names.User-Agent=keep", "--accessLog.filePath=a.log"});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  const AccessLogConfig& a = load.config.access_log;
  EXPECT_EQ(a.format, "genericCLF");
  EXPECT_EQ(a.status_codes, (std::vector<std::pair<int, int>>{{200, 200}, {300, 302}, {500, 599}}));
  EXPECT_EQ(a.min_duration, 2s);  // a bare number is seconds
  EXPECT_TRUE(a.has_filters);
  EXPECT_EQ(a.field_modes, (std::vector<std::pair<std::string, std::string>>{{"ClientUsername", "drop"}}));
  EXPECT_EQ(a.header_modes, (std::vector<std::pair<std::string, std::string>>{{"User-Agent", "keep"}}));
  EXPECT_EQ(a.file_path, "a.log");
  // An empty filters section filters nothing, as in Traefik.
  load = load_static_config({"--accesslog.filters"});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  EXPECT_FALSE(load.config.access_log.has_filters);
}

TEST(StaticConfig, AccessLogProblemsNameTheirPlace) {
  TempFile file(R"(accessLog:
  format: xml
  bufferingSize: -1
  filters:
    statusCodes: ["200", "302-300", "abc", "99"]
    minDuration: later
    bogus: 1
  fields:
    defaultMode: redact
    names:
      NotAField: drop
      Duration: hide
    headers:
      defaultMode: show
      names:
        X-Token: secret
  otlp: {}
  nope: 1
)");
  auto load = load_static_config({file.flag()});
  const std::string f = file.path();
  EXPECT_TRUE(has_error(load, f + ":2:11", "invalid accessLog.format \"xml\"")) << all_errors(load);
  EXPECT_TRUE(has_error(load, f + ":3:18", "out of range")) << all_errors(load);
  EXPECT_TRUE(has_error(load, f + ":5:26", "statusCodes entry \"302-300\"")) << all_errors(load);
  EXPECT_TRUE(has_error(load, f + ":5:37", "statusCodes entry \"abc\"")) << all_errors(load);
  EXPECT_TRUE(has_error(load, f + ":5:44", "statusCodes entry \"99\"")) << all_errors(load);
  EXPECT_TRUE(has_error(load, f + ":6:18", "invalid duration \"later\"")) << all_errors(load);
  EXPECT_TRUE(has_error(load, f + ":7:5", "unknown key \"bogus\" in accessLog.filters")) << all_errors(load);
  EXPECT_TRUE(has_error(load, f + ":9:18", "invalid mode \"redact\" for accessLog.fields.defaultMode (expected keep or drop)"))
      << all_errors(load);
  EXPECT_TRUE(has_error(load, f + ":11:7", "unknown access log field \"NotAField\"")) << all_errors(load);
  EXPECT_TRUE(has_error(load, f + ":12:17", "invalid mode \"hide\" for accessLog.fields.names.Duration")) << all_errors(load);
  EXPECT_TRUE(has_error(load, f + ":14:20", "invalid mode \"show\" for accessLog.fields.headers.defaultMode"))
      << all_errors(load);
  EXPECT_TRUE(has_error(load, f + ":16:18", "invalid mode \"secret\" for accessLog.fields.headers.names.X-Token (expected keep, drop or redact)"))
      << all_errors(load);
  EXPECT_TRUE(has_error(load, f + ":17:9", "accessLog.otlp is not supported")) << all_errors(load);
  EXPECT_TRUE(has_error(load, f + ":18:3", "unknown key \"nope\" in accessLog")) << all_errors(load);
  EXPECT_EQ(load.errors.size(), 14u) << all_errors(load);
}

TEST(StaticConfig, DecodesLogFormatAndFilePath) {
  TempFile file("log:\n  level: warn\n  format: JSON\n  filePath: /var/log/berth.log\n  noColor: true\n");
  auto load = load_static_config({file.flag()});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  EXPECT_EQ(load.config.log_level, "WARN");
  EXPECT_EQ(load.config.log_format, "json");
  EXPECT_EQ(load.config.log_file_path, "/var/log/berth.log");
  load = load_static_config({"--log.format=common", "--log.filepath=b.log"});
  ASSERT_TRUE(load.errors.empty()) << all_errors(load);
  EXPECT_EQ(load.config.log_format, "common");
  EXPECT_EQ(load.config.log_file_path, "b.log");
  load = load_static_config({});
  EXPECT_EQ(load.config.log_format, "common");
  EXPECT_EQ(load.config.log_file_path, "");

  TempFile bad("log:\n  format: logfmt\n  maxSize: 10\n  colour: true\n");
  load = load_static_config({bad.flag()});
  EXPECT_TRUE(has_error(load, bad.path() + ":2:11", "invalid log.format \"logfmt\" (expected common or json)"))
      << all_errors(load);
  EXPECT_TRUE(has_error(load, bad.path() + ":3:12", "log.maxSize is not supported by berth")) << all_errors(load);
  EXPECT_TRUE(has_error(load, bad.path() + ":4:3", "unknown key \"colour\" in log")) << all_errors(load);
  EXPECT_EQ(load.errors.size(), 3u) << all_errors(load);
}

}  // namespace
}  // namespace berth::config
