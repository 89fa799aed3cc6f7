// HTTP/1.1 message-head parser (RFC 9112) and chunked-body framer. Parses a complete head in place:
// every view points into the caller's buffer; nothing is allocated once `headers` has grown (HP-1, HP-3).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "proxy/http/header.h"

namespace berth::proxy::http::h1 {

enum class ParseStatus : uint8_t {
  kOk,
  kIncomplete,       ///< the head is not complete yet
  kBadRequest,       ///< malformed: answer 400 and close
  kNotImplemented,   ///< a transfer coding other than chunked: 501
};

/// Framing facts common to requests and responses.
struct Framing {
  int64_t content_length = -1;  ///< -1: absent
  bool chunked = false;
  bool connection_close = false;
  bool connection_keep_alive = false;
  bool connection_upgrade = false;
};

struct RequestHead {
  std::string_view method;
  std::string_view target;
  int version_minor = 1;
  std::vector<Header> headers;
  std::string_view host;          ///< the Host header value (empty if absent)
  Framing framing;
  bool expect_continue = false;
  bool has_upgrade = false;
  size_t head_size = 0;           ///< bytes of the head including the final empty line

  /// Whether the connection stays open after this exchange (HTTP/1.1 default, 1.0 opt-in).
  bool keep_alive() const {
    return version_minor >= 1 ? !framing.connection_close : framing.connection_keep_alive;
  }
  bool is_head() const { return method == "HEAD"; }
};

struct ResponseHead {
  int version_minor = 1;
  int status = 0;
  std::string_view reason;
  std::vector<Header> headers;
  Framing framing;
  size_t head_size = 0;
};

/// Finds the end of a head ("\r\n\r\n" or "\n\n") at or after `from`; returns the head size or 0.
/// `from` lets a caller resume scanning where the previous call stopped. Thread: any.
size_t find_head_end(std::string_view data, size_t from = 0);

/// Parses a request head; `data` is exactly the head that find_head_end measured. Thread: any.
ParseStatus parse_request(std::string_view data, RequestHead& out);

/// Parses a response head; `data` is exactly the head that find_head_end measured. Thread: any.
ParseStatus parse_response(std::string_view data, ResponseHead& out);

/// Walks a chunked body as it streams, so the proxy can relay it byte for byte (trailers included)
/// and know where the message ends. Thread: the owner's.
class ChunkedFramer {
 public:
  enum class Status : uint8_t { kMore, kDone, kError };

  /// Consumes up to `data.size()` bytes of the chunked stream; sets `used` to the bytes that belong to
  /// this message (all of them unless the message ends inside `data`).
  Status consume(std::string_view data, size_t& used);
  void reset() { *this = ChunkedFramer(); }
  /// The chunks' data bytes walked so far: the body without its framing and trailers.
  uint64_t payload() const { return payload_; }
  /// The chunk sizes, line ends and trailers walked so far: what `payload()` leaves out.
  uint64_t framing() const { return walked_ - payload_; }

 private:
  enum class State : uint8_t { kSize, kSizeExt, kSizeLf, kData, kDataCr, kDataLf, kTrailerStart, kTrailerLine, kTrailerLf, kFinalLf, kDone };
  State state_ = State::kSize;
  uint64_t remaining_ = 0;
  uint64_t payload_ = 0;
  uint64_t walked_ = 0;  ///< bytes of the message passed by `consume`
  int size_digits_ = 0;
};

}  // namespace berth::proxy::http::h1
