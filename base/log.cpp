// Logger implementation: one write(2) per line so lines from several workers never interleave.
#include "base/log.h"

#include <unistd.h>

#include <chrono>
#include <ctime>

#include "base/text.h"

namespace berth::log {

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

void write(Level l, std::string_view message) {
  static constexpr const char* kTags[] = {"TRC", "DBG", "INF", "WRN", "ERR", "FTL", "PNC", "OFF"};
  char stamp[32];
  std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
  std::string line;
  line.reserve(message.size() + 32);
  line.append(stamp).append(" ").append(kTags[static_cast<int>(l)]).append(" ").append(message).append("\n");
  [[maybe_unused]] auto n = ::write(2, line.data(), line.size());
}

}  // namespace berth::log
