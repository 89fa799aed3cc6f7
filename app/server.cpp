// Control plane: the config flow (providers -> merge -> build -> publish) and the lifecycle.
// Start reading at run_server().
#include "app/server.h"

#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <iostream>
#include <optional>
#include <set>
#include <thread>

#include "acme/manager.h"
#include "base/log.h"
#include "base/text.h"
#include "discovery/docker/docker_provider.h"
#include "app/deployer.h"
#include "app/takeover.h"
#include "discovery/file/file_provider.h"
#include "proxy/observe/access_log.h"
#include "proxy/observe/metrics.h"
#include "proxy/snapshot_builder.h"
#include "proxy/tls/certificate_store.h"
#include "proxy/tls/ocsp.h"
#include "proxy/upstream/health_checker.h"
#include "proxy/worker.h"

namespace berth::app {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

std::shared_ptr<const proxy::ProcessInfo> make_process_info(const config::StaticConfig& sc,
                                                           proxy::observe::Metrics* metrics,
                                                           proxy::observe::AccessLog* access_log) {
  auto info = std::make_shared<proxy::ProcessInfo>();
  info->metrics = metrics;
  info->access_log = access_log;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  info->hostname = host;
  info->ping_terminating_status = sc.ping.terminating_status_code;
  info->io_uring = sc.io_uring;
  for (const auto& ep : sc.entry_points) {
    proxy::EntryPointSettings s;
    s.name = ep.name;
    s.port = ep.port;
    s.read_timeout = ep.read_timeout;
    s.write_timeout = ep.write_timeout;
    s.idle_timeout = ep.idle_timeout;
    s.max_concurrent_streams = static_cast<uint32_t>(ep.max_concurrent_streams);
    s.websocket_max_lifetime = ep.websocket_max_lifetime;
    s.trust_all = ep.forwarded_insecure;
    for (const auto& text : ep.trusted_ips)
      if (auto net = proxy::IpNet::parse(text)) s.trusted.push_back(*net);
    info->entry_points.push_back(std::move(s));
  }
  return info;
}

class ControlPlane {
 public:
  ControlPlane(const config::StaticConfig& sc, bool takeover)
      : sc_(sc), takeover_(takeover), throttle_(io_), ticket_rotation_(io_), checker_(io_), stapler_(io_) {}

  int run() {
    if (sc_.docker.enabled) {
      auto settings = discovery::docker::ProviderSettings::compile(sc_.docker);
      if (!settings) {
        std::cerr << "berth: " << settings.error().to_string() << "\n";
        return 2;
      }
      docker_ = std::make_unique<discovery::docker::DockerProvider>(io_, std::move(*settings));
    }
    if (!sc_.acme_resolvers.empty()) {
      acme_ = std::make_unique<acme::AcmeManager>(io_, sc_);
      std::vector<Error> problems;
      auto loaded = acme_->load(problems);
      for (const auto& p : problems) LOG_ERROR("acme: ", p.to_string());
      if (!loaded) {
        std::cerr << "berth: " << loaded.error().to_string() << "\n";
        return 2;
      }
      latest_[kAcme] = acme_->config();  // stored certificates serve from generation 1
    }
    LOG_DEBUG("static configuration: ", sc_.entry_points.size(), " entry points, file provider ",
              sc_.file.enabled ? (sc_.file.filename.empty() ? sc_.file.directory : sc_.file.filename) : "(off)",
              ", providersThrottleDuration ", format_duration(sc_.providers_throttle_duration));
    const uint32_t n = sc_.worker_count();
    metrics_ = std::make_unique<proxy::observe::Metrics>(sc_, n);
    if (sc_.access_log.enabled) {
      auto opened = proxy::observe::AccessLog::open(sc_.access_log, n);
      if (!opened) {
        std::cerr << "berth: " << opened.error().to_string() << "\n";
        return 2;
      }
      access_log_ = std::move(*opened);
    }
    auto info = make_process_info(sc_, metrics_.get(), access_log_.get());
    for (unsigned i = 0; i < n; ++i) workers_.push_back(std::make_unique<proxy::Worker>(static_cast<int>(i), info));
    metrics_->set_process_source([this](proxy::observe::Exposition& out) { expose_process_metrics(out); });
    deployer_ = std::make_unique<Deployer>(
        io_, sc_.admin,
        DeployHost{[this] { apply(merged()); }, [this]() -> const config::DynamicConfig& { return last_providers_; },
                   [this] { return last_snapshot_; }, &workers_, metrics_.get()});
    deployer_->load();  // generation 1 already serves the deployed targets

    // Config flow, first pass. Watch before reading, so that no edit in between is lost.
    if (sc_.file.enabled) {
      file_ = std::make_unique<discovery::FileProvider>(io_, sc_.file);
      if (sc_.file.watch) {
        auto watching =
            file_->watch([this](Result<config::DynamicConfig> r) { on_provider_change(kFile, std::move(r)); });
        if (!watching) LOG_ERROR("file provider: ", watching.error().to_string());
      }
      on_provider_change(kFile, file_->load());
    }
    if (docker_) {
      docker_->start([this](config::DynamicConfig c) { on_provider_change(kDocker, std::move(c)); });
      // Wait (briefly) for the first listing, so that generation 1 already routes to the containers.
      const auto deadline = std::chrono::steady_clock::now() + 3s;
      while (!latest_[kDocker] && std::chrono::steady_clock::now() < deadline)
        io_.run_one_until(deadline);
      if (!latest_[kDocker]) LOG_WARN("docker provider: no container list yet; starting without its routes");
    }
    if (generation_ == 0 || has_pending_) apply(merged());  // the docker listing may wait behind the throttle: not now
    if (acme_) {
      // ACME changes (a challenge to answer, a certificate) apply at once, throttle or not: the CA
      // is told to validate right after.
      acme_->start(
          [this] {
            latest_[kAcme] = acme_->config();
            apply(merged());  // a pending throttled change goes in too; its timer then finds little to do
          },
          [this] {
            for (const auto& w : workers_)
              if (w->live_generation() < generation_) return false;
            return true;
          });
      acme_->update(merged());
    }

    // Listen only now: a client that connects as soon as the port opens is served by generation 1.
    // A hot upgrade takes the running berth's listening sockets instead (worker w gets every n-th).
    std::vector<std::vector<std::vector<int>>> inherited(workers_.size());
    TakeoverClient predecessor;
    bool took_over = false;
    if (takeover_) {
      auto received = predecessor.receive(takeover_socket_path(sc_));
      if (!received) {
        LOG_WARN("hot upgrade: ", received.error().to_string(), "; listening anew");
      } else {
        took_over = true;
        // The old process stopped changing the deploy state before it sent the sockets: read it now.
        deployer_->load();
        apply(merged());
        // The predecessor's health verdicts: its down servers stay out until a check passes here.
        for (const auto& [service, url] : received->down) health_.mark_down(service, url);
        if (!received->down.empty())
          LOG_INFO("hot upgrade: ", received->down.size(), " server(s) down, as the previous berth found them");
        auto* listeners = &received->listeners;
        for (auto& per_worker : inherited) per_worker.resize(sc_.entry_points.size());
        for (size_t i = 0; i < sc_.entry_points.size(); ++i) {
          auto fds = listeners->find(sc_.entry_points[i].name);
          if (fds == listeners->end()) continue;
          for (size_t j = 0; j < fds->second.size(); ++j) inherited[j % workers_.size()][i].push_back(fds->second[j]);
          listeners->erase(fds);
        }
        for (const auto& [name, fds] : *listeners) {  // entry points this config no longer has
          LOG_WARN("hot upgrade: entry point ", name, " is not in this configuration; its sockets close");
          for (int fd : fds) ::close(fd);
        }
      }
    }
    for (size_t w = 0; w < workers_.size(); ++w) {
      auto listening = workers_[w]->listen(sc_.entry_points, inherited[w]);
      if (!listening) {
        std::cerr << "berth: " << listening.error().to_string() << "\n";
        return 2;
      }
    }
    for (auto& w : workers_) w->start();
    for (const auto& ep : sc_.entry_points) LOG_INFO("entry point ", ep.name, " listening on ", ep.address);
    LOG_INFO("berth ", BERTH_VERSION, " started with ", workers_.size(), " workers (process ", ::getpid(), ")");
    if (!sc_.io_uring) LOG_INFO("ioUring is false: each write is a sendmsg(2) of its own");
    if (took_over) {
      predecessor.ready();
      LOG_INFO("hot upgrade: serving on the sockets of the berth this one replaces");
    }
    if (auto listening = deployer_->listen(took_over); !listening)
      LOG_WARN("admin socket: ", listening.error().to_string(), "; berth deploy and the other commands cannot reach this berth");
    successors_ = std::make_unique<TakeoverServer>(io_, takeover_socket_path(sc_));
    if (auto waiting = successors_->start({[this] { return listeners(); }, [this] { return health_.down(); },
                                           [this](bool handing) { deployer_->freeze(handing); }, [this] { hand_over(); }},
                                          took_over);
        !waiting)
      LOG_WARN("hot upgrade: ", waiting.error().to_string());
    else
      LOG_INFO("hot upgrade: a successor (SIGUSR2, or berth --takeover) takes over through ", takeover_socket_path(sc_));
    watch_upgrade_signal();

    rotate_ticket_keys();
    watch_reopen_signal();
    asio::signal_set signals(io_, SIGTERM, SIGINT);
    signals.async_wait([this](boost::system::error_code ec, int sig) {
      if (!ec) shutdown(sig);
    });
    io_.run();
    for (auto& w : workers_) w->stop();
    if (access_log_) access_log_->stop();  // the workers are gone: every line they recorded is written
    LOG_INFO("berth stopped");
    return 0;
  }

 private:
  // A provider produced a new config (or failed to). Failures keep the last good snapshot serving.
  void on_provider_change(size_t provider, Result<config::DynamicConfig> loaded) {
    if (!loaded) {
      LOG_ERROR(kProviderNames[provider], " provider: ", loaded.error().to_string(),
                " (keeping the last good configuration)");
      return;
    }
    latest_[provider] = std::move(*loaded);
    has_pending_ = true;
    auto since = std::chrono::steady_clock::now() - last_apply_;
    if (since >= sc_.providers_throttle_duration) {
      flush();
    } else if (!throttle_armed_) {
      throttle_armed_ = true;
      throttle_.expires_after(sc_.providers_throttle_duration - since);
      throttle_.async_wait([this](boost::system::error_code ec) {
        throttle_armed_ = false;
        if (!ec) flush();
      });
    }
  }

  void flush() {
    if (!has_pending_) return;
    has_pending_ = false;
    apply(merged());
  }

  // Every provider's latest config, merged (names are qualified by provider, so they do not collide).
  config::DynamicConfig merged() const {
    config::DynamicConfig out;
    for (const auto& c : latest_)
      if (c) config::merge_dynamic(out, config::DynamicConfig(*c));
    return out;
  }

  void apply(config::DynamicConfig dyn) {
    last_apply_ = std::chrono::steady_clock::now();
    last_providers_ = dyn;
    if (deployer_) deployer_->overlay(dyn);  // berth deploy's targets, rollouts and stops
    auto built = proxy::build_snapshot(sc_, dyn, ++generation_, health_);
    last_snapshot_ = built.snapshot;
    log_new_problems(dyn.errors, built.errors);
    for (auto& w : workers_) w->publish(built.snapshot);
    metrics_->record_reload();
    checker_.update(*built.snapshot);
    if (built.snapshot->certificates) stapler_.update(*built.snapshot->certificates);
    health_.prune();
    if (acme_ && generation_ > 1) acme_->update(dyn);
    LOG_INFO("configuration generation ", generation_, " applied: ", dyn.routers.size(), " routers, ",
             dyn.services.size(), " services, ", dyn.errors.size() + built.errors.size(), " problems");
  }

  // SIGTERM, per entry point as in Traefik: ping turns 503; keep accepting for
  // requestAcceptGraceTimeout, then stop accepting and let in-flight exchanges finish for up to
  // graceTimeOut; exit once every entry point is empty or out of time.
  void shutdown(int sig) {
    LOG_INFO("received signal ", sig, ", shutting down");
    for (auto& w : workers_) w->begin_terminating();
    drain_deadlines_.assign(sc_.entry_points.size(), kNotYet);
    for (size_t i = 0; i < sc_.entry_points.size(); ++i) {
      const auto& ep = sc_.entry_points[i];
      auto timer = std::make_unique<asio::steady_timer>(io_, ep.request_accept_grace_timeout);
      timer->async_wait([this, i, grace = ep.grace_timeout](boost::system::error_code) {
        for (auto& w : workers_) w->drain(i);
        drain_deadlines_[i] = std::chrono::steady_clock::now() + grace;
      });
      accept_timers_.push_back(std::move(timer));
    }
    poll_ = std::make_unique<asio::steady_timer>(io_);
    wait_for_drain();
  }

  // Hot upgrade, this side: the successor serves from the same sockets. Stop accepting at once (the
  // successor does), let this process's connections finish for up to graceTimeOut, then exit.
  void hand_over() {
    LOG_INFO("hot upgrade: the new process serves; this one stops accepting and drains");
    deployer_->hand_over();
    drain_deadlines_.assign(sc_.entry_points.size(), kNotYet);
    for (size_t i = 0; i < sc_.entry_points.size(); ++i) {
      for (auto& w : workers_) w->drain(i);
      drain_deadlines_[i] = std::chrono::steady_clock::now() + sc_.entry_points[i].grace_timeout;
    }
    poll_ = std::make_unique<asio::steady_timer>(io_);
    wait_for_drain();
  }

  // Every worker's listening sockets, named by entry point, for a successor.
  std::vector<std::pair<std::string, int>> listeners() const {
    std::vector<std::pair<std::string, int>> out;
    for (const auto& w : workers_)
      for (const auto& [ep, fd] : w->listeners()) out.emplace_back(sc_.entry_points[ep].name, fd);
    return out;
  }

  // SIGUSR2: start the successor (this binary, as it is on disk now, with --takeover).
  void watch_upgrade_signal() {
    upgrade_signal_.async_wait([this](boost::system::error_code ec, int) {
      if (ec) return;
      if (auto started = spawn_successor(); !started) LOG_ERROR("hot upgrade: ", started.error().to_string());
      watch_upgrade_signal();
    });
  }

  void wait_for_drain() {
    auto now = std::chrono::steady_clock::now();
    size_t waiting = 0, abandoned = 0;
    for (size_t i = 0; i < drain_deadlines_.size(); ++i) {
      size_t open = 0;
      bool stopped_accepting = true;  // every worker closed its listeners and counted what it accepted
      for (auto& w : workers_) {
        stopped_accepting &= w->drained(i);
        open += w->open_connections(i);
      }
      if (drain_deadlines_[i] == kNotYet || ((open > 0 || !stopped_accepting) && now < drain_deadlines_[i])) ++waiting;
      else abandoned += open;
    }
    if (waiting == 0) {
      if (abandoned) LOG_WARN("grace timeout reached with ", abandoned, " connections still open");
      io_.stop();
      return;
    }
    poll_->expires_after(20ms);
    poll_->async_wait([this](boost::system::error_code) { wait_for_drain(); });
  }

  // Logs the problems this generation has and the one before had not: a bad label or file is
  // reported when it appears, not again at every docker event (the count is in the "applied" line).
  void log_new_problems(const std::vector<Error>& decoded, const std::vector<Error>& built) {
    std::set<std::string> now;
    for (const auto* list : {&decoded, &built}) {
      for (const auto& e : *list) {
        std::string text = e.to_string();
        if (!reported_.count(text)) LOG_ERROR(text);
        now.insert(std::move(text));
      }
    }
    reported_ = std::move(now);
  }

  // The control plane's part of each scrape (called on the worker that serves /metrics: it reads
  // only atomics and objects that live as long as the workers).
  void expose_process_metrics(proxy::observe::Exposition& out) const {
    out.family("open_connections", "gauge", "How many open connections exist, by entryPoint and protocol.");
    for (size_t i = 0; i < sc_.entry_points.size(); ++i) {
      size_t open = 0;
      for (const auto& w : workers_) open += w->open_connections(i);
      out.sample({{"entrypoint", sc_.entry_points[i].name}, {"protocol", "HTTP"}}, static_cast<double>(open));
    }
    size_t idle = 0;
    for (const auto& w : workers_) idle += w->idle_upstreams();
    out.family("upstream_idle_connections", "gauge", "Idle pooled HTTP/1 connections to servers, over all workers (as of the last second).");
    out.sample({}, static_cast<double>(idle));
    if (access_log_) {
      out.family("accesslog_dropped_lines_total", "counter", "Access log lines dropped (buffer full, or the file not writable).");
      out.sample({}, static_cast<double>(access_log_->dropped_lines()));
    }
    if (docker_) {
      out.family("docker_events_total", "counter", "Docker events handled by the docker provider.");
      out.sample({}, static_cast<double>(docker_->events_handled()));
    }
    if (acme_) {
      out.family("acme_orders_total", "counter", "ACME certificate orders that ended, by resolver and result.");
      for (const auto& c : acme_->order_counts()) {
        out.sample({{"resolver", c.resolver}, {"result", "obtained"}}, static_cast<double>(c.obtained));
        out.sample({{"resolver", c.resolver}, {"result", "failed"}}, static_cast<double>(c.failed));
      }
    }
  }

  // SIGUSR1 (logrotate's postrotate): reopen berth's log file and the access log at their paths.
  void watch_reopen_signal() {
    reopen_signal_.async_wait([this](boost::system::error_code ec, int) {
      if (ec) return;
      log::reopen();
      if (access_log_) access_log_->reopen();
      LOG_INFO("received SIGUSR1: log files reopened");
      watch_reopen_signal();
    });
  }

  // Session ticket keys: a new encrypting key every 12 hours; the one before still decrypts, so a
  // ticket resumes for 12 to 24 hours (Go, so Traefik: a new key daily, each valid 7 days).
  void rotate_ticket_keys() {
    ticket_rotation_.expires_after(std::chrono::hours(12));
    ticket_rotation_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      proxy::tls::TicketKeyRing::process_default()->rotate();
      rotate_ticket_keys();
    });
  }

  static constexpr auto kNotYet = std::chrono::steady_clock::time_point::max();
  const config::StaticConfig& sc_;
  bool takeover_ = false;  ///< --takeover: replace the berth serving these entry points
  asio::io_context io_;
  asio::signal_set reopen_signal_{io_, SIGUSR1};
  asio::signal_set upgrade_signal_{io_, SIGUSR2};
  std::unique_ptr<TakeoverServer> successors_;     ///< waits for a successor (hot upgrade)
  std::unique_ptr<proxy::observe::AccessLog> access_log_;  ///< before workers_: they point to it
  std::unique_ptr<proxy::observe::Metrics> metrics_;  ///< before workers_: they point to it
  std::vector<std::unique_ptr<proxy::Worker>> workers_;
  enum Provider : size_t { kFile, kDocker, kAcme, kProviderCount };
  static constexpr const char* kProviderNames[kProviderCount] = {"file", "docker", "acme"};
  std::unique_ptr<discovery::FileProvider> file_;
  std::unique_ptr<discovery::docker::DockerProvider> docker_;
  std::unique_ptr<acme::AcmeManager> acme_;
  std::optional<config::DynamicConfig> latest_[kProviderCount];  ///< each provider's last good config
  bool has_pending_ = false;
  bool throttle_armed_ = false;
  asio::steady_timer throttle_;
  asio::steady_timer ticket_rotation_;
  std::chrono::steady_clock::time_point last_apply_{};
  std::vector<std::unique_ptr<asio::steady_timer>> accept_timers_;
  std::unique_ptr<asio::steady_timer> poll_;
  std::vector<std::chrono::steady_clock::time_point> drain_deadlines_;
  uint64_t generation_ = 0;
  config::DynamicConfig last_providers_;  ///< the providers' merged config last applied (before deploys)
  std::shared_ptr<const proxy::Snapshot> last_snapshot_;  ///< the snapshot last published
  std::unique_ptr<Deployer> deployer_;    ///< after workers_ and metrics_: it points to them
  std::set<std::string> reported_;  ///< the problems of the generation last applied
  proxy::upstream::HealthRegistry health_;
  proxy::upstream::HealthChecker checker_;
  proxy::tls::OcspStapler stapler_;
};

}  // namespace

int run_server(const config::StaticConfig& sc, bool takeover) {
  ControlPlane cp(sc, takeover);
  return cp.run();
}

int check_config(const config::StaticConfig& sc) {
  std::vector<Error> problems;
  config::DynamicConfig dyn;
  if (sc.file.enabled) {
    asio::io_context io;
    discovery::FileProvider provider(io, sc.file);
    auto loaded = provider.load();
    if (!loaded) problems.push_back(loaded.error());
    else dyn = std::move(*loaded);
  }
  if (sc.docker.enabled) {
    auto settings = discovery::docker::ProviderSettings::compile(sc.docker);
    if (!settings) {
      problems.push_back(settings.error());
    } else {
      asio::io_context io;
      auto listed = discovery::docker::DockerProvider::load_once(io, *settings);
      if (!listed) problems.push_back(listed.error());
      else config::merge_dynamic(dyn, std::move(*listed));
    }
  }
  problems.insert(problems.end(), dyn.errors.begin(), dyn.errors.end());
  proxy::upstream::HealthRegistry health;
  auto built = proxy::build_snapshot(sc, dyn, 1, health);
  problems.insert(problems.end(), built.errors.begin(), built.errors.end());
  for (const auto& p : problems) std::cout << p.to_string() << "\n";
  if (problems.empty()) {
    std::cout << "configuration OK: " << sc.entry_points.size() << " entry points, " << dyn.routers.size()
              << " routers, " << dyn.services.size() << " services\n";
    return 0;
  }
  std::cout << problems.size() << " problem(s) found\n";
  return 1;
}

}  // namespace berth::app
