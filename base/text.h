// Small text helpers shared by config decoding and the data plane: durations, case folding, splitting.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace berth {

using Duration = std::chrono::milliseconds;

/// Parses a Go-style duration ("10s", "1m30s", "250ms", "1h") or a bare number of seconds ("10").
/// Returns nullopt on malformed input. Thread: any.
std::optional<Duration> parse_duration(std::string_view text);

/// Formats a duration the way parse_duration reads it ("1m30s", "250ms", "0s").
std::string format_duration(Duration d);

/// ASCII lower-casing.
std::string to_lower(std::string_view s);
/// ASCII upper-casing.
std::string to_upper(std::string_view s);
inline char lower_ascii(char c) { return (c >= 'A' && c <= 'Z') ? char(c + 32) : c; }

/// ASCII case-insensitive equality.
bool iequals(std::string_view a, std::string_view b);

/// Splits on `sep`, trims spaces around each part, drops empty parts.
std::vector<std::string> split_list(std::string_view text, char sep = ',');

std::string_view trim(std::string_view s);

/// Parses a decimal unsigned integer that must fill the whole text.
std::optional<uint64_t> parse_uint(std::string_view text);

/// Parses "true"/"false" case-insensitively.
std::optional<bool> parse_bool(std::string_view text);

}  // namespace berth
