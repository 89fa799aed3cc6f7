// Logger implementation: one write(2) per line so lines from several workers never interleave.
// The descriptor number never changes after start: reopen() dup2()s the new file onto it, so a
// thread writing while the file is swapped cannot hit a closed or reused descriptor.
#include "base/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>

#include "base/text.h"

namespace berth::log {
namespace {

std::atomic<Format> g_format{Format::kCommon};
std::atomic<int> g_fd{2};
std::mutex g_reopen_mu;
std::string g_path;  ///< guarded by g_reopen_mu; "" = stderr

}  // namespace

bool parse_level(std::string_view text, Level& out) {
  static constexpr std::pair<std::string_view, Level> kNames[] = {
      {"trace", Level::kTrace}, {"debug", Level::kDebug}, {"info", Level::kInfo},
      {"warn", Level::kWarn},   {"error", Level::kError}, {"fatal", Level::kFatal},
      {"panic", Level::kPanic}};
  for (auto& [name, level] : kNames)
    if (iequals(text, name)) {
      out = level;
      return true;
    }
  return false;
}

bool parse_format(std::string_view text, Format& out) {
  if (iequals(text, "common")) out = Format::kCommon;
  else if (iequals(text, "json")) out = Format::kJson;
  else return false;
  return true;
}

void write(Level l, std::string_view message) {
  static constexpr const char* kTags[] = {"TRC", "DBG", "INF", "WRN", "ERR", "FTL", "PNC", "OFF"};
  static constexpr const char* kNames[] = {"trace", "debug", "info", "warn", "error", "fatal", "panic", "disabled"};
  char stamp[32];
  std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
  std::string line;
  const int level = static_cast<int>(l);
  if (g_format.load(std::memory_order_relaxed) == Format::kJson) {
    line.reserve(message.size() + 64);
    line.append(R"({"level":")").append(kNames[level]).append(R"(","time":")").append(stamp);
    line.append(R"(","message":")");
    append_json_escaped(line, message);
    line.append("\"}\n");
  } else {
    line.reserve(message.size() + 32);
    line.append(stamp).append(" ").append(kTags[level]).append(" ").append(message).append("\n");
  }
  [[maybe_unused]] auto n = ::write(g_fd.load(std::memory_order_relaxed), line.data(), line.size());
}

Result<int> open_append(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) {
    std::filesystem::create_directories(parent, ec);
    if (ec) return Error{path, "cannot create the directory " + parent.string() + ": " + ec.message()};
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0664);
  if (fd < 0) return Error{path, std::string("cannot open for writing: ") + std::strerror(errno)};
  return fd;
}

Result<bool> open_output(Format format, const std::string& file_path) {
  std::lock_guard lock(g_reopen_mu);
  const int current = g_fd.load();
  if (!file_path.empty()) {
    auto fd = open_append(file_path);
    if (!fd) return fd.error();
    if (current == 2) {
      g_fd.store(*fd);
    } else {
      ::dup3(*fd, current, O_CLOEXEC);
      ::close(*fd);
    }
  } else if (current != 2) {
    ::dup3(2, current, O_CLOEXEC);  // back to stderr
  }
  g_path = file_path;
  g_format.store(format);
  return true;
}

void reopen() {
  std::lock_guard lock(g_reopen_mu);
  if (g_path.empty()) return;
  auto fd = open_append(g_path);
  if (!fd) {
    LOG_ERROR("log.filePath: ", fd.error().to_string(), " (still writing to the old file)");
    return;
  }
  ::dup3(*fd, g_fd.load(), O_CLOEXEC);
  ::close(*fd);
}

}  // namespace berth::log
