// libFuzzer target: the ClientHello SNI (and ALPN acme-tls/1) parser on arbitrary bytes, whole and cut short.
// Any crash, sanitizer report or broken invariant below is a bug.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>

#include "proxy/tls/client_hello.h"

using namespace berth::proxy::tls;

namespace {

// Parses the first `n` bytes from a heap block of exactly `n` bytes, so ASan sees any read past them.
HelloStatus parse_prefix(const uint8_t* data, size_t n, std::string& name) {
  std::unique_ptr<uint8_t[]> exact(new uint8_t[n]);
  if (n > 0) std::memcpy(exact.get(), data, n);
  bool acme = false;
  return parse_client_hello(std::span<const uint8_t>(exact.get(), n), name, &acme);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string name = "stale";
  bool acme = true;  // must be reset
  HelloStatus whole = parse_client_hello(std::span<const uint8_t>(data, size), name, &acme);
  if (acme && (whole == HelloStatus::kNotTls || whole == HelloStatus::kNeedMore)) std::abort();
  switch (whole) {
    case HelloStatus::kNotTls:
    case HelloStatus::kNeedMore:
    case HelloStatus::kMalformed:
      break;
    case HelloStatus::kDone:
      if (name.size() > size) std::abort();
      for (char c : name)
        if (c >= 'A' && c <= 'Z') std::abort();  // lower-cased
      break;
    default:
      std::abort();
  }
  // The caller stops peeking at the first answer that is not kNeedMore: that answer must be the one
  // the whole input gives (bytes after a ClientHello are ignored; a refusal stays a refusal).
  for (size_t n : {size / 2, size > 0 ? size - 1 : 0}) {
    std::string part;
    HelloStatus early = parse_prefix(data, n, part);
    if (early == HelloStatus::kNeedMore) continue;
    if (early != whole) std::abort();
    if (early == HelloStatus::kDone && part != name) std::abort();
  }
  return 0;
}
