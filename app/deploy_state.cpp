// See deploy_state.h.
#include "app/deploy_state.h"

#include <sys/stat.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/file.h"

namespace berth::app {
namespace {

namespace json = boost::json;

json::array strings(const std::vector<std::string>& list) {
  json::array out;
  for (const auto& s : list) out.emplace_back(s);
  return out;
}

std::vector<std::string> strings(const json::object& o, std::string_view key) {
  std::vector<std::string> out;
  if (const auto* a = o.if_contains(key); a && a->is_array())
    for (const auto& v : a->as_array())
      if (v.is_string()) out.emplace_back(v.as_string());
  return out;
}

std::string string(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

template <typename T>
T number(const json::object& o, std::string_view key, T fallback) {
  const auto* v = o.if_contains(key);
  if (!v) return fallback;
  if (v->is_int64()) return static_cast<T>(v->as_int64());
  if (v->is_uint64()) return static_cast<T>(v->as_uint64());
  if (v->is_double()) return static_cast<T>(v->as_double());
  return fallback;
}

bool boolean(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_bool() && v->as_bool();
}

// "app@docker" -> {"app", "@docker"}; a name without '@' has no provider part.
std::pair<std::string, std::string> split_provider(const std::string& service) {
  const size_t at = service.rfind('@');
  if (at == std::string::npos) return {service, ""};
  return {service.substr(0, at), service.substr(at)};
}

std::vector<config::ServerConfig> servers_of(const std::vector<std::string>& targets, const std::string& where) {
  std::vector<config::ServerConfig> out;
  for (const auto& t : targets) {
    config::ServerConfig s;
    s.url = target_url(t);
    s.where = where;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace

std::string target_url(const std::string& target) {
  return target.find("://") == std::string::npos ? "http://" + target : target;
}

std::string stable_name(const std::string& service) {
  auto [name, provider] = split_provider(service);
  return name + "~stable" + provider;
}

std::string canary_name(const std::string& service) {
  auto [name, provider] = split_provider(service);
  return name + "~canary" + provider;
}

std::string DeployState::to_json() const {
  json::object services_json;
  for (const auto& [name, d] : services) {
    json::object o;
    if (d.created) {
      o["created"] = true;
      o["hosts"] = strings(d.hosts);
    }
    o["targets"] = strings(d.targets);
    o["previous"] = strings(d.previous);
    if (!d.canary.empty()) {
      o["canary"] = strings(d.canary);
      o["percent"] = d.percent;
    }
    if (d.auto_rollback.enabled)
      o["autoRollback"] = json::object{{"errorMargin", d.auto_rollback.error_margin},
                                       {"latencyFactor", d.auto_rollback.latency_factor},
                                       {"minRequests", d.auto_rollback.min_requests}};
    if (d.paused) {
      o["paused"] = true;
      o["maxPauseMs"] = d.max_pause.count();
    }
    if (d.stopped) {
      o["stopped"] = true;
      o["message"] = d.message;
    }
    o["health"] = json::object{{"path", d.health.path},
                               {"intervalMs", d.health.interval.count()},
                               {"timeoutMs", d.health.timeout.count()}};
    o["last"] = d.last;
    o["updated"] = d.updated;
    services_json[name] = std::move(o);
  }
  return json::serialize(json::object{{"version", 1}, {"services", std::move(services_json)}}) + "\n";
}

Result<DeployState> DeployState::from_json(std::string_view text, const std::string& where) {
  boost::system::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec || !root.is_object()) return Error{where, "not a deploy state file (JSON): " + (ec ? ec.message() : "not an object")};
  DeployState out;
  const auto* services = root.as_object().if_contains("services");
  if (!services || !services->is_object()) return out;
  for (const auto& [key, value] : services->as_object()) {
    if (!value.is_object()) continue;
    const auto& o = value.as_object();
    ServiceDeploy d;
    d.service = std::string(key);
    d.created = boolean(o, "created");
    d.hosts = strings(o, "hosts");
    d.targets = strings(o, "targets");
    d.previous = strings(o, "previous");
    d.canary = strings(o, "canary");
    d.percent = std::clamp(number<int>(o, "percent", 0), 0, 100);
    if (const auto* ar = o.if_contains("autoRollback"); ar && ar->is_object()) {
      d.auto_rollback.enabled = true;
      d.auto_rollback.error_margin = number<double>(ar->as_object(), "errorMargin", 0.05);
      d.auto_rollback.latency_factor = number<double>(ar->as_object(), "latencyFactor", 2.0);
      d.auto_rollback.min_requests = number<uint64_t>(ar->as_object(), "minRequests", 20);
    }
    d.paused = boolean(o, "paused");
    d.max_pause = std::chrono::milliseconds(number<int64_t>(o, "maxPauseMs", 30'000));
    d.stopped = boolean(o, "stopped");
    d.message = string(o, "message");
    if (const auto* h = o.if_contains("health"); h && h->is_object()) {
      const auto& ho = h->as_object();
      if (auto p = string(ho, "path"); !p.empty()) d.health.path = p;
      d.health.interval = std::chrono::milliseconds(number<int64_t>(ho, "intervalMs", 1000));
      d.health.timeout = std::chrono::milliseconds(number<int64_t>(ho, "timeoutMs", 5000));
    }
    d.last = string(o, "last");
    d.updated = number<int64_t>(o, "updated", 0);
    out.services.emplace(d.service, std::move(d));
  }
  return out;
}

Result<DeployState> DeployState::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return DeployState{};
    return Error{path, std::string("cannot read the deploy state: ") + std::strerror(errno)};
  }
  std::stringstream text;
  text << in.rdbuf();
  return from_json(text.str(), path);
}

Result<bool> DeployState::save(const std::string& path) const {
  const auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) {
    std::error_code ec;
    if (std::filesystem::create_directories(dir, ec)) ::chmod(dir.c_str(), 0700);
    if (ec) return Error{path, "cannot create the deploy state's directory: " + ec.message()};
  }
  return write_file_atomically(path, to_json(), "the deploy state");
}

void apply_deploys(const DeployState& state,
                   const std::map<std::string, std::shared_ptr<proxy::upstream::ServiceGate>>& gates,
                   config::DynamicConfig& dyn) {
  for (const auto& [name, d] : state.services) {
    const std::string where = "deploy state (" + name + ")";
    auto it = dyn.services.find(name);
    if (it == dyn.services.end() && d.created) {
      config::ServiceConfig svc;
      svc.name = name;
      svc.where = where;
      it = dyn.services.emplace(name, std::move(svc)).first;
      config::RouterConfig router;
      router.name = name;
      router.service = name;
      router.where = where;
      for (const auto& host : d.hosts) router.rule += (router.rule.empty() ? "" : " || ") + ("Host(`" + host + "`)");
      if (router.rule.empty()) {  // every host, below every other router (kamal-proxy's catch-all)
        router.rule = "PathPrefix(`/`)";
        router.priority = 1;
      }
      dyn.routers[name] = std::move(router);
    }
    if (it == dyn.services.end()) {
      dyn.errors.push_back(Error{where, "service " + name + " is under berth deploy but no provider has it now; "
                                        "its deploy state is kept for when it comes back"});
      continue;
    }
    config::ServiceConfig& svc = it->second;
    if (svc.kind != config::ServiceConfig::Kind::kLoadBalancer) {
      dyn.errors.push_back(Error{where, "service " + name + " is not a loadBalancer service; its deploy state is ignored"});
      continue;
    }
    if (!d.targets.empty()) svc.servers = servers_of(d.targets, where);
    if (svc.servers.empty()) continue;  // berth made it and nothing is deployed yet: no service
    if (!d.canary.empty() && d.percent > 0) {
      // A rollout: the service becomes weighted over two halves that keep its settings (its own
      // sticky cookie too: their default cookie names differ, from the halves' names).
      config::ServiceConfig stable = svc, canary = svc;
      stable.name = stable_name(name);
      canary.name = canary_name(name);
      canary.servers = servers_of(d.canary, where);
      config::ServiceConfig weighted;
      weighted.name = name;
      weighted.where = where;
      weighted.kind = config::ServiceConfig::Kind::kWeighted;
      weighted.children = {{stable.name, 100 - d.percent, 0, where}, {canary.name, d.percent, 0, where}};
      weighted.sticky.enabled = true;
      weighted.sticky.http_only = true;
      dyn.services[stable.name] = std::move(stable);
      dyn.services[canary.name] = std::move(canary);
      it = dyn.services.insert_or_assign(name, std::move(weighted)).first;
    }
    if (auto gate = gates.find(name); gate != gates.end()) it->second.gate = gate->second;
    if (d.stopped) it->second.maintenance = d.message;
  }
}

}  // namespace berth::app
