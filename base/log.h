// Leveled logger in Traefik's console layout ("2026-01-02T03:04:05Z INF message key=value").
// The level is checked before any formatting (HP-7).
#pragma once

#include <atomic>
#include <sstream>
#include <string>
#include <string_view>

namespace berth::log {

enum class Level { kTrace = 0, kDebug, kInfo, kWarn, kError, kFatal, kPanic, kOff };

/// Parses TRACE/DEBUG/INFO/WARN/ERROR/FATAL/PANIC (case-insensitive).
bool parse_level(std::string_view text, Level& out);

inline std::atomic<Level> g_level{Level::kInfo};

inline bool enabled(Level l) { return l >= g_level.load(std::memory_order_relaxed); }

/// Writes one line to stderr atomically. Thread: any.
void write(Level l, std::string_view message);

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
