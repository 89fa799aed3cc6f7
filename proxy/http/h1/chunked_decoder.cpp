// Chunked-body decoding and encoding; see chunked_decoder.h. A byte-at-a-time state machine for the
// framing, with payload taken in whole runs so the data itself is never looked at.
#include "proxy/http/h1/chunked_decoder.h"

#include <algorithm>

namespace berth::proxy::http::h1 {
namespace {

inline int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 9110 tchar, the bytes of a field name.
inline bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

// Control characters other than HTAB may not appear in extensions or field values.
inline bool is_forbidden_ctl(unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; }

}  // namespace

ChunkedDecoder::Status ChunkedDecoder::fail(const char* why, size_t at, size_t& consumed) {
  state_ = State::kError;
  error_ = why;
  consumed = at;
  return Status::kError;
}

ChunkedDecoder::Status ChunkedDecoder::decode(std::string_view in, size_t& consumed, std::string_view& data) {
  data = {};
  size_t i = 0;
  const size_t n = in.size();
  if (state_ == State::kError) {
    consumed = 0;
    return Status::kError;
  }
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(in[i]);
    switch (state_) {
      case State::kSize: {
        int digit = hex_value(static_cast<char>(c));
        if (digit >= 0) {
          // Checked before the shift so no value of any length can overflow.
          const uint64_t max = limits_.max_chunk_size;
          if (size_ > (max >> 4) || (size_ << 4) + static_cast<uint64_t>(digit) > max)
            return fail("chunk size too large", i, consumed);
          size_ = size_ * 16 + static_cast<uint64_t>(digit);
          has_digit_ = true;
        } else if (!has_digit_) {
          return fail("chunk size is not a hex number", i, consumed);
        } else if (c == ' ' || c == '\t') {
          state_ = State::kSizeWs;
        } else if (c == ';') {
          state_ = State::kExt;
        } else if (c == '\r') {
          state_ = State::kSizeLf;
        } else {
          return fail("chunk size is not a hex number", i, consumed);
        }
        if (state_ != State::kSizeLf && ++line_ > limits_.max_line)
          return fail("chunk size line too long", i, consumed);
        ++i;
        break;
      }
      case State::kSizeWs:
        // BWS before ";" (RFC 9112 7.1.1); trailing whitespace is tolerated as ChunkedFramer does.
        if (c == ';') state_ = State::kExt;
        else if (c == '\r') state_ = State::kSizeLf;
        else if (c != ' ' && c != '\t') return fail("junk after chunk size", i, consumed);
        if (state_ != State::kSizeLf && ++line_ > limits_.max_line)
          return fail("chunk size line too long", i, consumed);
        ++i;
        break;
      case State::kExt:
        if (c == '\r') {
          state_ = State::kSizeLf;
        } else {
          if (is_forbidden_ctl(c)) return fail("control character in chunk extension", i, consumed);
          if (++line_ > limits_.max_line) return fail("chunk size line too long", i, consumed);
        }
        ++i;
        break;
      case State::kSizeLf:
        if (c != '\n') return fail("chunk size line not ended by CRLF", i, consumed);
        ++i;
        line_ = 0;
        has_digit_ = false;
        state_ = size_ == 0 ? State::kTrailerStart : State::kData;
        break;
      case State::kData: {
        const size_t take = static_cast<size_t>(std::min<uint64_t>(size_, n - i));
        size_ -= take;
        if (size_ == 0) state_ = State::kDataCr;
        data = in.substr(i, take);
        consumed = i + take;
        return Status::kData;
      }
      case State::kDataCr:
        if (c != '\r') return fail("chunk data not followed by CRLF", i, consumed);
        ++i;
        state_ = State::kDataLf;
        break;
      case State::kDataLf:
        if (c != '\n') return fail("chunk data not followed by CRLF", i, consumed);
        ++i;
        state_ = State::kSize;
        break;
      case State::kTrailerStart:
        if (c == '\r') state_ = State::kFinalLf;
        else if (is_tchar(c)) state_ = State::kTrailerName;
        else return fail("malformed trailer field", i, consumed);
        if (trailers_ != nullptr && c != '\r') trailers_->push_back(c);
        if (++line_ > limits_.max_trailers) return fail("trailer section too long", i, consumed);
        ++i;
        break;
      case State::kTrailerName:
        if (c == ':') state_ = State::kTrailerValue;
        else if (!is_tchar(c)) return fail("malformed trailer field", i, consumed);
        if (trailers_ != nullptr) trailers_->push_back(c);
        if (++line_ > limits_.max_trailers) return fail("trailer section too long", i, consumed);
        ++i;
        break;
      case State::kTrailerValue:
        if (c == '\r') state_ = State::kTrailerLf;
        else if (is_forbidden_ctl(c)) return fail("control character in trailer field", i, consumed);
        if (trailers_ != nullptr) trailers_->push_back(c);
        if (++line_ > limits_.max_trailers) return fail("trailer section too long", i, consumed);
        ++i;
        break;
      case State::kTrailerLf:
        if (c != '\n') return fail("trailer field not ended by CRLF", i, consumed);
        if (trailers_ != nullptr) trailers_->push_back('\n');
        ++i;
        state_ = State::kTrailerStart;
        break;
      case State::kFinalLf:
        if (c != '\n') return fail("chunked body not ended by CRLF", i, consumed);
        state_ = State::kDone;
        consumed = i + 1;
        return Status::kDone;
      case State::kDone:
        consumed = i;
        return Status::kDone;
      case State::kError:
        break;  // unreachable: handled before the loop
    }
  }
  consumed = i;
  return state_ == State::kDone ? Status::kDone : Status::kNeedMore;
}

void append_last_chunk(std::string& out) { out.append("0\r\n\r\n", 5); }

}  // namespace berth::proxy::http::h1
