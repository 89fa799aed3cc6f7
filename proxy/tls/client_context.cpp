// TLS client contexts for servers; see client_context.h.
#include "proxy/tls/client_context.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/address.hpp>
#include <charconv>
#include <cstdint>

#include "proxy/tls/certificate_store.h"

namespace berth::proxy::tls {
namespace {

std::string last_openssl_error() {
  char text[256] = {};
  ERR_error_string_n(ERR_get_error(), text, sizeof text);
  ERR_clear_error();
  return text;
}

bool is_ip(std::string_view host) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(std::string(host), ec);
  return !ec;
}

}  // namespace

ClientContext::~ClientContext() {
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

Result<std::shared_ptr<const ClientContext>> ClientContext::build(const config::ServersTransportConfig& transport,
                                                                 const std::string& where) {
  std::shared_ptr<ClientContext> out(new ClientContext());
  auto fail = [&](const std::string& message) { return Error{where, "serversTransport: " + message}; };
  out->ctx_ = SSL_CTX_new(TLS_client_method());
  if (out->ctx_ == nullptr) return fail(last_openssl_error());
  SSL_CTX* ctx = out->ctx_;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);  // Go's client default
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  // HTTP/2 when the server offers it (Go's transport, so Traefik, does the same), unless disableHTTP2.
  static constexpr unsigned char kH2AndHttp11[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  static constexpr unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  if (transport.disable_http2) SSL_CTX_set_alpn_protos(ctx, kHttp11, sizeof kHttp11);
  else SSL_CTX_set_alpn_protos(ctx, kH2AndHttp11, sizeof kH2AndHttp11);
  out->verify_ = !transport.insecure_skip_verify;
  out->server_name_ = transport.server_name;
  out->peer_cert_uri_ = transport.peer_cert_uri;
  // FNV-1a 64 over every setting a connection is made with; the files by their contents.
  uint64_t digest = 1469598103934665603ull;
  auto mix = [&digest](std::string_view part) {
    for (unsigned char c : part) digest = (digest ^ c) * 1099511628211ull;
    digest = (digest ^ 0xff) * 1099511628211ull;  // a separator, so parts do not run together
  };
  mix(out->verify_ ? "verify" : "insecure");
  mix(transport.disable_http2 ? "http/1.1" : "h2");
  mix(out->server_name_);
  mix(out->peer_cert_uri_);
  if (transport.root_cas.empty()) {
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) return fail("cannot load the system's CA certificates: " + last_openssl_error());
    mix("system CAs");
  } else {
    for (const auto& ca : transport.root_cas) {
      auto added = add_trusted(SSL_CTX_get_cert_store(ctx), ca, "rootCAs entry");
      if (!added) return fail("rootCAs: " + added.error().message);
      auto pem = read_pem_source(ca);
      mix(pem ? std::string_view(*pem) : std::string_view(ca));
    }
  }
  SSL_CTX_set_verify(ctx, out->verify_ ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  for (const auto& c : transport.certificates) {
    auto cert_pem = read_pem_source(c.cert_file);
    if (!cert_pem) return fail("certificates: " + cert_pem.error().message);
    auto key_pem = read_pem_source(c.key_file);
    if (!key_pem) return fail("certificates: " + key_pem.error().message);
    mix(*cert_pem);
    mix(*key_pem);
    auto cert = Certificate::from_pem(*cert_pem, *key_pem, c.cert_file);
    if (!cert) return fail("certificates: " + cert.error().message);
    // One client certificate per key type: OpenSSL sends the one the server's request allows.
    if (SSL_CTX_use_cert_and_key(ctx, (*cert)->leaf(), (*cert)->key(), (*cert)->chain(), 1) != 1)
      return fail("certificates: " + last_openssl_error());
  }
  // Session resumption with servers: OpenSSL's client cache is off; each pooled connection is long-lived.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  char hex[17];
  auto end = std::to_chars(hex, hex + 16, digest, 16).ptr;
  out->fingerprint_.assign(hex, end);
  return std::shared_ptr<const ClientContext>(std::move(out));
}

std::string_view ClientContext::verified_name(std::string_view host) const {
  return server_name_.empty() ? host : std::string_view(server_name_);
}

SSL* ClientContext::new_ssl(std::string_view host) const {
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) return nullptr;
  std::string name(verified_name(host));
  if (!name.empty() && name.front() == '[' && name.back() == ']') name = name.substr(1, name.size() - 2);
  const bool ip = is_ip(name);
  if (!ip && !name.empty()) SSL_set_tlsext_host_name(ssl, name.c_str());
  if (verify_ && !name.empty()) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) : X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
    if (ok != 1) {
      SSL_free(ssl);
      ERR_clear_error();
      return nullptr;
    }
  }
  return ssl;
}

bool ClientContext::peer_matches(SSL* ssl) const {
  if (peer_cert_uri_.empty()) return true;
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return false;
  bool found = false;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names) && !found; ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    if (n->type != GEN_URI) continue;
    const ASN1_IA5STRING* uri = n->d.uniformResourceIdentifier;
    found = std::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)), ASN1_STRING_length(uri)) ==
            peer_cert_uri_;
  }
  GENERAL_NAMES_free(names);
  X509_free(cert);
  return found;
}

}  // namespace berth::proxy::tls
