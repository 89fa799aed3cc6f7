// File provider: dynamic config from `providers.file.filename` or every *.yml/*.yaml file in
// `providers.file.directory` and its subdirectories (Traefik's order: each directory's entries by
// name; the first file that defines a name wins), re-read on change via inotify, and also when a
// certificate, key or CA file the config names changes (berth's addition: Traefik reads those once,
// and watches no subdirectory). Thread: control.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <map>
#include <set>
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
  std::vector<std::string> files() const { return scan(nullptr, nullptr); }

 private:
  /// The config files, in order; adds the directories walked (directory mode) to `dirs` and the
  /// files skipped for their format (TOML) to `skipped`, either may be null.
  std::vector<std::string> scan(std::vector<std::string>* dirs, std::vector<std::string>* skipped) const;
  /// Watches every directory of the tree (directory mode): a file added to a new one is seen too.
  void watch_directories();
  void read_events();
  void schedule_reload();
  /// Watches the directories of the files `config` names (certificates and keys), besides the
  /// config's own directory.
  void watch_referenced(const config::DynamicConfig& config);

  boost::asio::io_context& io_;
  config::FileProviderConfig cfg_;
  OnChange on_change_;
  int inotify_fd_ = -1;
  std::unique_ptr<boost::asio::posix::stream_descriptor> stream_;
  boost::asio::steady_timer debounce_;
  /// What each inotify watch (a directory) is for: any file in it (directory mode), or the names
  /// listed (the config file, referenced certificate files).
  struct WatchedDir {
    bool any = false;
    std::set<std::string, std::less<>> names;
  };
  std::map<int, WatchedDir> watches_;
  char events_[8192];
};

}  // namespace berth::discovery
