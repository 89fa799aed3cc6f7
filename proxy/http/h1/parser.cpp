// HTTP/1.1 head parsing and chunked framing; strict where request smuggling lives (RFC 9112 6.3).
#include "proxy/http/h1/parser.h"

#include <cstring>

#include "base/text.h"

namespace berth::proxy::http::h1 {
namespace {

// RFC 9110 tchar.
struct TcharTable {
  bool ok[256] = {};
  constexpr TcharTable() {
    for (int c = '0'; c <= '9'; ++c) ok[c] = true;
    for (int c = 'a'; c <= 'z'; ++c) ok[c] = true;
    for (int c = 'A'; c <= 'Z'; ++c) ok[c] = true;
    for (char c : std::string_view("!#$%&'*+-.^_`|~")) ok[static_cast<unsigned char>(c)] = true;
  }
};
constexpr TcharTable kTchar;

inline bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!kTchar.ok[c]) return false;
  return true;
}

// Reads one line ending in LF (CR optional); returns false at the end of data.
inline bool next_line(std::string_view data, size_t& pos, std::string_view& line) {
  size_t lf = data.find('\n', pos);
  if (lf == std::string_view::npos) return false;
  size_t end = lf;
  if (end > pos && data[end - 1] == '\r') --end;
  line = data.substr(pos, end - pos);
  pos = lf + 1;
  return true;
}

// Parses the header block starting at `pos`; fills `headers` and `framing`.
ParseStatus parse_headers(std::string_view data, size_t pos, std::vector<Header>& headers, Framing& framing) {
  std::string_view line;
  while (next_line(data, pos, line)) {
    if (line.empty()) return ParseStatus::kOk;
    if (line[0] == ' ' || line[0] == '\t') return ParseStatus::kBadRequest;  // obs-fold is rejected
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return ParseStatus::kBadRequest;
    std::string_view name = line.substr(0, colon);
    if (!is_token(name)) return ParseStatus::kBadRequest;  // also rejects "Name :" (whitespace before colon)
    std::string_view value = trim(line.substr(colon + 1));
    for (unsigned char c : value)
      if ((c < 0x20 && c != '\t') || c == 0x7f) return ParseStatus::kBadRequest;
    HeaderId id = header_id(name);
    headers.push_back(Header{name, value, id});
    switch (id) {
      case HeaderId::kContentLength: {
        auto n = parse_uint(value);
        if (!n || *n > (uint64_t(1) << 62)) return ParseStatus::kBadRequest;
        if (framing.content_length >= 0 && framing.content_length != static_cast<int64_t>(*n))
          return ParseStatus::kBadRequest;
        framing.content_length = static_cast<int64_t>(*n);
        break;
      }
      case HeaderId::kTransferEncoding: {
        // Only "chunked" is supported, and it must be the last (and here: only) coding.
        if (framing.chunked) return ParseStatus::kBadRequest;
        if (!iequals(value, "chunked")) return ParseStatus::kNotImplemented;
        framing.chunked = true;
        break;
      }
      case HeaderId::kConnection:
        if (lists_token(value, "close")) framing.connection_close = true;
        if (lists_token(value, "keep-alive")) framing.connection_keep_alive = true;
        if (lists_token(value, "upgrade")) framing.connection_upgrade = true;
        break;
      default:
        break;
    }
  }
  return ParseStatus::kIncomplete;
}

}  // namespace

size_t find_head_end(std::string_view data, size_t from) {
  // Resume a little before `from`: the terminator may straddle two reads.
  size_t pos = from > 3 ? from - 3 : 0;
  while (true) {
    size_t lf = data.find('\n', pos);
    if (lf == std::string_view::npos) return 0;
    if (lf + 1 < data.size() && data[lf + 1] == '\n') return lf + 2;
    if (lf + 2 < data.size() && data[lf + 1] == '\r' && data[lf + 2] == '\n') return lf + 3;
    pos = lf + 1;
  }
}

ParseStatus parse_request(std::string_view data, RequestHead& out) {
  out.headers.clear();
  out.framing = Framing{};
  out.host = {};
  out.expect_continue = false;
  out.has_upgrade = false;
  size_t pos = 0;
  std::string_view line;
  // RFC 9112 2.2: ignore at least one empty line before the request-line.
  do {
    if (!next_line(data, pos, line)) return ParseStatus::kIncomplete;
  } while (line.empty() && pos <= 4);
  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return ParseStatus::kBadRequest;
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return ParseStatus::kBadRequest;
  out.method = line.substr(0, sp1);
  out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!is_token(out.method) || out.target.empty()) return ParseStatus::kBadRequest;
  for (unsigned char c : out.target)
    if (c <= 0x20 || c == 0x7f) return ParseStatus::kBadRequest;
  if (version.size() != 8 || version.substr(0, 7) != "HTTP/1." || version[7] < '0' || version[7] > '9')
    return ParseStatus::kBadRequest;
  out.version_minor = version[7] - '0';
  auto status = parse_headers(data, pos, out.headers, out.framing);
  if (status != ParseStatus::kOk) return status;
  bool host_seen = false;
  for (const auto& h : out.headers) {
    if (h.id == HeaderId::kHost) {
      if (host_seen) return ParseStatus::kBadRequest;  // RFC 9112 3.2: more than one Host
      host_seen = true;
      out.host = h.value;
    } else if (h.id == HeaderId::kExpect) {
      out.expect_continue = iequals(h.value, "100-continue");
    } else if (h.id == HeaderId::kUpgrade) {
      out.has_upgrade = true;
    }
  }
  if (out.version_minor >= 1 && !host_seen) return ParseStatus::kBadRequest;
  // Both framings at once is the classic smuggling vector: refuse rather than guess.
  if (out.framing.chunked && out.framing.content_length >= 0) return ParseStatus::kBadRequest;
  if (out.version_minor == 0 && out.framing.chunked) return ParseStatus::kBadRequest;
  out.head_size = data.size();
  return ParseStatus::kOk;
}

ParseStatus parse_response(std::string_view data, ResponseHead& out) {
  out.headers.clear();
  out.framing = Framing{};
  size_t pos = 0;
  std::string_view line;
  if (!next_line(data, pos, line)) return ParseStatus::kIncomplete;
  // "HTTP/1.1 200 OK" (the reason may be empty, and so may the space before it).
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ') return ParseStatus::kBadRequest;
  out.version_minor = line[7] - '0';
  if (out.version_minor < 0 || out.version_minor > 9) return ParseStatus::kBadRequest;
  int status = 0;
  for (int i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') return ParseStatus::kBadRequest;
    status = status * 10 + (line[i] - '0');
  }
  if (status < 100) return ParseStatus::kBadRequest;
  if (line.size() > 12 && line[12] != ' ') return ParseStatus::kBadRequest;
  out.status = status;
  out.reason = line.size() > 13 ? line.substr(13) : std::string_view{};
  auto st = parse_headers(data, pos, out.headers, out.framing);
  if (st != ParseStatus::kOk) return st;
  // A response with both: Transfer-Encoding wins and Content-Length is ignored (RFC 9112 6.3).
  if (out.framing.chunked) out.framing.content_length = -1;
  out.head_size = data.size();
  return ParseStatus::kOk;
}

ChunkedFramer::Status ChunkedFramer::consume(std::string_view data, size_t& used) {
  size_t i = 0;
  const size_t n = data.size();
  while (i < n) {
    char c = data[i];
    switch (state_) {
      case State::kSize: {
        int digit = -1;
        if (c >= '0' && c <= '9') digit = c - '0';
        else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
        if (digit >= 0) {
          if (++size_digits_ > 15) return Status::kError;
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(digit);
          ++i;
        } else if (size_digits_ == 0) {
          return Status::kError;
        } else if (c == ';' || c == ' ' || c == '\t') {
          state_ = State::kSizeExt;
          ++i;
        } else if (c == '\r') {
          state_ = State::kSizeLf;
          ++i;
        } else {
          return Status::kError;
        }
        break;
      }
      case State::kSizeExt:
        if (c == '\r') state_ = State::kSizeLf;
        else if (c == '\n' || static_cast<unsigned char>(c) < 0x09) return Status::kError;
        ++i;
        break;
      case State::kSizeLf:
        if (c != '\n') return Status::kError;
        ++i;
        size_digits_ = 0;
        state_ = remaining_ == 0 ? State::kTrailerStart : State::kData;
        break;
      case State::kData: {
        size_t take = std::min<uint64_t>(remaining_, n - i);
        i += take;
        remaining_ -= take;
        payload_ += take;
        if (remaining_ == 0) state_ = State::kDataCr;
        break;
      }
      case State::kDataCr:
        if (c != '\r') return Status::kError;
        ++i;
        state_ = State::kDataLf;
        break;
      case State::kDataLf:
        if (c != '\n') return Status::kError;
        ++i;
        state_ = State::kSize;
        break;
      case State::kTrailerStart:
        // Either the final CRLF or a trailer field line.
        if (c == '\r') state_ = State::kFinalLf;
        else if (c == '\n') return Status::kError;
        else state_ = State::kTrailerLine;
        ++i;
        break;
      case State::kTrailerLine:
        if (c == '\r') state_ = State::kTrailerLf;
        else if (c == '\n') return Status::kError;
        ++i;
        break;
      case State::kTrailerLf:
        if (c != '\n') return Status::kError;
        ++i;
        state_ = State::kTrailerStart;
        break;
      case State::kFinalLf:
        if (c != '\n') return Status::kError;
        ++i;
        state_ = State::kDone;
        used = i;
        walked_ += i;
        return Status::kDone;
      case State::kDone:
        used = i;
        walked_ += i;
        return Status::kDone;
    }
  }
  used = i;
  walked_ += i;
  return state_ == State::kDone ? Status::kDone : Status::kMore;
}

}  // namespace berth::proxy::http::h1
