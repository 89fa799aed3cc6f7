// libFuzzer target: the Authorization header parsers of basicAuth and digestAuth and the digest
// check (their input is any client's header). Must never crash or read out of bounds.
#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/middleware/htpasswd.h"

using namespace berth::proxy::middleware;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string user, password;
  (void)BasicAuthUsers::parse_authorization(text, user, password);
  static const DigestAuth auth("traefik", {{"dave", "traefik", "e550659286a2a9ce47e3a9da5e97f84d"}},
                               berth::Duration(300'000), "fuzz-secret");
  auto fields = parse_digest_authorization(text);
  if (fields) (void)auth.verify(*fields, "GET", "/x");
  return 0;
}
