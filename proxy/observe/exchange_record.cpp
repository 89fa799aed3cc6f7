// The label vocabulary of ExchangeRecord (see exchange_record.h).
#include "proxy/observe/exchange_record.h"

#include "base/text.h"

namespace berth::proxy::observe {

std::string_view protocol_name(Protocol p) {
  switch (p) {
    case Protocol::kHttp: return "http";
    case Protocol::kWebSocket: return "websocket";
    case Protocol::kSse: return "sse";
    case Protocol::kGrpc: return "grpc";
    case Protocol::kGrpcWeb: return "grpc-web";
  }
  return "http";
}

std::string_view metric_method(std::string_view method) {
  static constexpr std::string_view kStandard[] = {"GET",     "HEAD",  "POST",  "PUT", "DELETE",
                                                   "CONNECT", "OPTIONS", "TRACE", "PATCH", "PRI"};
  for (std::string_view m : kStandard)
    if (method == m) return m;
  // Traefik checks UTF-8 validity first (a method is a token, so this only catches garbage).
  for (size_t i = 0; i < method.size();) {
    const size_t n = utf8_sequence_length(method.substr(i));
    if (n == 0) return "NON_UTF8_HTTP_METHOD";
    i += n;
  }
  return "EXTENSION_METHOD";
}

}  // namespace berth::proxy::observe
