// Traefik's passTLSClientCert middleware: the client certificate of a mutual-TLS connection (the
// leaf and the chain the client sent) passed to the backend as X-Forwarded-Tls-Client-Cert (PEM
// without armour or newlines, URL-escaped, certificates joined with ",") and/or
// X-Forwarded-Tls-Client-Cert-Info (chosen fields, `Subject="C=..,CN=..";Issuer="..";NB="..";
// NA="..";SAN=".."`, URL-escaped), byte for byte as Traefik renders them.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "config/dynamic_config.h"
#include "proxy/middleware/middleware.h"

namespace berth::proxy::middleware {

/// Compiles a passTLSClientCert middleware. Thread: control.
std::unique_ptr<Middleware> compile_pass_tls_client_cert(const config::MiddlewareConfig& c);

/// The header values for the peer certificates of `ssl` (empty when the client sent none).
/// Exposed for tests. Thread: any.
std::string render_client_cert_pem(SSL* ssl);
std::string render_client_cert_info(SSL* ssl, const config::MiddlewareConfig& options);

}  // namespace berth::proxy::middleware
