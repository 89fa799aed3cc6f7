// Header vocabulary shared by the HTTP/1 codec and the forwarder: well-known headers get an id (HP-3).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace berth::proxy::http {

enum class HeaderId : uint8_t {
  kOther = 0,
  kHost,
  kContentLength,
  kTransferEncoding,
  kConnection,
  kKeepAlive,
  kProxyConnection,
  kTe,
  kTrailer,
  kUpgrade,
  kExpect,
  kProxyAuthenticate,
  kProxyAuthorization,
  kXForwardedFor,
  kXForwardedProto,
  kXForwardedHost,
  kXForwardedPort,
  kXForwardedServer,
  kXRealIp,
  kXForwardedUri,
  kXForwardedMethod,
  kXForwardedPrefix,
  kXForwardedTlsClientCert,
  kXForwardedTlsClientCertInfo,
  kCookie,
  kAuthorization,
  kAcceptEncoding,
  kContentType,
  kContentEncoding,
};

/// Maps a header name (any case) to its id; kOther when not well known. Thread: any.
HeaderId header_id(std::string_view name);

/// True for the X-Forwarded-* / X-Real-Ip family that Traefik strips from untrusted peers.
inline bool is_forwarded_family(HeaderId id) {
  return id >= HeaderId::kXForwardedFor && id <= HeaderId::kXForwardedTlsClientCertInfo;
}

/// True for hop-by-hop headers a proxy never forwards (RFC 9110 7.6.1 plus Go's list).
/// Transfer-Encoding is handled by the framing code, not here.
inline bool is_hop_by_hop(HeaderId id) {
  switch (id) {
    case HeaderId::kConnection:
    case HeaderId::kKeepAlive:
    case HeaderId::kProxyConnection:
    case HeaderId::kTe:
    case HeaderId::kTrailer:
    case HeaderId::kUpgrade:
    case HeaderId::kProxyAuthenticate:
    case HeaderId::kProxyAuthorization:
      return true;
    default:
      return false;
  }
}

struct Header {
  std::string_view name;
  std::string_view value;
  HeaderId id = HeaderId::kOther;
};

/// Whether a comma-separated header value (Connection, TE, Accept...) lists `token`, ignoring case
/// and the blanks around items. Thread: any.
bool lists_token(std::string_view list, std::string_view token);

/// The value of the cookie `name` in the request's Cookie headers (RFC 6265 5.4), or empty. Thread: any.
std::string_view find_cookie(const std::vector<Header>& headers, std::string_view name);

}  // namespace berth::proxy::http
