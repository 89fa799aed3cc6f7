// See deployer.h. Each admin connection runs one coroutine on the control thread; a command that
// switches targets goes: health gate (every new target answers 2xx on the health path) -> state
// saved -> one new snapshot published (the switch: atomic on every worker) -> drain (wait until no
// exchange is on an old target, or the drain timeout, then end the ones left).
#include "app/deployer.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>
#include <cmath>
#include <ctime>
#include <filesystem>

#include "base/log.h"
#include "base/text.h"
#include "proxy/coro/task.h"
#include "proxy/net.h"
#include "proxy/observe/metrics.h"
#include "proxy/upstream/http_fetch.h"
#include "proxy/worker.h"

namespace berth::app {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using proxy::Timer;
using Clock = std::chrono::steady_clock;
using LocalSocket = asio::basic_stream_socket<asio::local::stream_protocol, proxy::Executor>;
using LocalAcceptor = asio::basic_socket_acceptor<asio::local::stream_protocol, proxy::Executor>;
using Healths = std::vector<std::shared_ptr<proxy::upstream::EndpointHealth>>;

namespace {

int64_t unix_now() { return static_cast<int64_t>(std::time(nullptr)); }

std::string join(const std::vector<std::string>& list, std::string_view sep = ",") {
  std::string out;
  for (const auto& s : list) out += (out.empty() ? "" : std::string(sep)) + s;
  return out;
}

std::string ms_text(Clock::duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

std::chrono::milliseconds ms_field(const json::object& o, std::string_view key, std::chrono::milliseconds fallback) {
  const auto* v = o.if_contains(key);
  if (v && v->is_int64() && v->as_int64() >= 0) return std::chrono::milliseconds(v->as_int64());
  return fallback;
}

std::string str_field(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

std::vector<std::string> list_field(const json::object& o, std::string_view key) {
  std::vector<std::string> out;
  if (const auto* v = o.if_contains(key); v && v->is_array())
    for (const auto& s : v->as_array())
      if (s.is_string())
        for (auto& part : split_list(std::string_view(s.as_string())))
          if (!trim(part).empty()) out.emplace_back(trim(part));
  return out;
}

bool bool_field(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_bool() && v->as_bool();
}

}  // namespace

namespace {

// The lines of the protocol (built outside coroutines: GCC 12 miscompiles braced lists of string
// literals in a coroutine frame).
std::string answer_line(bool ok, const std::string& message, std::optional<json::array> services = std::nullopt) {
  json::object o;
  o["ok"] = ok;
  o["message"] = message;
  if (services) o["services"] = std::move(*services);
  return json::serialize(o) + "\n";
}

std::string progress_line(const std::string& text) {
  json::object o;
  o["progress"] = text;
  return json::serialize(o) + "\n";
}

}  // namespace

/// One client's command: where its progress and answer go.
struct Deployer::Command {
  std::shared_ptr<LocalSocket> peer;
  std::string out;
  /// Sends one line; a client that left is not an error (the command goes on).
  proxy::coro::Task<void> send(std::string line) {
    if (!peer) co_return;
    out = std::move(line);
    auto [ec, n] = co_await asio::async_write(*peer, asio::buffer(out), proxy::coro::use_task);
    if (ec) peer.reset();
  }
  proxy::coro::Task<void> progress(std::string text) {
    LOG_INFO("admin: ", text);
    co_await send(progress_line(text));
  }
};

class Deployer::Impl {
 public:
  Impl(asio::io_context& io, const config::AdminConfig& settings, DeployHost host)
      : io_(io), settings_(settings), host_(std::move(host)), acceptor_(io.get_executor()), watch_(io.get_executor()) {}

  ~Impl() {
    boost::system::error_code ec;
    acceptor_.close(ec);
    if (bound_ && !handed_over_) ::unlink(settings_.socket.c_str());
  }

  void load() {
    if (!watching_) {
      watching_ = true;
      watch_canaries();
    }
    auto loaded = DeployState::load(settings_.state_file);
    if (!loaded) {
      // Not overwritten by the next command: what it held would be lost. Commands are refused
      // until it is fixed or moved away and berth restarted.
      broken_ = loaded.error().to_string();
      LOG_ERROR("deploy state: ", broken_, "; the providers' servers serve, and deploy commands are refused until "
                "the file is fixed or moved away and berth restarted");
      return;
    }
    broken_.clear();
    state_ = std::move(*loaded);
    for (const auto& [name, d] : state_.services) {
      auto& g = *gate(name);
      g.max_pause_ms.store(d.max_pause.count(), std::memory_order_relaxed);
      g.paused.store(d.paused, std::memory_order_relaxed);
      if (!d.canary.empty()) baselines_[name] = rollout_totals(name);
    }
    if (!state_.services.empty())
      LOG_INFO("deploy state: ", state_.services.size(), " service(s) restored from ", settings_.state_file);
  }

  void freeze(bool frozen) { frozen_ = frozen; }

  void overlay(config::DynamicConfig& dyn) const { apply_deploys(state_, gates_, dyn); }

  Result<bool> listen(bool replace) {
    if (!settings_.enabled) return true;
    const std::string& path = settings_.socket;
    const auto dir = std::filesystem::path(path).parent_path();
    std::error_code fs_ec;
    if (!dir.empty() && std::filesystem::create_directories(dir, fs_ec)) ::chmod(dir.c_str(), 0700);
    if (fs_ec) return Error{path, "cannot create the admin socket's directory: " + fs_ec.message()};
    // A directory another user owns or may write to could swap the socket for theirs.
    struct stat st{};
    if (!dir.empty() && ::stat(dir.c_str(), &st) == 0 && (st.st_mode & S_ISVTX) == 0 &&
        ((st.st_uid != ::geteuid() && st.st_uid != 0) || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0))
      return Error{path, "the admin socket's directory " + dir.string() + " is writable by others; use another path"};
    if (::lstat(path.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode))
      return Error{path, "exists and is not a socket; berth leaves it alone (set admin.socket to another path)"};
    boost::system::error_code ec;
    {
      LocalSocket probe(io_.get_executor());
      probe.connect(asio::local::stream_protocol::endpoint(path), ec);
      if (!ec && !replace) return Error{path, "another berth answers on this admin socket (set admin.socket to another path)"};
    }
    ::unlink(path.c_str());
    acceptor_.open(asio::local::stream_protocol(), ec);
    if (!ec) acceptor_.bind(asio::local::stream_protocol::endpoint(path), ec);
    if (ec) return Error{path, "cannot bind the admin socket: " + ec.message()};
    bound_ = true;
    ::chmod(path.c_str(), 0600);
    acceptor_.listen(16, ec);
    if (ec) return Error{path, "cannot listen on the admin socket: " + ec.message()};
    accept();
    LOG_INFO("admin socket: ", path, " (berth deploy, rollback, rollout, pause, resume, stop, list)");
    return true;
  }

  void hand_over() {
    handed_over_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    watch_.cancel();
  }

 private:
  // ---- the socket ----

  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, LocalSocket peer) {
      if (ec) {
        if (ec != asio::error::operation_aborted) LOG_WARN("admin socket: ", ec.message());
        if (acceptor_.is_open() && ec != asio::error::operation_aborted) accept();
        return;
      }
      // Root, or the user berth runs as: nobody else may deploy (the socket's mode says so too).
      ucred cred{};
      socklen_t len = sizeof cred;
      const bool allowed = ::getsockopt(peer.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
                           (cred.uid == 0 || cred.uid == ::geteuid());
      if (allowed) {
        proxy::coro::spawn(serve(std::make_shared<LocalSocket>(std::move(peer))));
      } else {
        LOG_WARN("admin socket: refused a client with uid ", cred.uid);
        const std::string no = answer_line(false, "refused: only root or the user berth runs as may use this socket");
        (void)!::send(peer.native_handle(), no.data(), no.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      }
      accept();
    });
  }

  proxy::coro::Task<void> serve(std::shared_ptr<LocalSocket> peer) {
    std::string line;
    char buf[4096];
    while (line.find('\n') == std::string::npos && line.size() < 64 * 1024) {
      auto [ec, n] = co_await peer->async_read_some(asio::buffer(buf), proxy::coro::use_task);
      if (ec) co_return;
      line.append(buf, n);
    }
    Command cmd{peer, {}};
    boost::system::error_code ec;
    json::value request = json::parse(line.substr(0, line.find('\n')), ec);
    if (ec || !request.is_object()) {
      co_await cmd.send(answer_line(false, "not a command (one JSON object per line)"));
      co_return;
    }
    Outcome outcome = co_await run(request.as_object(), cmd);
    if (!outcome.message.empty()) {
      if (outcome.ok) LOG_INFO("admin: ", outcome.message);
      else LOG_WARN("admin: ", outcome.message);
    }
    co_await cmd.send(answer_line(outcome.ok, outcome.message, std::move(outcome.services)));
  }

  // Marks a service busy for as long as a command runs on it.
  struct Busy {
    Busy(std::shared_ptr<std::map<std::string, std::string>> map, std::string service, std::string what)
        : busy(std::move(map)), name(std::move(service)) {
      (*busy)[name] = std::move(what);
    }
    Busy(const Busy&) = delete;
    Busy& operator=(const Busy&) = delete;
    ~Busy() { busy->erase(name); }
    std::shared_ptr<std::map<std::string, std::string>> busy;
    std::string name;
  };

  struct Outcome {
    bool ok = false;
    std::string message;
    std::optional<json::array> services;
  };
  static Outcome fail(std::string message) { return {false, std::move(message), std::nullopt}; }

  proxy::coro::Task<Outcome> run(const json::object& r, Command& cmd) {
    const std::string verb = str_field(r, "command");
    if (verb == "list") co_return Outcome{true, "", list()};
    if (handed_over_ || frozen_) co_return fail("this berth is being replaced by a hot upgrade; run the command again");
    if (!broken_.empty()) co_return fail("the deploy state is unreadable (" + broken_ + "); fix or move the file and restart berth");
    const bool creates = verb == "deploy";
    auto service = resolve(str_field(r, "service"), creates);
    if (!service) co_return fail(service.error().message);
    const std::string name = *service;
    if (verb == "resume") co_return co_await resume(name);  // also while a pause or stop waits for its drain
    if ((verb == "pause" || verb == "stop") && !routed_directly(name))
      co_return fail(name + ": no router sends to it directly (it is inside another service); " + verb +
                     " the service a router names");
    if (auto b = busy_->find(name); b != busy_->end())
      co_return fail(name + ": a " + b->second + " is in progress; wait for it to finish");
    Busy busy(busy_, name, verb);
    if (verb == "deploy") co_return co_await deploy(name, r, cmd);
    if (verb == "rollback") co_return co_await rollback(name, r, cmd);
    if (verb == "rollout") co_return co_await rollout(name, r, cmd);
    if (verb == "pause") co_return co_await pause(name, r, cmd);
    if (verb == "stop") co_return co_await stop(name, r, cmd);
    co_return fail("unknown command \"" + verb + "\"");
  }

  // "app" -> the one service named app@<provider>; "app@docker" as it is. `creates`: a name no
  // provider has becomes berth's own ("app@deploy", kamal-proxy's way).
  Result<std::string> resolve(const std::string& given, bool creates) const {
    if (given.empty()) return Error{"", "which service? (berth list shows them)"};
    if (given.find('~') != std::string::npos) return Error{"", given + " is half of a rollout; name the service itself"};
    const auto& services = host_.providers().services;
    std::string name = given;
    if (given.find('@') == std::string::npos) {
      std::vector<std::string> found;
      for (const auto& [qualified, _] : services)
        if (qualified.starts_with(given + "@") && qualified.find('~') == std::string::npos) found.push_back(qualified);
      for (const auto& [qualified, _] : state_.services)
        if (qualified.starts_with(given + "@") && std::find(found.begin(), found.end(), qualified) == found.end())
          found.push_back(qualified);
      if (found.size() > 1) return Error{"", "\"" + given + "\" is ambiguous: " + join(found, ", ") + "; name one of them"};
      name = found.empty() ? given + "@deploy" : found[0];
    }
    const bool known = services.count(name) || state_.services.count(name);
    if (!known && !(creates && name.ends_with("@deploy")))
      return Error{"", "no service named " + given + " (berth list shows them; berth deploy creates <name>@deploy)"};
    if (auto it = services.find(name); it != services.end() && !state_.services.count(name) &&
                                       it->second.kind != config::ServiceConfig::Kind::kLoadBalancer)
      return Error{"", name + " is not a loadBalancer service: deploy to the services it is made of"};
    return name;
  }

  // ---- commands ----

  static void read_health(const json::object& r, HealthGate& health) {
    if (auto p = str_field(r, "healthPath"); !p.empty()) health.path = p;
    // At least 10 ms between checks: 0 would be a busy loop of connects.
    health.interval = std::max(ms_field(r, "healthInterval", health.interval), std::chrono::milliseconds(10));
    health.timeout = std::max(ms_field(r, "healthTimeout", health.timeout), std::chrono::milliseconds(10));
  }

  // A router names `name` (so its gate sees the requests: pause and stop act there).
  bool routed_directly(const std::string& name) const {
    if (auto d = state_.services.find(name); d != state_.services.end() && d->second.created) return true;
    for (const auto& [router, r] : host_.providers().routers) {
      std::string service = std::string(trim(r.service));
      if (service.find('@') == std::string::npos) service += router.substr(router.rfind('@'));
      if (service == name) return true;
    }
    return false;
  }

  proxy::coro::Task<Outcome> deploy(const std::string& name, const json::object& r, Command& cmd) {
    auto targets = list_field(r, "targets");
    if (targets.empty()) co_return fail("deploy " + name + ": no --target given");
    ServiceDeploy d = current(name);
    read_health(r, d.health);
    if (d.created || !host_.providers().services.count(name)) {
      d.created = true;
      if (auto hosts = list_field(r, "hosts"); !hosts.empty()) d.hosts = hosts;
    }
    co_return co_await switch_to(name, std::move(d), targets, "deployed", r, cmd);
  }

  proxy::coro::Task<Outcome> rollback(const std::string& name, const json::object& r, Command& cmd) {
    ServiceDeploy d = current(name);
    if (d.previous.empty()) co_return fail("rollback " + name + ": there is no previous deploy to go back to");
    read_health(r, d.health);
    auto targets = d.previous;
    co_return co_await switch_to(name, std::move(d), targets, "rolled back", r, cmd);
  }

  // The health-gated switch of `name` to `targets`, then the drain of what it served before.
  proxy::coro::Task<Outcome> switch_to(const std::string& name, ServiceDeploy d, const std::vector<std::string>& targets,
                                       const std::string& verb, const json::object& r, Command& cmd) {
    const auto deploy_timeout = ms_field(r, "deployTimeout", 30s);
    const auto drain_timeout = ms_field(r, "drainTimeout", 30s);
    const auto started = Clock::now();
    if (!bool_field(r, "force")) {
      co_await cmd.progress("checking " + join(targets) + " at " + d.health.path + " every " +
                            format_duration(d.health.interval) + " (up to " + format_duration(deploy_timeout) + ")");
      if (auto healthy = co_await wait_healthy(targets, d.health, deploy_timeout); !healthy)
        co_return fail(verb == "deployed" ? "deploy " + name + " failed: " + healthy.error().message + "; nothing changed"
                                          : "rollback " + name + " failed: " + healthy.error().message + "; nothing changed");
    }
    const auto healthy_at = Clock::now();
    d = refreshed(name, std::move(d));
    std::vector<std::string> before = serving_targets(name);
    std::vector<std::string> urls;
    for (const auto& t : targets) urls.push_back(target_url(t));
    Healths old = endpoints_of(name, urls);
    d.previous = before;
    d.targets = targets;
    d.canary.clear();  // a deploy ends any rollout: these targets take all of the traffic
    d.percent = 0;
    d.last = verb + " " + join(targets) + (before.empty() ? "" : " (was " + join(before) + ")");
    if (auto saved = commit(name, std::move(d)); !saved) co_return fail(saved.error().to_string() + "; nothing changed");
    const auto switched_at = Clock::now();
    co_await cmd.progress(name + " switched to " + join(targets) + " (healthy after " + ms_text(healthy_at - started) +
                          ", switched " + ms_text(switched_at - healthy_at) + " later)");
    auto drained = co_await drain(name, std::move(old), drain_timeout, true);
    const bool stopped = state_.services.at(name).stopped;
    co_return Outcome{true, name + " " + verb + " to " + join(targets) + " in " + ms_text(switched_at - started) +
                                "; " + drained + (stopped ? " (still stopped: berth resume serves it)" : ""),
                      std::nullopt};
  }

  proxy::coro::Task<Outcome> rollout(const std::string& name, const json::object& r, Command& cmd) {
    ServiceDeploy d = current(name);
    if (bool_field(r, "stop")) {
      if (d.canary.empty()) co_return fail("rollout " + name + ": no rollout in progress");
      Healths canary = endpoints_of(name, std::vector<std::string>(), true);
      d.last = "rollout of " + join(d.canary) + " stopped at " + std::to_string(d.percent) + "%";
      d.canary.clear();
      d.percent = 0;
      d.auto_rollback = {};
      if (auto saved = commit(name, std::move(d)); !saved) co_return fail(saved.error().to_string());
      auto drained = co_await drain(name, std::move(canary), ms_field(r, "drainTimeout", 30s), true);
      co_return Outcome{true, name + ": rollout stopped, all users on " + join(serving_targets(name)) + "; " + drained,
                        std::nullopt};
    }
    auto targets = list_field(r, "targets");
    const auto* percent_value = r.if_contains("percent");
    if (!percent_value || !percent_value->is_int64() || percent_value->as_int64() < 0 || percent_value->as_int64() > 100)
      co_return fail("rollout " + name + ": --percent 0..100 is required (or --stop)");
    const int percent = static_cast<int>(percent_value->as_int64());
    if (targets.empty() && d.canary.empty())
      co_return fail("rollout " + name + ": no rollout in progress; give the new targets with --target");
    if (serving_targets(name).empty()) co_return fail("rollout " + name + ": the service has no servers to share with");
    read_health(r, d.health);
    if (!targets.empty() && targets != d.canary && !bool_field(r, "force")) {
      co_await cmd.progress("checking " + join(targets) + " at " + d.health.path + " every " +
                            format_duration(d.health.interval));
      if (auto healthy = co_await wait_healthy(targets, d.health, ms_field(r, "deployTimeout", 30s)); !healthy)
        co_return fail("rollout " + name + " failed: " + healthy.error().message + "; nothing changed");
      d = refreshed(name, std::move(d));
    }
    if (!targets.empty()) d.canary = targets;
    d.percent = percent;
    if (bool_field(r, "autoRollback")) {
      d.auto_rollback.enabled = true;
      if (const auto* v = r.if_contains("errorMargin"); v && v->is_number()) d.auto_rollback.error_margin = v->to_number<double>();
      if (const auto* v = r.if_contains("latencyFactor"); v && v->is_number()) d.auto_rollback.latency_factor = v->to_number<double>();
      if (const auto* v = r.if_contains("minRequests"); v && v->is_int64()) d.auto_rollback.min_requests = static_cast<uint64_t>(v->as_int64());
    }
    d.last = "rollout: " + std::to_string(percent) + "% of users on " + join(d.canary) +
             (d.auto_rollback.enabled ? " (automatic rollback on)" : "");
    const std::string text = d.last;
    if (auto saved = commit(name, std::move(d)); !saved) co_return fail(saved.error().to_string());
    baselines_[name] = rollout_totals(name);
    co_return Outcome{true, name + " " + text, std::nullopt};
  }

  proxy::coro::Task<Outcome> pause(const std::string& name, const json::object& r, Command& cmd) {
    ServiceDeploy d = current(name);
    d.paused = true;
    d.max_pause = ms_field(r, "maxPause", 30s);
    d.last = "paused";
    if (auto saved = commit(name, std::move(d)); !saved) co_return fail(saved.error().to_string());
    co_await cmd.progress(name + " paused: new requests wait (up to " + format_duration(ms_field(r, "maxPause", 30s)) +
                          ", then 504); waiting for those in flight");
    auto drained = co_await drain("", endpoints_of(name, {}, false, true), ms_field(r, "drainTimeout", 30s), false);
    co_return Outcome{true, name + " paused; " + drained, std::nullopt};
  }

  proxy::coro::Task<Outcome> resume(const std::string& name) {
    auto it = state_.services.find(name);
    if (it == state_.services.end() || (!it->second.stopped && !it->second.paused))
      co_return Outcome{true, name + " was not paused or stopped", std::nullopt};
    ServiceDeploy d = it->second;
    const bool was_stopped = d.stopped;
    d.paused = d.stopped = false;
    d.message.clear();
    d.last = "resumed";
    if (auto saved = commit(name, std::move(d)); !saved) co_return fail(saved.error().to_string());
    co_return Outcome{true, name + (was_stopped ? " resumed: serving again" : " resumed: held requests go on"), std::nullopt};
  }

  proxy::coro::Task<Outcome> stop(const std::string& name, const json::object& r, Command& cmd) {
    ServiceDeploy d = current(name);
    d.stopped = true;
    d.message = str_field(r, "message");
    d.last = "stopped" + (d.message.empty() ? std::string() : ": " + d.message);
    if (auto saved = commit(name, std::move(d)); !saved) co_return fail(saved.error().to_string());
    co_await cmd.progress(name + " stopped: new requests get the 503 maintenance page; waiting for those in flight");
    auto drained = co_await drain(name, endpoints_of(name, {}, false, true), ms_field(r, "drainTimeout", 30s), true);
    co_return Outcome{true, name + " stopped; " + drained, std::nullopt};
  }

  json::array list() const {
    json::array out;
    auto snap = host_.snapshot();
    const int64_t now_ms = proxy::upstream::steady_now_ms();
    std::set<std::string> names;
    for (const auto& [name, _] : host_.providers().services)
      if (name.find('~') == std::string::npos) names.insert(name);
    for (const auto& [name, _] : state_.services) names.insert(name);
    for (const auto& name : names) {
      json::object o{{"service", name}};
      auto provided = host_.providers().services.find(name);
      const auto* d = state_.services.count(name) ? &state_.services.at(name) : nullptr;
      if (provided != host_.providers().services.end() &&
          provided->second.kind != config::ServiceConfig::Kind::kLoadBalancer && !d) {
        static constexpr const char* kKinds[] = {"loadBalancer", "weighted", "failover", "mirroring"};
        o["kind"] = kKinds[static_cast<int>(provided->second.kind)];
        json::array children;
        for (const auto& c : provided->second.children)
          children.push_back(json::object{{"service", c.name}, {"weight", c.weight}});
        o["children"] = children;
      }
      std::string state = "running";
      if (d && d->stopped) state = "stopped";
      else if (d && d->paused) state = "paused";
      if (provided == host_.providers().services.end() && !(d && d->created)) state = "missing";
      o["state"] = state;
      json::array servers;
      auto add_servers = [&](const std::string& service, std::string_view role) {
        if (!snap) return;
        for (const auto& s : snap->services)
          if (s.name == service && s.kind == proxy::Service::Kind::kLoadBalancer)
            for (const auto& e : s.endpoints)
              servers.push_back(json::object{{"url", e.url}, {"up", e.health->is_up(now_ms)}, {"role", role}});
      };
      if (d && !d->canary.empty() && d->percent > 0) {
        add_servers(stable_name(name), "stable");
        add_servers(canary_name(name), "canary");
      } else {
        add_servers(name, "serving");
      }
      o["servers"] = servers;
      if (d) {
        json::object dj{{"targets", json::value_from(d->targets)},
                        {"previous", json::value_from(d->previous)},
                        {"last", d->last},
                        {"updated", d->updated}};
        if (!d->canary.empty()) {
          dj["canary"] = json::value_from(d->canary);
          dj["percent"] = d->percent;
          dj["autoRollback"] = d->auto_rollback.enabled;
        }
        if (d->stopped) dj["message"] = d->message;
        if (d->created) dj["hosts"] = json::value_from(d->hosts);
        o["deploy"] = dj;
      }
      if (auto b = busy_->find(name); b != busy_->end()) o["busy"] = b->second;
      out.push_back(std::move(o));
    }
    return out;
  }

  // ---- state ----

  // After a wait (a health check): the state as it is now (a `resume` may have changed it), with
  // what the command itself set before the wait.
  ServiceDeploy refreshed(const std::string& name, ServiceDeploy before_wait) const {
    ServiceDeploy d = current(name);
    d.health = before_wait.health;
    d.created = before_wait.created;
    d.hosts = before_wait.hosts;
    return d;
  }

  ServiceDeploy current(const std::string& name) const {
    auto it = state_.services.find(name);
    if (it != state_.services.end()) return it->second;
    ServiceDeploy d;
    d.service = name;
    return d;
  }

  // Saves the state with `d` in it, then applies it (the switch). Nothing changes if saving fails.
  Result<bool> commit(const std::string& name, ServiceDeploy d) {
    if (frozen_ || handed_over_) return Error{"", "interrupted by a hot upgrade before anything changed; run the command again"};
    d.service = name;
    d.updated = unix_now();
    DeployState next = state_;
    next.services[name] = std::move(d);
    if (auto saved = next.save(settings_.state_file); !saved) return saved;
    state_ = std::move(next);
    const ServiceDeploy& now = state_.services.at(name);
    auto& g = *gate(name);
    g.max_pause_ms.store(now.max_pause.count(), std::memory_order_relaxed);
    g.paused.store(now.paused, std::memory_order_relaxed);
    host_.reapply();
    return true;
  }

  std::shared_ptr<proxy::upstream::ServiceGate> gate(const std::string& name) {
    auto& g = gates_[name];
    if (!g) g = std::make_shared<proxy::upstream::ServiceGate>();
    return g;
  }

  // The targets `name` serves from now: its deploy's, or the provider's servers.
  std::vector<std::string> serving_targets(const std::string& name) const {
    if (auto it = state_.services.find(name); it != state_.services.end() && !it->second.targets.empty())
      return it->second.targets;
    std::vector<std::string> out;
    if (auto it = host_.providers().services.find(name); it != host_.providers().services.end())
      for (const auto& s : it->second.servers) out.push_back(s.url);
    return out;
  }

  // The servers of `name` (and of its rollout halves) in the snapshot serving now, but for those
  // in `keep`; `canary_only`: only the canary half's; `all`: every one.
  Healths endpoints_of(const std::string& name, const std::vector<std::string>& keep, bool canary_only = false,
                       bool all = false) const {
    Healths out;
    auto snap = host_.snapshot();
    if (!snap) return out;
    const std::string stable = stable_name(name), canary = canary_name(name);
    for (const auto& s : snap->services) {
      const bool ours = canary_only ? s.name == canary : (s.name == name || s.name == stable || s.name == canary);
      if (!ours) continue;
      for (const auto& e : s.endpoints)
        if (all || std::find(keep.begin(), keep.end(), e.url) == keep.end()) out.push_back(e.health);
    }
    return out;
  }

  // The (stable, canary) halves' totals of a rollout, since start.
  std::pair<proxy::observe::RequestTotals, proxy::observe::RequestTotals> rollout_totals(const std::string& name) const {
    auto all = host_.metrics->service_totals();
    proxy::observe::RequestTotals s, c;
    if (auto it = all.find(stable_name(name)); it != all.end()) s = it->second;
    if (auto it = all.find(canary_name(name)); it != all.end()) c = it->second;
    return {s, c};
  }

  // ---- health gate ----

  proxy::coro::Task<Result<bool>> wait_healthy(const std::vector<std::string>& targets, const HealthGate& health,
                                               std::chrono::milliseconds timeout) {
    struct Target {
      std::string name;
      asio::ip::tcp::endpoint address;
      std::string request;
      bool healthy = false;
      std::string problem = "not checked yet";
    };
    std::vector<Target> list;
    for (const auto& t : targets) {
      std::string url = target_url(t);
      if (!url.starts_with("http://"))
        co_return Error{"", "target " + t + ": only http targets can be health-checked (or use --force)"};
      std::string authority = url.substr(7);
      authority = authority.substr(0, authority.find('/'));
      std::string host;
      uint16_t port = 0;
      if (!config::parse_address(authority, host, port) || port == 0 || host.empty())
        co_return Error{"", "target " + t + ": not host:port"};
      asio::ip::basic_resolver<asio::ip::tcp, proxy::Executor> resolver(io_.get_executor());
      auto [ec, found] = co_await resolver.async_resolve(host, std::to_string(port), proxy::coro::use_task);
      if (ec || found.empty()) co_return Error{"", "target " + t + ": cannot resolve " + host + ": " + ec.message()};
      Target tg;
      tg.name = t;
      tg.address = found.begin()->endpoint();
      tg.request = "GET " + health.path + " HTTP/1.1\r\nHost: " + authority +
                   "\r\nUser-Agent: berth-deploy\r\nAccept: */*\r\nConnection: close\r\n\r\n";
      list.push_back(std::move(tg));
    }
    const auto deadline = Clock::now() + timeout;
    Timer wait(io_.get_executor());
    while (true) {
      bool all = true;
      for (auto& tg : list) {
        if (tg.healthy) continue;
        proxy::upstream::FetchLimits limits;
        limits.timeout = std::min(health.timeout, std::max(std::chrono::milliseconds(1),
                                  std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now())));
        limits.max_body = 64 * 1024;
        auto answer = co_await proxy::upstream::fetch(io_.get_executor(), tg.address, tg.request, limits);
        if (answer && answer->status >= 200 && answer->status < 300) {
          tg.healthy = true;
        } else {
          tg.problem = answer ? "HTTP " + std::to_string(answer->status) : answer.error().message;
          all = false;
        }
      }
      if (all) co_return true;
      if (handed_over_ || frozen_) co_return Error{"", "interrupted by a hot upgrade"};
      if (Clock::now() + health.interval >= deadline) {
        std::string why;
        for (const auto& tg : list)
          if (!tg.healthy) why += (why.empty() ? "" : "; ") + tg.name + ": " + tg.problem;
        co_return Error{"", "not healthy within " + format_duration(timeout) + " (" + why + ")"};
      }
      wait.expires_after(health.interval);
      co_await wait.async_wait(proxy::coro::use_task);
    }
  }

  // ---- drain ----

  // How many exchanges `target` waits for right now, over all workers.
  proxy::coro::Task<size_t> count_on(std::shared_ptr<const proxy::DrainTarget> target) {
    struct Count {
      explicit Count(proxy::Executor ex) : done(ex) {}
      size_t sum = 0;
      size_t pending = 0;
      Timer done;
    };
    auto count = std::make_shared<Count>(io_.get_executor());
    count->pending = host_.workers->size();
    count->done.expires_at(Timer::time_point::max());
    for (const auto& w : *host_.workers)
      w->count_on(target, [this, count](size_t n) {
        asio::post(io_, [count, n] {
          count->sum += n;
          if (--count->pending == 0) count->done.cancel();
        });
      });
    while (count->pending > 0) co_await count->done.async_wait(proxy::coro::use_task);
    co_return count->sum;
  }

  // Waits until no exchange is left on `old` servers of `service`, nor routed to it by a snapshot
  // before the one serving now (each worker took that one before it counts: the same queue), or
  // until `timeout`; then, if `evict`, ends the ones on the old servers (WebSockets included).
  // Says what happened.
  proxy::coro::Task<std::string> drain(const std::string& service, Healths old, std::chrono::milliseconds timeout,
                                       bool evict) {
    auto target = std::make_shared<proxy::DrainTarget>();
    target->servers = std::move(old);
    target->service = service;
    target->before_generation = host_.snapshot() ? host_.snapshot()->generation : 0;
    const auto started = Clock::now();
    const auto deadline = started + timeout;
    Timer wait(io_.get_executor());
    while (true) {
      const size_t n = co_await count_on(target);
      if (n == 0) co_return "drained in " + ms_text(Clock::now() - started);
      if (Clock::now() >= deadline) {
        if (!evict) co_return std::to_string(n) + " still in flight after the drain timeout (" + format_duration(timeout) + ")";
        for (const auto& w : *host_.workers) w->evict(target);
        co_return "drain timeout (" + format_duration(timeout) + "): " + std::to_string(n) +
                  " exchange(s) still on the old targets were closed";
      }
      wait.expires_after(25ms);
      co_await wait.async_wait(proxy::coro::use_task);
    }
  }

  // ---- automatic rollback ----

  // Each second: every canary with automatic rollback is compared with its stable half, over the
  // requests since the rollout's last change.
  void watch_canaries() {
    watch_.expires_after(1s);
    watch_.async_wait([this](boost::system::error_code ec) {
      if (ec || handed_over_) return;
      for (const auto& [name, d] : state_.services) {
        if (d.canary.empty() || d.percent == 0 || !d.auto_rollback.enabled || busy_->count(name)) continue;
        auto verdict = judge(name, d);
        if (!verdict.empty()) {
          proxy::coro::spawn(auto_rollback(name, verdict));
          break;  // state_ changes under the loop
        }
      }
      watch_canaries();
    });
  }

  std::string judge(const std::string& name, const ServiceDeploy& d) {
    auto [stable_now, canary_now] = rollout_totals(name);
    auto& base = baselines_[name];
    auto delta = [](const proxy::observe::RequestTotals& now, const proxy::observe::RequestTotals& then) {
      proxy::observe::RequestTotals t;
      t.requests = now.requests >= then.requests ? now.requests - then.requests : now.requests;
      t.server_errors = now.server_errors >= then.server_errors ? now.server_errors - then.server_errors : now.server_errors;
      t.duration_ns = now.duration_ns >= then.duration_ns ? now.duration_ns - then.duration_ns : now.duration_ns;
      return t;
    };
    const auto s = delta(stable_now, base.first), c = delta(canary_now, base.second);
    const auto& ar = d.auto_rollback;
    if (c.requests < ar.min_requests) return {};
    const double c_ratio = static_cast<double>(c.server_errors) / static_cast<double>(c.requests);
    const double s_ratio = s.requests ? static_cast<double>(s.server_errors) / static_cast<double>(s.requests) : 0.0;
    char text[256];
    if (c_ratio > s_ratio + ar.error_margin) {
      std::snprintf(text, sizeof text, "canary 5xx ratio %.1f%% (%llu of %llu) against %.1f%% (%llu of %llu) on stable",
                    c_ratio * 100, static_cast<unsigned long long>(c.server_errors),
                    static_cast<unsigned long long>(c.requests), s_ratio * 100,
                    static_cast<unsigned long long>(s.server_errors), static_cast<unsigned long long>(s.requests));
      return text;
    }
    if (s.requests >= ar.min_requests) {
      const double c_ms = static_cast<double>(c.duration_ns) / static_cast<double>(c.requests) / 1e6;
      const double s_ms = static_cast<double>(s.duration_ns) / static_cast<double>(s.requests) / 1e6;
      if (c_ms > s_ms * ar.latency_factor && c_ms > s_ms + 50) {
        std::snprintf(text, sizeof text, "canary mean latency %.1f ms against %.1f ms on stable (over %.1fx)", c_ms,
                      s_ms, ar.latency_factor);
        return text;
      }
    }
    return {};
  }

  proxy::coro::Task<void> auto_rollback(std::string name, std::string verdict) {
    Busy busy(busy_, name, "automatic rollback");
    ServiceDeploy d = current(name);
    Healths canary = endpoints_of(name, std::vector<std::string>(), true);
    LOG_WARN("deploy: automatic rollback of ", name, ": ", verdict, "; all users back on ", join(d.targets.empty() ? serving_targets(name) : d.targets));
    d.last = "automatic rollback of " + join(d.canary) + " at " + std::to_string(d.percent) + "%: " + verdict;
    d.canary.clear();
    d.percent = 0;
    d.auto_rollback = {};
    if (auto saved = commit(name, std::move(d)); !saved) {
      LOG_ERROR("deploy: automatic rollback of ", name, ": ", saved.error().to_string());
      co_return;
    }
    auto drained = co_await drain(name, std::move(canary), 30s, true);
    LOG_INFO("deploy: automatic rollback of ", name, ": ", drained);
  }

  asio::io_context& io_;
  const config::AdminConfig& settings_;
  DeployHost host_;
  LocalAcceptor acceptor_;
  Timer watch_;
  bool bound_ = false;
  bool handed_over_ = false;
  bool frozen_ = false;     ///< a successor is taking over: the state must not change
  bool watching_ = false;   ///< watch_canaries() runs
  std::string broken_;      ///< why the state file could not be read (commands are refused)
  DeployState state_;
  std::map<std::string, std::shared_ptr<proxy::upstream::ServiceGate>> gates_;
  /// Service -> the command in progress on it. Shared with the commands' Busy marks, which a
  /// coroutine destroyed with the io_context (at exit) releases after this object is gone.
  std::shared_ptr<std::map<std::string, std::string>> busy_ = std::make_shared<std::map<std::string, std::string>>();
  /// Per service in rollout: the (stable, canary) totals when the rollout last changed.
  std::map<std::string, std::pair<proxy::observe::RequestTotals, proxy::observe::RequestTotals>> baselines_;
};

Deployer::Deployer(asio::io_context& io, const config::AdminConfig& settings, DeployHost host)
    : impl_(std::make_unique<Impl>(io, settings, std::move(host))) {}
Deployer::~Deployer() = default;
void Deployer::load() { impl_->load(); }
void Deployer::freeze(bool frozen) { impl_->freeze(frozen); }
void Deployer::overlay(config::DynamicConfig& dyn) const { impl_->overlay(dyn); }
Result<bool> Deployer::listen(bool replace) { return impl_->listen(replace); }
void Deployer::hand_over() { impl_->hand_over(); }

}  // namespace berth::app
