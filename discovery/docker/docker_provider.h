// Docker provider: routes from container labels. Lists the containers once, then follows Docker's
// event stream and inspects only the container an event names; never polls while events flow. When
// dockerd goes away the last config keeps serving; the provider reconnects with backoff and lists
// again. A kill or stop event takes the container out of rotation at once, before it dies (its
// routes stay: 503 when it was the last server). Thread: control (one io_context).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <functional>
#include <map>
#include <memory>
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

 private:
  boost::asio::awaitable<void> run();
  boost::asio::awaitable<void> process_events();
  /// Lists the running containers and inspects each; replaces what the provider knew.
  boost::asio::awaitable<Result<bool>> resync();
  void on_line(std::string_view line);
  /// Builds the config and hands it on; `cause` (if any) is the event that changed it, for the log.
  void publish(const ContainerEvent* cause);
  Duration api_timeout() const;

  boost::asio::io_context& io_;
  ProviderSettings settings_;
  EngineClient client_;
  OnChange on_change_;
  std::map<std::string, Container> containers_;  ///< by id
  std::set<std::string> stopping_;               ///< ids Docker is stopping (kill/stop seen, not dead yet)
  std::deque<ContainerEvent> events_;            ///< received, not processed yet
  boost::asio::steady_timer wake_;               ///< cancelled when events_ gets an event
  boost::asio::steady_timer backoff_;
  std::string hostname_;                         ///< berth's container id prefix, if it runs in one
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace berth::discovery::docker
