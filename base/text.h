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

/// Writes `s` escaped for the inside of a JSON string, as Go's encoding/json does: `"`, `\` and
/// control bytes escaped (\n \r \t \b \f short), `<` `>` `&` as \u003c \u003e \u0026, U+2028 and U+2029
/// escaped, each byte of invalid UTF-8 as \ufffd. At most 6 output bytes per input byte. Returns the
/// bytes written to out[0..cap), or SIZE_MAX when the result does not fit. No allocation. Thread: any.
size_t json_escape(std::string_view s, char* out, size_t cap);
/// Appends `s` escaped as above to `out`.
void append_json_escaped(std::string& out, std::string_view s);
/// The length of the valid UTF-8 sequence at the start of `s` (Go's rules: no overlong forms, no
/// surrogates, nothing above U+10FFFF), or 0 when it is invalid or empty. Thread: any.
size_t utf8_sequence_length(std::string_view s);

}  // namespace berth
