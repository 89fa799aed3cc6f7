// Reads the server name (SNI) from the ClientHello at the start of a TLS connection, before any
// SSL object exists, so the connection can get the SSL_CTX of the TLS options its host asks for
// (Traefik chooses options by SNI the same way, in its TCP router).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace berth::proxy::tls {

enum class HelloStatus : uint8_t {
  kNotTls,    ///< the bytes do not start a TLS handshake (plain HTTP, say)
  kNeedMore,  ///< a ClientHello so far; more bytes are needed to see all of it
  kDone,      ///< the whole ClientHello was seen (server_name set if it has one)
  kMalformed, ///< a TLS handshake record, but not a well-formed ClientHello
};

/// Looks at the first bytes a client sent. On kDone, `server_name` holds the host_name entry of
/// the server_name extension, lower-cased and without a trailing dot (empty when there is none).
/// The ClientHello may span several records; bytes after it are ignored. `acme_tls`, if given, says
/// whether the client offers the ALPN protocol "acme-tls/1" (an ACME TLS-ALPN-01 validation,
/// RFC 8737). Thread: any.
HelloStatus parse_client_hello(std::span<const uint8_t> bytes, std::string& server_name, bool* acme_tls = nullptr);

}  // namespace berth::proxy::tls
