// File provider: dynamic config from `providers.file.filename` or every *.yml/*.yaml file
// in `providers.file.directory`, re-read on change via inotify. Thread: control.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <string>
#include <vector>

#include "base/result.h"
#include "config/dynamic_config.h"
#include "config/static_config.h"

namespace berth::discovery {

class FileProvider {
 public:
  using OnChange = std::function<void(Result<config::DynamicConfig>)>;

  FileProvider(boost::asio::io_context& io, config::FileProviderConfig cfg);
  ~FileProvider();

  /// Reads and decodes every file now. An unreadable or unparsable file is an Error (the caller keeps
  /// its last good config); element problems are inside DynamicConfig::errors.
  Result<config::DynamicConfig> load() const;

  /// Starts watching; `on_change` gets a fresh load() about 10 ms after the last change settles.
  Result<bool> watch(OnChange on_change);

  /// The files load() reads, in order.
  std::vector<std::string> files() const;

 private:
  void read_events();
  void schedule_reload();

  boost::asio::io_context& io_;
  config::FileProviderConfig cfg_;
  OnChange on_change_;
  int inotify_fd_ = -1;
  std::unique_ptr<boost::asio::posix::stream_descriptor> stream_;
  boost::asio::steady_timer debounce_;
  std::string watched_name_;  ///< for filename mode: the base name of the file within its directory
  char events_[8192];
};

}  // namespace berth::discovery
