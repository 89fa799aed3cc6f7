// What berth needs to know of a container, read from the Engine API's JSON (GET /containers/{id}/json),
// the container list and the event stream. Thread: any.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace berth::discovery::docker {

struct PortBinding {
  std::string host_ip;  ///< "" or "0.0.0.0" / "::" when bound on every address
  uint16_t host_port = 0;
  bool operator==(const PortBinding&) const = default;
};

/// One exposed or published port ("80/tcp" in NetworkSettings.Ports or Config.ExposedPorts).
struct ContainerPort {
  uint16_t port = 0;
  std::string protocol;               ///< "tcp", "udp", "sctp"
  std::vector<PortBinding> bindings;  ///< host bindings, if published
  bool operator==(const ContainerPort&) const = default;
};

struct NetworkAddress {
  std::string name;         ///< network name ("bridge", "shop_default")
  std::string ipv4;         ///< IPAddress, may be empty
  std::string global_ipv6;  ///< GlobalIPv6Address, may be empty
  bool operator==(const NetworkAddress&) const = default;
};

struct Container {
  std::string id;                               ///< full id
  std::string name;                             ///< without the leading '/'
  std::map<std::string, std::string> labels;    ///< Config.Labels
  std::string status;                           ///< State.Status: created, running, paused, restarting, exited, dead
  std::string health;                           ///< State.Health.Status: "", starting, healthy, unhealthy
  std::string network_mode;                     ///< HostConfig.NetworkMode: host, bridge, none, default, container:<id>, <name>
  std::vector<NetworkAddress> networks;         ///< NetworkSettings.Networks, sorted by name
  std::vector<ContainerPort> ports;             ///< NetworkSettings.Ports and Config.ExposedPorts merged, sorted by port then protocol
  std::string started_at;                       ///< State.StartedAt: tells one run of the container from the next
  std::string stop_signal;                      ///< Config.StopSignal as written ("SIGTERM", "15", ""; "" = SIGTERM)
  int stop_timeout = 10;                        ///< Config.StopTimeout (seconds; dockerd's default 10)
  bool operator==(const Container&) const = default;
};

/// Parses the answer of GET /containers/{id}/json. Missing optional parts (no health check, no
/// networks, null Ports) are empty; a body that is not a JSON object with an Id is an Error.
Result<Container> parse_container_inspect(std::string_view json);

/// The ids in the answer of GET /containers/json (a JSON array of objects with "Id"; an element
/// without a string Id is skipped). A body that is not a JSON array is an Error.
Result<std::vector<std::string>> parse_container_list(std::string_view json);

/// One line of GET /events: a container event (`Type` "container").
struct ContainerEvent {
  std::string id;      ///< Actor.ID (or "id")
  std::string action;  ///< Action without arguments: "start", "die", "kill", "stop", "destroy", "pause",
                       ///< "unpause", "health_status" ("health_status: healthy" -> "health_status")
  std::string detail;  ///< what came after ": " in Action ("healthy", "sh -c ..." of exec_start), else ""
  std::string signal;  ///< Actor.Attributes.signal of a "kill" ("15"), else ""
  int64_t time_nano = 0;  ///< timeNano
};

/// Parses one event line; nullopt for a line that is not a container event, not JSON, or without an
/// action or id. A line without Type (API < 1.22) is read from its "status" and "id".
std::optional<ContainerEvent> parse_container_event(std::string_view line);

}  // namespace berth::discovery::docker
