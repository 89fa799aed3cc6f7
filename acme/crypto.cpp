// ACME's cryptography on OpenSSL 3's EVP, encoder/decoder and X509 APIs; see crypto.h. Every OpenSSL
// object is owned by a unique_ptr, and a failure empties OpenSSL's error queue into the Error it returns.
#include "acme/crypto.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <array>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <ctime>

#include "base/text.h"

namespace berth::acme {

namespace {

// ---- ownership of OpenSSL objects ----

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
template <typename T, void (*Free)(T*)>
using Owned = std::unique_ptr<T, Deleter<T, Free>>;

void free_bio(BIO* p) { BIO_free(p); }
void free_bn(BIGNUM* p) { BN_free(p); }
void free_general_names(GENERAL_NAMES* p) { GENERAL_NAMES_free(p); }
void free_extensions(STACK_OF(X509_EXTENSION) * p) { sk_X509_EXTENSION_pop_free(p, X509_EXTENSION_free); }
void free_openssl_bytes(unsigned char* p) { OPENSSL_free(p); }

using BioPtr = Owned<BIO, free_bio>;
using BnPtr = Owned<BIGNUM, free_bn>;
using PkeyPtr = Owned<EVP_PKEY, EVP_PKEY_free>;
using PkeyCtxPtr = Owned<EVP_PKEY_CTX, EVP_PKEY_CTX_free>;
using MdCtxPtr = Owned<EVP_MD_CTX, EVP_MD_CTX_free>;
using MacPtr = Owned<EVP_MAC, EVP_MAC_free>;
using MacCtxPtr = Owned<EVP_MAC_CTX, EVP_MAC_CTX_free>;
using EncoderCtxPtr = Owned<OSSL_ENCODER_CTX, OSSL_ENCODER_CTX_free>;
using EcdsaSigPtr = Owned<ECDSA_SIG, ECDSA_SIG_free>;
using X509Ptr = Owned<X509, X509_free>;
using ReqPtr = Owned<X509_REQ, X509_REQ_free>;
using NamePtr = Owned<X509_NAME, X509_NAME_free>;
using ExtPtr = Owned<X509_EXTENSION, X509_EXTENSION_free>;
using ExtsPtr = Owned<STACK_OF(X509_EXTENSION), free_extensions>;
using GeneralNamesPtr = Owned<GENERAL_NAMES, free_general_names>;
using OctetsPtr = Owned<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>;
using ObjectPtr = Owned<ASN1_OBJECT, ASN1_OBJECT_free>;
using IntegerPtr = Owned<ASN1_INTEGER, ASN1_INTEGER_free>;
using BytesPtr = Owned<unsigned char, free_openssl_bytes>;

// The errors on OpenSSL's queue as text (oldest first, the root cause usually), and an empty queue
// afterwards: a stale entry would otherwise be blamed on the next, unrelated, failure.
std::string openssl_error() {
  std::string out;
  int count = 0;
  while (const unsigned long code = ERR_get_error()) {
    if (++count > 3) continue;  // keep draining; three entries say enough
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

Error failure(std::string_view what) { return Error{"", std::string(what) + ": " + openssl_error()}; }

BioPtr memory_bio(std::string_view bytes) {
  return BioPtr(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
}

// Everything written to a memory BIO.
std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

std::string_view as_chars(const unsigned char* p, size_t n) { return {reinterpret_cast<const char*>(p), n}; }
const unsigned char* as_bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

// Never prompts for a passphrase: an encrypted key fails to load.
int no_passphrase(char*, int, int, void*) { return -1; }

// ---- key kinds ----

// The keys ACME signs with: RFC 7518's ES256, ES384 and RS256.
enum class Kind { kNone, kP256, kP384, kRsa };

Kind kind_of(EVP_PKEY* pkey) {
  if (pkey == nullptr) return Kind::kNone;
  if (EVP_PKEY_is_a(pkey, "RSA")) return Kind::kRsa;
  if (!EVP_PKEY_is_a(pkey, "EC")) return Kind::kNone;
  char group[64];
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) != 1) {
    ERR_clear_error();
    return Kind::kNone;  // explicit curve parameters: not a named curve ACME knows
  }
  // OpenSSL reports short names ("prime256v1", "secp384r1"); NIST names are accepted too.
  int nid = OBJ_sn2nid(group);
  if (nid == NID_undef) nid = EC_curve_nist2nid(group);
  if (nid == NID_X9_62_prime256v1) return Kind::kP256;
  if (nid == NID_secp384r1) return Kind::kP384;
  return Kind::kNone;
}

// The width in bytes of an EC coordinate and of each half of a JWS ECDSA signature.
size_t coordinate_size(Kind kind) { return kind == Kind::kP384 ? 48 : 32; }

const EVP_MD* digest_of(Kind kind) { return kind == Kind::kP384 ? EVP_sha384() : EVP_sha256(); }

Result<Key> adopt(EVP_PKEY* raw, std::string_view what) {
  PkeyPtr pkey(raw);
  if (!pkey) return failure(what);
  if (kind_of(pkey.get()) == Kind::kNone)
    return Error{"", std::string(what) + ": unsupported key type (want RSA, or EC on P-256 or P-384)"};
  return Key(std::shared_ptr<EVP_PKEY>(pkey.release(), EVP_PKEY_free));
}

// A key parameter as an unsigned big-endian number, left-padded with zeros to `width` (0: minimal).
std::string bn_param(EVP_PKEY* pkey, const char* name, size_t width) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, name, &raw) != 1) {
    ERR_clear_error();
    return {};
  }
  BnPtr bn(raw);
  std::string out(width > 0 ? width : static_cast<size_t>(BN_num_bytes(bn.get())), '\0');
  unsigned char* to = reinterpret_cast<unsigned char*>(out.data());
  if (width > 0 ? BN_bn2binpad(bn.get(), to, static_cast<int>(width)) < 0 : BN_bn2bin(bn.get(), to) < 0) {
    ERR_clear_error();
    return {};
  }
  return out;
}

// A private key in `structure` ("PrivateKeyInfo": PKCS#8; "type-specific": PKCS#1 / SEC1) as "DER" or "PEM".
std::string encode_key(EVP_PKEY* pkey, const char* format, const char* structure) {
  if (pkey == nullptr) return {};
  EncoderCtxPtr ctx(OSSL_ENCODER_CTX_new_for_pkey(pkey, OSSL_KEYMGMT_SELECT_KEYPAIR | OSSL_KEYMGMT_SELECT_ALL_PARAMETERS,
                                                  format, structure, nullptr));
  unsigned char* data = nullptr;
  size_t len = 0;
  if (!ctx || OSSL_ENCODER_CTX_get_num_encoders(ctx.get()) == 0 || OSSL_ENCODER_to_data(ctx.get(), &data, &len) != 1) {
    ERR_clear_error();
    return {};
  }
  BytesPtr owned(data);
  return std::string(as_chars(data, len));
}

// ---- JSON ----

// `text` as a JSON string literal, quotes and escapes included.
std::string json_string(std::string_view text) { return boost::json::serialize(boost::json::string(text)); }

// ---- signing ----

Result<std::string> digest_sign(EVP_PKEY* pkey, const EVP_MD* md, std::string_view input) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, pkey) != 1) return failure("cannot sign");
  size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, as_bytes(input), input.size()) != 1) return failure("cannot sign");
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, as_bytes(input), input.size()) != 1)
    return failure("cannot sign");
  sig.resize(len);
  return sig;
}

// JWS (RFC 7518 3.4) wants ECDSA signatures as r||s, each left-padded to the curve's size; OpenSSL
// produces the DER SEQUENCE { r INTEGER, s INTEGER } of X9.62.
Result<std::string> ecdsa_der_to_jose(std::string_view der, size_t half) {
  const unsigned char* p = as_bytes(der);
  EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig) return failure("cannot read the ECDSA signature");
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  std::string out(2 * half, '\0');
  unsigned char* to = reinterpret_cast<unsigned char*>(out.data());
  if (BN_bn2binpad(r, to, static_cast<int>(half)) < 0 || BN_bn2binpad(s, to + half, static_cast<int>(half)) < 0)
    return failure("cannot encode the ECDSA signature");
  return out;
}

Result<std::string> hmac_sha256(std::string_view key, std::string_view data) {
  MacPtr mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
  if (!mac) return failure("HMAC is unavailable");
  MacCtxPtr ctx(EVP_MAC_CTX_new(mac.get()));
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                               OSSL_PARAM_construct_end()};
  if (!ctx || EVP_MAC_init(ctx.get(), as_bytes(key), key.size(), params) != 1 ||
      EVP_MAC_update(ctx.get(), as_bytes(data), data.size()) != 1)
    return failure("cannot compute HMAC-SHA256");
  std::string out(EVP_MAX_MD_SIZE, '\0');
  size_t len = 0;
  if (EVP_MAC_final(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, out.size()) != 1)
    return failure("cannot compute HMAC-SHA256");
  out.resize(len);
  return out;
}

std::string flattened_jws(std::string_view protected_b64, std::string_view payload_b64, std::string_view signature) {
  std::string out;
  out.reserve(protected_b64.size() + payload_b64.size() + signature.size() * 4 / 3 + 48);
  out += "{\"protected\":\"";
  out += protected_b64;
  out += "\",\"payload\":\"";
  out += payload_b64;
  out += "\",\"signature\":\"";
  out += base64url(signature);
  out += "\"}";
  return out;
}

// ---- base64 ----

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

std::string_view trim_space(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

constexpr char kStd[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kUrl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string encode64(std::string_view bytes, const char* alphabet, bool pad) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8 | uint8_t(bytes[i + 2]);
    out += alphabet[v >> 18];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  const size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    if (rest == 2) v |= uint32_t(uint8_t(bytes[i + 1])) << 8;
    out += alphabet[v >> 18];
    out += alphabet[(v >> 12) & 63];
    if (rest == 2) out += alphabet[(v >> 6) & 63];
    if (pad) out.append(3 - rest, '=');
  }
  return out;
}

// Decodes base64 in `alphabet`. Padding may be missing; when present it must be right and final.
// `skip_space` ignores ASCII whitespace anywhere (PEM-style line breaks).
Result<std::string> decode64(std::string_view text, const char* alphabet, bool skip_space, std::string_view what) {
  std::array<int8_t, 256> value;
  value.fill(-1);
  for (int i = 0; i < 64; ++i) value[uint8_t(alphabet[i])] = int8_t(i);

  std::string out;
  out.reserve(text.size() / 4 * 3 + 3);
  uint32_t acc = 0;
  size_t digits = 0;   // digits read
  size_t padding = 0;  // '=' read
  for (const char c : text) {
    if (skip_space && is_space(c)) continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    const int8_t v = value[uint8_t(c)];
    if (v < 0 || padding > 0) {
      return Error{"", "invalid " + std::string(what) + ": " +
                           (v < 0 ? "unexpected character '" + std::string(1, c) + "'" : std::string("data after padding"))};
    }
    acc = acc << 6 | uint32_t(v);
    if (++digits % 4 == 0) {
      out += char(acc >> 16);
      out += char((acc >> 8) & 0xff);
      out += char(acc & 0xff);
      acc = 0;
    }
  }
  const size_t rest = digits % 4;
  if (rest == 1) return Error{"", "invalid " + std::string(what) + ": truncated"};
  if (padding > 0 && rest + padding != 4) return Error{"", "invalid " + std::string(what) + ": wrong padding"};
  if (rest == 2) {
    out += char(acc >> 4);
  } else if (rest == 3) {
    out += char(acc >> 10);
    out += char((acc >> 2) & 0xff);
  }
  return out;
}

// ---- X.509 ----

// X509_NAME's CN is at most 64 characters (RFC 5280's ub-common-name): a longer name goes in the SAN only.
constexpr size_t kMaxCommonName = 64;

Result<NamePtr> subject_with_cn(std::string_view cn) {
  NamePtr name(X509_NAME_new());
  if (!name) return failure("cannot make a subject");
  if (!cn.empty() && cn.size() <= kMaxCommonName &&
      X509_NAME_add_entry_by_NID(name.get(), NID_commonName, MBSTRING_UTF8, as_bytes(cn), static_cast<int>(cn.size()),
                                 -1, 0) != 1)
    return failure("cannot set the common name " + std::string(cn));
  return name;
}

// A subjectAltName extension with `domains` as dNSNames. Built from structures, not from a config
// string ("DNS:a,DNS:b"), so no name can smuggle another entry in.
Result<ExtPtr> dns_san_extension(const std::vector<std::string>& domains) {
  GeneralNamesPtr names(GENERAL_NAMES_new());
  if (!names) return failure("cannot make subjectAltName");
  for (const std::string& domain : domains) {
    ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
    if (ia5 == nullptr || ASN1_STRING_set(ia5, domain.data(), static_cast<int>(domain.size())) != 1) {
      ASN1_IA5STRING_free(ia5);
      return failure("cannot make subjectAltName");
    }
    GENERAL_NAME* gn = GENERAL_NAME_new();
    if (gn == nullptr) {
      ASN1_IA5STRING_free(ia5);
      return failure("cannot make subjectAltName");
    }
    GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
    if (sk_GENERAL_NAME_push(names.get(), gn) == 0) {
      GENERAL_NAME_free(gn);
      return failure("cannot make subjectAltName");
    }
  }
  ExtPtr ext(X509V3_EXT_i2d(NID_subject_alt_name, 0, names.get()));
  if (!ext) return failure("cannot encode subjectAltName");
  return ext;
}

Result<std::chrono::system_clock::time_point> time_point_of(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return failure("cannot read a certificate date");
  // Civil date to days since the epoch in std::chrono: no timegm, no time_t range, no TZ.
  const std::chrono::year_month_day date{std::chrono::year(tm.tm_year + 1900),
                                         std::chrono::month(static_cast<unsigned>(tm.tm_mon + 1)),
                                         std::chrono::day(static_cast<unsigned>(tm.tm_mday))};
  const auto seconds = std::chrono::sys_days(date).time_since_epoch() + std::chrono::hours(tm.tm_hour) +
                       std::chrono::minutes(tm.tm_min) + std::chrono::seconds(tm.tm_sec);
  return std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(seconds));
}

// The CN of a name, UTF-8; empty when it has none.
std::string common_name(const X509_NAME* name) {
  const int index = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (index < 0) return {};
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
  unsigned char* utf8 = nullptr;
  const int len = ASN1_STRING_to_UTF8(&utf8, data);
  if (len < 0) {
    ERR_clear_error();
    return {};
  }
  BytesPtr owned(utf8);
  return std::string(as_chars(utf8, static_cast<size_t>(len)));
}

// Every certificate of a PEM text, in order; an error when there is none.
Result<std::vector<X509Ptr>> read_chain(std::string_view pem) {
  BioPtr bio = memory_bio(pem);
  if (!bio) return failure("cannot read certificates");
  std::vector<X509Ptr> chain;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr)) chain.emplace_back(x);
  // The loop ends on "no start line" at the end of the text: an error only when nothing was read.
  if (chain.empty()) return failure("no certificate in PEM");
  ERR_clear_error();
  return chain;
}

std::string pem_of(X509* x) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), x) != 1) {
    ERR_clear_error();
    return {};
  }
  return bio_text(bio.get());
}

}  // namespace

// ---- key types ----

Result<KeyType> parse_key_type(std::string_view text) {
  for (const KeyType type : {KeyType::kEC256, KeyType::kEC384, KeyType::kRSA2048, KeyType::kRSA4096, KeyType::kRSA8192}) {
    if (iequals(text, key_type_name(type))) return type;
  }
  return Error{"", "unknown key type \"" + std::string(text) + "\" (want EC256, EC384, RSA2048, RSA4096 or RSA8192)"};
}

std::string_view key_type_name(KeyType type) {
  switch (type) {
    case KeyType::kEC256: return "EC256";
    case KeyType::kEC384: return "EC384";
    case KeyType::kRSA2048: return "RSA2048";
    case KeyType::kRSA4096: return "RSA4096";
    case KeyType::kRSA8192: return "RSA8192";
  }
  return "?";
}

// ---- keys ----

Result<Key> Key::generate(KeyType type) {
  const bool is_rsa = type != KeyType::kEC256 && type != KeyType::kEC384;
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, is_rsa ? "RSA" : "EC", nullptr));
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1) return failure("cannot generate a key");
  OSSL_PARAM params[3];
  char p256[] = "P-256", p384[] = "P-384";
  unsigned int bits = type == KeyType::kRSA2048 ? 2048 : type == KeyType::kRSA4096 ? 4096 : 8192;
  unsigned int exponent = 65537;
  if (is_rsa) {
    params[0] = OSSL_PARAM_construct_uint(OSSL_PKEY_PARAM_RSA_BITS, &bits);
    params[1] = OSSL_PARAM_construct_uint(OSSL_PKEY_PARAM_RSA_E, &exponent);
  } else {
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, type == KeyType::kEC256 ? p256 : p384, 0);
    params[1] = OSSL_PARAM_construct_end();
  }
  params[2] = OSSL_PARAM_construct_end();
  if (EVP_PKEY_CTX_set_params(ctx.get(), params) != 1) return failure("cannot generate a key");
  EVP_PKEY* pkey = nullptr;
  if (EVP_PKEY_generate(ctx.get(), &pkey) != 1) return failure("cannot generate a key");
  return adopt(pkey, "cannot generate a key");
}

Result<Key> Key::from_pem(std::string_view pem) {
  BioPtr bio = memory_bio(pem);
  if (!bio) return failure("cannot read the private key");
  // PEM_read_bio_PrivateKey takes "PRIVATE KEY" (PKCS#8) and the traditional "RSA PRIVATE KEY"
  // (PKCS#1) and "EC PRIVATE KEY" (SEC1) alike.
  return adopt(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr), "cannot read the private key");
}

Result<Key> Key::from_der(std::string_view der) {
  const unsigned char* p = as_bytes(der);
  // d2i_AutoPrivateKey tells PKCS#8 from PKCS#1 and SEC1 by the structure's shape.
  EVP_PKEY* pkey = d2i_AutoPrivateKey(nullptr, &p, static_cast<long>(der.size()));
  if (pkey != nullptr && p != as_bytes(der) + der.size()) {
    EVP_PKEY_free(pkey);
    return Error{"", "cannot read the private key: trailing data after the DER structure"};
  }
  return adopt(pkey, "cannot read the private key");
}

std::string Key::to_pem() const { return encode_key(pkey_.get(), "PEM", "PrivateKeyInfo"); }

std::string Key::to_der() const {
  // "type-specific" is PKCS#1 RSAPrivateKey for RSA and SEC1 ECPrivateKey (with the named curve and
  // the public key, as Go's x509.MarshalECPrivateKey writes it) for EC.
  return encode_key(pkey_.get(), "DER", "type-specific");
}

bool Key::is_ec() const { return pkey_ && EVP_PKEY_is_a(pkey_.get(), "EC"); }

std::string Key::jws_alg() const {
  switch (kind_of(pkey_.get())) {
    case Kind::kP256: return "ES256";
    case Kind::kP384: return "ES384";
    case Kind::kRsa: return "RS256";
    case Kind::kNone: break;
  }
  return {};
}

std::string Key::jwk_json() const {
  EVP_PKEY* pkey = pkey_.get();
  const Kind kind = kind_of(pkey);
  // Every member is a fixed name or base64url: nothing needs escaping.
  if (kind == Kind::kRsa) {
    const std::string n = bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, 0);
    const std::string e = bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, 0);
    if (n.empty() || e.empty()) return {};
    return "{\"e\":\"" + base64url(e) + "\",\"kty\":\"RSA\",\"n\":\"" + base64url(n) + "\"}";
  }
  if (kind == Kind::kP256 || kind == Kind::kP384) {
    const size_t width = coordinate_size(kind);
    const std::string x = bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, width);
    const std::string y = bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, width);
    if (x.empty() || y.empty()) return {};
    return std::string("{\"crv\":\"") + (kind == Kind::kP256 ? "P-256" : "P-384") + "\",\"kty\":\"EC\",\"x\":\"" +
           base64url(x) + "\",\"y\":\"" + base64url(y) + "\"}";
  }
  return {};
}

std::string Key::thumbprint() const {
  const std::string jwk = jwk_json();
  if (jwk.empty()) return {};
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(jwk.data(), jwk.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
    ERR_clear_error();
    return {};
  }
  return base64url(as_chars(digest, len));
}

// ---- base64 ----

std::string base64url(std::string_view bytes) { return encode64(bytes, kUrl, false); }
Result<std::string> base64url_decode(std::string_view text) { return decode64(text, kUrl, false, "base64url"); }
std::string base64(std::string_view bytes) { return encode64(bytes, kStd, true); }
Result<std::string> base64_decode(std::string_view text) { return decode64(text, kStd, true, "base64"); }

// ---- JWS ----

Result<std::string> sign_jws(const Key& key, std::string_view kid, std::string_view nonce, std::string_view url,
                             std::string_view payload, bool post_as_get) {
  const Kind kind = kind_of(key.get());
  if (kind == Kind::kNone) return Error{"", "cannot sign: no RSA, P-256 or P-384 key"};

  std::string header = "{\"alg\":\"" + key.jws_alg() + "\",";
  if (!kid.empty()) {
    header += "\"kid\":" + json_string(kid);
  } else {
    const std::string jwk = key.jwk_json();
    if (jwk.empty()) return failure("cannot read the public key");
    header += "\"jwk\":" + jwk;
  }
  if (!nonce.empty()) header += ",\"nonce\":" + json_string(nonce);
  header += ",\"url\":" + json_string(url) + "}";

  const std::string protected_b64 = base64url(header);
  const std::string payload_b64 = post_as_get ? std::string() : base64url(payload);
  const std::string signing_input = protected_b64 + "." + payload_b64;

  Result<std::string> sig = digest_sign(key.get(), digest_of(kind), signing_input);
  if (!sig) return sig.error();
  if (kind != Kind::kRsa) {
    sig = ecdsa_der_to_jose(*sig, coordinate_size(kind));
    if (!sig) return sig.error();
  }
  return flattened_jws(protected_b64, payload_b64, *sig);
}

Result<std::string> sign_eab(const Key& account, std::string_view eab_kid, std::string_view hmac_encoded,
                             std::string_view url) {
  // lego decodes the key as unpadded base64url; CAs hand out either alphabet, padded or not, and a
  // pasted key may bring a line break along.
  const std::string_view encoded = trim_space(hmac_encoded);
  Result<std::string> hmac_key = base64url_decode(encoded);
  if (!hmac_key) hmac_key = base64_decode(encoded);
  if (!hmac_key) return Error{"", "the EAB HMAC key is neither base64url nor base64"};
  if (hmac_key->empty()) return Error{"", "the EAB HMAC key is empty"};

  const std::string jwk = account.jwk_json();
  if (jwk.empty()) return Error{"", "cannot bind the account: no RSA, P-256 or P-384 key"};
  const std::string header = "{\"alg\":\"HS256\",\"kid\":" + json_string(eab_kid) + ",\"url\":" + json_string(url) + "}";
  const std::string protected_b64 = base64url(header);
  const std::string payload_b64 = base64url(jwk);
  Result<std::string> mac = hmac_sha256(*hmac_key, protected_b64 + "." + payload_b64);
  if (!mac) return mac.error();
  return flattened_jws(protected_b64, payload_b64, *mac);
}

// ---- CSR ----

Result<std::string> make_csr(const Key& key, const std::vector<std::string>& domains) {
  if (!key) return Error{"", "cannot make a CSR: no key"};
  if (domains.empty()) return Error{"", "cannot make a CSR: no domain"};
  ReqPtr req(X509_REQ_new());
  if (!req || X509_REQ_set_version(req.get(), 0) != 1) return failure("cannot make a CSR");

  // RFC 8555 lets the CN go: a first domain longer than a CN can hold is in the SANs only.
  Result<NamePtr> subject = subject_with_cn(domains.front());
  if (!subject) return subject.error();
  if (X509_REQ_set_subject_name(req.get(), subject->get()) != 1) return failure("cannot make a CSR");

  Result<ExtPtr> san = dns_san_extension(domains);
  if (!san) return san.error();
  ExtsPtr extensions(sk_X509_EXTENSION_new_null());
  if (!extensions || sk_X509_EXTENSION_push(extensions.get(), san->get()) == 0) return failure("cannot make a CSR");
  san->release();  // the stack owns it now
  if (X509_REQ_add_extensions(req.get(), extensions.get()) != 1) return failure("cannot make a CSR");

  if (X509_REQ_set_pubkey(req.get(), key.get()) != 1 || X509_REQ_sign(req.get(), key.get(), EVP_sha256()) <= 0)
    return failure("cannot sign the CSR");

  unsigned char* der = nullptr;
  const int len = i2d_X509_REQ(req.get(), &der);
  if (len <= 0) return failure("cannot encode the CSR");
  BytesPtr owned(der);
  return std::string(as_chars(der, static_cast<size_t>(len)));
}

// ---- TLS-ALPN-01 ----

Result<ChallengeCertificate> make_tls_alpn_certificate(std::string_view domain, std::string_view key_authorization) {
  if (domain.empty()) return Error{"", "cannot make a TLS-ALPN-01 certificate: no domain"};
  Result<Key> key = Key::generate(KeyType::kEC256);
  if (!key) return key.error();

  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) return failure("cannot make a certificate");

  // A random positive 127-bit serial.
  unsigned char serial_bytes[16];
  if (RAND_bytes(serial_bytes, sizeof serial_bytes) != 1) return failure("cannot make a serial number");
  serial_bytes[0] &= 0x7f;
  BnPtr serial_bn(BN_bin2bn(serial_bytes, sizeof serial_bytes, nullptr));
  IntegerPtr serial(serial_bn ? BN_to_ASN1_INTEGER(serial_bn.get(), nullptr) : nullptr);
  if (!serial || X509_set_serialNumber(cert.get(), serial.get()) != 1) return failure("cannot make a serial number");

  Result<NamePtr> name = subject_with_cn(domain);
  if (!name) return name.error();
  if (X509_set_subject_name(cert.get(), name->get()) != 1 || X509_set_issuer_name(cert.get(), name->get()) != 1)
    return failure("cannot make a certificate");
  // An hour back for the validator's clock skew; a week is far longer than any validation.
  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), 7 * 24 * 3600) == nullptr)
    return failure("cannot set the certificate's validity");
  if (X509_set_pubkey(cert.get(), key->get()) != 1) return failure("cannot make a certificate");

  Result<ExtPtr> san = dns_san_extension({std::string(domain)});
  if (!san) return san.error();
  if (X509_add_ext(cert.get(), san->get(), -1) != 1) return failure("cannot add subjectAltName");

  // id-pe-acmeIdentifier: extnValue holds the DER of Authorization ::= OCTET STRING (SIZE (32)),
  // so the extension's own OCTET STRING wraps 04 20 <SHA-256(key authorization)>.
  unsigned char acme_value[2 + 32] = {0x04, 0x20};
  unsigned int digest_len = 0;
  if (EVP_Digest(key_authorization.data(), key_authorization.size(), acme_value + 2, &digest_len, EVP_sha256(),
                 nullptr) != 1 ||
      digest_len != 32)
    return failure("cannot hash the key authorization");
  ObjectPtr oid(OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1));
  OctetsPtr octets(ASN1_OCTET_STRING_new());
  if (!oid || !octets || ASN1_OCTET_STRING_set(octets.get(), acme_value, sizeof acme_value) != 1)
    return failure("cannot make the acmeIdentifier extension");
  ExtPtr acme_ext(X509_EXTENSION_create_by_OBJ(nullptr, oid.get(), 1, octets.get()));
  if (!acme_ext || X509_add_ext(cert.get(), acme_ext.get(), -1) != 1)
    return failure("cannot add the acmeIdentifier extension");

  if (X509_sign(cert.get(), key->get(), EVP_sha256()) <= 0) return failure("cannot sign the certificate");

  ChallengeCertificate out{pem_of(cert.get()), key->to_pem()};
  if (out.cert_pem.empty() || out.key_pem.empty()) return Error{"", "cannot encode the TLS-ALPN-01 certificate"};
  return out;
}

// ---- reading certificates ----

Result<CertificateInfo> read_certificate(std::string_view pem_chain) {
  Result<std::vector<X509Ptr>> chain = read_chain(pem_chain);
  if (!chain) return chain.error();
  X509* leaf = chain->front().get();

  CertificateInfo info;
  Result<std::chrono::system_clock::time_point> not_before = time_point_of(X509_get0_notBefore(leaf));
  if (!not_before) return not_before.error();
  Result<std::chrono::system_clock::time_point> not_after = time_point_of(X509_get0_notAfter(leaf));
  if (!not_after) return not_after.error();
  info.not_before = *not_before;
  info.not_after = *not_after;

  int critical = 0;
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(leaf, NID_subject_alt_name, &critical, nullptr)));
  if (!names && critical == -2) return Error{"", "the certificate has more than one subjectAltName"};
  ERR_clear_error();
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type != GEN_DNS) continue;
    const ASN1_IA5STRING* dns = gn->d.dNSName;
    info.dns_names.push_back(
        to_lower(as_chars(ASN1_STRING_get0_data(dns), static_cast<size_t>(ASN1_STRING_length(dns)))));
  }
  info.issuer_cn = common_name(X509_get_issuer_name(leaf));
  return info;
}

Result<std::string> chain_top_issuer(std::string_view pem_chain) {
  Result<std::vector<X509Ptr>> chain = read_chain(pem_chain);
  if (!chain) return chain.error();
  return common_name(X509_get_issuer_name(chain->back().get()));
}

}  // namespace berth::acme
