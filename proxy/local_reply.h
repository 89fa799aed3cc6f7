// Answers berth gives itself (errors, ping, the built-in page): bodies as Traefik words them.
#pragma once

#include <span>
#include <string>
#include <utility>
#include <string_view>

#include "base/text.h"

namespace berth::proxy::local_reply {

inline constexpr std::string_view kTextPlain = "text/plain; charset=utf-8";
inline constexpr std::string_view kTextHtml = "text/html; charset=utf-8";
inline constexpr std::string_view kNotFound = "404 page not found\n";
inline constexpr std::string_view kBadRequest = "400 Bad Request";
inline constexpr std::string_view kHeadersTooLarge = "431 Request Header Fields Too Large";
inline constexpr std::string_view kRequestTimeout = "408 Request Timeout";
inline constexpr std::string_view kNotImplemented = "501 Not Implemented";
inline constexpr std::string_view kBadGateway = "Bad Gateway";
inline constexpr std::string_view kServiceUnavailable = "Service Unavailable";
inline constexpr std::string_view kGatewayTimeout = "Gateway Timeout";
inline constexpr std::string_view kMisdirected = "Misdirected Request\n";
inline constexpr std::string_view kPingOk = "OK";

std::string_view reason_phrase(int status);

using HeaderPair = std::pair<std::string_view, std::string_view>;

/// Calls `emit(name, value)` for each header edit that is sent: the last edit of a name wins, an
/// empty value only removes. Thread: any.
template <class Emit>
void for_each_header_edit(std::span<const HeaderPair> edits, Emit&& emit) {
  for (size_t i = 0; i < edits.size(); ++i) {
    const auto& [name, value] = edits[i];
    if (value.empty()) continue;
    bool overridden = false;
    for (size_t j = i + 1; j < edits.size() && !overridden; ++j) overridden = iequals(edits[j].first, name);
    if (!overridden) emit(name, value);
  }
}

/// Appends header edits as HTTP/1.1 lines (for_each_header_edit()). Thread: any.
void append_header_edits(std::string& out, std::span<const HeaderPair> edits);

/// Appends a response head with Content-Length (none for a 304) and Connection: close when `close`. Thread: any.
/// `location`, if not empty, becomes a Location header (redirects); `headers` with a value are
/// added (a later one of the same name wins, as in middleware edits).
void render_head(std::string& out, int status, size_t content_length, std::string_view content_type, bool close,
                 std::string_view location = {}, std::span<const HeaderPair> headers = {});

}  // namespace berth::proxy::local_reply
