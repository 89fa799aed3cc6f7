// Unit tests for ACME's cryptography: keys and their encodings, JWK thumbprints, JWS and EAB signatures
// (verified here with OpenSSL directly), CSRs, the TLS-ALPN-01 certificate and reading certificates.
#include "acme/crypto.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <map>

namespace berth::acme {
namespace {

using namespace std::chrono;
using namespace std::chrono_literals;

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
template <typename T, void (*Free)(T*)>
using Owned = std::unique_ptr<T, Deleter<T, Free>>;
void free_bio(BIO* p) { BIO_free(p); }
void free_bn(BIGNUM* p) { BN_free(p); }
void free_general_names(GENERAL_NAMES* p) { GENERAL_NAMES_free(p); }
using BioPtr = Owned<BIO, free_bio>;
using BnPtr = Owned<BIGNUM, free_bn>;
using PkeyPtr = Owned<EVP_PKEY, EVP_PKEY_free>;
using X509Ptr = Owned<X509, X509_free>;
using ReqPtr = Owned<X509_REQ, X509_REQ_free>;
using GeneralNamesPtr = Owned<GENERAL_NAMES, free_general_names>;

const unsigned char* bytes_of(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

// ---- keys shared by the tests (RSA generation is slow, more so in debug builds) ----

const Key& shared_key(KeyType type) {
  static std::map<KeyType, Key> keys;
  auto it = keys.find(type);
  if (it == keys.end()) {
    Result<Key> key = Key::generate(type);
    EXPECT_TRUE(key.ok()) << (key.ok() ? "" : key.error().message);
    it = keys.emplace(type, key.ok() ? *key : Key()).first;
  }
  return it->second;
}

// A key written by OpenSSL's encoder in `structure` ("type-specific": PKCS#1 / SEC1; "PrivateKeyInfo": PKCS#8).
std::string encode(const Key& key, const char* format, const char* structure) {
  OSSL_ENCODER_CTX* ctx = OSSL_ENCODER_CTX_new_for_pkey(key.get(), EVP_PKEY_KEYPAIR, format, structure, nullptr);
  unsigned char* data = nullptr;
  size_t len = 0;
  EXPECT_EQ(OSSL_ENCODER_to_data(ctx, &data, &len), 1);
  OSSL_ENCODER_CTX_free(ctx);
  std::string out(reinterpret_cast<char*>(data), len);
  OPENSSL_free(data);
  return out;
}

// The tags of the children of a DER SEQUENCE (enough to tell PKCS#1, SEC1 and PKCS#8 apart).
std::vector<uint8_t> sequence_child_tags(std::string_view der) {
  std::vector<uint8_t> tags;
  size_t pos = 0;
  auto read_header = [&](uint8_t& tag, size_t& len) {
    if (pos + 2 > der.size()) return false;
    tag = uint8_t(der[pos++]);
    len = uint8_t(der[pos++]);
    if (len & 0x80) {
      const size_t n = len & 0x7f;
      len = 0;
      for (size_t i = 0; i < n && pos < der.size(); ++i) len = len << 8 | uint8_t(der[pos++]);
    }
    return pos + len <= der.size();
  };
  uint8_t tag = 0;
  size_t len = 0;
  if (!read_header(tag, len) || tag != 0x30 || pos + len != der.size()) return tags;
  while (pos < der.size()) {
    if (!read_header(tag, len)) return {};
    tags.push_back(tag);
    pos += len;
  }
  return tags;
}

PkeyPtr ec_public_key(const char* curve, std::string_view x, std::string_view y) {
  std::string point = "\x04" + std::string(x) + std::string(y);
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>(curve), 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()), OSSL_PARAM_construct_end()};
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
  EVP_PKEY* pkey = nullptr;
  EXPECT_EQ(EVP_PKEY_fromdata_init(ctx), 1);
  EXPECT_EQ(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params), 1);
  EVP_PKEY_CTX_free(ctx);
  return PkeyPtr(pkey);
}

PkeyPtr rsa_public_key(std::string_view n, std::string_view e) {
  BnPtr bn_n(BN_bin2bn(bytes_of(n), int(n.size()), nullptr));
  BnPtr bn_e(BN_bin2bn(bytes_of(e), int(e.size()), nullptr));
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n.get());
  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e.get());
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr);
  EVP_PKEY* pkey = nullptr;
  EXPECT_EQ(EVP_PKEY_fromdata_init(ctx), 1);
  EXPECT_EQ(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params), 1);
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  return PkeyPtr(pkey);
}

std::string decode_url(std::string_view text) {
  Result<std::string> out = base64url_decode(text);
  EXPECT_TRUE(out.ok()) << text;
  return out.ok() ? *out : std::string();
}

std::string sha256(std::string_view data) {
  unsigned char digest[32];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(digest), len);
}

// The public key of a JWK, rebuilt from its members.
PkeyPtr key_of_jwk(const boost::json::object& jwk) {
  if (jwk.at("kty").as_string() == "RSA")
    return rsa_public_key(decode_url(jwk.at("n").as_string()), decode_url(jwk.at("e").as_string()));
  const char* curve = jwk.at("crv").as_string() == "P-256" ? "P-256" : "P-384";
  return ec_public_key(curve, decode_url(jwk.at("x").as_string()), decode_url(jwk.at("y").as_string()));
}

// Verifies a JWS signature the way an ACME server does: ECDSA from r||s, RSASSA-PKCS1-v1_5 as is.
bool verify_jws_signature(EVP_PKEY* pub, std::string_view alg, std::string_view input, std::string signature) {
  const EVP_MD* md = alg == "ES384" ? EVP_sha384() : EVP_sha256();
  if (alg != "RS256") {
    const size_t half = alg == "ES384" ? 48 : 32;
    if (signature.size() != 2 * half) return false;
    ECDSA_SIG* sig = ECDSA_SIG_new();
    ECDSA_SIG_set0(sig, BN_bin2bn(bytes_of(signature), int(half), nullptr),
                   BN_bin2bn(bytes_of(signature) + half, int(half), nullptr));
    unsigned char* der = nullptr;
    const int len = i2d_ECDSA_SIG(sig, &der);
    signature.assign(reinterpret_cast<char*>(der), size_t(len));
    OPENSSL_free(der);
    ECDSA_SIG_free(sig);
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok = EVP_DigestVerifyInit(ctx, nullptr, md, nullptr, pub) == 1 &&
                  EVP_DigestVerify(ctx, bytes_of(signature), signature.size(), bytes_of(input), input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  ERR_clear_error();
  return ok;
}

struct ParsedJws {
  boost::json::object header;
  std::string protected_b64, payload_b64, payload, signature;
};

ParsedJws parse_jws(const std::string& jws) {
  ParsedJws out;
  const boost::json::object root = boost::json::parse(jws).as_object();
  EXPECT_EQ(root.size(), 3u);
  out.protected_b64 = std::string(root.at("protected").as_string());
  out.payload_b64 = std::string(root.at("payload").as_string());
  out.header = boost::json::parse(decode_url(out.protected_b64)).as_object();
  out.payload = decode_url(out.payload_b64);
  out.signature = decode_url(root.at("signature").as_string());
  return out;
}

// ---- certificates made for the tests ----

struct CertSpec {
  std::string subject_cn = {}, issuer_cn = {};
  std::vector<std::string> sans = {};  // "DNS:a.com", "IP:10.0.0.1"
  std::string not_before = "20240101000000Z", not_after = "20340101000000Z";
};

std::string make_cert_pem(const CertSpec& spec) {
  const Key& key = shared_key(KeyType::kEC256);
  X509Ptr x(X509_new());
  X509_set_version(x.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 7);
  auto name = [](const std::string& cn) {
    X509_NAME* n = X509_NAME_new();
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, bytes_of("berth tests"), -1, -1, 0);
    if (!cn.empty()) X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, bytes_of(cn), int(cn.size()), -1, 0);
    return n;
  };
  X509_NAME* subject = name(spec.subject_cn);
  X509_NAME* issuer = name(spec.issuer_cn);
  X509_set_subject_name(x.get(), subject);
  X509_set_issuer_name(x.get(), issuer);
  X509_NAME_free(subject);
  X509_NAME_free(issuer);
  EXPECT_EQ(ASN1_TIME_set_string_X509(X509_getm_notBefore(x.get()), spec.not_before.c_str()), 1);
  EXPECT_EQ(ASN1_TIME_set_string_X509(X509_getm_notAfter(x.get()), spec.not_after.c_str()), 1);
  X509_set_pubkey(x.get(), key.get());
  if (!spec.sans.empty()) {
    std::string value;
    for (const std::string& san : spec.sans) value += (value.empty() ? "" : ",") + san;
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, value.c_str());
    EXPECT_NE(ext, nullptr);
    X509_add_ext(x.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  EXPECT_GT(X509_sign(x.get(), key.get(), EVP_sha256()), 0);
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), x.get());
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, size_t(n));
}

X509Ptr parse_pem_cert(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), int(pem.size())));
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

std::vector<std::string> dns_sans(GENERAL_NAMES* names) {
  std::vector<std::string> out;
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type == GEN_DNS)
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.dNSName)),
                       size_t(ASN1_STRING_length(gn->d.dNSName)));
  }
  return out;
}

std::string subject_cn(const X509_NAME* name) {
  char buf[256] = {};
  X509_NAME_get_text_by_NID(name, NID_commonName, buf, sizeof buf);
  return buf;
}

system_clock::time_point utc(year_month_day date, seconds time_of_day = 0s) {
  return system_clock::time_point(sys_days(date).time_since_epoch() + time_of_day);
}

// ---- key types ----

TEST(AcmeKeyType, ParsesTraefikSpellingsCaseInsensitively) {
  for (KeyType type : {KeyType::kEC256, KeyType::kEC384, KeyType::kRSA2048, KeyType::kRSA4096, KeyType::kRSA8192}) {
    Result<KeyType> parsed = parse_key_type(key_type_name(type));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, type);
  }
  ASSERT_TRUE(parse_key_type("rsa4096").ok());
  EXPECT_EQ(*parse_key_type("rsa4096"), KeyType::kRSA4096);
  EXPECT_EQ(*parse_key_type("ec384"), KeyType::kEC384);
  EXPECT_EQ(key_type_name(KeyType::kRSA8192), "RSA8192");
}

TEST(AcmeKeyType, RejectsUnknownNamesListingTheValidOnes) {
  Result<KeyType> parsed = parse_key_type("P256");
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.error().message.find("EC256, EC384, RSA2048, RSA4096 or RSA8192"), std::string::npos);
  EXPECT_FALSE(parse_key_type("").ok());
  EXPECT_FALSE(parse_key_type("RSA2048 ").ok());
}

// ---- keys ----

TEST(AcmeKey, GeneratesEachTypeWithItsAlgorithm) {
  const Key& ec256 = shared_key(KeyType::kEC256);
  const Key& ec384 = shared_key(KeyType::kEC384);
  const Key& rsa = shared_key(KeyType::kRSA2048);
  ASSERT_TRUE(ec256 && ec384 && rsa);
  EXPECT_TRUE(ec256.is_ec());
  EXPECT_TRUE(ec384.is_ec());
  EXPECT_FALSE(rsa.is_ec());
  EXPECT_EQ(ec256.jws_alg(), "ES256");
  EXPECT_EQ(ec384.jws_alg(), "ES384");
  EXPECT_EQ(rsa.jws_alg(), "RS256");
  EXPECT_EQ(EVP_PKEY_get_bits(rsa.get()), 2048);
  EXPECT_EQ(EVP_PKEY_get_bits(ec384.get()), 384);

  BIGNUM* e = nullptr;
  ASSERT_EQ(EVP_PKEY_get_bn_param(rsa.get(), OSSL_PKEY_PARAM_RSA_E, &e), 1);
  EXPECT_EQ(BN_get_word(e), 65537u);
  BN_free(e);
}

TEST(AcmeKey, Rsa4096GeneratesAndRoundTrips) {
  const Key& rsa = shared_key(KeyType::kRSA4096);
  ASSERT_TRUE(rsa);
  EXPECT_EQ(EVP_PKEY_get_bits(rsa.get()), 4096);
  Result<Key> back = Key::from_der(rsa.to_der());
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(EVP_PKEY_eq(back->get(), rsa.get()), 1);
  EXPECT_EQ(back->to_der(), rsa.to_der());
}

TEST(AcmeKey, DerIsPkcs1ForRsaAndSec1WithCurveAndPublicKeyForEc) {
  // PKCS#1 RSAPrivateKey: version, n, e, d, p, q, dp, dq, qinv (all INTEGERs).
  EXPECT_EQ(sequence_child_tags(shared_key(KeyType::kRSA2048).to_der()), std::vector<uint8_t>(9, 0x02));
  // SEC1 ECPrivateKey: version, privateKey OCTET STRING, [0] named curve, [1] public key: what Go's
  // x509.ParseECPrivateKey needs (it refuses a key without the curve).
  const std::vector<uint8_t> sec1 = {0x02, 0x04, 0xa0, 0xa1};
  EXPECT_EQ(sequence_child_tags(shared_key(KeyType::kEC256).to_der()), sec1);
  EXPECT_EQ(sequence_child_tags(shared_key(KeyType::kEC384).to_der()), sec1);
}

TEST(AcmeKey, DerAndPemRoundTripForEveryType) {
  for (KeyType type : {KeyType::kEC256, KeyType::kEC384, KeyType::kRSA2048}) {
    SCOPED_TRACE(std::string(key_type_name(type)));
    const Key& key = shared_key(type);
    const std::string der = key.to_der();
    Result<Key> from_der = Key::from_der(der);
    ASSERT_TRUE(from_der.ok()) << from_der.error().message;
    EXPECT_EQ(EVP_PKEY_eq(from_der->get(), key.get()), 1);
    EXPECT_EQ(from_der->to_der(), der);
    EXPECT_EQ(from_der->jws_alg(), key.jws_alg());

    const std::string pem = key.to_pem();
    EXPECT_EQ(pem.rfind("-----BEGIN PRIVATE KEY-----\n", 0), 0u) << pem;
    Result<Key> from_pem = Key::from_pem(pem);
    ASSERT_TRUE(from_pem.ok()) << from_pem.error().message;
    EXPECT_EQ(EVP_PKEY_eq(from_pem->get(), key.get()), 1);
    EXPECT_EQ(from_pem->to_der(), der);

    // The base64 of the DER is what acme.json holds.
    Result<std::string> stored = base64_decode(base64(der));
    ASSERT_TRUE(stored.ok());
    EXPECT_TRUE(Key::from_der(*stored).ok());
  }
}

TEST(AcmeKey, ReadsTraditionalAndPkcs8Encodings) {
  for (KeyType type : {KeyType::kEC256, KeyType::kRSA2048}) {
    SCOPED_TRACE(std::string(key_type_name(type)));
    const Key& key = shared_key(type);
    const std::string traditional = encode(key, "PEM", "type-specific");
    EXPECT_NE(traditional.find(type == KeyType::kEC256 ? "-----BEGIN EC PRIVATE KEY-----" : "-----BEGIN RSA PRIVATE KEY-----"),
              std::string::npos);
    Result<Key> a = Key::from_pem(traditional);
    ASSERT_TRUE(a.ok()) << a.error().message;
    EXPECT_EQ(EVP_PKEY_eq(a->get(), key.get()), 1);

    Result<Key> b = Key::from_der(encode(key, "DER", "PrivateKeyInfo"));
    ASSERT_TRUE(b.ok()) << b.error().message;
    EXPECT_EQ(EVP_PKEY_eq(b->get(), key.get()), 1);

    Result<Key> c = Key::from_der(encode(key, "DER", "type-specific"));
    ASSERT_TRUE(c.ok()) << c.error().message;
    EXPECT_EQ(EVP_PKEY_eq(c->get(), key.get()), 1);
    // OpenSSL 3's decoders try several formats; the misses must not stay on the error queue.
    EXPECT_EQ(ERR_peek_error(), 0u);
  }
}

TEST(AcmeKey, RejectsGarbageTrailingDataAndUnsupportedKeys) {
  Result<Key> garbage = Key::from_der("not a key");
  ASSERT_FALSE(garbage.ok());
  EXPECT_NE(garbage.error().message.find("cannot read the private key"), std::string::npos);
  EXPECT_FALSE(Key::from_der("").ok());
  EXPECT_FALSE(Key::from_pem("").ok());
  EXPECT_FALSE(Key::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").ok());
  EXPECT_FALSE(Key::from_der(shared_key(KeyType::kEC256).to_der() + "x").ok());

  EVP_PKEY* ed = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  ASSERT_NE(ed, nullptr);
  const Key ed_key{std::shared_ptr<EVP_PKEY>(ed, EVP_PKEY_free)};
  Result<Key> unsupported = Key::from_pem(ed_key.to_pem());
  ASSERT_FALSE(unsupported.ok());
  EXPECT_NE(unsupported.error().message.find("unsupported key type"), std::string::npos);
  EXPECT_EQ(ed_key.jws_alg(), "");
  EXPECT_EQ(ed_key.jwk_json(), "");
  EXPECT_FALSE(sign_jws(ed_key, "", "n", "https://ca/x", "{}").ok());
  // A failure leaves nothing on OpenSSL's queue for the next caller to trip over.
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(AcmeKey, EmptyKeyIsFalseAndEncodesToNothing) {
  const Key empty;
  EXPECT_FALSE(empty);
  EXPECT_EQ(empty.to_der(), "");
  EXPECT_EQ(empty.to_pem(), "");
  EXPECT_EQ(empty.jwk_json(), "");
  EXPECT_EQ(empty.thumbprint(), "");
  EXPECT_FALSE(empty.is_ec());
}

// ---- JWK ----

TEST(AcmeJwk, Rfc7638ExampleThumbprint) {
  const std::string n =
      "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjh"
      "Mstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQv"
      "RL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKn"
      "qDKgw";
  PkeyPtr pub = rsa_public_key(decode_url(n), decode_url("AQAB"));
  ASSERT_TRUE(pub);
  const Key key{std::shared_ptr<EVP_PKEY>(pub.release(), EVP_PKEY_free)};
  EXPECT_EQ(key.jwk_json(), "{\"e\":\"AQAB\",\"kty\":\"RSA\",\"n\":\"" + n + "\"}");
  EXPECT_EQ(key.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
}

TEST(AcmeJwk, RoundTripsToTheSamePublicKey) {
  for (KeyType type : {KeyType::kEC256, KeyType::kEC384, KeyType::kRSA2048}) {
    SCOPED_TRACE(std::string(key_type_name(type)));
    const Key& key = shared_key(type);
    const std::string json = key.jwk_json();
    const boost::json::object jwk = boost::json::parse(json).as_object();
    // Canonical: RFC 7638's member order, no whitespace.
    EXPECT_EQ(boost::json::serialize(jwk), json);
    if (key.is_ec()) {
      EXPECT_EQ(json.rfind(type == KeyType::kEC256 ? "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\""
                                                   : "{\"crv\":\"P-384\",\"kty\":\"EC\",\"x\":\"",
                           0),
                0u);
      EXPECT_EQ(jwk.size(), 4u);
    } else {
      EXPECT_EQ(json.rfind("{\"e\":\"AQAB\",\"kty\":\"RSA\",\"n\":\"", 0), 0u);
      EXPECT_EQ(decode_url(jwk.at("n").as_string()).size(), 256u);
    }
    PkeyPtr pub = key_of_jwk(jwk);
    ASSERT_TRUE(pub);
    EXPECT_EQ(EVP_PKEY_eq(pub.get(), key.get()), 1);
    EXPECT_EQ(key.thumbprint(), base64url(sha256(json)));
    EXPECT_EQ(key.thumbprint().size(), 43u);
  }
}

TEST(AcmeJwk, EcCoordinatesKeepTheirLeadingZeros) {
  // About one P-256 key in 128 has a coordinate whose first byte is zero; JWK keeps the full width.
  for (int i = 0; i < 4000; ++i) {
    Result<Key> key = Key::generate(KeyType::kEC256);
    ASSERT_TRUE(key.ok());
    const boost::json::object jwk = boost::json::parse(key->jwk_json()).as_object();
    const std::string x = decode_url(jwk.at("x").as_string());
    const std::string y = decode_url(jwk.at("y").as_string());
    ASSERT_EQ(x.size(), 32u);
    ASSERT_EQ(y.size(), 32u);
    if (x[0] != 0 && y[0] != 0) continue;
    PkeyPtr pub = key_of_jwk(jwk);
    ASSERT_TRUE(pub);
    EXPECT_EQ(EVP_PKEY_eq(pub.get(), key->get()), 1);
    return;
  }
  FAIL() << "no key with a leading zero coordinate in 4000 tries";
}

// ---- JWS ----

TEST(AcmeJws, SignaturesVerifyForEveryAlgorithm) {
  for (KeyType type : {KeyType::kEC256, KeyType::kEC384, KeyType::kRSA2048}) {
    SCOPED_TRACE(std::string(key_type_name(type)));
    const Key& key = shared_key(type);
    const std::string payload = R"({"termsOfServiceAgreed":true,"contact":["mailto:a@example.com"]})";
    Result<std::string> jws = sign_jws(key, "", "nonce-1", "https://ca.example/acme/new-acct", payload);
    ASSERT_TRUE(jws.ok()) << jws.error().message;
    const ParsedJws parsed = parse_jws(*jws);

    EXPECT_EQ(parsed.header.at("alg").as_string(), key.jws_alg());
    EXPECT_EQ(parsed.header.at("nonce").as_string(), "nonce-1");
    EXPECT_EQ(parsed.header.at("url").as_string(), "https://ca.example/acme/new-acct");
    EXPECT_FALSE(parsed.header.contains("kid"));
    EXPECT_EQ(boost::json::serialize(parsed.header.at("jwk")), key.jwk_json());
    EXPECT_EQ(parsed.payload, payload);

    // Verified against the public key the header carries, as the CA does for newAccount.
    PkeyPtr pub = key_of_jwk(parsed.header.at("jwk").as_object());
    ASSERT_TRUE(pub);
    EXPECT_TRUE(verify_jws_signature(pub.get(), key.jws_alg(), parsed.protected_b64 + "." + parsed.payload_b64,
                                     parsed.signature));
    // And a different input does not verify.
    EXPECT_FALSE(verify_jws_signature(pub.get(), key.jws_alg(), parsed.protected_b64 + ".e30", parsed.signature));
  }
}

TEST(AcmeJws, EcdsaSignaturesAreFixedWidthRAndS) {
  // r or s below 2^(8*(n-1)) would make a naive DER conversion one byte short; many signatures
  // make sure such a case is met and still has the full width.
  for (int i = 0; i < 300; ++i) {
    Result<std::string> jws = sign_jws(shared_key(KeyType::kEC256), "kid", std::to_string(i), "https://ca/x", "{}");
    ASSERT_TRUE(jws.ok());
    const ParsedJws parsed = parse_jws(*jws);
    ASSERT_EQ(parsed.signature.size(), 64u);
    ASSERT_TRUE(verify_jws_signature(shared_key(KeyType::kEC256).get(), "ES256",
                                     parsed.protected_b64 + "." + parsed.payload_b64, parsed.signature));
  }
  Result<std::string> jws = sign_jws(shared_key(KeyType::kEC384), "kid", "n", "https://ca/x", "{}");
  ASSERT_TRUE(jws.ok());
  EXPECT_EQ(parse_jws(*jws).signature.size(), 96u);
}

TEST(AcmeJws, KidReplacesJwkAndPostAsGetHasAnEmptyPayload) {
  const Key& key = shared_key(KeyType::kEC256);
  Result<std::string> jws = sign_jws(key, "https://ca.example/acme/acct/42", "n2", "https://ca.example/acme/order/1", "",
                                     /*post_as_get=*/true);
  ASSERT_TRUE(jws.ok());
  const ParsedJws parsed = parse_jws(*jws);
  EXPECT_EQ(parsed.header.size(), 4u);
  EXPECT_EQ(parsed.header.at("kid").as_string(), "https://ca.example/acme/acct/42");
  EXPECT_FALSE(parsed.header.contains("jwk"));
  EXPECT_EQ(parsed.payload_b64, "");
  EXPECT_NE(jws->find("\"payload\":\"\""), std::string::npos);
  EXPECT_TRUE(verify_jws_signature(key.get(), "ES256", parsed.protected_b64 + ".", parsed.signature));

  // post_as_get wins over a payload.
  Result<std::string> ignored = sign_jws(key, "k", "n", "https://ca/x", "{\"a\":1}", true);
  ASSERT_TRUE(ignored.ok());
  EXPECT_EQ(parse_jws(*ignored).payload_b64, "");
}

TEST(AcmeJws, EscapesHeaderStringsAndOmitsAnEmptyNonce) {
  const Key& key = shared_key(KeyType::kRSA2048);
  const std::string nonce = "a\"b\\c\n";
  const std::string url = "https://ca.example/acme/\"odd\"\x01";
  Result<std::string> jws = sign_jws(key, "kid\"", nonce, url, "{}");
  ASSERT_TRUE(jws.ok());
  ParsedJws parsed = parse_jws(*jws);
  EXPECT_EQ(parsed.header.at("nonce").as_string(), nonce);
  EXPECT_EQ(parsed.header.at("url").as_string(), url);
  EXPECT_EQ(parsed.header.at("kid").as_string(), "kid\"");
  EXPECT_TRUE(verify_jws_signature(key.get(), "RS256", parsed.protected_b64 + "." + parsed.payload_b64, parsed.signature));

  // RFC 8555 7.3.5: keyChange's inner JWS has no nonce.
  jws = sign_jws(key, "", "", "https://ca.example/acme/key-change", "{}");
  ASSERT_TRUE(jws.ok());
  parsed = parse_jws(*jws);
  EXPECT_FALSE(parsed.header.contains("nonce"));
  EXPECT_EQ(parsed.header.size(), 3u);
}

TEST(AcmeJws, RefusesAnEmptyKey) { EXPECT_FALSE(sign_jws(Key(), "", "n", "https://ca/x", "{}").ok()); }

// ---- External Account Binding ----

TEST(AcmeEab, Hs256OverTheAccountJwk) {
  // The HMAC key of RFC 7515 A.1.
  const std::string encoded = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
  const std::string hmac_key = decode_url(encoded);
  ASSERT_EQ(hmac_key.size(), 64u);
  const Key& account = shared_key(KeyType::kEC256);
  Result<std::string> eab = sign_eab(account, "kid-1", encoded, "https://ca.example/acme/new-acct");
  ASSERT_TRUE(eab.ok()) << eab.error().message;
  const ParsedJws parsed = parse_jws(*eab);
  EXPECT_EQ(decode_url(parsed.protected_b64), R"({"alg":"HS256","kid":"kid-1","url":"https://ca.example/acme/new-acct"})");
  EXPECT_EQ(parsed.payload, account.jwk_json());

  const std::string input = parsed.protected_b64 + "." + parsed.payload_b64;
  unsigned char mac[32];
  unsigned int len = 0;
  ASSERT_NE(HMAC(EVP_sha256(), hmac_key.data(), int(hmac_key.size()), bytes_of(input), input.size(), mac, &len), nullptr);
  EXPECT_EQ(parsed.signature, std::string(reinterpret_cast<char*>(mac), len));
}

TEST(AcmeEab, AcceptsStandardBase64PaddedOrNotAndSurroundingSpace) {
  const std::string encoded = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
  const Key& account = shared_key(KeyType::kRSA2048);
  Result<std::string> want = sign_eab(account, "k", encoded, "https://ca/new-acct");
  ASSERT_TRUE(want.ok());
  const std::string standard = base64(decode_url(encoded));
  EXPECT_NE(standard.find('+'), std::string::npos);
  EXPECT_NE(standard.find('='), std::string::npos);
  for (const std::string& variant : {standard, standard.substr(0, standard.find('=')), encoded + "==", " " + encoded + "\n"}) {
    Result<std::string> got = sign_eab(account, "k", variant, "https://ca/new-acct");
    ASSERT_TRUE(got.ok()) << variant;
    EXPECT_EQ(*got, *want) << variant;  // HS256 is deterministic
  }
  EXPECT_FALSE(sign_eab(account, "k", "not*base64", "https://ca/new-acct").ok());
  EXPECT_FALSE(sign_eab(account, "k", "", "https://ca/new-acct").ok());
  EXPECT_FALSE(sign_eab(Key(), "k", encoded, "https://ca/new-acct").ok());
}

// ---- CSR ----

TEST(AcmeCsr, CarriesEveryDomainAndVerifies) {
  const std::vector<std::string> domains = {"example.com", "www.example.com", "*.example.org"};
  for (KeyType type : {KeyType::kEC256, KeyType::kEC384, KeyType::kRSA2048}) {
    SCOPED_TRACE(std::string(key_type_name(type)));
    const Key& key = shared_key(type);
    Result<std::string> der = make_csr(key, domains);
    ASSERT_TRUE(der.ok()) << der.error().message;
    const unsigned char* p = bytes_of(*der);
    ReqPtr req(d2i_X509_REQ(nullptr, &p, long(der->size())));
    ASSERT_TRUE(req);
    EXPECT_EQ(p, bytes_of(*der) + der->size());

    EXPECT_EQ(X509_REQ_verify(req.get(), key.get()), 1);
    PkeyPtr pub(X509_REQ_get_pubkey(req.get()));
    EXPECT_EQ(EVP_PKEY_eq(pub.get(), key.get()), 1);
    EXPECT_EQ(X509_REQ_get_signature_nid(req.get()), type == KeyType::kRSA2048 ? NID_sha256WithRSAEncryption
                                                                                : NID_ecdsa_with_SHA256);
    EXPECT_EQ(subject_cn(X509_REQ_get_subject_name(req.get())), "example.com");

    STACK_OF(X509_EXTENSION)* exts = X509_REQ_get_extensions(req.get());
    ASSERT_NE(exts, nullptr);
    const int index = X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1);
    ASSERT_GE(index, 0);
    GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(sk_X509_EXTENSION_value(exts, index))));
    EXPECT_EQ(dns_sans(names.get()), domains);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  }
}

TEST(AcmeCsr, LeavesTheCommonNameOutWhenTheFirstDomainIsTooLong) {
  const std::string long_name = std::string(70, 'a') + ".example.com";
  Result<std::string> der = make_csr(shared_key(KeyType::kEC256), {long_name, "b.example.com"});
  ASSERT_TRUE(der.ok()) << der.error().message;
  const unsigned char* p = bytes_of(*der);
  ReqPtr req(d2i_X509_REQ(nullptr, &p, long(der->size())));
  ASSERT_TRUE(req);
  EXPECT_EQ(X509_NAME_entry_count(X509_REQ_get_subject_name(req.get())), 0);
  STACK_OF(X509_EXTENSION)* exts = X509_REQ_get_extensions(req.get());
  GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509V3_get_d2i(exts, NID_subject_alt_name, nullptr, nullptr)));
  EXPECT_EQ(dns_sans(names.get()), (std::vector<std::string>{long_name, "b.example.com"}));
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
}

TEST(AcmeCsr, NeedsAKeyAndADomain) {
  EXPECT_FALSE(make_csr(shared_key(KeyType::kEC256), {}).ok());
  EXPECT_FALSE(make_csr(Key(), {"example.com"}).ok());
}

// ---- TLS-ALPN-01 ----

TEST(AcmeTlsAlpn, CertificateCarriesTheCriticalAcmeIdentifier) {
  const std::string key_authorization = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI";
  Result<ChallengeCertificate> made = make_tls_alpn_certificate("Example.com", key_authorization);
  ASSERT_TRUE(made.ok()) << made.error().message;
  X509Ptr cert = parse_pem_cert(made->cert_pem);
  ASSERT_TRUE(cert);

  ASN1_OBJECT* oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
  const int index = X509_get_ext_by_OBJ(cert.get(), oid, -1);
  ASN1_OBJECT_free(oid);
  ASSERT_GE(index, 0);
  X509_EXTENSION* ext = X509_get_ext(cert.get(), index);
  EXPECT_EQ(X509_EXTENSION_get_critical(ext), 1);
  const ASN1_OCTET_STRING* value = X509_EXTENSION_get_data(ext);
  const std::string extn_value(reinterpret_cast<const char*>(ASN1_STRING_get0_data(value)),
                               size_t(ASN1_STRING_length(value)));
  EXPECT_EQ(extn_value, std::string("\x04\x20", 2) + sha256(key_authorization));

  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr)));
  EXPECT_EQ(dns_sans(names.get()), std::vector<std::string>{"Example.com"});
  EXPECT_EQ(subject_cn(X509_get_subject_name(cert.get())), "Example.com");
  EXPECT_EQ(X509_get_version(cert.get()), X509_VERSION_3);

  // Self-signed with the fresh P-256 key handed back.
  Result<Key> key = Key::from_pem(made->key_pem);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(key->jws_alg(), "ES256");
  EXPECT_EQ(X509_check_private_key(cert.get(), key->get()), 1);
  EXPECT_EQ(X509_verify(cert.get(), key->get()), 1);
  EXPECT_EQ(X509_get_signature_nid(cert.get()), NID_ecdsa_with_SHA256);

  Result<CertificateInfo> info = read_certificate(made->cert_pem);
  ASSERT_TRUE(info.ok());
  const auto now = system_clock::now();
  EXPECT_LT(abs(info->not_before - (now - 1h)), 1min);
  EXPECT_LT(abs(info->not_after - (now + 7 * 24h)), 1min);
  EXPECT_EQ(info->dns_names, std::vector<std::string>{"example.com"});
  EXPECT_EQ(info->issuer_cn, "Example.com");

  // Each certificate has its own key.
  Result<ChallengeCertificate> again = make_tls_alpn_certificate("Example.com", key_authorization);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again->key_pem, made->key_pem);
}

// ---- reading certificates ----

TEST(AcmeCertificate, ReadsDatesNamesAndIssuerOfTheFirst) {
  const std::string leaf = make_cert_pem({.subject_cn = "a.example.com",
                                          .issuer_cn = "Test Intermediate R3",
                                          .sans = {"DNS:A.Example.com", "IP:10.0.0.1", "DNS:*.B.example.com"},
                                          .not_before = "20240229123456Z",
                                          .not_after = "20240529123456Z"});
  const std::string intermediate = make_cert_pem({.subject_cn = "Test Intermediate R3", .issuer_cn = "Test Root X1"});
  Result<CertificateInfo> info = read_certificate(leaf + intermediate);
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->not_before, utc(2024y / February / 29, 12h + 34min + 56s));
  EXPECT_EQ(info->not_after, utc(2024y / May / 29, 12h + 34min + 56s));
  EXPECT_EQ(info->dns_names, (std::vector<std::string>{"a.example.com", "*.b.example.com"}));
  EXPECT_EQ(info->issuer_cn, "Test Intermediate R3");

  Result<std::string> top = chain_top_issuer(leaf + intermediate);
  ASSERT_TRUE(top.ok());
  EXPECT_EQ(*top, "Test Root X1");
  EXPECT_EQ(*chain_top_issuer(leaf), "Test Intermediate R3");
}

TEST(AcmeCertificate, ReadsGeneralizedTimesBeyond2038) {
  // RFC 5280: dates from 2050 on are GeneralizedTime; before, UTCTime.
  const std::string pem = make_cert_pem({.subject_cn = "x", .issuer_cn = "y", .not_before = "19991231235959Z",
                                         .not_after = "20610301000000Z"});
  Result<CertificateInfo> info = read_certificate(pem);
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->not_before, utc(1999y / December / 31, 23h + 59min + 59s));
  EXPECT_EQ(info->not_after, utc(2061y / March / 1));
  EXPECT_TRUE(info->dns_names.empty());
}

TEST(AcmeCertificate, IssuerWithoutCommonNameIsEmpty) {
  const std::string pem = make_cert_pem({.subject_cn = "x", .issuer_cn = ""});
  Result<CertificateInfo> info = read_certificate(pem);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->issuer_cn, "");
}

TEST(AcmeCertificate, RejectsTextWithoutCertificates) {
  EXPECT_FALSE(read_certificate("").ok());
  EXPECT_FALSE(read_certificate("hello").ok());
  EXPECT_FALSE(chain_top_issuer(shared_key(KeyType::kEC256).to_pem()).ok());
  EXPECT_FALSE(read_certificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").ok());
  EXPECT_EQ(ERR_peek_error(), 0u);
}

// ---- base64 ----

TEST(AcmeBase64, Rfc4648Vectors) {
  const std::vector<std::pair<std::string, std::string>> vectors = {
      {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(base64(plain), encoded);
    EXPECT_EQ(base64url(plain), encoded.substr(0, encoded.find('=')));
    EXPECT_EQ(*base64_decode(encoded), plain);
    EXPECT_EQ(*base64url_decode(base64url(plain)), plain);
  }
  EXPECT_EQ(base64("\xfb\xff\xfe"), "+//+");
  EXPECT_EQ(base64url("\xfb\xff\xfe"), "-__-");
}

TEST(AcmeBase64, RoundTripsEveryByte) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += char(i);
  for (size_t len = 0; len < 8; ++len) {
    const std::string part = all.substr(all.size() - len);
    EXPECT_EQ(*base64_decode(base64(part)), part);
    EXPECT_EQ(*base64url_decode(base64url(part)), part);
  }
  EXPECT_EQ(*base64_decode(base64(all)), all);
  EXPECT_EQ(*base64url_decode(base64url(all)), all);
}

TEST(AcmeBase64, DecodingToleratesMissingPaddingAndLineBreaks) {
  EXPECT_EQ(*base64_decode("Zm9vYg"), "foob");
  EXPECT_EQ(*base64_decode("Zm9v\nYmFy\r\n"), "foobar");
  EXPECT_EQ(*base64_decode(" Zm9v YmE= \n"), "fooba");
  EXPECT_EQ(*base64url_decode("Zm9vYg=="), "foob");  // padding accepted, not needed
  EXPECT_EQ(*base64url_decode("-__-"), "\xfb\xff\xfe");
}

TEST(AcmeBase64, DecodingRejectsInvalidText) {
  EXPECT_FALSE(base64_decode("Zm9v!").ok());
  EXPECT_FALSE(base64_decode("Z").ok());           // a lone digit holds no byte
  EXPECT_FALSE(base64_decode("Zm9vYg=").ok());     // half the padding
  EXPECT_FALSE(base64_decode("Zg==Zg==").ok());    // data after padding
  EXPECT_FALSE(base64_decode("Zm9v=").ok());       // padding after a full group
  EXPECT_FALSE(base64_decode("-__-").ok());        // URL alphabet
  EXPECT_FALSE(base64url_decode("+//+").ok());     // standard alphabet
  EXPECT_FALSE(base64url_decode("Zm9v\nYmFy").ok());  // no whitespace in JWS
  Result<std::string> bad = base64_decode("ab\x80=");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("invalid base64"), std::string::npos);
}

}  // namespace
}  // namespace berth::acme
