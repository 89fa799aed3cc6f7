// Reads containers and events out of the Engine API's JSON with Boost.JSON; see container.h. The
// daemon's JSON is trusted to be JSON, not to have every field: a missing or wrongly typed field reads
// as empty, and nothing here throws on any input.
#include "discovery/docker/container.h"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>

#include "base/text.h"

namespace berth::discovery::docker {

namespace {

namespace json = boost::json;

const json::object* object_at(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr ? v->if_object() : nullptr;
}

std::string string_at(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr || !v->is_string()) return {};
  return std::string(v->get_string());
}

std::optional<json::value> parse_json(std::string_view text, std::string* error) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) {
    if (error != nullptr) *error = ec.message();
    return std::nullopt;
  }
  return v;
}

std::optional<uint16_t> parse_port(std::string_view text) {
  auto n = parse_uint(text);
  if (!n || *n == 0 || *n > 65535) return std::nullopt;
  return uint16_t(*n);
}

// "80/tcp" (dockerd always writes the protocol; a bare "80" means tcp, as in the Docker CLI).
std::optional<std::pair<uint16_t, std::string>> parse_port_key(std::string_view key) {
  auto slash = key.find('/');
  std::string protocol = slash == std::string_view::npos ? "tcp" : to_lower(key.substr(slash + 1));
  auto port = parse_port(key.substr(0, slash));
  if (!port || protocol.empty()) return std::nullopt;
  return std::pair{*port, std::move(protocol)};
}

std::vector<PortBinding> parse_bindings(const json::value& v) {
  std::vector<PortBinding> out;
  const auto* list = v.if_array();
  if (list == nullptr) return out;  // null: exposed, not published
  for (const auto& item : *list) {
    const auto* b = item.if_object();
    if (b == nullptr) continue;
    // HostPort is a string; "" (a port still to be picked) is only seen in HostConfig.PortBindings.
    auto port = parse_port(string_at(*b, "HostPort"));
    if (!port) continue;
    PortBinding binding{string_at(*b, "HostIp"), *port};
    if (std::find(out.begin(), out.end(), binding) == out.end()) out.push_back(std::move(binding));
  }
  return out;
}

std::vector<ContainerPort> parse_ports(const json::object& root) {
  std::map<std::pair<uint16_t, std::string>, ContainerPort> ports;
  auto add = [&](std::string_view key, const json::value* bindings) {
    auto parsed = parse_port_key(key);
    if (!parsed) return;
    auto& port = ports[*parsed];
    port.port = parsed->first;
    port.protocol = parsed->second;
    if (bindings != nullptr) {
      for (auto& b : parse_bindings(*bindings)) {
        if (std::find(port.bindings.begin(), port.bindings.end(), b) == port.bindings.end())
          port.bindings.push_back(std::move(b));
      }
    }
  };
  if (const auto* config = object_at(root, "Config")) {
    if (const auto* exposed = object_at(*config, "ExposedPorts")) {
      for (const auto& [key, value] : *exposed) add(key, nullptr);
    }
  }
  if (const auto* settings = object_at(root, "NetworkSettings")) {
    if (const auto* published = object_at(*settings, "Ports")) {
      for (const auto& [key, value] : *published) add(key, &value);
    }
  }
  std::vector<ContainerPort> out;
  out.reserve(ports.size());
  for (auto& [key, port] : ports) out.push_back(std::move(port));
  return out;
}

std::vector<NetworkAddress> parse_networks(const json::object& root) {
  std::vector<NetworkAddress> out;
  const auto* settings = object_at(root, "NetworkSettings");
  const auto* networks = settings != nullptr ? object_at(*settings, "Networks") : nullptr;
  if (networks == nullptr) return out;
  for (const auto& [name, value] : *networks) {
    NetworkAddress net;
    net.name = std::string(name);
    if (const auto* n = value.if_object()) {
      net.ipv4 = string_at(*n, "IPAddress");
      net.global_ipv6 = string_at(*n, "GlobalIPv6Address");
    }
    out.push_back(std::move(net));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

int64_t int_at(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr) return 0;
  if (const auto* i = v->if_int64()) return *i;
  if (const auto* u = v->if_uint64()) return *u > uint64_t(INT64_MAX) ? 0 : int64_t(*u);
  return 0;
}

}  // namespace

Result<Container> parse_container_inspect(std::string_view text) {
  std::string error;
  auto v = parse_json(text, &error);
  if (!v) return Error{"", "malformed container JSON: " + error};
  const auto* root = v->if_object();
  if (root == nullptr) return Error{"", "expected a JSON object for the container"};
  Container c;
  c.id = string_at(*root, "Id");
  if (c.id.empty()) return Error{"", "container JSON without an Id"};
  c.name = string_at(*root, "Name");
  if (!c.name.empty() && c.name.front() == '/') c.name.erase(0, 1);

  if (const auto* config = object_at(*root, "Config")) {
    c.stop_signal = string_at(*config, "StopSignal");
    if (const auto* t = config->if_contains("StopTimeout"); t && (t->is_int64() || t->is_uint64()))
      c.stop_timeout = static_cast<int>(std::clamp<int64_t>(int_at(*config, "StopTimeout"), 0, 86'400));
    if (const auto* labels = object_at(*config, "Labels")) {  // null when the container has none
      for (const auto& [key, value] : *labels) {
        if (value.is_string()) c.labels.emplace(std::string(key), std::string(value.get_string()));
      }
    }
  }
  if (const auto* state = object_at(*root, "State")) {
    c.status = string_at(*state, "Status");
    c.started_at = string_at(*state, "StartedAt");
    if (const auto* health = object_at(*state, "Health")) c.health = string_at(*health, "Status");
  }
  if (const auto* host_config = object_at(*root, "HostConfig")) c.network_mode = string_at(*host_config, "NetworkMode");
  c.networks = parse_networks(*root);
  c.ports = parse_ports(*root);
  return c;
}

Result<std::vector<std::string>> parse_container_list(std::string_view text) {
  std::string error;
  auto v = parse_json(text, &error);
  if (!v) return Error{"", "malformed container list JSON: " + error};
  const auto* list = v->if_array();
  if (list == nullptr) return Error{"", "expected a JSON array of containers"};
  std::vector<std::string> ids;
  ids.reserve(list->size());
  for (const auto& item : *list) {
    const auto* o = item.if_object();
    if (o == nullptr) continue;
    auto id = string_at(*o, "Id");
    if (!id.empty()) ids.push_back(std::move(id));
  }
  return ids;
}

std::optional<ContainerEvent> parse_container_event(std::string_view line) {
  line = trim(line);
  if (line.empty()) return std::nullopt;
  auto v = parse_json(line, nullptr);
  if (!v) return std::nullopt;
  const auto* root = v->if_object();
  if (root == nullptr) return std::nullopt;
  // API 1.22 added Type/Action/Actor; before, every event was a container's, with "status" and "id".
  if (const auto* type = root->if_contains("Type")) {
    if (!type->is_string() || type->get_string() != "container") return std::nullopt;
  }
  ContainerEvent event;
  std::string action = string_at(*root, "Action");
  if (action.empty()) action = string_at(*root, "status");
  const auto* actor = object_at(*root, "Actor");
  if (actor != nullptr) event.id = string_at(*actor, "ID");
  if (event.id.empty()) event.id = string_at(*root, "id");
  if (action.empty() || event.id.empty()) return std::nullopt;

  // "health_status: healthy", "exec_start: sh -c ...": the argument follows ": ".
  if (auto colon = action.find(':'); colon != std::string::npos) {
    event.detail = std::string(trim(std::string_view(action).substr(colon + 1)));
    action.resize(colon);
  }
  event.action = std::string(trim(action));
  if (event.action.empty()) return std::nullopt;
  // dockerd writes the signal as a number ("15" for docker stop, "9" for docker kill / rm -f).
  if (event.action == "kill" && actor != nullptr) {
    if (const auto* attributes = object_at(*actor, "Attributes")) event.signal = string_at(*attributes, "signal");
  }

  event.time_nano = int_at(*root, "timeNano");
  if (event.time_nano == 0) {
    int64_t seconds = int_at(*root, "time");
    if (seconds > 0 && seconds < INT64_MAX / 1000000000) event.time_nano = seconds * 1000000000;
  }
  return event;
}

}  // namespace berth::discovery::docker
