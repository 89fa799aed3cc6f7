// Unit tests for the Docker Engine API client and the container JSON it reads. The JSON fixtures are
// dockerd 20.10.24 (API 1.41) answers captured from a private daemon, trimmed to the fields berth
// reads plus their neighbours; the client runs against a tiny server on a unix socket in a temp dir.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "discovery/docker/container.h"
#include "discovery/docker/engine_client.h"

// GCC 12 takes Asio's coroutine frame allocation (aligned_new in the frame's operator new, freed by its
// operator delete) for a mismatch at -O1 and above: a false positive, reported on each coroutine.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace berth::discovery::docker {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// --- Container JSON -------------------------------------------------------------------------------

// docker run -d --init --network host --name be1 -l traefik.enable=true -l 'traefik.http.routers...'
//   --health-cmd "wget -q -O /dev/null http://127.0.0.1:28931/" --health-interval 1s --health-retries 2
constexpr std::string_view kHostNetworkWithHealthCheck = R"json({
"Id":"da75e5f28fd1370acd0acb206b5f0479f8aa6bc353b8b648ac61d6046b63725d",
"Created":"2026-11-27T16:58:30.360824666Z",
"Path":"/bin/busybox",
"Args":["httpd","-f","-p","127.0.0.1:28931","-h","/www"],
"State":{"Status":"running","Running":true,"Paused":false,"Restarting":false,"OOMKilled":false,"Dead":false,"Pid":6313,"ExitCode":0,"Error":"","StartedAt":"2026-11-27T16:58:30.588075131Z","FinishedAt":"0001-01-01T00:00:00Z","Health":{"Status":"healthy","FailingStreak":0,"Log":[{"Start":"2026-11-27T16:58:40.102337234Z","End":"2026-11-27T16:58:40.158784656Z","ExitCode":0,"Output":""}]}},
"Image":"sha256:769a1fb3b211584c5b226eb2663e220f0b1db4de16db54ddbb2ff2666df9eaf6",
"Name":"/be1",
"RestartCount":0,
"HostConfig":{"NetworkMode":"host","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"Init":true},
"Config":{"Hostname":"vm","Env":null,"Cmd":["/bin/busybox","httpd","-f","-p","127.0.0.1:28931","-h","/www"],"Healthcheck":{"Test":["CMD-SHELL","wget -q -O /dev/null http://127.0.0.1:28931/"],"Interval":1000000000,"Retries":2},"Image":"berth-bb:test","Labels":{"traefik.enable":"true","traefik.http.routers.be1.rule":"Host(`be1.test`)","traefik.http.services.be1.loadbalancer.server.port":"28931"}},
"NetworkSettings":{"Bridge":"","SandboxID":"34cbd10dc514fb2ddbb198d4bc638103eae37f54070ad455dc0537958990433a","Ports":{},"SandboxKey":"/tmp/bdrYqy/dexec/netns/default","EndpointID":"","Gateway":"","GlobalIPv6Address":"","IPAddress":"","MacAddress":"","Networks":{"host":{"IPAMConfig":null,"Links":null,"Aliases":null,"NetworkID":"da303d852da5d4e065728949bc7df8d16af07ce8e14b2647723b4caf413dd538","EndpointID":"7ce99741d79297376ba1edea64ebacff9ca662d30bb92dee256913df92503603","Gateway":"","IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"MacAddress":"","DriverOpts":null}}}
})json";

// docker network create berth-test; docker network create --internal berth-int
// docker run -d --init --network berth-test --name web2 -p 127.0.0.1:28932:80 -p 127.0.0.1:28933:53/udp
//   -p 127.0.0.1::9000 --expose 8080 --expose 80 ...; docker network connect berth-int web2
constexpr std::string_view kBridgeWithPublishedPorts = R"json({
"Id":"e2eaec6bd1d056f7afe0c527c7aa3064ed113fd19226b9638083d9774c200a1e",
"Created":"2026-11-27T16:58:38.634784224Z",
"Path":"/bin/busybox",
"Args":["httpd","-f","-p","80","-h","/www"],
"State":{"Status":"running","Running":true,"Paused":false,"Restarting":false,"OOMKilled":false,"Dead":false,"Pid":6542,"ExitCode":0,"Error":"","StartedAt":"2026-11-27T16:58:38.977962969Z","FinishedAt":"0001-01-01T00:00:00Z"},
"Image":"sha256:769a1fb3b211584c5b226eb2663e220f0b1db4de16db54ddbb2ff2666df9eaf6",
"Name":"/web2",
"RestartCount":0,
"HostConfig":{"NetworkMode":"berth-test","PortBindings":{"53/udp":[{"HostIp":"127.0.0.1","HostPort":"28933"}],"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"28932"}],"9000/tcp":[{"HostIp":"127.0.0.1","HostPort":""}]},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"Init":true},
"Config":{"Hostname":"e2eaec6bd1d0","ExposedPorts":{"53/udp":{},"80/tcp":{},"8080/tcp":{},"9000/tcp":{}},"Env":null,"Cmd":["/bin/busybox","httpd","-f","-p","80","-h","/www"],"Image":"berth-bb:test","Labels":{"traefik.enable":"true","traefik.http.services.web2.loadbalancer.server.port":"80"}},
"NetworkSettings":{"Bridge":"","SandboxID":"092616cf3c386ec7b6ac9ce08b19cd1d1f00bd75597785491f54a8aabdb2c5c6","Ports":{"53/udp":[{"HostIp":"127.0.0.1","HostPort":"28933"}],"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"28932"}],"8080/tcp":null,"9000/tcp":[{"HostIp":"127.0.0.1","HostPort":"32768"}]},"SandboxKey":"/tmp/bdrYqy/dexec/netns/092616cf3c38","EndpointID":"","Gateway":"","GlobalIPv6Address":"","IPAddress":"","MacAddress":"","Networks":{"berth-int":{"IPAMConfig":{},"Links":null,"Aliases":["e2eaec6bd1d0"],"NetworkID":"6c3d84e60de631f231a4a2e5da3bab9742446463e6314db968f65f7ee4fc2956","EndpointID":"adc80f45cb018040ec0ff3a0581325603d61127c99bba534306f91067f982a26","Gateway":"172.18.0.1","IPAddress":"172.18.0.2","IPPrefixLen":16,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"MacAddress":"02:42:ac:12:00:02","DriverOpts":{}},"berth-test":{"IPAMConfig":null,"Links":null,"Aliases":["e2eaec6bd1d0"],"NetworkID":"9ade850f931b004dbfe78a6847626ebb1e60856aa5a09120cea06fae2dd8dec6","EndpointID":"0cb8745482bdaca25fc7ad9578b7c724531c98f11e39be3416337b89e670d3c8","Gateway":"172.17.0.1","IPAddress":"172.17.0.2","IPPrefixLen":16,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"MacAddress":"02:42:ac:11:00:02","DriverOpts":null}}}
})json";

// The same container after `docker stop web2`: the published ports and the addresses are gone.
constexpr std::string_view kBridgeExited = R"json({
"Id":"e2eaec6bd1d056f7afe0c527c7aa3064ed113fd19226b9638083d9774c200a1e",
"Created":"2026-11-27T16:58:38.634784224Z",
"Path":"/bin/busybox",
"Args":["httpd","-f","-p","80","-h","/www"],
"State":{"Status":"exited","Running":false,"Paused":false,"Restarting":false,"OOMKilled":false,"Dead":false,"Pid":0,"ExitCode":143,"Error":"","StartedAt":"2026-11-27T16:58:38.977962969Z","FinishedAt":"2026-11-27T16:59:00.46788578Z"},
"Image":"sha256:769a1fb3b211584c5b226eb2663e220f0b1db4de16db54ddbb2ff2666df9eaf6",
"Name":"/web2",
"RestartCount":0,
"HostConfig":{"NetworkMode":"berth-test","PortBindings":{"53/udp":[{"HostIp":"127.0.0.1","HostPort":"28933"}],"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"28932"}],"9000/tcp":[{"HostIp":"127.0.0.1","HostPort":""}]},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"Init":true},
"Config":{"Hostname":"e2eaec6bd1d0","ExposedPorts":{"53/udp":{},"80/tcp":{},"8080/tcp":{},"9000/tcp":{}},"Env":null,"Cmd":["/bin/busybox","httpd","-f","-p","80","-h","/www"],"Image":"berth-bb:test","Labels":{"traefik.enable":"true","traefik.http.services.web2.loadbalancer.server.port":"80"}},
"NetworkSettings":{"Bridge":"","SandboxID":"092616cf3c386ec7b6ac9ce08b19cd1d1f00bd75597785491f54a8aabdb2c5c6","Ports":{},"SandboxKey":"/tmp/bdrYqy/dexec/netns/092616cf3c38","EndpointID":"","Gateway":"","GlobalIPv6Address":"","IPAddress":"","MacAddress":"","Networks":{"berth-int":{"IPAMConfig":{},"Links":null,"Aliases":["e2eaec6bd1d0"],"NetworkID":"6c3d84e60de631f231a4a2e5da3bab9742446463e6314db968f65f7ee4fc2956","EndpointID":"","Gateway":"","IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"MacAddress":"","DriverOpts":{}},"berth-test":{"IPAMConfig":null,"Links":null,"Aliases":["e2eaec6bd1d0"],"NetworkID":"9ade850f931b004dbfe78a6847626ebb1e60856aa5a09120cea06fae2dd8dec6","EndpointID":"","Gateway":"","IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"MacAddress":"","DriverOpts":null}}}
})json";

// docker-compose (1.29.2) -p berthtest: service `api` with `expose: ["8081"]` on the project network.
constexpr std::string_view kComposeService = R"json({
"Id":"4d77cd1fa505b5d455ecaa16d5dcba3c378d20a4567206568ed122d5d6f8e6c4",
"Created":"2026-11-27T16:58:53.85778723Z",
"Path":"/bin/busybox",
"Args":["httpd","-f","-p","8081","-h","/www"],
"State":{"Status":"running","Running":true,"Paused":false,"Restarting":false,"OOMKilled":false,"Dead":false,"Pid":7147,"ExitCode":0,"Error":"","StartedAt":"2026-11-27T16:58:54.185110447Z","FinishedAt":"0001-01-01T00:00:00Z"},
"Image":"sha256:769a1fb3b211584c5b226eb2663e220f0b1db4de16db54ddbb2ff2666df9eaf6",
"Name":"/berthtest_api_1",
"RestartCount":0,
"HostConfig":{"NetworkMode":"berthtest_default","PortBindings":{},"RestartPolicy":{"Name":"","MaximumRetryCount":0},"Init":true},
"Config":{"Hostname":"4d77cd1fa505","ExposedPorts":{"8081/tcp":{}},"Env":null,"Cmd":["/bin/busybox","httpd","-f","-p","8081","-h","/www"],"Image":"berth-bb:test","Labels":{"com.docker.compose.config-hash":"c886f9296a8a08d8ddb85c1fcf97d65d49d0ff69bf22d79662dae263acfeff95","com.docker.compose.container-number":"1","com.docker.compose.oneoff":"False","com.docker.compose.project":"berthtest","com.docker.compose.project.config_files":"comp/compose.yml","com.docker.compose.project.working_dir":"/tmp/bdrYqy/comp","com.docker.compose.service":"api","com.docker.compose.version":"1.29.2","traefik.enable":"true","traefik.http.services.api.loadbalancer.server.port":"8081"}},
"NetworkSettings":{"Bridge":"","SandboxID":"81337d0b8ccdd07271e66a50df461c6961a1b56e47e9c2595ca3b04465068504","Ports":{"8081/tcp":null},"SandboxKey":"/tmp/bdrYqy/dexec/netns/81337d0b8ccd","EndpointID":"","Gateway":"","GlobalIPv6Address":"","IPAddress":"","MacAddress":"","Networks":{"berthtest_default":{"IPAMConfig":null,"Links":null,"Aliases":["api","4d77cd1fa505"],"NetworkID":"0e255038ce3dd0be10a993cc1396a52bd4ae9ba7bb7fbd43b2556a801c1ebd49","EndpointID":"307af74491c460683f7657a6cafcc972dc5fb76b93996e12fa54f9b7f824904c","Gateway":"172.19.0.1","IPAddress":"172.19.0.2","IPPrefixLen":16,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"MacAddress":"02:42:ac:13:00:02","DriverOpts":null}}}
})json";

// docker network create --ipv6 --subnet fd00:beef::/64 berth-v6; docker run --network berth-v6 ...
constexpr std::string_view kIpv6Network = R"json({
"Id":"0c4311c4b7bf9ffe7e09270453dc48512dd7923f96431f8be8c0c6794529b679",
"Created":"2026-11-27T16:59:26.394910903Z",
"Path":"/bin/busybox",
"Args":["sleep","1000"],
"State":{"Status":"running","Running":true,"Paused":false,"Restarting":false,"OOMKilled":false,"Dead":false,"Pid":9184,"ExitCode":0,"Error":"","StartedAt":"2026-11-27T16:59:26.851797898Z","FinishedAt":"0001-01-01T00:00:00Z"},
"Image":"sha256:769a1fb3b211584c5b226eb2663e220f0b1db4de16db54ddbb2ff2666df9eaf6",
"Name":"/v6",
"RestartCount":0,
"HostConfig":{"NetworkMode":"berth-v6","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"Init":true},
"Config":{"Hostname":"0c4311c4b7bf","Env":null,"Cmd":["/bin/busybox","sleep","1000"],"Image":"berth-bb:test","Labels":{"traefik.enable":"true"}},
"NetworkSettings":{"Bridge":"","SandboxID":"34ae1bfd58377bf228b0ce142f3d9d8b9b899ca58be0d0fba49d98c24453deb3","Ports":{},"SandboxKey":"/tmp/bdrYqy/dexec/netns/34ae1bfd5837","EndpointID":"","Gateway":"","GlobalIPv6Address":"","IPAddress":"","MacAddress":"","Networks":{"berth-v6":{"IPAMConfig":null,"Links":null,"Aliases":["0c4311c4b7bf"],"NetworkID":"742b30de44a5f49715499aa2a6a6cd3bc45f170f5101084f170f0d3137756610","EndpointID":"044450963d32cbbff5bbecabbff1f3cdc6d5bf877461834df2348ebb2793c927","Gateway":"172.20.0.1","IPAddress":"172.20.0.2","IPPrefixLen":16,"IPv6Gateway":"fd00:beef::1","GlobalIPv6Address":"fd00:beef::2","GlobalIPv6PrefixLen":64,"MacAddress":"02:42:ac:14:00:02","DriverOpts":null}}}
})json";

// GET /containers/json?all=1 (be1, web2 and a container started with --network none).
constexpr std::string_view kContainerList = R"json([
{"Id":"7fb830d35e9c58be42da1ffe7898fc17fe2633494fb5cace9c8b0e8aa73500d8","Names":["/nonet"],"Image":"berth-bb:test","ImageID":"sha256:769a1fb3b211584c5b226eb2663e220f0b1db4de16db54ddbb2ff2666df9eaf6","Command":"/bin/busybox sleep 1000","Created":1795798719,"Ports":[],"Labels":{},"State":"running","Status":"Up 1 second","HostConfig":{"NetworkMode":"none"},"NetworkSettings":{"Networks":{"none":{"IPAMConfig":null,"Links":null,"Aliases":null,"NetworkID":"3c0e5143422d8212a0df1b8bb0a8433c1a6942d000278b4dfedb748b5f435fec","EndpointID":"e857d8241468c00d9a596bf9a20d1716229d8b255a5cd5c6d1e7fd0b52d05abb","Gateway":"","IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"MacAddress":"","DriverOpts":null}}},"Mounts":[]},
{"Id":"e2eaec6bd1d056f7afe0c527c7aa3064ed113fd19226b9638083d9774c200a1e","Names":["/web2"],"Image":"berth-bb:test","ImageID":"sha256:769a1fb3b211584c5b226eb2663e220f0b1db4de16db54ddbb2ff2666df9eaf6","Command":"/bin/busybox httpd -f -p 80 -h /www","Created":1795798718,"Ports":[{"IP":"127.0.0.1","PrivatePort":53,"PublicPort":28933,"Type":"udp"},{"IP":"127.0.0.1","PrivatePort":80,"PublicPort":28932,"Type":"tcp"},{"PrivatePort":8080,"Type":"tcp"},{"IP":"127.0.0.1","PrivatePort":9000,"PublicPort":32768,"Type":"tcp"}],"Labels":{"traefik.enable":"true","traefik.http.services.web2.loadbalancer.server.port":"80"},"State":"running","Status":"Up 1 second","HostConfig":{"NetworkMode":"berth-test"},"NetworkSettings":{"Networks":{"berth-int":{"IPAMConfig":{},"Links":null,"Aliases":null,"NetworkID":"6c3d84e60de631f231a4a2e5da3bab9742446463e6314db968f65f7ee4fc2956","EndpointID":"adc80f45cb018040ec0ff3a0581325603d61127c99bba534306f91067f982a26","Gateway":"172.18.0.1","IPAddress":"172.18.0.2","IPPrefixLen":16,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"MacAddress":"02:42:ac:12:00:02","DriverOpts":null},"berth-test":{"IPAMConfig":null,"Links":null,"Aliases":null,"NetworkID":"9ade850f931b004dbfe78a6847626ebb1e60856aa5a09120cea06fae2dd8dec6","EndpointID":"0cb8745482bdaca25fc7ad9578b7c724531c98f11e39be3416337b89e670d3c8","Gateway":"172.17.0.1","IPAddress":"172.17.0.2","IPPrefixLen":16,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"MacAddress":"02:42:ac:11:00:02","DriverOpts":null}}},"Mounts":[]},
{"Id":"da75e5f28fd1370acd0acb206b5f0479f8aa6bc353b8b648ac61d6046b63725d","Names":["/be1"],"Image":"berth-bb:test","ImageID":"sha256:769a1fb3b211584c5b226eb2663e220f0b1db4de16db54ddbb2ff2666df9eaf6","Command":"/bin/busybox httpd -f -p 127.0.0.1:28931 -h /www","Created":1795798710,"Ports":[],"Labels":{"traefik.enable":"true","traefik.http.routers.be1.rule":"Host(`be1.test`)","traefik.http.services.be1.loadbalancer.server.port":"28931"},"State":"running","Status":"Up 10 seconds (healthy)","HostConfig":{"NetworkMode":"host"},"NetworkSettings":{"Networks":{"host":{"IPAMConfig":null,"Links":null,"Aliases":null,"NetworkID":"da303d852da5d4e065728949bc7df8d16af07ce8e14b2647723b4caf413dd538","EndpointID":"7ce99741d79297376ba1edea64ebacff9ca662d30bb92dee256913df92503603","Gateway":"","IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"MacAddress":"","DriverOpts":null}}},"Mounts":[]}
])json";

TEST(ParseContainerInspect, ReadsHostNetworkContainerWithHealthCheck) {
  auto c = parse_container_inspect(kHostNetworkWithHealthCheck);
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->id, "da75e5f28fd1370acd0acb206b5f0479f8aa6bc353b8b648ac61d6046b63725d");
  EXPECT_EQ(c->name, "be1");
  EXPECT_EQ(c->status, "running");
  EXPECT_EQ(c->health, "healthy");
  EXPECT_EQ(c->network_mode, "host");
  EXPECT_EQ(c->labels, (std::map<std::string, std::string>{
                           {"traefik.enable", "true"},
                           {"traefik.http.routers.be1.rule", "Host(`be1.test`)"},
                           {"traefik.http.services.be1.loadbalancer.server.port", "28931"},
                       }));
  // With --network host the only network is "host", without any address, and no port is listed.
  EXPECT_EQ(c->networks, (std::vector<NetworkAddress>{{"host", "", ""}}));
  EXPECT_TRUE(c->ports.empty());
}

TEST(ParseContainerInspect, MergesPublishedAndExposedPortsSortedByPort) {
  auto c = parse_container_inspect(kBridgeWithPublishedPorts);
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->name, "web2");
  EXPECT_EQ(c->health, "");  // no health check
  EXPECT_EQ(c->network_mode, "berth-test");
  EXPECT_EQ(c->networks, (std::vector<NetworkAddress>{{"berth-int", "172.18.0.2", ""},
                                                      {"berth-test", "172.17.0.2", ""}}));
  // 9000 was published on a port dockerd picked: NetworkSettings has it, HostConfig says "".
  EXPECT_EQ(c->ports, (std::vector<ContainerPort>{
                          {53, "udp", {{"127.0.0.1", 28933}}},
                          {80, "tcp", {{"127.0.0.1", 28932}}},
                          {8080, "tcp", {}},
                          {9000, "tcp", {{"127.0.0.1", 32768}}},
                      }));
}

TEST(ParseContainerInspect, ExitedContainerKeepsExposedPortsAndNetworksWithoutAddresses) {
  auto c = parse_container_inspect(kBridgeExited);
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->status, "exited");
  EXPECT_EQ(c->networks, (std::vector<NetworkAddress>{{"berth-int", "", ""}, {"berth-test", "", ""}}));
  EXPECT_EQ(c->ports, (std::vector<ContainerPort>{{53, "udp", {}}, {80, "tcp", {}}, {8080, "tcp", {}},
                                                  {9000, "tcp", {}}}));
}

TEST(ParseContainerInspect, ReadsComposeServiceOnItsProjectNetwork) {
  auto c = parse_container_inspect(kComposeService);
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->name, "berthtest_api_1");
  EXPECT_EQ(c->network_mode, "berthtest_default");
  EXPECT_EQ(c->labels.at("com.docker.compose.project"), "berthtest");
  EXPECT_EQ(c->labels.at("com.docker.compose.service"), "api");
  EXPECT_EQ(c->labels.at("traefik.http.services.api.loadbalancer.server.port"), "8081");
  EXPECT_EQ(c->labels.size(), 10u);
  EXPECT_EQ(c->networks, (std::vector<NetworkAddress>{{"berthtest_default", "172.19.0.2", ""}}));
  EXPECT_EQ(c->ports, (std::vector<ContainerPort>{{8081, "tcp", {}}}));  // "8081/tcp": null
}

TEST(ParseContainerInspect, ReadsGlobalIpv6Address) {
  auto c = parse_container_inspect(kIpv6Network);
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->networks, (std::vector<NetworkAddress>{{"berth-v6", "172.20.0.2", "fd00:beef::2"}}));
  EXPECT_TRUE(c->ports.empty());
}

TEST(ParseContainerInspect, NullPartsReadAsEmpty) {
  auto c = parse_container_inspect(R"({"Id":"abc","Name":"/x","State":{"Status":"created"},
    "HostConfig":{"NetworkMode":"default"},"Config":{"Labels":null,"ExposedPorts":null},
    "NetworkSettings":{"Ports":null,"Networks":null}})");
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->name, "x");
  EXPECT_EQ(c->status, "created");
  EXPECT_EQ(c->network_mode, "default");
  EXPECT_TRUE(c->labels.empty());
  EXPECT_TRUE(c->networks.empty());
  EXPECT_TRUE(c->ports.empty());

  auto bare = parse_container_inspect(R"({"Id":"abc"})");
  ASSERT_TRUE(bare.ok()) << bare.error().to_string();
  EXPECT_EQ(bare->name, "");
  EXPECT_EQ(bare->health, "");
}

TEST(ParseContainerInspect, SkipsWronglyTypedFieldsAndDeduplicatesPorts) {
  // A binding on every address comes as 0.0.0.0 and :: with the same port.
  auto c = parse_container_inspect(R"({"Id":"abc","Name":7,"State":[],
    "Config":{"Labels":{"a":"1","b":2},"ExposedPorts":{"80/tcp":{},"443":{},"x/tcp":{},"70000/tcp":{}}},
    "NetworkSettings":{"Networks":{"n":5,"m":{"IPAddress":1,"GlobalIPv6Address":"fd00::3"}},
      "Ports":{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"},{"HostIp":"::","HostPort":"8080"},
                         {"HostIp":"0.0.0.0","HostPort":"8080"},{"HostIp":"::"},7],
               "53/UDP":"x","0/tcp":null}}})");
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->name, "");
  EXPECT_EQ(c->status, "");
  EXPECT_EQ(c->labels, (std::map<std::string, std::string>{{"a", "1"}}));
  EXPECT_EQ(c->networks, (std::vector<NetworkAddress>{{"m", "", "fd00::3"}, {"n", "", ""}}));
  EXPECT_EQ(c->ports, (std::vector<ContainerPort>{
                          {53, "udp", {}},
                          {80, "tcp", {{"0.0.0.0", 8080}, {"::", 8080}}},
                          {443, "tcp", {}},
                      }));
}

TEST(ParseContainerInspect, RejectsWhatIsNotAContainer) {
  for (std::string_view text : {"", "{", "null", "[]", R"("abc")", R"({"Name":"/x"})", R"({"Id":5})",
                                R"({"Id":"abc",})", "{\"message\":\"No such container: nope\"}"}) {
    auto c = parse_container_inspect(text);
    EXPECT_FALSE(c.ok()) << text;
  }
  EXPECT_NE(parse_container_inspect("{").error().message.find("malformed container JSON"), std::string::npos);
  EXPECT_NE(parse_container_inspect("{}").error().message.find("without an Id"), std::string::npos);
  // Nesting deeper than Boost.JSON's limit is an error, not a stack overflow.
  EXPECT_FALSE(parse_container_inspect(std::string(100000, '[')).ok());
}

TEST(ParseContainerList, ReadsIds) {
  auto ids = parse_container_list(kContainerList);
  ASSERT_TRUE(ids.ok()) << ids.error().to_string();
  EXPECT_EQ(*ids, (std::vector<std::string>{"7fb830d35e9c58be42da1ffe7898fc17fe2633494fb5cace9c8b0e8aa73500d8",
                                            "e2eaec6bd1d056f7afe0c527c7aa3064ed113fd19226b9638083d9774c200a1e",
                                            "da75e5f28fd1370acd0acb206b5f0479f8aa6bc353b8b648ac61d6046b63725d"}));
  auto empty = parse_container_list("[]");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  auto odd = parse_container_list(R"([1, {"Id":5}, {"Names":["/x"]}, {"Id":"x"}])");
  ASSERT_TRUE(odd.ok());
  EXPECT_EQ(*odd, (std::vector<std::string>{"x"}));
  EXPECT_FALSE(parse_container_list("{}").ok());
  EXPECT_FALSE(parse_container_list("[{").ok());
  EXPECT_FALSE(parse_container_list("").ok());
}

// --- Events ---------------------------------------------------------------------------------------

// Lines of GET /events, as dockerd sent them (one JSON object and '\n' per chunk).
constexpr std::string_view kStartEvent = R"json({"status":"start","id":"da75e5f28fd1370acd0acb206b5f0479f8aa6bc353b8b648ac61d6046b63725d","from":"berth-bb:test","Type":"container","Action":"start","Actor":{"ID":"da75e5f28fd1370acd0acb206b5f0479f8aa6bc353b8b648ac61d6046b63725d","Attributes":{"image":"berth-bb:test","name":"be1","traefik.enable":"true","traefik.http.routers.be1.rule":"Host(`be1.test`)","traefik.http.services.be1.loadbalancer.server.port":"28931"}},"scope":"local","time":1795798710,"timeNano":1795798710591175995})json";
constexpr std::string_view kHealthyEvent = R"json({"status":"health_status: healthy","id":"da75e5f28fd1370acd0acb206b5f0479f8aa6bc353b8b648ac61d6046b63725d","from":"berth-bb:test","Type":"container","Action":"health_status: healthy","Actor":{"ID":"da75e5f28fd1370acd0acb206b5f0479f8aa6bc353b8b648ac61d6046b63725d","Attributes":{"image":"berth-bb:test","name":"be1","traefik.enable":"true","traefik.http.routers.be1.rule":"Host(`be1.test`)","traefik.http.services.be1.loadbalancer.server.port":"28931"}},"scope":"local","time":1795798711,"timeNano":1795798711649012590})json";
// docker stop web2: kill (with the signal) then die (with the exit code) then stop.
constexpr std::string_view kKillEvent = R"json({"status":"kill","id":"e2eaec6bd1d056f7afe0c527c7aa3064ed113fd19226b9638083d9774c200a1e","from":"berth-bb:test","Type":"container","Action":"kill","Actor":{"ID":"e2eaec6bd1d056f7afe0c527c7aa3064ed113fd19226b9638083d9774c200a1e","Attributes":{"image":"berth-bb:test","name":"web2","signal":"15","traefik.enable":"true","traefik.http.services.web2.loadbalancer.server.port":"80"}},"scope":"local","time":1795798740,"timeNano":1795798740465366103})json";
constexpr std::string_view kDieEvent = R"json({"status":"die","id":"e2eaec6bd1d056f7afe0c527c7aa3064ed113fd19226b9638083d9774c200a1e","from":"berth-bb:test","Type":"container","Action":"die","Actor":{"ID":"e2eaec6bd1d056f7afe0c527c7aa3064ed113fd19226b9638083d9774c200a1e","Attributes":{"exitCode":"143","image":"berth-bb:test","name":"web2","traefik.enable":"true","traefik.http.services.web2.loadbalancer.server.port":"80"}},"scope":"local","time":1795798740,"timeNano":1795798740509632166})json";
// docker kill nonet (docker rm -f sends the same).
constexpr std::string_view kKillByDockerKillEvent = R"json({"status":"kill","id":"7fb830d35e9c58be42da1ffe7898fc17fe2633494fb5cace9c8b0e8aa73500d8","from":"berth-bb:test","Type":"container","Action":"kill","Actor":{"ID":"7fb830d35e9c58be42da1ffe7898fc17fe2633494fb5cace9c8b0e8aa73500d8","Attributes":{"image":"berth-bb:test","name":"nonet","signal":"9"}},"scope":"local","time":1795798740,"timeNano":1795798740668746264})json";
// docker exec be1 sh -c 'echo hi' (health checks produce the same, each interval).
constexpr std::string_view kExecStartEvent = R"json({"status":"exec_start: sh -c echo hi","id":"da75e5f28fd1370acd0acb206b5f0479f8aa6bc353b8b648ac61d6046b63725d","from":"berth-bb:test","Type":"container","Action":"exec_start: sh -c echo hi","Actor":{"ID":"da75e5f28fd1370acd0acb206b5f0479f8aa6bc353b8b648ac61d6046b63725d","Attributes":{"execID":"5555ca18aab3a123c84711d813a8bd71e6b838b075f886f1691aa3e399d46cb2","image":"berth-bb:test","name":"be1","traefik.enable":"true","traefik.http.routers.be1.rule":"Host(`be1.test`)","traefik.http.services.be1.loadbalancer.server.port":"28931"}},"scope":"local","time":1795798740,"timeNano":1795798740223772758})json";
constexpr std::string_view kNetworkConnectEvent = R"json({"Type":"network","Action":"connect","Actor":{"ID":"da303d852da5d4e065728949bc7df8d16af07ce8e14b2647723b4caf413dd538","Attributes":{"container":"da75e5f28fd1370acd0acb206b5f0479f8aa6bc353b8b648ac61d6046b63725d","name":"host","type":"host"}},"scope":"local","time":1795798710,"timeNano":1795798710459483144})json";

TEST(ParseContainerEvent, ReadsStart) {
  auto e = parse_container_event(kStartEvent);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->id, "da75e5f28fd1370acd0acb206b5f0479f8aa6bc353b8b648ac61d6046b63725d");
  EXPECT_EQ(e->action, "start");
  EXPECT_EQ(e->detail, "");
  EXPECT_EQ(e->time_nano, 1795798710591175995);
}

TEST(ParseContainerEvent, SplitsHealthStatusFromItsValue) {
  auto e = parse_container_event(kHealthyEvent);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->action, "health_status");
  EXPECT_EQ(e->detail, "healthy");
}

TEST(ParseContainerEvent, ReadsKillAndDie) {
  auto kill = parse_container_event(kKillEvent);
  ASSERT_TRUE(kill.has_value());
  EXPECT_EQ(kill->id, "e2eaec6bd1d056f7afe0c527c7aa3064ed113fd19226b9638083d9774c200a1e");
  EXPECT_EQ(kill->action, "kill");  // the signal is an attribute, not part of the action
  EXPECT_EQ(kill->detail, "");
  EXPECT_EQ(kill->signal, "15");  // SIGTERM, by number
  auto die = parse_container_event(kDieEvent);
  ASSERT_TRUE(die.has_value());
  EXPECT_EQ(die->action, "die");
  EXPECT_EQ(die->signal, "");  // only a kill has one
  auto sigkill = parse_container_event(kKillByDockerKillEvent);
  ASSERT_TRUE(sigkill.has_value());
  EXPECT_EQ(sigkill->action, "kill");
  EXPECT_EQ(sigkill->signal, "9");
  EXPECT_GT(die->time_nano, kill->time_nano);
}

TEST(ParseContainerEvent, CutsExecCommandOffTheAction) {
  auto e = parse_container_event(kExecStartEvent);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->action, "exec_start");
  EXPECT_EQ(e->detail, "sh -c echo hi");
}

TEST(ParseContainerEvent, IgnoresOtherTypes) {
  EXPECT_FALSE(parse_container_event(kNetworkConnectEvent).has_value());
  EXPECT_FALSE(parse_container_event(R"({"Type":"image","Action":"delete","Actor":{"ID":"sha256:1"}})").has_value());
}

TEST(ParseContainerEvent, FallsBackToTheOldFields) {
  // Before API 1.22 an event had only status, id, from and time.
  auto e = parse_container_event(R"({"status":"die","id":"abc","from":"img","time":1700000000})");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->id, "abc");
  EXPECT_EQ(e->action, "die");
  EXPECT_EQ(e->time_nano, 1700000000000000000);
  auto typed = parse_container_event(R"({"status":"start","id":"abc","Type":"container","Actor":{"Attributes":{}}})");
  ASSERT_TRUE(typed.has_value());
  EXPECT_EQ(typed->id, "abc");
  EXPECT_EQ(typed->action, "start");
}

TEST(ParseContainerEvent, RejectsMalformedLines) {
  for (std::string_view line : {"", "   ", "not json", "{", "[]", "null", R"({"Type":"container"})",
                                R"({"Type":"container","Action":"start"})",
                                R"({"Type":"container","Action":"start","Actor":{"ID":5}})",
                                R"({"Type":"container","Action":": x","Actor":{"ID":"abc"}})",
                                R"({"Type":5,"Action":"start","Actor":{"ID":"abc"}})"}) {
    EXPECT_FALSE(parse_container_event(line).has_value()) << line;
  }
  // A wrongly typed time is only a missing time.
  auto e = parse_container_event(R"({"Type":"container","Action":"start","Actor":{"ID":"abc"},"timeNano":"x"})");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->time_nano, 0);
}

// --- Endpoints ------------------------------------------------------------------------------------

TEST(ParseEngineEndpoint, ReadsUnixSocket) {
  auto ep = parse_engine_endpoint("unix:///var/run/docker.sock");
  ASSERT_TRUE(ep.ok()) << ep.error().to_string();
  EXPECT_TRUE(ep->unix_socket);
  EXPECT_EQ(ep->path, "/var/run/docker.sock");
  EXPECT_EQ(ep->text, "unix:///var/run/docker.sock");
}

TEST(ParseEngineEndpoint, ReadsTcpAndHttp) {
  auto tcp = parse_engine_endpoint("tcp://127.0.0.1:2375");
  ASSERT_TRUE(tcp.ok()) << tcp.error().to_string();
  EXPECT_FALSE(tcp->unix_socket);
  EXPECT_EQ(tcp->host, "127.0.0.1");
  EXPECT_EQ(tcp->port, 2375);
  auto http = parse_engine_endpoint("http://socket-proxy:2375/");
  ASSERT_TRUE(http.ok()) << http.error().to_string();
  EXPECT_EQ(http->host, "socket-proxy");
  EXPECT_EQ(http->port, 2375);
  auto v6 = parse_engine_endpoint("TCP://[::1]:65535");
  ASSERT_TRUE(v6.ok()) << v6.error().to_string();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 65535);
  EXPECT_EQ(v6->text, "TCP://[::1]:65535");
}

TEST(ParseEngineEndpoint, RejectsWhatItCannotReach) {
  auto message = [](std::string_view text) {
    auto ep = parse_engine_endpoint(text);
    EXPECT_FALSE(ep.ok()) << text;
    if (ep.ok()) return std::string();
    EXPECT_EQ(ep.error().where, text);
    return ep.error().message;
  };
  EXPECT_NE(message("https://docker.example:2376").find("TLS to dockerd is not supported yet"), std::string::npos);
  EXPECT_NE(message("ssh://me@host").find("ssh:// endpoints are not supported"), std::string::npos);
  EXPECT_NE(message("tcp://127.0.0.1").find("missing port"), std::string::npos);
  EXPECT_NE(message("tcp://[::1]").find("missing port"), std::string::npos);
  EXPECT_NE(message("unix://var/run/docker.sock").find("must be absolute"), std::string::npos);
  EXPECT_NE(message("/var/run/docker.sock").find("write unix:///var/run/docker.sock"), std::string::npos);
  EXPECT_NE(message("").find("empty"), std::string::npos);
  EXPECT_NE(message("docker.sock").find("missing scheme"), std::string::npos);
  EXPECT_NE(message("fd://").find("unsupported scheme \"fd\""), std::string::npos);
  EXPECT_NE(message("npipe:////./pipe/docker_engine").find("not supported"), std::string::npos);
  EXPECT_NE(message("tcp://::1:2375").find("brackets"), std::string::npos);
  EXPECT_NE(message("tcp://:2375").find("missing host"), std::string::npos);
  EXPECT_NE(message("tcp://host:0").find("from 1 to 65535"), std::string::npos);
  EXPECT_NE(message("tcp://host:65536").find("from 1 to 65535"), std::string::npos);
  EXPECT_NE(message("tcp://host:http").find("from 1 to 65535"), std::string::npos);
  EXPECT_NE(message("tcp://host:2375/v1.41").find("path"), std::string::npos);
  EXPECT_NE(message("tcp://[::1:2375").find("]"), std::string::npos);
  EXPECT_NE(message("unix:///" + std::string(200, 'a')).find("longer than 107 bytes"), std::string::npos);
}

// --- EngineClient ---------------------------------------------------------------------------------

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

// What the in-test server does with one connection, and what it saw.
struct Script {
  struct Step {
    std::chrono::milliseconds delay{0};  ///< before writing `bytes`
    std::string bytes;
  };
  std::vector<Step> steps;
  bool is_waiting_for_close = false;  ///< after the steps, wait for the client to close

  std::string request = {};  ///< the request head the client sent
  int written = 0;           ///< steps written so far
  bool has_seen_close = false;
};

std::string chunk(std::string_view data) {
  char size[16];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  return std::string(size) + std::string(data) + "\r\n";
}

constexpr std::string_view kChunkedHead =
    "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\nDocker-Experimental: false\r\n"
    "Ostype: linux\r\nServer: Docker/20.10.24+dfsg1 (linux)\r\nDate: Fri, 27 Nov 2026 16:59:10 GMT\r\n"
    "Transfer-Encoding: chunked\r\n\r\n";

// Accepts one connection, reads the request head, plays the steps, then closes or waits for the
// client to. Reading the whole request first matters: closing with unread bytes would send a RST.
template <typename Acceptor>
asio::awaitable<void> serve(Acceptor& acceptor, std::shared_ptr<Script> script) {
  auto [aec, socket] = co_await acceptor.async_accept(kUseTuple);
  if (aec) co_return;
  char buf[4096];
  while (script->request.find("\r\n\r\n") == std::string::npos) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), kUseTuple);
    if (ec) co_return;
    script->request.append(buf, n);
  }
  asio::steady_timer timer(socket.get_executor());
  for (const auto& step : script->steps) {
    if (step.delay.count() > 0) {
      timer.expires_after(step.delay);
      co_await timer.async_wait(kUseTuple);
    }
    auto [ec, n] = co_await asio::async_write(socket, asio::buffer(step.bytes), kUseTuple);
    if (ec) co_return;
    ++script->written;
  }
  if (script->is_waiting_for_close) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), kUseTuple);
    script->has_seen_close = ec == asio::error::eof;
  }
}

class EngineClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/berth-dkXXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/d.sock";
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }

  EngineEndpoint endpoint() const { return *parse_engine_endpoint("unix://" + path_); }

  // Listens on the socket and serves `script` to the first connection.
  std::shared_ptr<Script> serve_once(Script script) {
    auto shared = std::make_shared<Script>(std::move(script));
    acceptor_.reset();
    ::unlink(path_.c_str());
    acceptor_.emplace(io_, asio::local::stream_protocol::endpoint(path_));
    asio::co_spawn(io_, serve(*acceptor_, shared), rethrow);
    return shared;
  }

  // Runs `task` (and the server) to the end, for 1 s at most. (co_spawn cannot hand a Result over
  // directly: it wants a default-constructible value.)
  template <typename T>
  T run(asio::awaitable<T> task) {
    std::optional<T> out;
    io_.restart();
    asio::co_spawn(
        io_, [&out, task = std::move(task)]() mutable -> asio::awaitable<void> { out.emplace(co_await std::move(task)); },
        rethrow);
    io_.run_for(1s);
    EXPECT_TRUE(out.has_value()) << "did not finish within 1 s";
    if (!out) return T(Error{"", "did not finish"});
    return std::move(*out);
  }

  static void rethrow(std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  }

  asio::io_context io_;
  std::optional<asio::local::stream_protocol::acceptor> acceptor_;
  std::string dir_;
  std::string path_;
};

TEST_F(EngineClientTest, GetSendsTheRequestAndReadsContentLengthBody) {
  auto script = serve_once({.steps = {{0ms, "HTTP/1.1 404 Not Found\r\nApi-Version: 1.41\r\n"
                                            "Content-Type: application/json\r\nContent-Length: 38\r\n\r\n"
                                            "{\"message\":\"No such container: nope\"}\n"}}});
  EngineClient client(io_, endpoint());
  auto r = run(client.get("/containers/nope/json", 500ms));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->body, "{\"message\":\"No such container: nope\"}\n");
  EXPECT_EQ(script->request.substr(0, script->request.find("\r\n")), "GET /v1.41/containers/nope/json HTTP/1.1");
  EXPECT_NE(script->request.find("\r\nHost: docker\r\n"), std::string::npos) << script->request;
  EXPECT_NE(script->request.find("\r\nConnection: close\r\n"), std::string::npos) << script->request;
  EXPECT_EQ(script->request.find("Authorization"), std::string::npos) << script->request;
}

TEST_F(EngineClientTest, GetDecodesChunkedBodyInPiecesAndSendsBasicAuth) {
  std::string body = R"([{"Id":"0c4311c4b7bf"},{"Id":"919c9878d796"}])";
  auto script = serve_once({.steps = {{0ms, std::string(kChunkedHead) + chunk(body.substr(0, 10)).substr(0, 7)},
                                      {10ms, chunk(body.substr(0, 10)).substr(7) + chunk(body.substr(10))},
                                      {10ms, "0\r\n\r\n"}}});
  EngineClient client(io_, endpoint(), "/v1.41", "user", "pass");
  auto r = run(client.get("/containers/json?all=1", 500ms));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, body);
  EXPECT_NE(script->request.find("\r\nAuthorization: Basic dXNlcjpwYXNz\r\n"), std::string::npos) << script->request;
}

TEST_F(EngineClientTest, StreamLinesDeliversEachLineAsItArrives) {
  // Lines split over chunks, several lines in one chunk, a chunk's framing split over writes, and a
  // last line without its newline.
  auto script = serve_once({.steps = {{0ms, std::string(kChunkedHead) + chunk("{\"n\":1}\n{\"n\"")},
                                      {20ms, "4\r\n:2}"},
                                      {10ms, "\n\r\n" + chunk("{\"n\":3}\n{\"n\":4}\n")},
                                      {10ms, chunk("{\"n\":5}") + "0\r\n\r\n"}}});
  EngineClient client(io_, endpoint());
  std::vector<std::string> lines;
  std::vector<int> written_then;
  auto r = run(client.stream_lines("/events?filters=%7B%22type%22%3A%5B%22container%22%5D%7D",
                                   [&](std::string_view line) {
                                     lines.emplace_back(line);
                                     written_then.push_back(script->written);
                                   }));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_TRUE(r.value());  // the server ended the body
  EXPECT_EQ(lines, (std::vector<std::string>{"{\"n\":1}", "{\"n\":2}", "{\"n\":3}", "{\"n\":4}", "{\"n\":5}"}));
  EXPECT_EQ(written_then, (std::vector<int>{1, 3, 3, 3, 4}));
  EXPECT_EQ(script->request.substr(0, script->request.find("\r\n")),
            "GET /v1.41/events?filters=%7B%22type%22%3A%5B%22container%22%5D%7D HTTP/1.1");
}

TEST_F(EngineClientTest, StreamLinesEndsWhenTheServerCloses) {
  auto script = serve_once({.steps = {{0ms, std::string(kChunkedHead) + chunk(std::string(kStartEvent) + "\n")},
                                      {5ms, chunk("{\"partial\"")}}});
  EngineClient client(io_, endpoint());
  std::vector<std::string> lines;
  auto r = run(client.stream_lines("/events", [&](std::string_view line) { lines.emplace_back(line); }));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_TRUE(r.value());
  ASSERT_EQ(lines.size(), 1u);  // the cut line is dropped
  EXPECT_EQ(parse_container_event(lines[0])->action, "start");
}

TEST_F(EngineClientTest, CancelStreamEndsTheStream) {
  // The line after the one whose on_line cancels is in the same chunk, and is not delivered.
  auto script = serve_once({.steps = {{0ms, std::string(kChunkedHead) + chunk("{\"n\":1}\n{\"n\":2}\n")}},
                            .is_waiting_for_close = true});
  EngineClient client(io_, endpoint());
  client.cancel_stream();  // none runs: nothing happens
  int calls = 0;
  auto r = run(client.stream_lines("/events", [&](std::string_view) {
    ++calls;
    client.cancel_stream();
  }));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_FALSE(r.value());  // cancelled
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(script->has_seen_close);
}

TEST_F(EngineClientTest, DestroyingTheClientEndsItsStream) {
  auto script = serve_once({.steps = {{0ms, std::string(kChunkedHead) + chunk("{\"n\":1}\n")}},
                            .is_waiting_for_close = true});
  auto client = std::make_unique<EngineClient>(io_, endpoint());
  auto r = run(client->stream_lines("/events", [&](std::string_view) { asio::post(io_, [&] { client.reset(); }); }));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_FALSE(r.value());
  EXPECT_EQ(client, nullptr);
  EXPECT_TRUE(script->has_seen_close);
}

TEST_F(EngineClientTest, StreamLinesReportsAnErrorAnswer) {
  serve_once({.steps = {{0ms, "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 85\r\n\r\n"
                              "{\"message\":\"client version 1.43 is too new. Maximum supported API version is 1.41\"}\n"}}});
  EngineClient client(io_, endpoint(), "/v1.43");
  auto r = run(client.stream_lines("/events", [](std::string_view) { ADD_FAILURE() << "no line expected"; }));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().where, "unix://" + path_);
  EXPECT_EQ(r.error().message,
            "GET /v1.43/events: HTTP 400: client version 1.43 is too new. Maximum supported API version is 1.41");
}

TEST_F(EngineClientTest, ReportsAMissingSocket) {
  EngineClient client(io_, endpoint());
  auto r = run(client.get("/containers/json", 500ms));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().where, "unix://" + path_);
  EXPECT_EQ(r.error().message, "cannot connect to the Docker daemon: No such file or directory");
  auto s = run(client.stream_lines("/events", [](std::string_view) {}));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message, "cannot connect to the Docker daemon: No such file or directory");
}

TEST_F(EngineClientTest, ReportsARefusedConnection) {
  // A socket file nobody listens on.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EngineClient client(io_, endpoint());
  auto r = run(client.get("/containers/json", 500ms));
  ::close(fd);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "cannot connect to the Docker daemon: Connection refused");
}

TEST_F(EngineClientTest, GetTimesOut) {
  auto script = serve_once({.steps = {{0ms, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n[]"}},
                            .is_waiting_for_close = true});
  EngineClient client(io_, endpoint());
  auto start = std::chrono::steady_clock::now();
  auto r = run(client.get("/containers/json", 100ms));
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "GET /v1.41/containers/json: timed out after 100ms");
  EXPECT_GE(took, 100ms);
  EXPECT_LT(took, 500ms);
  EXPECT_TRUE(script->has_seen_close);
}

TEST_F(EngineClientTest, ReportsMalformedAndCutAnswers) {
  serve_once({.steps = {{0ms, "HTTP/1.1 abc\r\n\r\n"}}});
  EngineClient client(io_, endpoint());
  auto r = run(client.get("/info", 500ms));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message.rfind("GET /v1.41/info: malformed response: ", 0), 0u) << r.error().message;

  serve_once({.steps = {{0ms, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n[]"}}});
  auto cut = run(client.get("/info", 500ms));
  ASSERT_FALSE(cut.ok());
  EXPECT_EQ(cut.error().message, "GET /v1.41/info: connection closed in the middle of the response");

  serve_once({});
  auto none = run(client.get("/info", 500ms));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().message, "GET /v1.41/info: connection closed before the response");

  auto bad = run(client.get("/containers/a b/json", 500ms));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message, "GET /v1.41/containers/a b/json: invalid request target");
}

TEST_F(EngineClientTest, ReachesATcpDaemonByAddressAndByName) {
  asio::ip::tcp::acceptor acceptor(io_, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto port = std::to_string(acceptor.local_endpoint().port());
  std::vector<std::shared_ptr<Script>> scripts;
  // localhost may resolve to ::1 first, where nobody listens: the client tries the next address.
  for (std::string text : {"tcp://127.0.0.1:" + port, "http://localhost:" + port}) {
    auto ep = parse_engine_endpoint(text);
    ASSERT_TRUE(ep.ok()) << ep.error().to_string();
    scripts.push_back(
        std::make_shared<Script>(Script{.steps = {{0ms, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"}}}));
    asio::co_spawn(io_, serve(acceptor, scripts.back()), rethrow);
    EngineClient client(io_, *ep, "");
    auto r = run(client.get("/_ping", 500ms));
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(r->body, "OK");
  }
  EXPECT_NE(scripts[0]->request.find("GET /_ping HTTP/1.1\r\nHost: 127.0.0.1:" + port + "\r\n"), std::string::npos)
      << scripts[0]->request;
  EXPECT_NE(scripts[1]->request.find("\r\nHost: localhost:" + port + "\r\n"), std::string::npos) << scripts[1]->request;
}

}  // namespace
}  // namespace berth::discovery::docker
