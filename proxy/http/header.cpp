// Header name -> id lookup, by length then case-insensitive compare.
#include "proxy/http/header.h"

#include "base/text.h"

namespace berth::proxy::http {

HeaderId header_id(std::string_view name) {
  struct Entry {
    std::string_view name;
    HeaderId id;
  };
  static constexpr Entry kKnown[] = {
      {"host", HeaderId::kHost},
      {"content-length", HeaderId::kContentLength},
      {"transfer-encoding", HeaderId::kTransferEncoding},
      {"connection", HeaderId::kConnection},
      {"keep-alive", HeaderId::kKeepAlive},
      {"proxy-connection", HeaderId::kProxyConnection},
      {"te", HeaderId::kTe},
      {"trailer", HeaderId::kTrailer},
      {"upgrade", HeaderId::kUpgrade},
      {"expect", HeaderId::kExpect},
      {"proxy-authenticate", HeaderId::kProxyAuthenticate},
      {"proxy-authorization", HeaderId::kProxyAuthorization},
      {"x-forwarded-for", HeaderId::kXForwardedFor},
      {"x-forwarded-proto", HeaderId::kXForwardedProto},
      {"x-forwarded-host", HeaderId::kXForwardedHost},
      {"x-forwarded-port", HeaderId::kXForwardedPort},
      {"x-forwarded-server", HeaderId::kXForwardedServer},
      {"x-real-ip", HeaderId::kXRealIp},
      {"x-forwarded-uri", HeaderId::kXForwardedUri},
      {"x-forwarded-method", HeaderId::kXForwardedMethod},
      {"x-forwarded-prefix", HeaderId::kXForwardedPrefix},
      {"x-forwarded-tls-client-cert", HeaderId::kXForwardedTlsClientCert},
      {"x-forwarded-tls-client-cert-info", HeaderId::kXForwardedTlsClientCertInfo},
      {"cookie", HeaderId::kCookie},
      {"authorization", HeaderId::kAuthorization},
      {"accept-encoding", HeaderId::kAcceptEncoding},
      {"content-type", HeaderId::kContentType},
      {"content-encoding", HeaderId::kContentEncoding},
  };
  // Most headers are not well known; a first-letter filter keeps the common case cheap.
  if (name.empty()) return HeaderId::kOther;
  char c = lower_ascii(name[0]);
  if (c != 'h' && c != 'c' && c != 't' && c != 'k' && c != 'p' && c != 'u' && c != 'e' && c != 'x' && c != 'a')
    return HeaderId::kOther;
  for (const auto& e : kKnown)
    if (e.name.size() == name.size() && e.name[0] == c && iequals(e.name, name)) return e.id;
  return HeaderId::kOther;
}

bool lists_token(std::string_view list, std::string_view token) {
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    if (iequals(trim(list.substr(start, comma - start)), token)) return true;
    start = comma + 1;
  }
  return false;
}

std::string_view find_cookie(const std::vector<Header>& headers, std::string_view name) {
  for (const auto& h : headers) {
    if (h.id != HeaderId::kCookie) continue;
    std::string_view rest = h.value;
    while (!rest.empty()) {
      size_t semi = rest.find(';');
      std::string_view pair = trim(rest.substr(0, semi));
      rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi + 1);
      size_t eq = pair.find('=');
      if (eq == std::string_view::npos || trim(pair.substr(0, eq)) != name) continue;
      std::string_view value = trim(pair.substr(eq + 1));
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
      return value;
    }
  }
  return {};
}

}  // namespace berth::proxy::http
