// The client side of TLS to servers (https:// server URLs): one SSL_CTX per serversTransport,
// built once per snapshot on the control thread, with Traefik's options: rootCAs (else the
// system's trust store), insecureSkipVerify, serverName, client certificates, peerCertURI.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "config/static_config.h"

namespace berth::proxy::tls {

class ClientContext {
 public:
  /// Reads rootCAs and client certificates now; an error names the transport (`where`). Thread: control.
  static Result<std::shared_ptr<const ClientContext>> build(const config::ServersTransportConfig& transport,
                                                           const std::string& where);
  ~ClientContext();
  ClientContext(const ClientContext&) = delete;
  ClientContext& operator=(const ClientContext&) = delete;

  /// A client SSL for a server whose URL names `host`: SNI and the verified name are serverName
  /// if set, else `host` (an IP address is verified as an IP SAN and sent no SNI); ALPN offers
  /// h2 and http/1.1 (only http/1.1 with disableHTTP2). Null if OpenSSL fails. The SSL keeps the SSL_CTX alive. Thread: any.
  SSL* new_ssl(std::string_view host) const;
  /// After the handshake: peerCertURI, if set, is among the server certificate's URI SANs.
  /// Thread: any.
  bool peer_matches(SSL* ssl) const;
  /// The name new_ssl(host) verifies (for pooling: connections to one address verified under
  /// different names are not interchangeable).
  std::string_view verified_name(std::string_view host) const;
  /// A digest of what connections made with this context were set up with (verification, names,
  /// ALPN, the rootCAs' and client certificates' contents), for pool keys: after a reload that
  /// changes any of it, connections made before are not reused. Thread: any.
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  ClientContext() = default;
  SSL_CTX* ctx_ = nullptr;
  std::string fingerprint_;
  std::string server_name_;
  std::string peer_cert_uri_;
  bool verify_ = true;
};

}  // namespace berth::proxy::tls
