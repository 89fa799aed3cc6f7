// Streaming decoder and encoder for chunked bodies (RFC 9112 7.1), for code that needs the payload
// (the one-shot fetch client, re-chunking compressed output); the relay keeps using ChunkedFramer.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace berth::proxy::http::h1 {

/// Bounds a ChunkedDecoder enforces on untrusted input.
struct ChunkedLimits {
  size_t max_line = 4096;                      ///< chunk-size line, extensions included, CRLF excluded
  uint64_t max_chunk_size = uint64_t(1) << 62;  ///< largest chunk-size accepted
  size_t max_trailers = 16 * 1024;             ///< bytes of the trailer section (skipped, not kept)
};

/// Decodes a chunked body fed in arbitrary slices (a slice may end anywhere, even inside a size line
/// or a CRLF) and yields the payload as views into the caller's input, without copying. Extensions
/// and trailers are validated and skipped (trailers kept on request: keep_trailers). Bare LF line endings are refused, as ChunkedFramer does.
///
///   while (!in.empty()) {
///     size_t used; std::string_view data;
///     auto st = decoder.decode(in, used, data);
///     in.remove_prefix(used);
///     if (st == ChunkedDecoder::Status::kData) sink(data);
///     else break;  // kNeedMore: read more; kDone: `in` is what follows the body; kError: fail
///   }
///
/// Thread: the owner's (no shared state).
class ChunkedDecoder {
 public:
  enum class Status : uint8_t {
    kData,      ///< `data` holds payload bytes (never empty); call again with the rest of the input
    kNeedMore,  ///< the whole input was consumed and the body has not ended
    kDone,      ///< the body ended (last chunk and trailers); `consumed` stops right after it
    kError,     ///< malformed or over a limit; see error(). Sticky until reset()
  };

  ChunkedDecoder() = default;
  explicit ChunkedDecoder(ChunkedLimits limits) : limits_(limits) {}

  /// Consumes bytes from the front of `in` until it can yield payload, needs more input, ends or
  /// fails. Sets `consumed` to the bytes used (payload included) and, for kData, `data` to a view
  /// into `in`. After kDone it returns kDone again with `consumed` = 0.
  Status decode(std::string_view in, size_t& consumed, std::string_view& data);

  bool is_done() const { return state_ == State::kDone; }
  /// Appends the trailer section to `sink` as it passes ("Name: value\r\n" lines; the final empty
  /// line left out), for HTTP/2, which sends trailers as a HEADERS frame. Null: skipped.
  void keep_trailers(std::string* sink) { trailers_ = sink; }
  /// Why decode() returned kError (a static string); empty otherwise.
  std::string_view error() const { return error_; }
  /// Starts over for the next message, keeping the limits.
  void reset() { *this = ChunkedDecoder(limits_); }

 private:
  enum class State : uint8_t {
    kSize, kSizeWs, kExt, kSizeLf, kData, kDataCr, kDataLf,
    kTrailerStart, kTrailerName, kTrailerValue, kTrailerLf, kFinalLf, kDone, kError,
  };
  Status fail(const char* why, size_t at, size_t& consumed);

  ChunkedLimits limits_;
  State state_ = State::kSize;
  uint64_t size_ = 0;       ///< chunk-size being parsed, then the payload left in the chunk
  size_t line_ = 0;         ///< bytes of the current size line, or of the trailer section so far
  bool has_digit_ = false;  ///< the size line has at least one hex digit
  const char* error_ = "";
  std::string* trailers_ = nullptr;
};

/// Appends `data` as one chunk ("<hex size>\r\n<data>\r\n"); appends nothing when `data` is empty,
/// since an empty chunk would end the body. Allocates only if `out` must grow. `out` is any
/// std::basic_string<char> (std::string, PooledString). Thread: any.
template <class String>
void append_chunk(String& out, std::string_view data) {
  if (data.empty()) return;
  char size[16];
  auto r = std::to_chars(size, size + sizeof size, data.size(), 16);
  const size_t digits = static_cast<size_t>(r.ptr - size);
  out.reserve(out.size() + digits + data.size() + 4);
  out.append(size, digits).append("\r\n", 2).append(data).append("\r\n", 2);
}

/// Appends the last chunk and an empty trailer section ("0\r\n\r\n"). Thread: any.
void append_last_chunk(std::string& out);

}  // namespace berth::proxy::http::h1
