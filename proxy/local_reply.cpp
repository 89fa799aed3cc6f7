// Local reply heads; see local_reply.h.
#include "proxy/local_reply.h"

#include <charconv>

#include "base/text.h"

namespace berth::proxy::local_reply {

using namespace std::string_view_literals;  // appending a literal must not call strlen

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 429: return "Too Many Requests";
    case 408: return "Request Timeout";
    case 413: return "Request Entity Too Large";
    case 421: return "Misdirected Request";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
  }
}

void append_header_edits(std::string& out, std::span<const HeaderPair> edits) {
  for_each_header_edit(edits, [&out](std::string_view name, std::string_view value) {
    out.append(name).append(": "sv).append(value).append("\r\n"sv);
  });
}

void render_head(std::string& out, int status, size_t content_length, std::string_view content_type, bool close,
                 std::string_view location, std::span<const HeaderPair> headers) {
  char num[24];
  out.append("HTTP/1.1 "sv);
  auto r = std::to_chars(num, num + sizeof num, status);
  out.append(num, r.ptr).append(" "sv).append(reason_phrase(status)).append("\r\nContent-Type: "sv).append(content_type);
  out.append("\r\nX-Content-Type-Options: nosniff\r\n"sv);
  if (status != 304) {  // a 304's length would be the 200's: none is sent
    r = std::to_chars(num, num + sizeof num, content_length);
    out.append("Content-Length: "sv).append(num, r.ptr).append("\r\n"sv);
  }
  if (!location.empty()) out.append("Location: "sv).append(location).append("\r\n"sv);
  append_header_edits(out, headers);
  if (close) out.append("Connection: close\r\n"sv);
  out.append("\r\n"sv);
}

}  // namespace berth::proxy::local_reply
