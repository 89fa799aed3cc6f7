// The cryptography of ACME (RFC 8555, 7515, 7638, 8737) on OpenSSL 3: keys, JWS, CSRs, the
// TLS-ALPN-01 challenge certificate and reading certificates' dates. Thread: any.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace berth::acme {

/// certificatesResolvers.<r>.acme.keyType (Traefik's spellings) and account keys.
enum class KeyType { kEC256, kEC384, kRSA2048, kRSA4096, kRSA8192 };

/// "EC256", "EC384", "RSA2048", "RSA4096", "RSA8192" (case-insensitive); anything else is an Error
/// listing them.
Result<KeyType> parse_key_type(std::string_view text);
std::string_view key_type_name(KeyType type);

/// A private key (owned). Copyable (shares the EVP_PKEY).
class Key {
 public:
  Key() = default;
  explicit Key(std::shared_ptr<EVP_PKEY> pkey) : pkey_(std::move(pkey)) {}

  /// A fresh key; RSA keys have e = 65537. RSA8192 takes seconds (tens in debug builds).
  static Result<Key> generate(KeyType type);
  /// PEM ("-----BEGIN ... PRIVATE KEY-----": PKCS#8, SEC1 "EC PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY";
  /// unencrypted). Only RSA and EC P-256 / P-384 keys are accepted: the keys ACME can sign with.
  static Result<Key> from_pem(std::string_view pem);
  /// DER: PKCS#1 RSA, SEC1 EC or PKCS#8 (Traefik's acme.json stores account keys as base64 DER).
  /// Same key types as from_pem; bytes after the DER structure are an error.
  static Result<Key> from_der(std::string_view der);

  std::string to_pem() const;  ///< PKCS#8 PEM ("PRIVATE KEY"); empty for an empty Key
  /// PKCS#1 for RSA (Go's x509.MarshalPKCS1PrivateKey, what Traefik writes), SEC1 with the named
  /// curve and the public key for EC (x509.MarshalECPrivateKey); empty for an empty Key.
  std::string to_der() const;
  bool is_ec() const;
  /// "ES256" (P-256), "ES384" (P-384) or "RS256" (RSA); empty for an empty or other key.
  std::string jws_alg() const;
  /// The public JWK as canonical JSON (RFC 7638 member order: EC {"crv","kty","x","y"}, RSA {"e","kty","n"};
  /// no whitespace; EC coordinates at the curve's full width). Works on public-only keys too.
  /// Empty for an empty or other key.
  std::string jwk_json() const;
  /// base64url(SHA-256(jwk_json())): the account key's thumbprint (RFC 7638); empty when jwk_json() is.
  std::string thumbprint() const;
  EVP_PKEY* get() const { return pkey_.get(); }
  explicit operator bool() const { return pkey_ != nullptr; }

 private:
  std::shared_ptr<EVP_PKEY> pkey_;
};

std::string base64url(std::string_view bytes);        ///< no padding
/// Padding optional; whitespace and characters outside the URL alphabet are errors.
Result<std::string> base64url_decode(std::string_view text);
std::string base64(std::string_view bytes);           ///< standard, padded
/// Accepts missing padding and whitespace anywhere (line breaks); other characters are errors.
Result<std::string> base64_decode(std::string_view text);

/// A flattened JWS (RFC 7515 JSON serialization, as ACME wants it):
/// {"protected": b64u(header), "payload": b64u(payload), "signature": b64u(sig)}.
/// The header holds "alg", "nonce", "url", and either "kid" (when `kid` is not empty) or "jwk".
/// An empty `nonce` leaves "nonce" out (RFC 8555 7.3.5: keyChange's inner JWS has none).
/// `post_as_get` gives payload "" (POST-as-GET) whatever `payload` holds; otherwise `payload` is JSON.
/// ES256/ES384 signatures are r||s (fixed width), not DER.
Result<std::string> sign_jws(const Key& key, std::string_view kid, std::string_view nonce, std::string_view url,
                             std::string_view payload, bool post_as_get = false);

/// RFC 8555 7.3.4 External Account Binding: a JWS over the account's JWK, signed HS256 with the
/// base64url-decoded `hmac_encoded` key: {"protected": b64u({"alg":"HS256","kid":kid,"url":url}), ...}.
/// The result is the JSON object for newAccount's "externalAccountBinding". `hmac_encoded` may also be
/// standard base64, padded or not, with surrounding whitespace.
Result<std::string> sign_eab(const Key& account, std::string_view eab_kid, std::string_view hmac_encoded,
                             std::string_view url);

/// A PKCS#10 CSR (DER) for `domains` (first = CN, all = SANs as dNSNames, in order), signed with
/// `key` over SHA-256. A first domain longer than 64 characters (a CN's limit) is left out of the
/// subject, which RFC 8555 allows. No domain or no key is an Error.
Result<std::string> make_csr(const Key& key, const std::vector<std::string>& domains);

/// RFC 8737: a self-signed certificate for `domain` (CN and the only dNSName) carrying the critical
/// id-pe-acmeIdentifier (1.3.6.1.5.5.7.1.31) extension with the SHA-256 of `key_authorization`, valid
/// from an hour ago for seven days, as PEM, with its key (a fresh P-256 key) as PKCS#8 PEM.
struct ChallengeCertificate {
  std::string cert_pem;
  std::string key_pem;
};
Result<ChallengeCertificate> make_tls_alpn_certificate(std::string_view domain, std::string_view key_authorization);

/// What berth needs from a certificate (the first of a PEM chain); an Error when the text holds none.
struct CertificateInfo {
  std::chrono::system_clock::time_point not_before, not_after;
  std::vector<std::string> dns_names;  ///< subjectAltName DNS entries (lower-case)
  std::string issuer_cn;               ///< issuer common name (preferredChain compares it); empty if none
};
Result<CertificateInfo> read_certificate(std::string_view pem_chain);
/// The issuer CN of the last certificate of a PEM chain (the one closest to the root).
Result<std::string> chain_top_issuer(std::string_view pem_chain);

}  // namespace berth::acme
