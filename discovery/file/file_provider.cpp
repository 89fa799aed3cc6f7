// File provider implementation; see file_provider.h.
#include "discovery/file/file_provider.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/log.h"
#include "base/text.h"

namespace berth::discovery {

namespace fs = std::filesystem;

constexpr uint32_t kWatchMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB;

FileProvider::FileProvider(boost::asio::io_context& io, config::FileProviderConfig cfg)
    : io_(io), cfg_(std::move(cfg)), debounce_(io) {}

FileProvider::~FileProvider() {
  if (stream_) {
    boost::system::error_code ec;
    stream_->close(ec);
  }
}

namespace {

// Walks `dir` as Traefik does: its entries by name, a subdirectory read where its name falls. A
// symbolic link to a directory is not followed (nor is it by Go's ReadDir), so no loop recurses.
void walk(const fs::path& dir, std::vector<std::string>& files, std::vector<std::string>* dirs,
          std::vector<std::string>* skipped) {
  if (dirs != nullptr) dirs->push_back(dir.string());
  std::vector<fs::directory_entry> entries;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) entries.push_back(entry);
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.path().filename() < b.path().filename(); });
  for (const auto& entry : entries) {
    if (entry.is_directory(ec) && !entry.is_symlink(ec)) {
      walk(entry.path(), files, dirs, skipped);
      continue;
    }
    std::string ext = entry.path().extension().string();
    for (auto& c : ext) c = lower_ascii(c);
    if (!entry.is_regular_file(ec)) continue;
    if (ext == ".yml" || ext == ".yaml") files.push_back(entry.path().string());
    else if (ext == ".toml" && skipped != nullptr) skipped->push_back(entry.path().string());
  }
}

}  // namespace

std::vector<std::string> FileProvider::scan(std::vector<std::string>* dirs, std::vector<std::string>* skipped) const {
  if (!cfg_.filename.empty()) return {cfg_.filename};
  std::vector<std::string> out;
  walk(cfg_.directory, out, dirs, skipped);
  return out;
}

Result<config::DynamicConfig> FileProvider::load() const {
  config::DynamicConfig merged;
  if (!cfg_.directory.empty()) {
    std::error_code ec;
    if (!fs::is_directory(cfg_.directory, ec))
      return Error{cfg_.directory, "providers.file.directory is not a readable directory"};
  }
  std::vector<std::string> skipped;
  // A directory's files are one configuration, as in Traefik: a name defined again in a later file
  // keeps its first definition (the later one is reported).
  const auto redefinition =
      cfg_.directory.empty() ? config::Redefinition::kConflict : config::Redefinition::kFirstWins;
  for (const auto& file : scan(nullptr, &skipped)) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return Error{file, "cannot read file: " + std::string(std::strerror(errno))};
    std::stringstream text;
    text << in.rdbuf();
    auto decoded = config::decode_dynamic_yaml(text.str(), file, "file");
    if (!decoded) return decoded.error();
    config::merge_dynamic(merged, std::move(*decoded), redefinition);
  }
  for (auto& file : skipped)
    merged.errors.push_back(Error{std::move(file), "TOML is not supported: this file is not read (write it in YAML)"});
  return merged;
}

Result<bool> FileProvider::watch(OnChange on_change) {
  on_change_ = std::move(on_change);
  inotify_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd_ < 0) return Error{"providers.file", std::string("inotify: ") + std::strerror(errno)};
  // Watch the directory, not the file: editors and `mv` replace the file's inode.
  std::string dir = cfg_.directory;
  std::string name;
  if (!cfg_.filename.empty()) {
    fs::path p(cfg_.filename);
    dir = p.has_parent_path() ? p.parent_path().string() : ".";
    name = p.filename().string();
  }
  int wd = ::inotify_add_watch(inotify_fd_, dir.c_str(), kWatchMask);
  if (wd < 0) return Error{dir, std::string("cannot watch: ") + std::strerror(errno)};
  if (name.empty()) watches_[wd].any = true;
  else watches_[wd].names.insert(name);
  watch_directories();
  if (auto loaded = load()) watch_referenced(*loaded);
  stream_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, inotify_fd_);
  read_events();
  return true;
}

void FileProvider::watch_directories() {
  if (cfg_.directory.empty()) return;
  std::vector<std::string> dirs;
  scan(&dirs, nullptr);
  // Adding a watch again returns the same one: only new directories are added.
  for (const auto& dir : dirs) {
    int wd = ::inotify_add_watch(inotify_fd_, dir.c_str(), kWatchMask);
    if (wd < 0) {
      LOG_WARN("file provider: cannot watch ", dir, ": ", std::strerror(errno));
      continue;
    }
    watches_[wd].any = true;
  }
}

void FileProvider::watch_referenced(const config::DynamicConfig& config) {
  // Watches are only added: a file no longer named costs a spurious reload at most.
  for (const auto& file : config::referenced_files(config.tls)) {
    fs::path p(file);
    std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
    int wd = ::inotify_add_watch(inotify_fd_, dir.c_str(), kWatchMask);
    if (wd < 0) {
      LOG_WARN("file provider: cannot watch ", dir, " for ", file, ": ", std::strerror(errno));
      continue;
    }
    watches_[wd].names.insert(p.filename().string());
  }
}

void FileProvider::read_events() {
  stream_->async_read_some(boost::asio::buffer(events_), [this](boost::system::error_code ec, size_t n) {
    if (ec) {
      if (ec != boost::asio::error::operation_aborted) LOG_ERROR("file provider: inotify: ", ec.message());
      return;
    }
    bool relevant = false;
    for (size_t off = 0; off + sizeof(inotify_event) <= n;) {
      auto* ev = reinterpret_cast<const inotify_event*>(events_ + off);
      std::string_view name = ev->len ? std::string_view(ev->name) : std::string_view{};
      if (auto it = watches_.find(ev->wd); it != watches_.end() && (it->second.any || it->second.names.contains(name)))
        relevant = true;
      off += sizeof(inotify_event) + ev->len;
    }
    if (relevant) schedule_reload();
    read_events();
  });
}

void FileProvider::schedule_reload() {
  // Editors write in several steps (truncate, write, rename); wait until the burst settles.
  debounce_.expires_after(std::chrono::milliseconds(10));
  debounce_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    watch_directories();
    auto loaded = load();
    if (loaded) watch_referenced(*loaded);
    on_change_(std::move(loaded));
  });
}

}  // namespace berth::discovery
