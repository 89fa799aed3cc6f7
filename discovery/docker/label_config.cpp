// Containers -> dynamic config; see label_config.h. Order of work per container: participation,
// labels -> tree -> decoder, automatic service, servers (port, network), automatic router and links.
#include "discovery/docker/label_config.h"

#include <algorithm>

#include "base/text.h"
#include "discovery/docker/engine_client.h"

namespace berth::discovery::docker {
namespace {

using config::ConfigNode;
constexpr std::string_view kPrefixes[] = {"traefik.", "berth."};  // berth.* is read last and wins
const std::string kProvider = "docker";

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

// The value of `<prefix><key>` (key case-insensitive), berth.* over traefik.*; nullptr if absent.
const std::string* find_label(const Container& c, std::string_view key, std::string* full_key = nullptr) {
  const std::string* found = nullptr;
  for (std::string_view prefix : kPrefixes) {
    for (const auto& [k, v] : c.labels) {
      if (k.size() == prefix.size() + key.size() && istarts_with(k, prefix) && iequals(std::string_view(k).substr(prefix.size()), key)) {
        found = &v;
        if (full_key) *full_key = k;
      }
    }
  }
  return found;
}

std::vector<std::string> split_dots(std::string_view s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t dot = s.find('.', start);
    out.emplace_back(s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
    if (dot == std::string_view::npos) return out;
    start = dot + 1;
  }
}

// loadBalancer.server.* of one service: the one server labels can describe.
struct ServerLabels {
  std::string name;  ///< the service, as written
  std::map<std::string, std::pair<std::string, std::string>> fields;  ///< lower-cased key -> (value, where)
  const std::pair<std::string, std::string>* get(std::string_view key) const {
    auto it = fields.find(std::string(key));
    return it == fields.end() ? nullptr : &it->second;
  }
};

// The map child `key` of `node`, created if missing.
ConfigNode& map_child(ConfigNode& node, std::string_view key, const std::string& where) {
  if (!node.is_map()) {
    node.kind = ConfigNode::Kind::kMap;
    node.children.clear();
  }
  ConfigNode* child = node.find(key);
  if (child == nullptr) {
    child = &node.children.emplace_back();
    child->key = std::string(key);
    child->key_where = where;
    child->where = where;
  }
  if (!child->is_map() && !child->is_scalar()) child->kind = ConfigNode::Kind::kMap;
  return *child;
}

std::string address_of(const NetworkAddress& n) {
  if (!n.ipv4.empty()) return n.ipv4;
  if (!n.global_ipv6.empty()) return "[" + n.global_ipv6 + "]";
  return {};
}

const Container* find_container(const std::map<std::string, Container>& all, std::string_view ref) {
  for (const auto& [id, c] : all)
    if (c.name == ref || (ref.size() >= 12 && id.starts_with(ref))) return &c;
  return nullptr;
}

// The host part of a container's server URL (Traefik's getIPAddress, with a deterministic last step).
std::optional<std::string> container_host(const Container& c, std::string_view network,
                                          const std::map<std::string, Container>& all, const std::string& self_id,
                                          int depth, std::string& problem) {
  if (c.network_mode == "host") return "127.0.0.1";
  if (c.network_mode.starts_with("container:")) {
    const std::string_view ref = std::string_view(c.network_mode).substr(10);
    const Container* target = find_container(all, ref);
    if (target == nullptr || depth > 4) {
      problem = "it shares the network of container " + std::string(ref) + ", which berth does not see running";
      return std::nullopt;
    }
    const std::string* own = find_label(*target, "docker.network");
    return container_host(*target, own ? std::string_view(*own) : network, all, self_id, depth + 1, problem);
  }
  if (!network.empty()) {
    auto project = c.labels.find("com.docker.compose.project");
    for (const bool prefixed : {false, true}) {  // the exact name first, then "<project>_<name>"
      for (const auto& n : c.networks) {
        const bool named = prefixed ? project != c.labels.end() && n.name == project->second + "_" + std::string(network)
                                    : n.name == network;
        if (named)
          if (auto a = address_of(n); !a.empty()) return a;
      }
    }
  }
  // Several networks: the first (by name) that berth's own container is on, else the first by name.
  const Container* self = nullptr;
  if (!self_id.empty())
    if (auto it = all.find(self_id); it != all.end()) self = &it->second;
  if (self) {
    for (const auto& n : c.networks) {
      bool shared = std::any_of(self->networks.begin(), self->networks.end(),
                                [&](const NetworkAddress& m) { return m.name == n.name; });
      if (shared)
        if (auto a = address_of(n); !a.empty()) return a;
    }
  }
  for (const auto& n : c.networks)
    if (auto a = address_of(n); !a.empty()) return a;
  problem = "it has no IP address on any network (network mode \"" + c.network_mode + "\")";
  return std::nullopt;
}

// One container's labels, sorted into the decodable tree and the rest.
struct ContainerLabels {
  ConfigNode tree;
  std::vector<ServerLabels> servers;
  bool has_http = false;
  bool has_tcp_udp = false;
};

ContainerLabels read_labels(const Container& c) {
  ContainerLabels out;
  out.tree.kind = ConfigNode::Kind::kMap;
  for (std::string_view prefix : kPrefixes) {
    for (const auto& [key, value] : c.labels) {
      if (!istarts_with(key, prefix)) continue;
      std::vector<std::string> path = split_dots(std::string_view(key).substr(prefix.size()));
      const std::string where = "container " + c.name + " label " + key;
      if (iequals(path[0], "http")) {
        out.has_http = true;
        // http.services.<s>.loadBalancer.server.<field>
        if (path.size() == 6 && iequals(path[1], "services") && iequals(path[3], "loadBalancer") &&
            iequals(path[4], "server")) {
          auto it = std::find_if(out.servers.begin(), out.servers.end(),
                                 [&](const ServerLabels& s) { return iequals(s.name, path[2]); });
          if (it == out.servers.end()) it = out.servers.insert(it, ServerLabels{path[2], {}});
          it->fields[to_lower(path[5])] = {value, where};
          // The service exists even if this is its only label.
          map_child(map_child(map_child(map_child(out.tree, "http", where), "services", where), path[2], where),
                    "loadBalancer", where);
          continue;
        }
        config::set_path(out.tree, path, value, where);
      } else if (iequals(path[0], "tls") && path.size() > 3 && iequals(path[1], "stores") && iequals(path[2], "default")) {
        config::set_path(out.tree, path, value, where);
      } else if ((iequals(path[0], "tcp") || iequals(path[0], "udp")) && path.size() > 1 &&
                 (iequals(path[1], "routers") || iequals(path[1], "services"))) {
        out.has_tcp_udp = true;  // as Traefik: tcp/udp middlewares alone do not count
      }
      // enable, docker.*, and other keys are read elsewhere or, as in Traefik, ignored.
    }
  }
  return out;
}

// The server of one load balancer: url from server.url, or scheme://host:port.
std::optional<config::ServerConfig> make_server(const Container& c, const ServerLabels* labels, const std::string& service,
                                                const std::map<std::string, Container>& all, const std::string& self_id,
                                                const ProviderSettings& s, std::vector<Error>& errors) {
  static const ServerLabels kNone;
  if (labels == nullptr) labels = &kNone;
  config::ServerConfig server;
  server.where = "container " + c.name;
  for (const auto& [field, vw] : labels->fields) {
    if (field != "port" && field != "scheme" && field != "url" && field != "weight" && field != "preservepath") {
      errors.push_back(Error{vw.second, "unknown key \"" + field + "\" (expected port, scheme, url, weight or preservePath)"});
      return std::nullopt;
    }
  }
  if (const auto* w = labels->get("weight")) {
    auto n = parse_uint(trim(w->first));
    if (!n || *n > 1'000'000) {
      errors.push_back(Error{w->second, "weight \"" + w->first + "\" is not a number from 0 to 1000000"});
      return std::nullopt;
    }
    server.weight = static_cast<int>(*n);
  }
  if (const auto* p = labels->get("preservepath"); p && parse_bool(trim(p->first)) != false) {
    errors.push_back(Error{p->second, "preservePath is not supported by berth yet"});
    return std::nullopt;
  }
  const auto* url = labels->get("url");
  const auto* port_label = labels->get("port");
  const auto* scheme = labels->get("scheme");
  if (url) {
    if (port_label || scheme) {
      errors.push_back(Error{url->second, "server.url cannot be combined with server.port or server.scheme"});
      return std::nullopt;
    }
    server.url = std::string(trim(url->first));
    server.where = url->second;
    return server;
  }
  uint16_t port = 0;
  if (port_label) {
    auto n = parse_uint(trim(port_label->first));
    if (!n || *n == 0 || *n > 65535) {
      errors.push_back(Error{port_label->second, "\"" + port_label->first + "\" is not a port number"});
      return std::nullopt;
    }
    port = static_cast<uint16_t>(*n);
  } else if (!c.ports.empty()) {
    port = c.ports.front().port;  // the lowest exposed or published port
  } else {
    errors.push_back(Error{"container " + c.name, "service " + service + ": port is missing (set the label traefik.http.services." +
                                                       service + ".loadbalancer.server.port or expose a port)"});
    return std::nullopt;
  }
  std::string host;
  if (s.config.use_bind_port_ip) {
    for (const auto& p : c.ports) {
      if (p.port != port) continue;
      for (const auto& b : p.bindings) {
        if (b.host_ip.empty() || b.host_ip == "0.0.0.0" || b.host_ip == "::" || b.host_port == 0) continue;
        host = b.host_ip.find(':') != std::string::npos ? "[" + b.host_ip + "]" : b.host_ip;
        port = b.host_port;
        break;
      }
      break;
    }
  }
  if (host.empty()) {
    const std::string* network = find_label(c, "docker.network");
    std::string problem;
    auto h = container_host(c, network ? std::string_view(*network) : std::string_view(s.config.network), all,
                            self_id, 0, problem);
    if (!h) {
      errors.push_back(Error{"container " + c.name, "no server address: " + problem});
      return std::nullopt;
    }
    host = std::move(*h);
  }
  const std::string scheme_text = scheme ? to_lower(trim(scheme->first)) : "http";
  server.url = scheme_text + "://" + host + ":" + std::to_string(port);
  return server;
}

std::string short_name(const std::string& qualified) { return qualified.substr(0, qualified.rfind('@')); }

// One container's config, or nullopt (with errors) when its labels cannot be used.
std::optional<config::DynamicConfig> container_config(const Container& c, Participation part,
                                                      const std::map<std::string, Container>& all,
                                                      const std::string& self_id, const ProviderSettings& s,
                                                      std::vector<Error>& errors) {
  ContainerLabels labels = read_labels(c);
  config::DynamicConfig cfg = config::decode_dynamic_tree(labels.tree, kProvider, {.routers_may_omit_rule_and_service = true});
  const size_t errors_before = errors.size();
  auto left_out = [&] {
    errors.push_back(Error{"container " + c.name, "left out: its labels have the problems above"});
    return std::nullopt;
  };
  if (!cfg.errors.empty()) {
    errors.insert(errors.end(), cfg.errors.begin(), cfg.errors.end());
    return left_out();
  }
  const std::string name = service_name(c);
  const bool http = labels.has_http || !labels.has_tcp_udp;
  if (cfg.services.empty() && http) {
    config::ServiceConfig svc;
    svc.name = name + "@" + kProvider;
    svc.where = "container " + c.name;
    cfg.services.emplace(svc.name, std::move(svc));
  }
  for (auto& [qualified, svc] : cfg.services) {
    // A container that gets no traffic needs no address (a stopped one has none).
    if (part != Participation::kServing) break;
    if (svc.kind != config::ServiceConfig::Kind::kLoadBalancer || !svc.servers.empty()) continue;
    const std::string plain = short_name(qualified);
    auto it = std::find_if(labels.servers.begin(), labels.servers.end(),
                           [&](const ServerLabels& l) { return iequals(l.name, plain); });
    auto server = make_server(c, it == labels.servers.end() ? nullptr : &*it, plain, all, self_id, s, errors);
    if (server) svc.servers.push_back(std::move(*server));
  }
  if (errors.size() != errors_before) return left_out();
  if (labels.has_tcp_udp)
    errors.push_back(Error{"container " + c.name, "its traefik.tcp.* and traefik.udp.* labels are ignored: berth "
                                                  "routes HTTP only for now"});
  if (part != Participation::kServing)
    for (auto& [qualified, svc] : cfg.services) svc.servers.clear();

  // No automatic router for berth's own container: its default rule would route berth to itself
  // (Traefik guards that with denyRouterRecursion). Routers its labels declare still work.
  if (cfg.routers.empty() && http && cfg.services.size() == 1 && c.id != self_id) {
    config::RouterConfig router;
    router.name = name + "@" + kProvider;
    router.where = "container " + c.name;
    cfg.routers.emplace(router.name, std::move(router));
  }
  for (auto it = cfg.routers.begin(); it != cfg.routers.end();) {
    config::RouterConfig& r = it->second;
    bool keep = true;
    if (trim(r.rule).empty()) {
      auto rule = s.default_rule.render(TemplateData{name, c.name, &c.labels});
      if (rule && !trim(*rule).empty()) {
        r.rule = std::move(*rule);
      } else {
        errors.push_back(Error{r.where, "router " + r.name + " left out: " +
                                            (rule ? "the defaultRule gives an empty rule" : rule.error().to_string())});
        keep = false;
      }
    }
    if (keep && trim(r.service).empty()) {
      if (cfg.services.size() == 1) {
        r.service = cfg.services.begin()->first;
      } else {
        errors.push_back(Error{r.where, "router " + r.name + " left out: it names no service and container " + c.name +
                                            " defines " + std::to_string(cfg.services.size()) +
                                            ", so it cannot be linked automatically"});
        keep = false;
      }
    }
    it = keep ? std::next(it) : cfg.routers.erase(it);
  }
  return cfg;
}

// Erases from `from` what `into` already defines (or found conflicting): used for containers that
// get no traffic, whose elements must not displace a serving container's.
template <typename T>
void drop_defined(std::map<std::string, T>& from, const std::map<std::string, T>& into,
                  const std::map<std::string, std::string>& conflicts) {
  std::erase_if(from, [&](const auto& kv) { return into.count(kv.first) || conflicts.count(kv.first); });
}

}  // namespace

Result<ProviderSettings> ProviderSettings::compile(const config::DockerProviderConfig& config) {
  auto where = [&](std::string_view key) { return config.where.empty() ? "providers.docker." + std::string(key) : config.where; };
  auto endpoint = parse_engine_endpoint(config.endpoint);
  if (!endpoint) return Error{where("endpoint"), endpoint.error().message};
  auto rule = RuleTemplate::compile(config.default_rule);
  if (!rule) return Error{where("defaultRule"), rule.error().message};
  auto constraints = Constraints::compile(config.constraints);
  if (!constraints) return Error{where("constraints"), constraints.error().message};
  return ProviderSettings{config, std::move(*rule), std::move(*constraints)};
}

std::string service_name(const Container& c) {
  auto project = c.labels.find("com.docker.compose.project");
  auto service = c.labels.find("com.docker.compose.service");
  if (project != c.labels.end() && service != c.labels.end())
    return normalize_name(service->second + "_" + project->second);
  return normalize_name(c.name);
}

Participation participation(const Container& c, bool stopping, const ProviderSettings& s) {
  bool enabled = s.config.exposed_by_default;
  if (const std::string* e = find_label(c, "enable")) enabled = parse_bool(trim(*e)).value_or(false);
  if (!enabled || !s.constraints.matches(c.labels)) return Participation::kSkip;
  const std::string* any_state = find_label(c, "docker.allowNonRunning");
  const bool allow_non_running = any_state && parse_bool(trim(*any_state)).value_or(false);
  if (c.status != "running") return allow_non_running ? Participation::kEmpty : Participation::kSkip;
  if (stopping) return Participation::kEmpty;
  if (!c.health.empty() && c.health != "healthy")
    return s.config.allow_empty_services || allow_non_running ? Participation::kEmpty : Participation::kSkip;
  return Participation::kServing;
}

config::DynamicConfig build_config(const std::map<std::string, Container>& containers,
                                   const std::set<std::string>& stopping, const std::string& self_id,
                                   const ProviderSettings& settings) {
  struct Built {
    bool serving;
    std::string key;  // Traefik merges in "<service name>-<container id>" order
    config::DynamicConfig config;
  };
  std::vector<Built> built;
  std::vector<Error> errors;
  for (const auto& [id, c] : containers) {
    std::string enable_key;
    if (const std::string* e = find_label(c, "enable", &enable_key); e && !parse_bool(trim(*e)))
      errors.push_back(Error{"container " + c.name + " label " + enable_key,
                             "\"" + *e + "\" is not true or false; the container is left out"});
    const Participation part = participation(c, stopping.count(id) != 0, settings);
    if (part == Participation::kSkip) continue;
    if (auto cfg = container_config(c, part, containers, self_id, settings, errors))
      built.push_back({part == Participation::kServing, service_name(c) + "-" + id, std::move(*cfg)});
  }
  std::sort(built.begin(), built.end(), [](const Built& a, const Built& b) {
    return a.serving != b.serving ? a.serving : a.key < b.key;
  });
  config::DynamicConfig out;
  for (auto& b : built) {
    config::DynamicConfig& from = b.config;
    if (!b.serving) {
      drop_defined(from.routers, out.routers, out.conflicting_routers);
      drop_defined(from.services, out.services, out.conflicting_services);
      drop_defined(from.middlewares, out.middlewares, out.conflicting_middlewares);
    }
    // Replicas: one load balancer, every container's server (each URL once).
    for (auto it = from.services.begin(); it != from.services.end();) {
      auto existing = out.services.find(it->first);
      if (existing == out.services.end() || !config::same_except_servers(existing->second, it->second)) {
        ++it;
        continue;
      }
      for (auto& server : it->second.servers) {
        auto& servers = existing->second.servers;
        if (std::none_of(servers.begin(), servers.end(), [&](const auto& s) { return s.url == server.url; }))
          servers.push_back(std::move(server));
      }
      it = from.services.erase(it);
    }
    config::merge_dynamic(out, std::move(from));
  }
  errors.insert(errors.end(), std::make_move_iterator(out.errors.begin()), std::make_move_iterator(out.errors.end()));
  out.errors = std::move(errors);
  return out;
}

}  // namespace berth::discovery::docker
