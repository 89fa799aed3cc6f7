// Hot upgrade: a running berth hands its listening sockets to its successor (a new binary started
// with --takeover, or one it starts itself on SIGUSR2) over a unix socket, with SCM_RIGHTS. The
// successor accepts from the same sockets, so no connection waiting in a listen queue is lost; the
// old process stops accepting, lets its connections finish (graceTimeOut) and exits.
//
// Protocol, one connection: the successor connects; the old process sends one message whose bytes
// are the entry point name of each descriptor ("web\nweb\nwebsecure\n") and whose SCM_RIGHTS carry
// the descriptors; the successor, once it serves, sends "ready\n"; the old process then drains.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "config/static_config.h"

namespace berth::app {

/// Where the berth serving `sc`'s entry points listens for a successor: derived from the user id
/// and the entry points' addresses (a successor must listen on the same ones), so no option is
/// needed and two berths on other ports never meet. Thread: any.
std::string takeover_socket_path(const config::StaticConfig& sc);

/// Remembers the command line (main calls it), for the successor SIGUSR2 starts. Thread: main.
void set_command_line(int argc, char** argv);
/// Starts this binary (as it is on disk now) with the same arguments plus --takeover, detached
/// from this process (it outlives it). Thread: control.
Result<bool> spawn_successor();

/// The successor's side. Thread: control, before the workers start.
class TakeoverClient {
 public:
  ~TakeoverClient();
  /// What the running berth hands over: its listening sockets by entry point name, and the servers
  /// its health checks found down (service, url).
  struct Handover {
    std::map<std::string, std::vector<int>> listeners;
    std::vector<std::pair<std::string, std::string>> down;
  };
  /// Connects to the running berth and receives what it hands over. An error if no berth answers
  /// there (the caller then listens itself).
  Result<Handover> receive(const std::string& path);
  /// Tells the old process that this one serves: it stops accepting and drains.
  void ready();

 private:
  int fd_ = -1;
};

/// The running berth's side: waits for a successor and hands it the listeners. Thread: control.
class TakeoverServer {
 public:
  /// What the running berth provides and is told.
  struct Hooks {
    std::function<std::vector<std::pair<std::string, int>>()> listeners;  ///< the descriptors to send
    std::function<std::vector<std::pair<std::string, std::string>>()> down;  ///< (service, url) found down
    /// true: a successor connected, before anything is sent (deploy state must not change from
    /// now on); false: it went away before it served.
    std::function<void(bool)> handing;
    std::function<void()> on_ready;  ///< it serves
  };
  TakeoverServer(boost::asio::io_context& io, std::string path);
  ~TakeoverServer();
  /// Binds the socket (mode 0600; a stale one from a dead berth is replaced; `replace`: the live
  /// one of the predecessor this process took over from too) and waits for a successor.
  Result<bool> start(Hooks hooks, bool replace);

 private:
  void accept();
  void wait_ready(std::shared_ptr<boost::asio::local::stream_protocol::socket> peer,
                  std::shared_ptr<std::string> buffer = nullptr);

  boost::asio::io_context& io_;
  std::string path_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  Hooks hooks_;
  bool bound_ = false;
  bool handed_over_ = false;
};

}  // namespace berth::app
