// The compiled form of the dynamic `tls:` config: loaded certificates, Traefik's SNI choice, and one
// server SSL_CTX per TLS options set. Built once per snapshot on the control thread; TLS entry points read it.
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "config/tls_config.h"

namespace berth::proxy::tls {

enum class KeyType : uint8_t { kRsa, kEcdsa, kOther };

/// Whether the data plane serves HTTP/2 over TLS: until it does, ALPN never selects h2.
inline constexpr bool kServeHttp2 = true;

/// A certFile / keyFile / caFiles / rootCAs value: the inline PEM, or the content of the file it
/// names (at most 4 MiB). Thread: any.
Result<std::string> read_pem_source(const std::string& value);
/// Adds every certificate of `value` (a path or inline PEM) to `store`; `what` names an inline
/// value in errors ("rootCAs entry"). Thread: any.
Result<bool> add_trusted(X509_STORE* store, const std::string& value, std::string_view what);

/// A certificate with its chain and private key, loaded and checked (the key matches the leaf).
/// Immutable once built; shared by every store and SSL that serves it. Thread: any (read-only).
class Certificate {
 public:
  /// Parses PEM text: the leaf, then any chain certificates; the key in any PEM form (PKCS#8,
  /// PKCS#1, SEC1; an encrypted key is an error, never a prompt). `source` names it in messages
  /// and is kept (a path, or "inline certFile"). Errors name the problem only; the caller adds
  /// the place. Thread: any.
  static Result<std::shared_ptr<const Certificate>> from_pem(std::string_view cert_pem, std::string_view key_pem,
                                                            std::string source);
  /// Traefik's fallback certificate: self-signed, CN "TRAEFIK DEFAULT CERT", a random
  /// "<hex>.<hex>.traefik.default" DNS name, valid one year, here with an ECDSA P-256 key.
  /// Generated on the first call; every later call (every snapshot) returns the same one. Thread: any.
  static Result<std::shared_ptr<const Certificate>> generated_default();

  X509* leaf() const { return leaf_.get(); }
  EVP_PKEY* key() const { return key_.get(); }
  STACK_OF(X509)* chain() const { return chain_.get(); }  ///< intermediates, possibly empty
  KeyType key_type() const { return key_type_; }
  const std::string& common_name() const { return common_name_; }
  /// What SNI is matched against, as Traefik lists it: the subject CN, the DNS SANs and the IP
  /// SANs (as text), lower-cased, sorted, without duplicates. Wildcards stay as written ("*.a.com").
  const std::vector<std::string>& names() const { return names_; }
  std::chrono::system_clock::time_point not_after() const { return not_after_; }
  const std::string& source() const { return source_; }
  bool is_generated() const { return generated_; }
  /// The OCSP responder of the certificate's Authority Information Access, if any.
  const std::string& ocsp_url() const { return ocsp_url_; }
  /// The certificate that issued the leaf, among the chain; null if the chain lacks it.
  X509* issuer() const;
  /// Staples `der` (a verified, current OCSP response; null: none) to every handshake that serves
  /// this certificate from now on, including on connections that outlive the snapshot. Thread: any.
  void set_ocsp_response(std::shared_ptr<const std::string> der) const;

  struct X509Free { void operator()(X509* p) const { X509_free(p); } };
  struct KeyFree { void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); } };
  struct ChainFree { void operator()(STACK_OF(X509)* p) const { sk_X509_pop_free(p, X509_free); } };

 private:
  static Result<std::shared_ptr<const Certificate>> adopt(std::unique_ptr<X509, X509Free> leaf,
                                                          std::unique_ptr<EVP_PKEY, KeyFree> key,
                                                          std::unique_ptr<STACK_OF(X509), ChainFree> chain,
                                                          std::string source, bool generated);
  Certificate() = default;

  std::unique_ptr<X509, X509Free> leaf_;
  std::unique_ptr<EVP_PKEY, KeyFree> key_;
  std::unique_ptr<STACK_OF(X509), ChainFree> chain_;
  KeyType key_type_ = KeyType::kOther;
  std::string common_name_;
  std::vector<std::string> names_;
  std::chrono::system_clock::time_point not_after_{};
  std::string source_;
  bool generated_ = false;
  std::string ocsp_url_;
  struct OcspSlot* ocsp_ = nullptr;  ///< owned by the leaf's ex_data (freed with the last X509 reference)
};

/// One session ticket key, in nginx's 80-byte `ssl_session_ticket_key` layout: name, HMAC-SHA256
/// key, AES-256-CBC key.
struct TicketKey {
  std::array<uint8_t, 16> name{};
  std::array<uint8_t, 32> hmac_key{};
  std::array<uint8_t, 32> aes_key{};
  /// A fresh key from the CSPRNG. Thread: any.
  static TicketKey random();
  /// Reads the 80-byte layout above. Thread: any.
  static TicketKey from_bytes(const std::array<uint8_t, 80>& bytes);
};

/// The session ticket keys every SSL_CTX of every snapshot encrypts and decrypts tickets with, so a
/// ticket issued by one worker (or before a reload) resumes on any other. keys()[0] encrypts new
/// tickets; every key decrypts (a ticket under an older key is accepted and renewed).
/// Thread: keys() any (handshakes on every worker); set() and rotate() from one thread at a time
/// (the control thread), concurrently with the readers.
class TicketKeyRing {
 public:
  explicit TicketKeyRing(std::vector<TicketKey> keys);
  /// Replaces the keys (e.g. keys shared with other berth instances). Empty: no new tickets are
  /// issued and none resume.
  void set(std::vector<TicketKey> keys);
  /// A new random key becomes the encrypting one; the previous encrypting key stays to decrypt.
  void rotate();
  std::shared_ptr<const std::vector<TicketKey>> keys() const { return keys_.load(std::memory_order_acquire); }
  /// The ring stores use unless told otherwise: one random key, made on first use.
  static const std::shared_ptr<TicketKeyRing>& process_default();

 private:
  std::atomic<std::shared_ptr<const std::vector<TicketKey>>> keys_;
};

/// Certificates by name and one server SSL_CTX per TLS options set, compiled from a merged
/// TlsConfig. SNI selection is Traefik's (pkg/tls/certificate_store.go): the server name, lower-cased,
/// matches a certificate name exactly, else a wildcard name where leading labels are replaced by
/// '*' one at a time ("*.a.com", then "*.*.com", ...: `*.example.com` covers exactly one label),
/// else the store's default certificate (tls.stores.<store>.defaultCertificate, or the certificate
/// of defaultGeneratedCert's domains once one is loaded), else the generated default. Without SNI
/// the name is the local IP address the connection arrived on, if the data plane set it. Several
/// certificates for one name: the first of each key type is kept (Traefik keeps only the first of
/// an identical name set), so an ECDSA and an RSA certificate serve side by side and OpenSSL picks
/// by the client's signature algorithms and cipher list.
class CertificateStore {
 public:
  /// Loads every certificate (files are read now), indexes the stores (`default` is always there)
  /// and builds the SSL_CTX of each options set, plus `default` with Traefik's defaults when the
  /// config does not define it (unless merge dropped a conflicting `default`: then there is none,
  /// and routers using it must fail, as in Traefik). Each unusable element is a problem naming its
  /// place and file, and is left out; the rest still builds. An Error only when nothing can be
  /// built (the generated default certificate cannot be made). Thread: control.
  static Result<std::shared_ptr<const CertificateStore>> build(
      const config::TlsConfig& config, std::vector<Error>& problems,
      std::shared_ptr<TicketKeyRing> tickets = TicketKeyRing::process_default());

  ~CertificateStore();
  CertificateStore(const CertificateStore&) = delete;
  CertificateStore& operator=(const CertificateStore&) = delete;

  /// The server SSL_CTX for the options set `options_name` ("default" or "<name>@<provider>"), or
  /// nullptr when there is no such set or it failed to build. The store owns it; SSL_new(ctx)
  /// takes a reference, and everything its callbacks read lives as long as the SSL_CTX, so an SSL
  /// may outlive the store (a connection that outlives its snapshot). Its callbacks: the servername
  /// callback installs the selected certificate(s) on the SSL (SSL_certs_clear, then
  /// SSL_use_cert_and_key per key type) and enforces sniStrict (no match, SNI or not: fatal
  /// unrecognized_name alert); the ALPN callback picks in the options' order like Go (no overlap:
  /// no_application_protocol, except an h2 server and an http/1.1 client proceed without ALPN; a
  /// client offering acme-tls/1 is refused until ACME challenge certificates exist, since Traefik
  /// answers it only from its ACME store). Session tickets use the TicketKeyRing. Thread: any.
  SSL_CTX* context(std::string_view options_name) const;

  /// The certificate for `server_name` in `store` by exact or wildcard name, or nullptr. Among
  /// certificates for the chosen name: ECDSA if `ecdsa_ok` and there is one, else RSA, else any.
  /// Thread: any.
  const Certificate* find(std::string_view server_name, bool ecdsa_ok, std::string_view store = "default") const;
  /// find(), else the store's default certificate, else the generated one: never null. Thread: any.
  const Certificate* select(std::string_view server_name, bool ecdsa_ok, std::string_view store = "default") const;

  /// Every certificate that loaded, in config order (for metrics such as traefik_tls_certs_not_after).
  const std::vector<std::shared_ptr<const Certificate>>& certificates() const { return certificates_; }
  const std::shared_ptr<TicketKeyRing>& ticket_keys() const { return tickets_; }

  /// A server context for an ACME TLS-ALPN-01 validation (RFC 8737): TLS 1.2+, only the challenge
  /// certificate, and ALPN acme-tls/1 or nothing. Thread: control.
  static Result<std::shared_ptr<SSL_CTX>> acme_challenge_context(std::string_view cert_pem, std::string_view key_pem);

  /// Records the local IP address (text) the connection on `ssl` was accepted on: with no SNI,
  /// Traefik matches certificate IP SANs against it. Call before the handshake. Thread: worker.
  static void set_local_address(SSL* ssl, std::string_view ip);

  struct Index;  ///< one store's names (internal)

 private:
  CertificateStore() = default;

  std::vector<std::shared_ptr<const Certificate>> certificates_;
  std::map<std::string, std::shared_ptr<const Index>, std::less<>> stores_;
  std::map<std::string, SSL_CTX*, std::less<>> contexts_;
  std::shared_ptr<const Certificate> generated_;
  std::shared_ptr<TicketKeyRing> tickets_;
};

}  // namespace berth::proxy::tls
