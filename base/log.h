// Leveled logger: Traefik's console layout ("2026-01-02T03:04:05Z INF message key=value") or
// zerolog's JSON ({"level":"info","time":"...","message":"..."}), to stderr or log.filePath.
// The level is checked before any formatting (HP-7).
#pragma once

#include <atomic>
#include <sstream>
#include <string>
#include <string_view>

#include "base/result.h"

namespace berth::log {

enum class Level { kTrace = 0, kDebug, kInfo, kWarn, kError, kFatal, kPanic, kOff };
enum class Format { kCommon, kJson };

/// Parses TRACE/DEBUG/INFO/WARN/ERROR/FATAL/PANIC (case-insensitive).
bool parse_level(std::string_view text, Level& out);
/// Parses "common" / "json" (case-insensitive).
bool parse_format(std::string_view text, Format& out);

inline std::atomic<Level> g_level{Level::kInfo};

inline bool enabled(Level l) { return l >= g_level.load(std::memory_order_relaxed); }

/// Writes one line atomically (one write(2)). Thread: any.
void write(Level l, std::string_view message);

/// Sets the layout and sends the lines to `file_path` (created with its missing directories,
/// appended to) or, when it is empty, to stderr. An error names the file. Thread: control, before
/// other threads log.
Result<bool> open_output(Format format, const std::string& file_path);
/// Reopens the log file at its path (SIGUSR1, once logrotate has moved it). A line written meanwhile
/// goes to the old file or the new one, never elsewhere; on failure the old file stays. No-op on
/// stderr. Thread: any.
void reopen();

/// Opens `path` for appending (O_APPEND | O_CREAT, mode 0664), creating missing parent directories
/// (0755) as Traefik does; the fd, or an error naming the file. Thread: any.
Result<int> open_append(const std::string& path);

namespace detail {
template <typename... Args>
std::string format(Args&&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
}  // namespace detail

}  // namespace berth::log

#define BERTH_LOG(level, ...)                                                              \
  do {                                                                                     \
    if (::berth::log::enabled(level))                                                      \
      ::berth::log::write(level, ::berth::log::detail::format(__VA_ARGS__));               \
  } while (0)
#define LOG_DEBUG(...) BERTH_LOG(::berth::log::Level::kDebug, __VA_ARGS__)
#define LOG_INFO(...) BERTH_LOG(::berth::log::Level::kInfo, __VA_ARGS__)
#define LOG_WARN(...) BERTH_LOG(::berth::log::Level::kWarn, __VA_ARGS__)
#define LOG_ERROR(...) BERTH_LOG(::berth::log::Level::kError, __VA_ARGS__)
