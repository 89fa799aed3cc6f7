// Text helpers; see text.h.
#include "base/text.h"

#include <charconv>
#include <cmath>
#include <cstring>

namespace berth {

std::optional<Duration> parse_duration(std::string_view text) {
  text = trim(text);
  if (text.empty()) return std::nullopt;
  constexpr double kMaxMs = 1e15;  // ~31,000 years: anything larger is a typo, and would overflow
  if (auto n = parse_uint(text)) {   // Traefik: a bare integer means seconds
    if (double(*n) * 1000 > kMaxMs) return std::nullopt;
    return std::chrono::seconds(*n);
  }
  double total_ms = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
    if (start == i) return std::nullopt;
    double value = 0;
    auto [p, ec] = std::from_chars(text.data() + start, text.data() + i, value);
    if (ec != std::errc() || p != text.data() + i) return std::nullopt;
    size_t ustart = i;
    while (i < text.size() && !((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
    std::string_view unit = text.substr(ustart, i - ustart);
    double scale;
    if (unit == "ns") scale = 1e-6;
    else if (unit == "us" || unit == "µs") scale = 1e-3;
    else if (unit == "ms") scale = 1;
    else if (unit == "s") scale = 1000;
    else if (unit == "m") scale = 60'000;
    else if (unit == "h") scale = 3'600'000;
    else return std::nullopt;
    total_ms += value * scale;
  }
  if (total_ms > kMaxMs) return std::nullopt;
  return Duration(static_cast<int64_t>(std::llround(total_ms)));
}

std::string format_duration(Duration d) {
  auto ms = d.count();
  if (ms == 0) return "0s";
  if (ms % 1000 != 0) return std::to_string(ms) + "ms";
  auto s = ms / 1000;
  std::string out;
  if (s >= 3600) { out += std::to_string(s / 3600) + "h"; s %= 3600; }
  if (s >= 60) { out += std::to_string(s / 60) + "m"; s %= 60; }
  if (s > 0 || out.empty()) out += std::to_string(s) + "s";
  return out;
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = lower_ascii(c);
  return out;
}

std::string to_upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'a' && c <= 'z') c = char(c - 32);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower_ascii(a[i]) != lower_ascii(b[i])) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::vector<std::string> split_list(std::string_view text, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(sep, start);
    if (end == std::string_view::npos) end = text.size();
    auto part = trim(text.substr(start, end - start));
    if (!part.empty()) out.emplace_back(part);
    start = end + 1;
  }
  return out;
}

std::optional<uint64_t> parse_uint(std::string_view text) {
  if (text.empty()) return std::nullopt;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size()) return std::nullopt;
  return v;
}

std::optional<bool> parse_bool(std::string_view text) {
  if (iequals(text, "true")) return true;
  if (iequals(text, "false")) return false;
  return std::nullopt;
}

size_t utf8_sequence_length(std::string_view s) {
  if (s.empty()) return 0;
  const auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c >= 0xE0 && c <= 0xEF) n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
  else if (c >= 0xF0 && c <= 0xF4) n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
  else return 0;
  if (s.size() < n || b(1) < lo || b(1) > hi) return 0;
  for (size_t i = 2; i < n; ++i)
    if (b(i) < 0x80 || b(i) > 0xBF) return 0;
  return n;
}

size_t json_escape(std::string_view s, char* out, size_t cap) {
  static constexpr char kHex[] = "0123456789abcdef";
  size_t o = 0;
  auto put = [&](std::string_view text) {
    if (cap - o < text.size()) return false;
    std::memcpy(out + o, text.data(), text.size());
    o += text.size();
    return true;
  };
  size_t i = 0;
  while (i < s.size()) {
    // The run of bytes that need nothing is copied at once.
    size_t run = i;
    while (run < s.size()) {
      const auto c = static_cast<unsigned char>(s[run]);
      if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&') break;
      ++run;
    }
    if (run > i && !put(s.substr(i, run - i))) return SIZE_MAX;
    i = run;
    if (i == s.size()) break;
    const auto c = static_cast<unsigned char>(s[i]);
    bool ok;
    if (c >= 0x80) {
      const size_t n = utf8_sequence_length(s.substr(i));
      if (n == 0) {
        ok = put("\\ufffd");
        i += 1;
      } else {
        // U+2028 and U+2029 (E2 80 A8/A9) end lines in JavaScript.
        const bool separator = n == 3 && c == 0xE2 && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
                               (static_cast<unsigned char>(s[i + 2]) & 0xFE) == 0xA8;
        ok = separator ? put(static_cast<unsigned char>(s[i + 2]) == 0xA8 ? "\\u2028" : "\\u2029")
                       : put(s.substr(i, n));
        i += n;
      }
    } else {
      switch (c) {
        case '"': ok = put("\\\""); break;
        case '\\': ok = put("\\\\"); break;
        case '\n': ok = put("\\n"); break;
        case '\r': ok = put("\\r"); break;
        case '\t': ok = put("\\t"); break;
        case '\b': ok = put("\\b"); break;
        case '\f': ok = put("\\f"); break;
        default: {
          const char u[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
          ok = put(std::string_view(u, 6));
        }
      }
      i += 1;
    }
    if (!ok) return SIZE_MAX;
  }
  return o;
}

void append_json_escaped(std::string& out, std::string_view s) {
  const size_t at = out.size();
  out.resize(at + s.size() * 6);
  const size_t n = json_escape(s, out.data() + at, s.size() * 6);
  out.resize(at + n);
}

}  // namespace berth
