// The imperative deploys: the admin socket that `berth deploy|rollback|rollout|pause|resume|stop|
// list` talk to, and the commands behind it (health-gated switch, drain, canary with automatic
// rollback, maintenance), over the deploy state (deploy_state.h). Thread: control.
//
// Protocol: one command per connection. The client sends one JSON object and a newline; berth
// answers with JSON lines: {"progress": "..."} while it works, then {"ok": bool, "message": "..."}
// (list: with "services"). A client that goes away does not stop a command.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "app/deploy_state.h"
#include "config/static_config.h"
#include "proxy/snapshot.h"

namespace berth::proxy {
class Worker;
namespace observe {
class Metrics;
}
}  // namespace berth::proxy

namespace berth::app {

/// What the deployer needs of the control plane.
struct DeployHost {
  /// Merges the providers' configs, lays the deploy state over them, builds and publishes, now.
  std::function<void()> reapply;
  /// The providers' merged config as last applied, before the deploy state.
  std::function<const config::DynamicConfig&()> providers;
  /// The snapshot last published.
  std::function<std::shared_ptr<const proxy::Snapshot>()> snapshot;
  const std::vector<std::unique_ptr<proxy::Worker>>* workers = nullptr;
  const proxy::observe::Metrics* metrics = nullptr;
};

class Deployer {
 public:
  Deployer(boost::asio::io_context& io, const config::AdminConfig& settings, DeployHost host);
  ~Deployer();

  /// Reads the state file (at start, and again once a hot upgrade's predecessor has handed over).
  /// An unreadable file is logged and left alone: the providers' servers serve, and commands are
  /// refused until it is fixed. Starts the canaries' watch (automatic rollback).
  void load();
  /// Lays the deploy state over `dyn` (before each build).
  void overlay(config::DynamicConfig& dyn) const;
  /// Binds the admin socket (mode 0600, in a 0700 directory it creates). `replace`: a live socket
  /// there is the predecessor's (hot upgrade) and is taken over; otherwise another berth answering
  /// there is an error.
  Result<bool> listen(bool replace);
  /// Hot upgrade, the old side: a successor connected (true: from now on no command changes the
  /// state; those in progress end with an error before they would), or went away (false).
  void freeze(bool frozen);
  /// Hot upgrade, the old side: the successor serves; stops answering on the socket.
  void hand_over();

  struct Command;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace berth::app
