// ClientHello parsing (RFC 8446 4.1.2, RFC 6066 3); see client_hello.h.
#include "proxy/tls/client_hello.h"

#include <optional>
#include <string_view>

namespace berth::proxy::tls {
namespace {

constexpr uint8_t kHandshakeRecord = 22;
constexpr uint8_t kClientHello = 1;
constexpr size_t kRecordHeader = 5;
constexpr size_t kMaxRecord = 16384 + 2048;          // TLSCiphertext limit; a hello is plaintext
constexpr size_t kMaxHello = 64 * 1024;              // bounds the copy of a hello split over records

// A bounds-checked reader over a byte span.
struct Reader {
  std::span<const uint8_t> b;
  size_t pos = 0;
  bool ok = true;
  size_t left() const { return b.size() - pos; }
  uint32_t number(size_t width) {
    if (left() < width) {
      ok = false;
      return 0;
    }
    uint32_t v = 0;
    for (size_t i = 0; i < width; ++i) v = (v << 8) | b[pos++];
    return v;
  }
  std::span<const uint8_t> bytes(size_t n) {
    if (left() < n) {
      ok = false;
      return {};
    }
    auto s = b.subspan(pos, n);
    pos += n;
    return s;
  }
  /// A vector with a `width`-byte length prefix.
  std::span<const uint8_t> vector(size_t width) { return bytes(number(width)); }
};

// The body of a ClientHello handshake message (after its 4-byte header).
HelloStatus parse_body(std::span<const uint8_t> body, std::string& server_name, bool* acme_tls) {
  Reader r{body};
  r.bytes(2 + 32);  // legacy_version, random
  r.vector(1);      // legacy_session_id
  r.vector(2);      // cipher_suites
  r.vector(1);      // legacy_compression_methods
  if (!r.ok) return HelloStatus::kMalformed;
  if (r.left() == 0) return HelloStatus::kDone;  // no extensions at all
  Reader extensions{r.vector(2)};
  if (!r.ok) return HelloStatus::kMalformed;
  while (extensions.left() > 0) {
    uint32_t type = extensions.number(2);
    Reader data{extensions.vector(2)};
    if (!extensions.ok) return HelloStatus::kMalformed;
    if (type == 16 && acme_tls != nullptr) {  // application_layer_protocol_negotiation
      Reader protocols{data.vector(2)};
      while (data.ok && protocols.left() > 0) {
        auto name = protocols.vector(1);
        if (!protocols.ok) return HelloStatus::kMalformed;
        *acme_tls |= std::string_view(reinterpret_cast<const char*>(name.data()), name.size()) == "acme-tls/1";
      }
      if (!data.ok) return HelloStatus::kMalformed;
      continue;
    }
    if (type != 0) continue;  // server_name
    Reader list{data.vector(2)};
    while (data.ok && list.left() > 0) {
      uint32_t name_type = list.number(1);
      auto name = list.vector(2);
      if (!list.ok) return HelloStatus::kMalformed;
      if (name_type != 0 || !server_name.empty()) continue;  // host_name, the first one
      server_name.assign(reinterpret_cast<const char*>(name.data()), name.size());
    }
    if (!data.ok) return HelloStatus::kMalformed;
  }
  for (char& c : server_name)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  if (!server_name.empty() && server_name.back() == '.') server_name.pop_back();
  return HelloStatus::kDone;
}

}  // namespace

HelloStatus parse_client_hello(std::span<const uint8_t> bytes, std::string& server_name, bool* acme_tls) {
  server_name.clear();
  if (acme_tls != nullptr) *acme_tls = false;
  if (bytes.empty()) return HelloStatus::kNeedMore;
  if (bytes[0] != kHandshakeRecord) return HelloStatus::kNotTls;
  if (bytes.size() >= 2 && bytes[1] != 3) return HelloStatus::kNotTls;  // record version 3.x
  // The handshake message, from the payloads of consecutive handshake records. Usually one record
  // holds it all and it is parsed in place; otherwise the payloads are joined in `joined`.
  std::span<const uint8_t> message;
  std::string joined;
  size_t pos = 0;
  while (true) {
    if (bytes.size() - pos < kRecordHeader) return HelloStatus::kNeedMore;
    if (bytes[pos] != kHandshakeRecord || bytes[pos + 1] != 3) return HelloStatus::kMalformed;
    size_t length = (size_t{bytes[pos + 3]} << 8) | bytes[pos + 4];
    if (length == 0 || length > kMaxRecord) return HelloStatus::kMalformed;
    if (bytes.size() - pos - kRecordHeader < length) return HelloStatus::kNeedMore;
    auto payload = bytes.subspan(pos + kRecordHeader, length);
    pos += kRecordHeader + length;
    if (message.empty() && joined.empty()) {
      message = payload;
    } else {
      if (joined.empty()) joined.assign(reinterpret_cast<const char*>(message.data()), message.size());
      joined.append(reinterpret_cast<const char*>(payload.data()), payload.size());
      if (joined.size() > kMaxHello + 4) return HelloStatus::kMalformed;
      message = std::span(reinterpret_cast<const uint8_t*>(joined.data()), joined.size());
    }
    if (message.size() < 4) continue;
    if (message[0] != kClientHello) return HelloStatus::kMalformed;
    size_t hello = (size_t{message[1]} << 16) | (size_t{message[2]} << 8) | message[3];
    if (hello > kMaxHello) return HelloStatus::kMalformed;
    if (message.size() - 4 >= hello) return parse_body(message.subspan(4, hello), server_name, acme_tls);
  }
}

}  // namespace berth::proxy::tls
