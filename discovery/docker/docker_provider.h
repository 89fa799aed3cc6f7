// Docker provider: routes from container labels. Lists the containers once, then follows Docker's
// event stream and inspects only the container an event names; never polls while events flow. When
// dockerd goes away the last config keeps serving; the provider reconnects with backoff and lists
// again. A kill or stop event takes the container out of rotation at once, before it dies (its
// routes stay: 503 when it was the last server). Thread: control (one io_context).
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "config/dynamic_config.h"
#include "discovery/docker/container.h"
#include "discovery/docker/engine_client.h"
#include "discovery/docker/label_config.h"

namespace berth::discovery::docker {

class DockerProvider {
 public:
  using OnChange = std::function<void(config::DynamicConfig)>;

  DockerProvider(boost::asio::io_context& io, ProviderSettings settings);
  ~DockerProvider();

  /// Starts following dockerd; `on_change` gets the whole docker config after the first listing
  /// and after every change (on the io_context's thread).
  void start(OnChange on_change);

  /// One listing, for `berth --check`: runs `io` until it is done. A daemon that cannot be reached
  /// is an Error.
  static Result<config::DynamicConfig> load_once(boost::asio::io_context& io, const ProviderSettings& settings);
  /// Docker events handled since start (the metrics' docker_events_total). Thread: any.
  uint64_t events_handled() const { return events_handled_.load(std::memory_order_relaxed); }

 private:
  boost::asio::awaitable<void> run();
  std::atomic<uint64_t> events_handled_{0};
  boost::asio::awaitable<void> process_events();
  /// Picks the API version: the daemon's, at most the newest berth knows (1.41 for old daemons).
  boost::asio::awaitable<Result<bool>> negotiate_version();
  /// Lists the running containers (and stopped ones allowed by traefik.docker.allownonrunning) and
  /// inspects each; replaces what the provider knew. Only a failed listing is an Error: a container
  /// that cannot be inspected is skipped with a warning.
  boost::asio::awaitable<Result<bool>> resync();
  /// Follows /events until it ends; events of an older stream are dropped.
  boost::asio::awaitable<void> follow_events(uint64_t generation);
  void on_line(std::string_view line, uint64_t generation);
  /// A container that got its stop signal but still runs `after` later (a SIGQUIT thread dump, a
  /// TERM its process ignores): looked at again then, and back in rotation if it still runs.
  void recheck_later(const std::string& id, Duration after);
  /// Builds the config and hands it on; `cause` (if any) is the event that changed it, for the log.
  void publish(const ContainerEvent* cause);
  Duration api_timeout() const;

  boost::asio::io_context& io_;
  ProviderSettings settings_;
  EngineClient client_;
  OnChange on_change_;
  std::map<std::string, Container> containers_;  ///< by id
  /// Containers Docker is stopping (their stop signal came, they have not died yet) -> the
  /// State.StartedAt of the run being stopped.
  std::map<std::string, std::string> stopping_;
  std::deque<ContainerEvent> events_;            ///< received, not processed yet
  bool listing_ = false;                         ///< resync() runs: events wait
  uint64_t stream_generation_ = 0;
  bool streaming_ = false;                       ///< follow_events() runs
  std::optional<Result<bool>> stream_result_;    ///< how the last stream ended
  boost::asio::steady_timer wake_;               ///< cancelled when events_ gets an event or listing ends
  boost::asio::steady_timer backoff_;
  boost::asio::steady_timer stream_end_;         ///< cancelled when follow_events() returns
  std::string self_hint_;                        ///< berth's container id (or its prefix), if it runs in one
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace berth::discovery::docker
