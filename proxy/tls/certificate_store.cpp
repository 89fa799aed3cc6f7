// Certificate loading, Traefik's SNI choice and the per-options server SSL_CTXs with their callbacks;
// see certificate_store.h. Runs on the control thread at build; the callbacks run on workers in handshakes.
#include "proxy/tls/certificate_store.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <unordered_map>

#include "base/text.h"

namespace berth::proxy::tls {

struct OcspSlot {
  std::atomic<std::shared_ptr<const std::string>> der;
};

using config::TlsOptionsConfig;
using config::TlsVersion;

struct CertificateStore::Index {
  /// The certificates for one name: the first of each key type.
  struct Entry {
    std::shared_ptr<const Certificate> ecdsa, rsa, other;
    const Certificate* pick(bool ecdsa_ok) const {
      if (ecdsa_ok && ecdsa) return ecdsa.get();
      if (rsa) return rsa.get();
      if (ecdsa) return ecdsa.get();
      return other.get();
    }
  };
  // Lookups by string_view: a handshake matches its server name without allocating.
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Names = std::unordered_map<std::string, Entry, NameHash, std::equal_to<>>;

  Names exact;     // every name, as listed
  Names wildcard;  // names holding '*', trailing dots removed
  std::vector<std::shared_ptr<const Certificate>> all;
  std::shared_ptr<const Certificate> default_cert;  // never null once built

  static void fill(Entry& e, const std::shared_ptr<const Certificate>& cert) {
    auto& slot = cert->key_type() == KeyType::kEcdsa ? e.ecdsa : cert->key_type() == KeyType::kRsa ? e.rsa : e.other;
    if (!slot) slot = cert;
  }

  void add(const std::shared_ptr<const Certificate>& cert) {
    all.push_back(cert);
    for (const std::string& name : cert->names()) {
      fill(exact[name], cert);
      if (name.find('*') == std::string::npos) continue;
      std::string_view bare = name;
      while (!bare.empty() && bare.back() == '.') bare.remove_suffix(1);
      fill(wildcard[std::string(bare)], cert);
    }
  }

  // Traefik's matchDomain over every name, best match first: the exact name, then the candidates
  // with one, two, ... leading labels replaced by '*' (the order Traefik's sort of the matches gives).
  // `name` is lower-case already.
  const Entry* match(std::string_view name) const {
    if (auto it = exact.find(name); it != exact.end()) return &it->second;
    if (wildcard.empty() || name.size() > kMaxName) return nullptr;
    char candidate[2 * kMaxName + 2];  // each label (even an empty one) becomes one '*'
    size_t rest = 0;
    for (size_t stars = 1;; ++stars) {
      const size_t dot = name.find('.', rest);
      size_t n = 0;
      for (size_t s = 0; s < stars; ++s) {
        if (s > 0) candidate[n++] = '.';
        candidate[n++] = '*';
      }
      if (dot != std::string_view::npos) {
        name.substr(dot).copy(candidate + n, name.size() - dot);
        n += name.size() - dot;
      }
      if (auto it = wildcard.find(std::string_view(candidate, n)); it != wildcard.end()) return &it->second;
      if (dot == std::string_view::npos) return nullptr;
      rest = dot + 1;
    }
  }

  static constexpr size_t kMaxName = 255;  // the longest DNS name; OpenSSL refuses a longer SNI
};

namespace {

using X509Ptr = std::unique_ptr<X509, Certificate::X509Free>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Certificate::KeyFree>;
using ChainPtr = std::unique_ptr<STACK_OF(X509), Certificate::ChainFree>;
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

constexpr size_t kMaxPemBytes = 4 << 20;

// The oldest error on OpenSSL's queue as text, and an empty queue afterwards.
std::string openssl_error() {
  const unsigned long code = ERR_peek_error();
  std::string out;
  if (code != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    out = buf;
  } else {
    out = "unknown OpenSSL error";
  }
  ERR_clear_error();
  return out;
}

// Never prompts for a passphrase: an encrypted key fails to load.
int no_passphrase(char*, int, int, void*) { return -1; }

// A certFile / keyFile / caFiles value: the inline PEM, or the content of the file it names.
Result<std::string> read_source(const std::string& value) {
  if (config::is_inline_pem(value)) return value;
  std::ifstream in(value, std::ios::binary);
  if (!in) return Error{"", "cannot read " + value + ": " + std::strerror(errno)};
  std::string text;
  char buf[16384];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, size_t(in.gcount()));
    if (text.size() > kMaxPemBytes) return Error{"", value + " is larger than 4 MiB"};
  }
  if (in.bad()) return Error{"", "cannot read " + value + ": " + std::strerror(errno)};
  return text;
}

// How a value is named in messages: its path, or "inline <what>".
std::string describe(const std::string& value, std::string_view what) {
  return config::is_inline_pem(value) ? "inline " + std::string(what) : value;
}

BioPtr memory_bio(std::string_view text) { return BioPtr(BIO_new_mem_buf(text.data(), int(text.size()))); }

// Every certificate in a PEM text (none: empty, with the reason in `error`).
std::vector<X509Ptr> read_certificates(std::string_view pem, std::string& error) {
  std::vector<X509Ptr> out;
  BioPtr bio = memory_bio(pem);
  if (!bio) {
    error = openssl_error();
    return out;
  }
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr)) out.emplace_back(x);
  const unsigned long last = ERR_peek_last_error();
  if (ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE) {
    ERR_clear_error();  // the normal end of the text
  } else if (last != 0) {
    error = openssl_error();
    out.clear();
    return out;
  }
  if (out.empty()) error = "no PEM certificate found";
  return out;
}

// Go's net.IP.String(): dotted quad for IPv4 (and IPv4-mapped IPv6), RFC 5952 text for IPv6.
std::string ip_text(const unsigned char* bytes, int length) {
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  char buf[INET6_ADDRSTRLEN] = {};
  if (length == 4) return inet_ntop(AF_INET, bytes, buf, sizeof buf) ? buf : "";
  if (length != 16) return "";
  if (std::memcmp(bytes, kMapped, 12) == 0) return inet_ntop(AF_INET, bytes + 12, buf, sizeof buf) ? buf : "";
  return inet_ntop(AF_INET6, bytes, buf, sizeof buf) ? buf : "";
}

std::string asn1_text(const ASN1_STRING* s) {
  unsigned char* utf8 = nullptr;
  const int n = ASN1_STRING_to_UTF8(&utf8, s);
  if (n < 0) {
    ERR_clear_error();
    return {};
  }
  std::string out(reinterpret_cast<char*>(utf8), size_t(n));
  OPENSSL_free(utf8);
  return out;
}

// ---- the per-SSL_CTX state its callbacks read; freed with the SSL_CTX, so it outlives the store ----

struct ContextState {
  std::shared_ptr<const CertificateStore::Index> store;
  bool sni_strict = false;
  std::vector<std::string> alpn;  // server preference order
  std::shared_ptr<TicketKeyRing> tickets;
};

int context_state_index() {
  static const int index = SSL_CTX_get_ex_new_index(
      0, nullptr, nullptr, nullptr,
      [](void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<ContextState*>(ptr); });
  return index;
}

int local_address_index() {
  static const int index = SSL_get_ex_new_index(
      0, nullptr, nullptr, nullptr,
      [](void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<std::string*>(ptr); });
  return index;
}

// The OCSP response stapled for a leaf: hung on the X509 itself, so an SSL that outlives its
// snapshot (and its Certificate) still finds it, and it goes when the last reference does.
int ocsp_index() {
  static const int index = X509_get_ex_new_index(
      0, nullptr, nullptr, nullptr,
      [](void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<OcspSlot*>(ptr); });
  return index;
}

// Staples the selected certificate's OCSP response, when there is one.
int on_ocsp_status(SSL* ssl, void*) {
  X509* leaf = SSL_get_certificate(ssl);
  const auto* slot = leaf != nullptr ? static_cast<const OcspSlot*>(X509_get_ex_data(leaf, ocsp_index())) : nullptr;
  std::shared_ptr<const std::string> der = slot != nullptr ? slot->der.load(std::memory_order_acquire) : nullptr;
  if (!der || der->empty()) return SSL_TLSEXT_ERR_NOACK;
  auto* copy = static_cast<unsigned char*>(OPENSSL_malloc(der->size()));
  if (copy == nullptr) return SSL_TLSEXT_ERR_NOACK;
  std::memcpy(copy, der->data(), der->size());
  if (SSL_set_tlsext_status_ocsp_resp(ssl, copy, static_cast<long>(der->size())) != 1) {
    OPENSSL_free(copy);
    return SSL_TLSEXT_ERR_NOACK;
  }
  return SSL_TLSEXT_ERR_OK;
}

bool install(SSL* ssl, const Certificate& cert) {
  return SSL_use_cert_and_key(ssl, cert.leaf(), cert.key(), cert.chain(), 1) == 1;
}

// Picks the certificate(s) for the client's server name; the SSL starts with the fallback
// certificate, cleared here so a named RSA certificate never sits beside an unrelated ECDSA one.
int on_server_name(SSL* ssl, int* alert, void* arg) {
  const auto* state = static_cast<const ContextState*>(arg);
  using Index = CertificateStore::Index;
  char lowered[Index::kMaxName];
  std::string_view name;
  if (const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name); sni != nullptr && *sni != '\0') {
    const std::string_view raw = trim(sni);
    if (raw.size() <= Index::kMaxName) {
      for (size_t i = 0; i < raw.size(); ++i) lowered[i] = lower_ascii(raw[i]);
      name = std::string_view(lowered, raw.size());
    } else {
      name = raw;  // longer than any DNS name: looked up as sent
    }
  } else if (const auto* local = static_cast<const std::string*>(SSL_get_ex_data(ssl, local_address_index()))) {
    name = *local;
  }
  const Index::Entry* entry = state->store->match(name);
  if (entry == nullptr && state->sni_strict) {
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  SSL_certs_clear(ssl);
  bool ok = true;
  if (entry == nullptr) {
    ok = install(ssl, *state->store->default_cert);
  } else {
    for (const auto* cert : {entry->ecdsa.get(), entry->rsa.get(), entry->other.get()})
      if (cert != nullptr) ok = install(ssl, *cert) && ok;
  }
  if (!ok) {
    ERR_clear_error();
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}

// Go's negotiateALPN with the server's order first; see CertificateStore::context.
int on_alpn(SSL*, const unsigned char** out, unsigned char* out_length, const unsigned char* in,
            unsigned int in_length, void* arg) {
  const auto* state = static_cast<const ContextState*>(arg);
  auto offered = [&](std::string_view proto) -> const unsigned char* {
    for (unsigned int i = 0; i < in_length;) {
      const unsigned int n = in[i];
      if (i + 1 + n > in_length) return nullptr;
      if (std::string_view(reinterpret_cast<const char*>(in + i + 1), n) == proto) return in + i + 1;
      i += 1 + n;
    }
    return nullptr;
  };
  // acme-tls/1 is answered only by a challenge's own context (acme_challenge_context), which the
  // data plane picks when a challenge for the SNI is in progress; here it is refused, as Traefik does.
  if (offered("acme-tls/1") != nullptr) return SSL_TLSEXT_ERR_ALERT_FATAL;
  if (state->alpn.empty()) return SSL_TLSEXT_ERR_NOACK;
  bool http11_fallback = false;
  for (const std::string& proto : state->alpn) {
    if (proto == "h2" && !kServeHttp2) {
      // Not spoken yet: an h2 client falls back to HTTP/1.1 without ALPN.
      if (offered("h2") != nullptr || offered("http/1.1") != nullptr) http11_fallback = true;
      continue;
    }
    if (const unsigned char* at = offered(proto)) {
      *out = at;
      *out_length = static_cast<unsigned char>(proto.size());
      return SSL_TLSEXT_ERR_OK;
    }
    if (proto == "h2" && offered("http/1.1") != nullptr) http11_fallback = true;
  }
  return http11_fallback ? SSL_TLSEXT_ERR_NOACK : SSL_TLSEXT_ERR_ALERT_FATAL;
}

// Sessions the server-side cache of one options set keeps (the oldest leave first); about 1 KiB each.
constexpr long kSessionCacheSize = 20'000;

// Fetched once: an implicit fetch on every ticket would search the provider store each time.
const EVP_CIPHER* ticket_cipher() {
  static const EVP_CIPHER* cipher = [] {
    const EVP_CIPHER* fetched = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr);
    return fetched != nullptr ? fetched : EVP_aes_256_cbc();
  }();
  return cipher;
}

bool set_ticket_mac(EVP_MAC_CTX* hctx, const TicketKey& key) {
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, const_cast<uint8_t*>(key.hmac_key.data()),
                                        key.hmac_key.size()),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
      OSSL_PARAM_construct_end()};
  return EVP_MAC_CTX_set_params(hctx, params) == 1;
}

// OpenSSL's ticket key callback: 1 = done, 2 = decrypted and a new ticket is to be issued, 0 = no
// ticket / unknown key (full handshake), -1 = error.
int on_ticket_key(SSL* ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH], EVP_CIPHER_CTX* cctx,
                  EVP_MAC_CTX* hctx, int encrypt) {
  const auto* state =
      static_cast<const ContextState*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), context_state_index()));
  if (state == nullptr || !state->tickets) return 0;
  const auto keys = state->tickets->keys();
  if (!keys || keys->empty()) return 0;
  if (encrypt == 1) {
    const TicketKey& key = keys->front();
    if (RAND_bytes(iv, 16) != 1) return -1;
    std::memcpy(key_name, key.name.data(), key.name.size());
    if (EVP_EncryptInit_ex(cctx, ticket_cipher(), nullptr, key.aes_key.data(), iv) != 1) return -1;
    return set_ticket_mac(hctx, key) ? 1 : -1;
  }
  for (size_t i = 0; i < keys->size(); ++i) {
    const TicketKey& key = (*keys)[i];
    if (std::memcmp(key_name, key.name.data(), key.name.size()) != 0) continue;
    if (EVP_DecryptInit_ex(cctx, ticket_cipher(), nullptr, key.aes_key.data(), iv) != 1) return -1;
    if (!set_ticket_mac(hctx, key)) return -1;
    // TLS 1.3 clients should use a ticket once (RFC 8446 C.4): a resumed connection gets a fresh
    // one, as Go and nginx give; TLS 1.2 renews only tickets under an older key.
    return i == 0 && SSL_version(ssl) != TLS1_3_VERSION ? 1 : 2;
  }
  return 0;
}

int accept_any_certificate(int, X509_STORE_CTX*) { return 1; }

int openssl_version(TlsVersion v) {
  switch (v) {
    case TlsVersion::kTls10: return TLS1_VERSION;
    case TlsVersion::kTls11: return TLS1_1_VERSION;
    case TlsVersion::kTls12: return TLS1_2_VERSION;
    case TlsVersion::kTls13: return TLS1_3_VERSION;
  }
  return TLS1_2_VERSION;
}

std::string_view openssl_group(std::string_view go_curve) {
  if (go_curve == "CurveP256") return "P-256";
  if (go_curve == "CurveP384") return "P-384";
  if (go_curve == "CurveP521") return "P-521";
  return "X25519";
}

// The TLS 1.2 cipher list of an options set, in Go's preference order (the table's order). Empty
// `configured`: the suites of Go's tls.CipherSuites(), Traefik's default.
std::vector<std::string_view> tls12_suites(const std::vector<std::string>& configured) {
  std::vector<std::string_view> out;
  const auto& table = config::cipher_suite_names();
  for (const auto& suite : table) {
    if (suite.openssl.empty()) continue;
    bool wanted;
    if (configured.empty()) {
      // Go's default list since Go 1.22 (so Traefik v3's): ECDHE key exchange only (forward
      // secrecy), no 3DES, RC4 or CBC_SHA256. RSA key exchange stays available when configured.
      wanted = suite.go.starts_with("TLS_ECDHE_") && suite.go.find("3DES") == std::string_view::npos &&
               suite.go.find("RC4") == std::string_view::npos && !suite.go.ends_with("CBC_SHA256");
    } else {
      wanted = std::find(configured.begin(), configured.end(), suite.go) != configured.end();
    }
    if (wanted && std::find(out.begin(), out.end(), suite.openssl) == out.end()) out.push_back(suite.openssl);
  }
  return out;
}

std::string join(const std::vector<std::string_view>& parts, char sep) {
  std::string out;
  for (auto p : parts) {
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

// Loads a certificate + key pair given as config values; a problem (at `where`) and nullptr on failure.
std::shared_ptr<const Certificate> load_pair(const std::string& cert_value, const std::string& key_value,
                                             const std::string& where, std::string_view what,
                                             std::vector<Error>& problems) {
  const std::string prefix = std::string(what) + " " + describe(cert_value, "certFile") + " (key " +
                             describe(key_value, "keyFile") + "): ";
  auto cert_text = read_source(cert_value);
  if (!cert_text) {
    problems.push_back(Error{where, prefix + cert_text.error().message});
    return nullptr;
  }
  auto key_text = read_source(key_value);
  if (!key_text) {
    problems.push_back(Error{where, prefix + key_text.error().message});
    return nullptr;
  }
  auto cert = Certificate::from_pem(*cert_text, *key_text, describe(cert_value, "certFile"));
  if (!cert) {
    problems.push_back(Error{where, prefix + cert.error().message});
    return nullptr;
  }
  return *cert;
}

// Traefik's CertificateStore.GetCertificate: the first certificate whose names include every domain.
std::shared_ptr<const Certificate> certificate_for_domains(const CertificateStore::Index& index,
                                                           const std::vector<std::string>& domains) {
  for (const auto& cert : index.all) {
    const auto& names = cert->names();
    const bool all = std::all_of(domains.begin(), domains.end(), [&](const std::string& d) {
      return std::find(names.begin(), names.end(), d) != names.end();
    });
    if (all) return cert;
  }
  return nullptr;
}

// The key and self-signed leaf of Traefik's fallback certificate (see Certificate::generated_default).
Result<std::pair<X509Ptr, KeyPtr>> generate_default_pair() {
  KeyPtr key(EVP_EC_gen("P-256"));
  X509Ptr x(X509_new());
  if (!key || !x) return Error{"", "cannot generate the default certificate: " + openssl_error()};
  unsigned char serial[16];
  unsigned char random[32];
  if (RAND_bytes(serial, sizeof serial) != 1 || RAND_bytes(random, sizeof random) != 1)
    return Error{"", "cannot generate the default certificate: " + openssl_error()};
  serial[0] &= 0x7f;
  std::string hex;
  for (unsigned char b : random) {
    static constexpr char kDigits[] = "0123456789abcdef";
    hex += kDigits[b >> 4];
    hex += kDigits[b & 15];
  }
  const std::string san = "DNS:" + hex.substr(0, 32) + "." + hex.substr(32) + ".traefik.default";
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  bool ok = bn != nullptr && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x.get())) != nullptr;
  BN_free(bn);
  X509_NAME* name = X509_get_subject_name(x.get());
  ok = ok && X509_set_version(x.get(), 2) == 1 &&
       X509_gmtime_adj(X509_getm_notBefore(x.get()), 0) != nullptr &&
       X509_gmtime_adj(X509_getm_notAfter(x.get()), 365L * 24 * 3600) != nullptr &&
       X509_set_pubkey(x.get(), key.get()) == 1 &&
       X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                  reinterpret_cast<const unsigned char*>("TRAEFIK DEFAULT CERT"), -1, -1, 0) == 1 &&
       X509_set_issuer_name(x.get(), name) == 1;
  X509V3_CTX v3;
  X509V3_set_ctx(&v3, x.get(), x.get(), nullptr, nullptr, 0);
  const std::pair<int, std::string> extensions[] = {{NID_basic_constraints, "critical,CA:FALSE"},
                                                    {NID_key_usage, "critical,digitalSignature"},
                                                    {NID_subject_alt_name, san}};
  for (const auto& [nid, value] : extensions) {
    if (!ok) break;
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
    ok = ext != nullptr && X509_add_ext(x.get(), ext, -1) == 1;
    X509_EXTENSION_free(ext);
  }
  ok = ok && X509_sign(x.get(), key.get(), EVP_sha256()) > 0;
  if (!ok) return Error{"", "cannot generate the default certificate: " + openssl_error()};
  return std::pair<X509Ptr, KeyPtr>(std::move(x), std::move(key));
}

}  // namespace

// ---- Certificate ----

Result<std::string> read_pem_source(const std::string& value) { return read_source(value); }

Result<bool> add_trusted(X509_STORE* store, const std::string& value, std::string_view what) {
  auto text = read_source(value);
  if (!text) return text.error();
  std::string error;
  std::vector<X509Ptr> certs = read_certificates(*text, error);
  if (certs.empty()) return Error{"", "invalid certificate(s) in " + describe(value, what) + ": " + error};
  for (const auto& cert : certs)
    if (X509_STORE_add_cert(store, cert.get()) != 1) ERR_clear_error();  // a duplicate is fine
  return true;
}

Result<std::shared_ptr<const Certificate>> Certificate::from_pem(std::string_view cert_pem, std::string_view key_pem,
                                                                std::string source) {
  std::string error;
  std::vector<X509Ptr> certs = read_certificates(cert_pem, error);
  if (certs.empty()) return Error{"", "bad certificate: " + error};
  BioPtr key_bio = memory_bio(key_pem);
  KeyPtr key(key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, no_passphrase, nullptr) : nullptr);
  if (!key) return Error{"", "bad private key: " + openssl_error()};
  ChainPtr chain(sk_X509_new_null());
  if (!chain) return Error{"", openssl_error()};
  for (size_t i = 1; i < certs.size(); ++i) {
    if (sk_X509_push(chain.get(), certs[i].get()) == 0) return Error{"", openssl_error()};
    certs[i].release();
  }
  return adopt(std::move(certs[0]), std::move(key), std::move(chain), std::move(source), false);
}

Result<std::shared_ptr<const Certificate>> Certificate::adopt(X509Ptr leaf, KeyPtr key, ChainPtr chain,
                                                              std::string source, bool generated) {
  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    ERR_clear_error();
    return Error{"", "the private key does not match the certificate"};
  }
  std::shared_ptr<Certificate> cert(new Certificate());
  switch (EVP_PKEY_get_base_id(key.get())) {
    case EVP_PKEY_RSA: cert->key_type_ = KeyType::kRsa; break;
    case EVP_PKEY_EC: cert->key_type_ = KeyType::kEcdsa; break;
    default: cert->key_type_ = KeyType::kOther; break;
  }
  // Go keeps the last CN of the subject.
  const X509_NAME* subject = X509_get_subject_name(leaf.get());
  for (int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1); i >= 0;
       i = X509_NAME_get_index_by_NID(subject, NID_commonName, i))
    cert->common_name_ = asn1_text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
  std::vector<std::string> names;
  if (!cert->common_name_.empty()) names.push_back(to_lower(cert->common_name_));
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(leaf.get(), NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans != nullptr && i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
    if (g->type == GEN_DNS) {
      std::string dns = asn1_text(g->d.dNSName);
      if (!dns.empty()) names.push_back(to_lower(dns));
    } else if (g->type == GEN_IPADD) {
      std::string ip = ip_text(ASN1_STRING_get0_data(g->d.iPAddress), ASN1_STRING_length(g->d.iPAddress));
      if (!ip.empty()) names.push_back(to_lower(ip));
    }
  }
  GENERAL_NAMES_free(sans);
  ERR_clear_error();
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  cert->names_ = std::move(names);
  std::tm tm{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(leaf.get()), &tm) == 1)
    cert->not_after_ = std::chrono::system_clock::from_time_t(timegm(&tm));
  ERR_clear_error();
  cert->leaf_ = std::move(leaf);
  cert->key_ = std::move(key);
  cert->chain_ = std::move(chain);
  cert->source_ = std::move(source);
  cert->generated_ = generated;
  if (STACK_OF(OPENSSL_STRING)* urls = X509_get1_ocsp(cert->leaf_.get())) {
    if (sk_OPENSSL_STRING_num(urls) > 0) cert->ocsp_url_ = sk_OPENSSL_STRING_value(urls, 0);
    X509_email_free(urls);
  }
  if (auto* slot = static_cast<OcspSlot*>(X509_get_ex_data(cert->leaf_.get(), ocsp_index()))) {
    cert->ocsp_ = slot;
  } else {
    cert->ocsp_ = new OcspSlot();
    if (X509_set_ex_data(cert->leaf_.get(), ocsp_index(), cert->ocsp_) != 1) {
      delete cert->ocsp_;
      cert->ocsp_ = nullptr;
    }
  }
  ERR_clear_error();
  return std::shared_ptr<const Certificate>(std::move(cert));
}

X509* Certificate::issuer() const {
  for (int i = 0; chain_ && i < sk_X509_num(chain_.get()); ++i) {
    X509* candidate = sk_X509_value(chain_.get(), i);
    if (X509_check_issued(candidate, leaf_.get()) == X509_V_OK) return candidate;
  }
  return nullptr;
}

void Certificate::set_ocsp_response(std::shared_ptr<const std::string> der) const {
  if (ocsp_ != nullptr) ocsp_->der.store(std::move(der), std::memory_order_release);
}

Result<std::shared_ptr<const Certificate>> Certificate::generated_default() {
  static const Result<std::shared_ptr<const Certificate>> generated =
      []() -> Result<std::shared_ptr<const Certificate>> {
    auto pair = generate_default_pair();
    if (!pair) return pair.error();
    return adopt(std::move(pair->first), std::move(pair->second), ChainPtr(sk_X509_new_null()),
                 "generated default", true);
  }();
  return generated;
}

// ---- session tickets ----

TicketKey TicketKey::random() {
  TicketKey key;
  if (RAND_bytes(key.name.data(), int(key.name.size())) != 1 ||
      RAND_bytes(key.hmac_key.data(), int(key.hmac_key.size())) != 1 ||
      RAND_bytes(key.aes_key.data(), int(key.aes_key.size())) != 1)
    std::abort();  // the CSPRNG failing is not survivable: every handshake needs it too
  return key;
}

TicketKey TicketKey::from_bytes(const std::array<uint8_t, 80>& bytes) {
  TicketKey key;
  std::memcpy(key.name.data(), bytes.data(), 16);
  std::memcpy(key.hmac_key.data(), bytes.data() + 16, 32);
  std::memcpy(key.aes_key.data(), bytes.data() + 48, 32);
  return key;
}

TicketKeyRing::TicketKeyRing(std::vector<TicketKey> keys)
    : keys_(std::make_shared<const std::vector<TicketKey>>(std::move(keys))) {}

void TicketKeyRing::set(std::vector<TicketKey> keys) {
  keys_.store(std::make_shared<const std::vector<TicketKey>>(std::move(keys)), std::memory_order_release);
}

void TicketKeyRing::rotate() {
  std::vector<TicketKey> next{TicketKey::random()};
  if (auto current = keys(); current && !current->empty()) next.push_back(current->front());
  set(std::move(next));
}

const std::shared_ptr<TicketKeyRing>& TicketKeyRing::process_default() {
  static const std::shared_ptr<TicketKeyRing> ring =
      std::make_shared<TicketKeyRing>(std::vector<TicketKey>{TicketKey::random()});
  return ring;
}

// ---- CertificateStore ----

namespace {

// One server SSL_CTX for an options set, or nullptr with the problems reported at the set's place.
SSL_CTX* build_context(const TlsOptionsConfig& o, const std::shared_ptr<const CertificateStore::Index>& index,
                       const std::shared_ptr<TicketKeyRing>& tickets, std::vector<Error>& problems) {
  const std::string prefix = "TLS options " + o.name + ": ";
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) {
    problems.push_back(Error{o.where, prefix + openssl_error()});
    return nullptr;
  }
  auto fail = [&](std::string message) -> SSL_CTX* {
    problems.push_back(Error{o.where, prefix + message});
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return nullptr;
  };
  // Go has no security levels; TLS 1.0/1.1 need SHA-1 signatures, which OpenSSL 3 allows only at 0.
  SSL_CTX_set_security_level(ctx, o.min_version < TlsVersion::kTls12 ? 0 : 1);
  int min_version = openssl_version(o.min_version);
  const int max_version = o.max_version ? openssl_version(*o.max_version) : TLS1_3_VERSION;
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_NO_COMPRESSION);
  // An idle connection holds no record buffers (a busy one takes them from malloc for each request).
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  // OpenSSL takes all it can hold of what Asio read (proxy/stream.h) at once, not each record's
  // 5-byte header and then its body, so the bytes of the records after the first seldom need a
  // block of their own. Bytes read ahead wait in OpenSSL, not on the socket, so a connection
  // checks Stream::has_buffered() before parking.
  SSL_CTX_set_read_ahead(ctx, 1);

  const std::vector<std::string_view> suites = tls12_suites(o.cipher_suites);
  if (suites.empty()) {
    // Only TLS 1.3 names (or SCSV) configured: Go then has no TLS 1.2 suite either.
    if (max_version < TLS1_3_VERSION) return fail("no cipher suite usable below TLS 1.3");
    min_version = TLS1_3_VERSION;
  } else {
    if (SSL_CTX_set_cipher_list(ctx, join(suites, ':').c_str()) != 1)
      return fail("none of the cipher suites is available in this OpenSSL build");
    const STACK_OF(SSL_CIPHER)* available = SSL_CTX_get_ciphers(ctx);
    for (const std::string_view name : suites) {
      bool found = false;
      for (int i = 0; i < sk_SSL_CIPHER_num(available) && !found; ++i)
        found = name == SSL_CIPHER_get_name(sk_SSL_CIPHER_value(available, i));
      if (!found && !o.cipher_suites.empty())
        problems.push_back(Error{o.where, prefix + "cipher suite " + std::string(name) +
                                              " is not available in this OpenSSL build; left out"});
    }
  }
  if (SSL_CTX_set_min_proto_version(ctx, min_version) != 1 || SSL_CTX_set_max_proto_version(ctx, max_version) != 1)
    return fail("cannot set the TLS versions: " + openssl_error());
  if (SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256") != 1)
    return fail(openssl_error());

  std::vector<std::string_view> groups;
  for (const auto& curve : o.curve_preferences) groups.push_back(openssl_group(curve));
  if (groups.empty()) groups = {"X25519", "P-256", "P-384", "P-521"};
  if (SSL_CTX_set1_groups_list(ctx, join(groups, ':').c_str()) != 1)
    return fail("cannot use curves " + join(groups, ',') + ": " + openssl_error());

  // Client authentication, with Go's five modes.
  X509_STORE* trust = SSL_CTX_get_cert_store(ctx);
  // What a resumed session must have been negotiated under: the options' name and everything that
  // decides who may connect, so a reload that tightens them (client authentication, CAs, versions,
  // ciphers) does not let older sessions and tickets resume.
  std::string session_context = o.name;
  session_context += '\n' + std::string(config::to_string(o.client_auth_type)) + '\n' +
                     std::string(config::to_string(o.min_version)) + '\n' +
                     (o.max_version ? std::string(config::to_string(*o.max_version)) : std::string()) + '\n';
  for (const auto& suite : o.cipher_suites) session_context += suite + ',';
  for (const std::string& ca : o.client_ca_files) {
    auto text = read_source(ca);
    if (!text) return fail("clientAuth.caFiles: " + text.error().message);
    session_context += '\n' + *text;
    std::string error;
    std::vector<X509Ptr> certs = read_certificates(*text, error);
    if (certs.empty()) return fail("invalid certificate(s) in " + describe(ca, "caFiles entry") + ": " + error);
    for (const auto& cert : certs) {
      if (X509_STORE_add_cert(trust, cert.get()) != 1) ERR_clear_error();  // a duplicate is fine
      if (SSL_CTX_add_client_CA(ctx, cert.get()) != 1) return fail(openssl_error());
    }
  }
  switch (o.client_auth_type) {
    case config::ClientAuthType::kNoClientCert:
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
      break;
    case config::ClientAuthType::kRequestClientCert:
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any_certificate);
      break;
    case config::ClientAuthType::kRequireAnyClientCert:
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any_certificate);
      break;
    case config::ClientAuthType::kVerifyClientCertIfGiven:
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
      break;
    case config::ClientAuthType::kRequireAndVerifyClientCert:
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
      break;
  }

  // Sessions: stateless tickets under the shared key ring, so any worker resumes any ticket; and a
  // server-side cache for clients without tickets (TLS 1.2 session IDs, or every client when
  // disableSessionTickets is set). The cache is OpenSSL's, per options set: its lock is taken
  // during handshakes only, never on the request path. A session resumes only under the options
  // set that issued it, and only while that set says the same about who may connect.
  unsigned char sid_context[32];
  unsigned int sid_length = 0;
  if (EVP_Digest(session_context.data(), session_context.size(), sid_context, &sid_length, EVP_sha256(), nullptr) != 1 ||
      SSL_CTX_set_session_id_context(ctx, sid_context, std::min<unsigned int>(sid_length, 32)) != 1)
    return fail(openssl_error());
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_sess_set_cache_size(ctx, kSessionCacheSize);
  if (o.disable_session_tickets) {
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
  } else if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key) != 1) {
    return fail(openssl_error());
  } else {
    SSL_CTX_set_num_tickets(ctx, 1);  // one TLS 1.3 ticket per handshake, as Go sends (OpenSSL: two)
  }

  auto* state = new ContextState{index, o.sni_strict, o.alpn_protocols, tickets};
  if (SSL_CTX_set_ex_data(ctx, context_state_index(), state) != 1) {
    delete state;
    return fail(openssl_error());
  }
  SSL_CTX_set_tlsext_servername_callback(ctx, on_server_name);
  SSL_CTX_set_tlsext_servername_arg(ctx, state);
  SSL_CTX_set_alpn_select_cb(ctx, on_alpn, state);
  SSL_CTX_set_tlsext_status_cb(ctx, on_ocsp_status);
  // Every SSL starts with the store's default certificate; the servername callback replaces it.
  const Certificate& fallback = *index->default_cert;
  if (SSL_CTX_use_cert_and_key(ctx, fallback.leaf(), fallback.key(), fallback.chain(), 1) != 1)
    return fail("cannot use the default certificate: " + openssl_error());
  return ctx;
}

}  // namespace

Result<std::shared_ptr<SSL_CTX>> CertificateStore::acme_challenge_context(std::string_view cert_pem,
                                                                         std::string_view key_pem) {
  auto cert = Certificate::from_pem(cert_pem, key_pem, "ACME challenge certificate");
  if (!cert) return cert.error();
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (!ctx || SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) != 1 ||
      SSL_CTX_use_certificate(ctx.get(), (*cert)->leaf()) != 1 || SSL_CTX_use_PrivateKey(ctx.get(), (*cert)->key()) != 1)
    return Error{"", "cannot build the ACME challenge context: " + openssl_error()};
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx.get(), 0);
  SSL_CTX_set_alpn_select_cb(
      ctx.get(),
      [](SSL*, const unsigned char** out, unsigned char* out_length, const unsigned char* in, unsigned int in_length,
         void*) -> int {
        static constexpr unsigned char kAcme[] = "acme-tls/1";
        for (unsigned int i = 0; i < in_length;) {
          const unsigned int n = in[i];
          if (i + 1 + n > in_length) break;
          if (n == sizeof kAcme - 1 && std::memcmp(in + i + 1, kAcme, n) == 0) {
            *out = in + i + 1;
            *out_length = static_cast<unsigned char>(n);
            return SSL_TLSEXT_ERR_OK;
          }
          i += 1 + n;
        }
        return SSL_TLSEXT_ERR_ALERT_FATAL;
      },
      nullptr);
  return ctx;
}

Result<std::shared_ptr<const CertificateStore>> CertificateStore::build(const config::TlsConfig& config,
                                                                        std::vector<Error>& problems,
                                                                        std::shared_ptr<TicketKeyRing> tickets) {
  auto generated = Certificate::generated_default();
  if (!generated) return generated.error();
  std::shared_ptr<CertificateStore> store(new CertificateStore());
  store->generated_ = *generated;
  store->tickets_ = tickets ? std::move(tickets) : TicketKeyRing::process_default();

  std::map<std::string, std::shared_ptr<Index>, std::less<>> indexes;
  indexes.emplace(std::string(config::kDefaultTlsName), std::make_shared<Index>());
  for (const auto& [name, s] : config.stores) indexes.try_emplace(name, std::make_shared<Index>());
  for (const auto& c : config.certificates) {
    auto cert = load_pair(c.cert_file, c.key_file, c.where, "certificate", problems);
    if (!cert) continue;
    store->certificates_.push_back(cert);
    const std::vector<std::string> defaults{std::string(config::kDefaultTlsName)};
    for (const std::string& name : c.stores.empty() ? defaults : c.stores) {
      auto& index = indexes[name];
      if (!index) index = std::make_shared<Index>();
      index->add(cert);
    }
  }

  for (auto& [name, index] : indexes) {
    index->default_cert = store->generated_;
    const auto sc = config.stores.find(name);
    if (sc == config.stores.end()) continue;
    const config::TlsStoreConfig& s = sc->second;
    const std::string what = "default certificate of TLS store " + name;
    if (s.default_certificate) {
      auto cert = load_pair(s.default_certificate->cert_file, s.default_certificate->key_file,
                            s.default_certificate->where, what, problems);
      if (cert) index->default_cert = cert;
      else problems.back().message += "; the generated default certificate serves instead";
    } else if (s.default_generated_cert && !s.default_generated_cert->resolver.empty()) {
      // Traefik's sanitizeDomains: main then sans, lower-cased, trimmed, without a trailing dot.
      std::vector<std::string> domains;
      auto add_domain = [&](std::string_view d) {
        std::string clean = to_lower(trim(d));
        while (!clean.empty() && clean.back() == '.') clean.pop_back();
        if (!clean.empty()) domains.push_back(std::move(clean));
      };
      add_domain(s.default_generated_cert->main);
      for (const auto& san : s.default_generated_cert->sans) add_domain(san);
      if (domains.empty()) {
        problems.push_back(Error{s.default_generated_cert->where,
                                 what + ": defaultGeneratedCert has no domain; the generated default certificate "
                                        "serves instead"});
      } else if (auto cert = certificate_for_domains(*index, domains)) {
        index->default_cert = cert;
      } else {
        std::string list;
        for (const auto& d : domains) list += (list.empty() ? "" : ",") + d;
        problems.push_back(Error{s.default_generated_cert->where,
                                 what + ": no certificate for domains " + list + " (resolver " +
                                     s.default_generated_cert->resolver +
                                     ") yet; the generated default certificate serves instead"});
      }
    }
  }
  for (auto& [name, index] : indexes) store->stores_.emplace(name, index);

  const std::shared_ptr<const Index> serving = store->stores_.at(std::string(config::kDefaultTlsName));
  auto add_context = [&](const TlsOptionsConfig& o) {
    if (SSL_CTX* ctx = build_context(o, serving, store->tickets_, problems)) store->contexts_.emplace(o.name, ctx);
  };
  for (const auto& [name, options] : config.options) add_context(options);
  const std::string default_name(config::kDefaultTlsName);
  if (!config.options.contains(default_name) && !config.conflicting_options.contains(default_name)) {
    TlsOptionsConfig defaults;
    defaults.name = default_name;
    add_context(defaults);
  }
  return std::shared_ptr<const CertificateStore>(std::move(store));
}

CertificateStore::~CertificateStore() {
  for (auto& [name, ctx] : contexts_) SSL_CTX_free(ctx);
}

SSL_CTX* CertificateStore::context(std::string_view options_name) const {
  const auto it = contexts_.find(options_name);
  return it == contexts_.end() ? nullptr : it->second;
}

const Certificate* CertificateStore::find(std::string_view server_name, bool ecdsa_ok, std::string_view store) const {
  const auto it = stores_.find(store);
  if (it == stores_.end()) return nullptr;
  const std::string name = to_lower(trim(server_name));
  const Index::Entry* entry = it->second->match(name);
  return entry == nullptr ? nullptr : entry->pick(ecdsa_ok);
}

const Certificate* CertificateStore::select(std::string_view server_name, bool ecdsa_ok,
                                            std::string_view store) const {
  if (const Certificate* cert = find(server_name, ecdsa_ok, store)) return cert;
  const auto it = stores_.find(store);
  return it == stores_.end() ? generated_.get() : it->second->default_cert.get();
}

void CertificateStore::set_local_address(SSL* ssl, std::string_view ip) {
  if (auto* existing = static_cast<std::string*>(SSL_get_ex_data(ssl, local_address_index()))) {
    existing->assign(ip);
    return;
  }
  auto* copy = new std::string(ip);
  if (SSL_set_ex_data(ssl, local_address_index(), copy) != 1) delete copy;
}

}  // namespace berth::proxy::tls
