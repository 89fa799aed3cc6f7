// Unit tests for the compiled TLS store: certificate loading, Traefik's SNI choice, and real in-memory
// handshakes (two SSL objects over a BIO pair) against each options set's SSL_CTX. Certificates are made here.
#include "proxy/tls/certificate_store.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

namespace berth::proxy::tls {
namespace {

using namespace std::chrono_literals;
using X509Ptr = std::unique_ptr<X509, Certificate::X509Free>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Certificate::KeyFree>;

// ---- certificates made for the tests ----

struct Made {
  std::string cert_pem;
  std::string key_pem;
  X509Ptr cert;
  KeyPtr key;
};

struct Spec {
  std::string cn;
  std::vector<std::string> sans;  // "DNS:a.com", "IP:10.0.0.1"
  KeyType type = KeyType::kEcdsa;
  long not_before = -3600;        // seconds from now
  long not_after = 30 * 86400;
  const Made* issuer = nullptr;   // null: self-signed
  bool ca = false;
  bool client = false;
};

// RSA key generation is slow under sanitizers: every RSA certificate shares one key.
EVP_PKEY* shared_rsa_key() {
  static EVP_PKEY* key = EVP_RSA_gen(2048);
  return key;
}

std::string pem_of(X509* x) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, x);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, size_t(n));
  BIO_free(bio);
  return out;
}

std::string pem_of(EVP_PKEY* k) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, k, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, size_t(n));
  BIO_free(bio);
  return out;
}

Made make_cert(const Spec& spec) {
  Made m;
  if (spec.type == KeyType::kRsa) {
    EVP_PKEY_up_ref(shared_rsa_key());
    m.key.reset(shared_rsa_key());
  } else {
    m.key.reset(EVP_EC_gen("P-256"));
  }
  m.cert.reset(X509_new());
  X509* x = m.cert.get();
  X509_set_version(x, 2);
  unsigned char serial[8];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(x), spec.not_before);
  X509_gmtime_adj(X509_getm_notAfter(x), spec.not_after);
  X509_set_pubkey(x, m.key.get());
  X509_NAME* name = X509_get_subject_name(x);
  if (!spec.cn.empty())
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(spec.cn.c_str()), -1,
                               -1, 0);
  X509_set_issuer_name(x, spec.issuer ? X509_get_subject_name(spec.issuer->cert.get()) : name);
  X509V3_CTX v3;
  X509V3_set_ctx(&v3, spec.issuer ? spec.issuer->cert.get() : x, x, nullptr, nullptr, 0);
  std::vector<std::pair<int, std::string>> extensions{
      {NID_basic_constraints, spec.ca ? "critical,CA:TRUE" : "CA:FALSE"}};
  if (spec.ca) extensions.emplace_back(NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
  if (spec.client) extensions.emplace_back(NID_ext_key_usage, "clientAuth");
  std::string sans;
  for (const auto& s : spec.sans) sans += (sans.empty() ? "" : ",") + s;
  if (!sans.empty()) extensions.emplace_back(NID_subject_alt_name, sans);
  for (const auto& [nid, value] : extensions) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
    EXPECT_NE(ext, nullptr) << value;
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  }
  EXPECT_GT(X509_sign(x, spec.issuer ? spec.issuer->key.get() : m.key.get(), EVP_sha256()), 0);
  m.cert_pem = pem_of(x);
  m.key_pem = pem_of(m.key.get());
  return m;
}

Made make_cert(std::string cn, std::vector<std::string> sans = {}, KeyType type = KeyType::kEcdsa) {
  Spec spec;
  spec.cn = std::move(cn);
  spec.sans = std::move(sans);
  spec.type = type;
  return make_cert(spec);
}

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/berth-tls-test-XXXXXX";
    path_ = mkdtemp(pattern);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string write(const std::string& name, const std::string& content) const {
    const std::string path = path_ + "/" + name;
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }

 private:
  std::string path_;
};

config::TlsCertificateConfig cert_config(std::string cert_file, std::string key_file, std::string where,
                                         std::vector<std::string> stores = {}) {
  config::TlsCertificateConfig c;
  c.cert_file = std::move(cert_file);
  c.key_file = std::move(key_file);
  c.where = std::move(where);
  c.stores = std::move(stores);
  return c;
}

std::string all_errors(const std::vector<Error>& errors) {
  std::string out;
  for (const auto& e : errors) out += e.to_string() + "\n";
  return out;
}

std::shared_ptr<const CertificateStore> build_ok(const config::TlsConfig& config, std::vector<Error>* out = nullptr,
                                                 std::shared_ptr<TicketKeyRing> ring = nullptr) {
  std::vector<Error> problems;
  auto store = CertificateStore::build(config, problems, ring ? ring : TicketKeyRing::process_default());
  EXPECT_TRUE(store.ok()) << (store.ok() ? "" : store.error().to_string());
  if (out != nullptr) *out = problems;
  else EXPECT_TRUE(problems.empty()) << all_errors(problems);
  return store.ok() ? *store : nullptr;
}

// ---- an in-memory handshake ----

struct Client {
  std::string sni{};
  std::vector<std::string> alpn{};
  int min_version = 0;
  int max_version = 0;
  std::string sigalgs{};           // e.g. "RSA-PSS+SHA256" to refuse ECDSA
  std::string tls12_ciphers{};
  const Made* certificate = nullptr;
  SSL_SESSION* session = nullptr;  // to resume
  std::string local_address{};       // set on the server SSL
};

struct Outcome {
  bool ok = false;
  std::string peer_cn;
  KeyType peer_key = KeyType::kOther;
  int peer_chain_length = 0;
  std::string alpn;
  int version = 0;
  std::string cipher;
  int group = 0;
  bool reused = false;
  std::shared_ptr<SSL_SESSION> session;
  std::string error;
};

std::string drain_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += std::string(buf) + "; ";
  }
  return out;
}

Outcome handshake(SSL_CTX* server_ctx, const Client& c) {
  Outcome out;
  EXPECT_NE(server_ctx, nullptr);
  if (server_ctx == nullptr) return out;
  SSL_CTX* client_ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_security_level(client_ctx, 0);  // lets a TLS 1.1 client try
  SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_session_cache_mode(client_ctx, SSL_SESS_CACHE_OFF);  // freeing a cache spoils its sessions
  if (c.min_version) SSL_CTX_set_min_proto_version(client_ctx, c.min_version);
  if (c.max_version) SSL_CTX_set_max_proto_version(client_ctx, c.max_version);
  if (!c.sigalgs.empty()) {
    EXPECT_EQ(SSL_CTX_set1_sigalgs_list(client_ctx, c.sigalgs.c_str()), 1);
  }
  if (!c.tls12_ciphers.empty()) {
    EXPECT_EQ(SSL_CTX_set_cipher_list(client_ctx, c.tls12_ciphers.c_str()), 1);
  }
  SSL* server = SSL_new(server_ctx);
  SSL* client = SSL_new(client_ctx);
  if (!c.local_address.empty()) CertificateStore::set_local_address(server, c.local_address);
  if (!c.sni.empty()) SSL_set_tlsext_host_name(client, c.sni.c_str());
  if (!c.alpn.empty()) {
    std::string wire;
    for (const auto& p : c.alpn) wire += char(p.size()) + p;
    SSL_set_alpn_protos(client, reinterpret_cast<const unsigned char*>(wire.data()), unsigned(wire.size()));
  }
  if (c.certificate != nullptr) {
    EXPECT_EQ(SSL_use_certificate(client, c.certificate->cert.get()), 1);
    EXPECT_EQ(SSL_use_PrivateKey(client, c.certificate->key.get()), 1);
  }
  if (c.session != nullptr) SSL_set_session(client, c.session);
  BIO* server_bio = nullptr;
  BIO* client_bio = nullptr;
  BIO_new_bio_pair(&server_bio, 0, &client_bio, 0);
  SSL_set_bio(server, server_bio, server_bio);
  SSL_set_bio(client, client_bio, client_bio);
  SSL_set_accept_state(server);
  SSL_set_connect_state(client);
  bool server_done = false, client_done = false, failed = false;
  SSL* failed_side = nullptr;
  auto step = [&](SSL* ssl, bool& done, const char* who) {
    if (done || failed) return;
    const int r = SSL_do_handshake(ssl);
    if (r == 1) {
      done = true;
      return;
    }
    const int e = SSL_get_error(ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
      failed = true;
      failed_side = ssl;
      out.error += std::string(out.error.empty() ? "" : " / ") + who + " failed: " + drain_errors();
    }
  };
  for (int i = 0; i < 50 && !(server_done && client_done) && !failed; ++i) {
    step(client, client_done, "client");
    step(server, server_done, "server");
  }
  if (failed) {  // let the peer read the alert, so its side of the story is in `error` too
    failed = false;
    if (failed_side == server) step(client, client_done, "client");
    else step(server, server_done, "server");
    failed = true;
  }
  if (server_done && client_done) {
    // TLS 1.3 tickets and a late client-certificate verdict arrive after the handshake proper.
    char byte;
    SSL_write(server, "x", 1);
    const int r = SSL_read(client, &byte, 1);
    out.ok = r == 1;
    if (!out.ok) out.error = "client read failed: " + drain_errors();
  }
  if (X509* peer = SSL_get1_peer_certificate(client)) {
    char cn[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
    out.peer_cn = cn;
    const int id = EVP_PKEY_get_base_id(X509_get0_pubkey(peer));
    out.peer_key = id == EVP_PKEY_EC ? KeyType::kEcdsa : id == EVP_PKEY_RSA ? KeyType::kRsa : KeyType::kOther;
    X509_free(peer);
  }
  if (STACK_OF(X509)* chain = SSL_get_peer_cert_chain(client)) out.peer_chain_length = sk_X509_num(chain);
  const unsigned char* proto = nullptr;
  unsigned int proto_length = 0;
  SSL_get0_alpn_selected(client, &proto, &proto_length);
  out.alpn.assign(reinterpret_cast<const char*>(proto), proto_length);
  out.version = SSL_version(client);
  if (const SSL_CIPHER* cipher = SSL_get_current_cipher(client)) out.cipher = SSL_CIPHER_get_name(cipher);
  if (out.ok) out.group = SSL_get_negotiated_group(server);  // crashes without a session
  out.reused = SSL_session_reused(client) == 1;
  // A session whose connection ends without close_notify is marked not resumable.
  if (out.ok) {
    SSL_shutdown(client);
    SSL_shutdown(server);
  }
  if (SSL_SESSION* s = SSL_get1_session(client)) out.session.reset(s, SSL_SESSION_free);
  SSL_free(client);
  SSL_free(server);
  SSL_CTX_free(client_ctx);
  ERR_clear_error();
  return out;
}

// ---- loading and selection ----

TEST(CertificateStore, ExactNameMatchesIgnoringCase) {
  TempDir dir;
  Made a = make_cert("a.example.com", {"DNS:www.Example.com"});
  config::TlsConfig config;
  config.certificates.push_back(
      cert_config(dir.write("a.crt", a.cert_pem), dir.write("a.key", a.key_pem), "t.yml:3:7"));
  auto store = build_ok(config);
  ASSERT_NE(store, nullptr);
  ASSERT_EQ(store->certificates().size(), 1u);
  const Certificate& loaded = *store->certificates()[0];
  EXPECT_EQ(loaded.names(), (std::vector<std::string>{"a.example.com", "www.example.com"}));
  EXPECT_EQ(loaded.common_name(), "a.example.com");
  EXPECT_EQ(loaded.key_type(), KeyType::kEcdsa);
  EXPECT_EQ(store->find("A.Example.COM", true), &loaded);
  EXPECT_EQ(store->find("WWW.example.com", false), &loaded);
  EXPECT_EQ(store->find("b.example.com", true), nullptr);
  EXPECT_TRUE(store->select("b.example.com", true)->is_generated());
}

TEST(CertificateStore, WildcardCoversExactlyOneLabelAndExactWins) {
  Made wild = make_cert("*.example.com", {"DNS:*.example.com"});
  Made exact = make_cert("a.example.com");
  Made two = make_cert("*.*.example.org");
  config::TlsConfig config;
  config.certificates.push_back(cert_config(wild.cert_pem, wild.key_pem, "t.yml:1:1"));
  config.certificates.push_back(cert_config(exact.cert_pem, exact.key_pem, "t.yml:2:1"));
  config.certificates.push_back(cert_config(two.cert_pem, two.key_pem, "t.yml:3:1"));
  auto store = build_ok(config);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->find("x.example.com", true)->common_name(), "*.example.com");
  EXPECT_EQ(store->find("a.example.com", true)->common_name(), "a.example.com");
  EXPECT_EQ(store->find("a.b.example.com", true), nullptr);
  EXPECT_EQ(store->find("example.com", true), nullptr);
  // Traefik's matcher replaces leading labels one at a time, so "*.*.example.org" covers two.
  EXPECT_EQ(store->find("a.b.example.org", true)->common_name(), "*.*.example.org");
}

TEST(CertificateStore, InlinePemLoadsLikeAFile) {
  Made a = make_cert("inline.example.com");
  config::TlsConfig config;
  config.certificates.push_back(cert_config(a.cert_pem, a.key_pem, "t.yml:1:1"));
  auto store = build_ok(config);
  ASSERT_NE(store, nullptr);
  ASSERT_NE(store->find("inline.example.com", true), nullptr);
  EXPECT_EQ(store->find("inline.example.com", true)->source(), "inline certFile");
}

TEST(CertificateStore, BadCertificateIsAProblemNamingItsFileAndTheRestLoad) {
  TempDir dir;
  Made a = make_cert("a.example.com");
  Made b = make_cert("b.example.com");
  config::TlsConfig config;
  const std::string a_crt = dir.write("a.crt", a.cert_pem);
  const std::string b_key = dir.write("b.key", b.key_pem);
  config.certificates.push_back(cert_config(a_crt, b_key, "t.yml:3:7"));                       // key mismatch
  config.certificates.push_back(cert_config("/nonexistent/c.crt", b_key, "t.yml:5:7"));        // unreadable
  config.certificates.push_back(cert_config(dir.write("junk.crt", "not pem"), b_key, "t.yml:7:7"));
  config.certificates.push_back(
      cert_config(dir.write("b.crt", b.cert_pem), dir.write("b2.key", b.key_pem), "t.yml:9:7"));
  std::vector<Error> problems;
  auto store = build_ok(config, &problems);
  ASSERT_NE(store, nullptr);
  ASSERT_EQ(problems.size(), 3u) << all_errors(problems);
  EXPECT_EQ(problems[0].where, "t.yml:3:7");
  EXPECT_EQ(problems[0].message,
            "certificate " + a_crt + " (key " + b_key + "): the private key does not match the certificate");
  EXPECT_EQ(problems[1].where, "t.yml:5:7");
  EXPECT_NE(problems[1].message.find("cannot read /nonexistent/c.crt"), std::string::npos) << problems[1].message;
  EXPECT_EQ(problems[2].where, "t.yml:7:7");
  EXPECT_NE(problems[2].message.find("junk.crt"), std::string::npos) << problems[2].message;
  EXPECT_NE(problems[2].message.find("no PEM certificate found"), std::string::npos) << problems[2].message;
  EXPECT_EQ(store->certificates().size(), 1u);
  EXPECT_NE(store->find("b.example.com", true), nullptr);
  EXPECT_EQ(store->find("a.example.com", true), nullptr);
}

TEST(CertificateStore, EncryptedKeyFailsWithoutPrompting) {
  Made a = make_cert("a.example.com");
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PKCS8PrivateKey(bio, a.key.get(), EVP_aes_256_cbc(), "secret", 6, nullptr, nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  const std::string encrypted(data, size_t(n));
  BIO_free(bio);
  auto cert = Certificate::from_pem(a.cert_pem, encrypted, "a");
  ASSERT_FALSE(cert.ok());
  EXPECT_NE(cert.error().message.find("bad private key"), std::string::npos) << cert.error().message;
}

TEST(CertificateStore, ExpiredCertificateStillLoadsWithItsNotAfter) {
  Spec spec;
  spec.cn = "old.example.com";
  spec.not_before = -10 * 86400;
  spec.not_after = -86400;
  Made old = make_cert(spec);
  config::TlsConfig config;
  config.certificates.push_back(cert_config(old.cert_pem, old.key_pem, "t.yml:1:1"));
  auto store = build_ok(config);
  ASSERT_NE(store, nullptr);
  const Certificate* cert = store->find("old.example.com", true);
  ASSERT_NE(cert, nullptr);
  const auto expected = std::chrono::system_clock::now() - 24h;
  EXPECT_LT(cert->not_after(), std::chrono::system_clock::now());
  EXPECT_LT(std::chrono::abs(cert->not_after() - expected), 1min);
}

TEST(CertificateStore, IpSansAndChainAreRead) {
  Spec ca_spec;
  ca_spec.cn = "Test CA";
  ca_spec.ca = true;
  Made ca = make_cert(ca_spec);
  Spec leaf_spec;
  leaf_spec.cn = "";
  leaf_spec.sans = {"DNS:svc.internal", "IP:10.1.2.3", "IP:2001:db8::1"};
  leaf_spec.issuer = &ca;
  Made leaf = make_cert(leaf_spec);
  config::TlsConfig config;
  config.certificates.push_back(cert_config(leaf.cert_pem + ca.cert_pem, leaf.key_pem, "t.yml:1:1"));
  auto store = build_ok(config);
  ASSERT_NE(store, nullptr);
  const Certificate& cert = *store->certificates().at(0);
  EXPECT_EQ(cert.names(), (std::vector<std::string>{"10.1.2.3", "2001:db8::1", "svc.internal"}));
  EXPECT_EQ(sk_X509_num(cert.chain()), 1);
  EXPECT_EQ(store->find("10.1.2.3", true), &cert);

  // Without SNI, Traefik matches the local address the connection came in on.
  Outcome o = handshake(store->context("default"), Client{.local_address = "10.1.2.3"});
  ASSERT_TRUE(o.ok) << o.error;
  EXPECT_EQ(o.peer_chain_length, 2);  // leaf + intermediate
  Outcome by_sni = handshake(store->context("default"), Client{.sni = "svc.internal"});
  ASSERT_TRUE(by_sni.ok) << by_sni.error;
  EXPECT_EQ(by_sni.peer_chain_length, 2);
}

TEST(CertificateStore, StoreDefaultCertificateServesUnknownNames) {
  TempDir dir;
  Made def = make_cert("fallback.example.com");
  config::TlsConfig config;
  config::TlsStoreConfig store_config;
  store_config.name = "default";
  store_config.default_certificate = config::TlsDefaultCertificateConfig{
      dir.write("d.crt", def.cert_pem), dir.write("d.key", def.key_pem), "t.yml:4:9"};
  config.stores.emplace("default", store_config);
  auto store = build_ok(config);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->find("unknown.example.com", true), nullptr);
  EXPECT_EQ(store->select("unknown.example.com", true)->common_name(), "fallback.example.com");
  Outcome o = handshake(store->context("default"), Client{.sni = "unknown.example.com"});
  ASSERT_TRUE(o.ok) << o.error;
  EXPECT_EQ(o.peer_cn, "fallback.example.com");
}

TEST(CertificateStore, BadStoreDefaultFallsBackToTheGeneratedOne) {
  config::TlsConfig config;
  config::TlsStoreConfig store_config;
  store_config.name = "default";
  store_config.default_certificate =
      config::TlsDefaultCertificateConfig{"/nonexistent.crt", "/nonexistent.key", "t.yml:4:9"};
  config.stores.emplace("default", store_config);
  std::vector<Error> problems;
  auto store = build_ok(config, &problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].where, "t.yml:4:9");
  EXPECT_NE(problems[0].message.find("default certificate of TLS store default /nonexistent.crt"), std::string::npos)
      << problems[0].message;
  EXPECT_NE(problems[0].message.find("the generated default certificate serves instead"), std::string::npos);
  EXPECT_TRUE(store->select("x", true)->is_generated());
}

TEST(CertificateStore, DefaultGeneratedCertUsesTheCertificateOfItsDomains) {
  Made gen = make_cert("gen.example.com", {"DNS:gen.example.com", "DNS:www.gen.example.com"});
  config::TlsConfig config;
  config.certificates.push_back(cert_config(gen.cert_pem, gen.key_pem, "t.yml:1:1"));
  config::TlsStoreConfig store_config;
  store_config.name = "default";
  store_config.default_generated_cert =
      config::TlsGeneratedCertConfig{"le", "GEN.example.com.", {"www.gen.example.com"}, "t.yml:5:9"};
  config.stores.emplace("default", store_config);
  auto store = build_ok(config);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->select("other.example.org", true)->common_name(), "gen.example.com");

  config.certificates.clear();
  std::vector<Error> problems;
  store = build_ok(config, &problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].where, "t.yml:5:9");
  EXPECT_NE(problems[0].message.find("no certificate for domains gen.example.com,www.gen.example.com (resolver le)"),
            std::string::npos)
      << problems[0].message;
  EXPECT_TRUE(store->select("other.example.org", true)->is_generated());
}

TEST(CertificateStore, GeneratedDefaultIsTraefiksAndMadeOncePerProcess) {
  auto first = Certificate::generated_default();
  auto second = Certificate::generated_default();
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(first->get(), second->get());
  const Certificate& cert = **first;
  EXPECT_EQ(cert.common_name(), "TRAEFIK DEFAULT CERT");
  EXPECT_EQ(cert.key_type(), KeyType::kEcdsa);
  EXPECT_TRUE(cert.is_generated());
  ASSERT_EQ(cert.names().size(), 2u);
  EXPECT_TRUE(cert.names()[0].ends_with(".traefik.default")) << cert.names()[0];
  const auto year = std::chrono::system_clock::now() + std::chrono::hours(24 * 365);
  EXPECT_LT(std::chrono::abs(cert.not_after() - year), 2min);

  // Every snapshot's store serves the same one.
  auto a = build_ok(config::TlsConfig{});
  auto b = build_ok(config::TlsConfig{});
  EXPECT_EQ(a->select("nothing", true), &cert);
  EXPECT_EQ(b->select("nothing", true), &cert);
  Outcome o = handshake(a->context("default"), Client{.sni = "nothing.example.com"});
  ASSERT_TRUE(o.ok) << o.error;
  EXPECT_EQ(o.peer_cn, "TRAEFIK DEFAULT CERT");
}

TEST(CertificateStore, EcdsaAndRsaForOneNameServeSideBySide) {
  Made rsa = make_cert("dual.example.com", {}, KeyType::kRsa);
  Made ecdsa = make_cert("dual.example.com", {}, KeyType::kEcdsa);
  Made ecdsa_again = make_cert("dual.example.com", {}, KeyType::kEcdsa);
  config::TlsConfig config;
  config.certificates.push_back(cert_config(rsa.cert_pem, rsa.key_pem, "t.yml:1:1"));
  config.certificates.push_back(cert_config(ecdsa.cert_pem, ecdsa.key_pem, "t.yml:2:1"));
  config.certificates.push_back(cert_config(ecdsa_again.cert_pem, ecdsa_again.key_pem, "t.yml:3:1"));
  auto store = build_ok(config);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->find("dual.example.com", true)->key_type(), KeyType::kEcdsa);
  EXPECT_EQ(store->find("dual.example.com", false)->key_type(), KeyType::kRsa);
  EXPECT_EQ(store->find("dual.example.com", true), store->certificates()[1].get());  // the first ECDSA one

  SSL_CTX* ctx = store->context("default");
  Outcome modern = handshake(ctx, Client{.sni = "dual.example.com"});
  ASSERT_TRUE(modern.ok) << modern.error;
  EXPECT_EQ(modern.peer_key, KeyType::kEcdsa);
  Outcome rsa_only13 = handshake(ctx, Client{.sni = "dual.example.com", .sigalgs = "RSA-PSS+SHA256:RSA+SHA256"});
  ASSERT_TRUE(rsa_only13.ok) << rsa_only13.error;
  EXPECT_EQ(rsa_only13.peer_key, KeyType::kRsa);
  EXPECT_EQ(rsa_only13.peer_cn, "dual.example.com");
  Outcome rsa_only12 = handshake(ctx, Client{.sni = "dual.example.com", .max_version = TLS1_2_VERSION,
                                             .tls12_ciphers = "ECDHE-RSA-AES128-GCM-SHA256"});
  ASSERT_TRUE(rsa_only12.ok) << rsa_only12.error;
  EXPECT_EQ(rsa_only12.peer_key, KeyType::kRsa);
  EXPECT_EQ(rsa_only12.cipher, "ECDHE-RSA-AES128-GCM-SHA256");
  // Go's defaults since 1.22: no RSA key exchange (every suite is forward-secret).
  EXPECT_FALSE(handshake(ctx, Client{.sni = "dual.example.com", .max_version = TLS1_2_VERSION,
                                     .tls12_ciphers = "AES128-GCM-SHA256:AES256-SHA"})
                   .ok);
}

TEST(CertificateStore, CertificatesGoToTheirStores) {
  Made a = make_cert("other-store.example.com");
  config::TlsConfig config;
  config.certificates.push_back(cert_config(a.cert_pem, a.key_pem, "t.yml:1:1", {"other"}));
  auto store = build_ok(config);
  EXPECT_EQ(store->find("other-store.example.com", true), nullptr);
  EXPECT_NE(store->find("other-store.example.com", true, "other"), nullptr);
}

// ---- handshakes against the options sets ----

TEST(CertificateStore, HandshakeServesTheSniCertificateAndNegotiatesAlpn) {
  Made a = make_cert("a.example.com");
  Made b = make_cert("b.example.com", {}, KeyType::kRsa);
  config::TlsConfig config;
  config.certificates.push_back(cert_config(a.cert_pem, a.key_pem, "t.yml:1:1"));
  config.certificates.push_back(cert_config(b.cert_pem, b.key_pem, "t.yml:2:1"));
  config::TlsOptionsConfig h2_only;
  h2_only.name = "h2only@file";
  h2_only.alpn_protocols = {"h2"};
  config.options.emplace(h2_only.name, h2_only);
  auto store = build_ok(config);
  ASSERT_NE(store, nullptr);
  SSL_CTX* ctx = store->context("default");
  ASSERT_NE(ctx, nullptr);

  Outcome o = handshake(ctx, Client{.sni = "b.example.com", .alpn = {"http/1.1", "h2"}});
  ASSERT_TRUE(o.ok) << o.error;
  EXPECT_EQ(o.peer_cn, "b.example.com");
  EXPECT_EQ(o.peer_key, KeyType::kRsa);
  EXPECT_EQ(o.alpn, kServeHttp2 ? "h2" : "http/1.1");  // the server's preference, as Go
  EXPECT_EQ(o.version, TLS1_3_VERSION);

  Outcome h1 = handshake(ctx, Client{.sni = "a.example.com", .alpn = {"http/1.1"}});
  ASSERT_TRUE(h1.ok) << h1.error;
  EXPECT_EQ(h1.peer_cn, "a.example.com");
  EXPECT_EQ(h1.alpn, "http/1.1");

  EXPECT_FALSE(handshake(ctx, Client{.sni = "a.example.com", .alpn = {"spdy/3"}}).ok);
  // acme-tls/1 is answered only from ACME's challenge certificates, which do not exist yet.
  EXPECT_FALSE(handshake(ctx, Client{.sni = "a.example.com", .alpn = {"acme-tls/1"}}).ok);

  // Go lets an http/1.1 client reach an h2-only server, without ALPN.
  Outcome fallback = handshake(store->context("h2only@file"), Client{.sni = "a.example.com", .alpn = {"http/1.1"}});
  ASSERT_TRUE(fallback.ok) << fallback.error;
  EXPECT_EQ(fallback.alpn, "");
  EXPECT_FALSE(handshake(store->context("h2only@file"), Client{.sni = "a.example.com", .alpn = {"foo"}}).ok);
}

TEST(CertificateStore, MinimumVersionIsTls12UnlessConfigured) {
  config::TlsConfig config;
  config::TlsOptionsConfig old;
  old.name = "old@file";
  old.min_version = config::TlsVersion::kTls11;
  config.options.emplace(old.name, old);
  config::TlsOptionsConfig capped;
  capped.name = "capped@file";
  capped.max_version = config::TlsVersion::kTls12;
  config.options.emplace(capped.name, capped);
  auto store = build_ok(config);
  ASSERT_NE(store, nullptr);
  Outcome refused = handshake(store->context("default"), Client{.max_version = TLS1_1_VERSION});
  EXPECT_FALSE(refused.ok);
  Outcome accepted = handshake(store->context("old@file"), Client{.max_version = TLS1_1_VERSION});
  ASSERT_TRUE(accepted.ok) << accepted.error;
  EXPECT_EQ(accepted.version, TLS1_1_VERSION);
  Outcome tls12 = handshake(store->context("capped@file"), Client{});
  ASSERT_TRUE(tls12.ok) << tls12.error;
  EXPECT_EQ(tls12.version, TLS1_2_VERSION);
}

TEST(CertificateStore, CipherSuitesAndCurvesApply) {
  config::TlsConfig config;
  config::TlsOptionsConfig o;
  o.name = "picky@file";
  o.max_version = config::TlsVersion::kTls12;
  o.cipher_suites = {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"};
  o.curve_preferences = {"CurveP384"};
  config.options.emplace(o.name, o);
  config::TlsOptionsConfig only13;
  only13.name = "only13@file";
  only13.cipher_suites = {"TLS_AES_128_GCM_SHA256"};
  config.options.emplace(only13.name, only13);
  auto store = build_ok(config);
  ASSERT_NE(store, nullptr);
  Outcome picky = handshake(store->context("picky@file"), Client{});
  ASSERT_TRUE(picky.ok) << picky.error;
  EXPECT_EQ(picky.cipher, "ECDHE-ECDSA-AES256-GCM-SHA384");
  EXPECT_EQ(picky.group, NID_secp384r1);
  EXPECT_FALSE(handshake(store->context("picky@file"), Client{.tls12_ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256"}).ok);
  // Only TLS 1.3 names: as in Go, no TLS 1.2 suite is left.
  EXPECT_FALSE(handshake(store->context("only13@file"), Client{.max_version = TLS1_2_VERSION}).ok);
  EXPECT_TRUE(handshake(store->context("only13@file"), Client{}).ok);
}

TEST(CertificateStore, SniStrictRefusesUnknownAndMissingNames) {
  Made a = make_cert("a.example.com");
  config::TlsConfig config;
  config.certificates.push_back(cert_config(a.cert_pem, a.key_pem, "t.yml:1:1"));
  config::TlsOptionsConfig strict;
  strict.name = "strict@file";
  strict.sni_strict = true;
  config.options.emplace(strict.name, strict);
  auto store = build_ok(config);
  ASSERT_NE(store, nullptr);
  SSL_CTX* ctx = store->context("strict@file");
  Outcome known = handshake(ctx, Client{.sni = "A.example.com"});
  ASSERT_TRUE(known.ok) << known.error;
  EXPECT_EQ(known.peer_cn, "a.example.com");
  Outcome unknown = handshake(ctx, Client{.sni = "b.example.com"});
  EXPECT_FALSE(unknown.ok);
  EXPECT_NE(unknown.error.find("unrecognized name"), std::string::npos) << unknown.error;
  EXPECT_FALSE(handshake(ctx, Client{}).ok);
  EXPECT_TRUE(handshake(store->context("default"), Client{.sni = "b.example.com"}).ok);
}

TEST(CertificateStore, ClientAuthModesFollowGo) {
  TempDir dir;
  Spec ca_spec;
  ca_spec.cn = "Client CA";
  ca_spec.ca = true;
  Made ca = make_cert(ca_spec);
  Spec client_spec;
  client_spec.cn = "alice";
  client_spec.issuer = &ca;
  client_spec.client = true;
  Made alice = make_cert(client_spec);
  Made mallory = make_cert("mallory");  // self-signed
  const std::string ca_file = dir.write("ca.pem", ca.cert_pem);
  config::TlsConfig config;
  auto add = [&](std::string name, config::ClientAuthType type, std::vector<std::string> cas) {
    config::TlsOptionsConfig o;
    o.name = name;
    o.client_auth_type = type;
    o.client_ca_files = std::move(cas);
    config.options.emplace(name, o);
  };
  add("verify@file", config::ClientAuthType::kRequireAndVerifyClientCert, {ca_file});
  add("ifgiven@file", config::ClientAuthType::kVerifyClientCertIfGiven, {ca.cert_pem});
  add("any@file", config::ClientAuthType::kRequireAnyClientCert, {});
  add("request@file", config::ClientAuthType::kRequestClientCert, {});
  auto store = build_ok(config);
  ASSERT_NE(store, nullptr);

  SSL_CTX* verify = store->context("verify@file");
  EXPECT_FALSE(handshake(verify, Client{}).ok);
  EXPECT_FALSE(handshake(verify, Client{.max_version = TLS1_2_VERSION}).ok);
  EXPECT_FALSE(handshake(verify, Client{.certificate = &mallory}).ok);
  Outcome good = handshake(verify, Client{.certificate = &alice});
  EXPECT_TRUE(good.ok) << good.error;

  SSL_CTX* if_given = store->context("ifgiven@file");
  EXPECT_TRUE(handshake(if_given, Client{}).ok);
  EXPECT_TRUE(handshake(if_given, Client{.certificate = &alice}).ok);
  EXPECT_FALSE(handshake(if_given, Client{.certificate = &mallory}).ok);

  SSL_CTX* any = store->context("any@file");
  EXPECT_FALSE(handshake(any, Client{}).ok);
  EXPECT_TRUE(handshake(any, Client{.certificate = &mallory}).ok);

  SSL_CTX* request = store->context("request@file");
  EXPECT_TRUE(handshake(request, Client{}).ok);
  EXPECT_TRUE(handshake(request, Client{.certificate = &mallory}).ok);
}

TEST(CertificateStore, UnusableOptionsAreProblemsAndHaveNoContext) {
  TempDir dir;
  config::TlsConfig config;
  config::TlsOptionsConfig bad_ca;
  bad_ca.name = "badca@file";
  bad_ca.where = "t.yml:9:5";
  bad_ca.client_auth_type = config::ClientAuthType::kRequireAndVerifyClientCert;
  bad_ca.client_ca_files = {dir.write("ca.pem", "garbage")};
  config.options.emplace(bad_ca.name, bad_ca);
  std::vector<Error> problems;
  auto store = build_ok(config, &problems);
  ASSERT_EQ(problems.size(), 1u) << all_errors(problems);
  EXPECT_EQ(problems[0].where, "t.yml:9:5");
  EXPECT_NE(problems[0].message.find("TLS options badca@file: invalid certificate(s) in "), std::string::npos)
      << problems[0].message;
  EXPECT_EQ(store->context("badca@file"), nullptr);
  EXPECT_EQ(store->context("missing@file"), nullptr);
  EXPECT_NE(store->context("default"), nullptr);  // Traefik's defaults when the config has none

  config::TlsConfig conflicted;
  conflicted.conflicting_options.emplace("default", "a.yml:3:5");
  EXPECT_EQ(build_ok(conflicted)->context("default"), nullptr);
}

TEST(CertificateStore, SessionTicketsResumeAcrossSnapshotsSharingTheRing) {
  Made a = make_cert("a.example.com");
  config::TlsConfig config;
  config.certificates.push_back(cert_config(a.cert_pem, a.key_pem, "t.yml:1:1"));
  config::TlsOptionsConfig no_tickets;
  no_tickets.name = "notickets@file";
  no_tickets.disable_session_tickets = true;
  config.options.emplace(no_tickets.name, no_tickets);
  auto ring = std::make_shared<TicketKeyRing>(std::vector<TicketKey>{TicketKey::random()});
  auto first = build_ok(config, nullptr, ring);
  auto second = build_ok(config, nullptr, ring);
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);

  for (int max_version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    SCOPED_TRACE(max_version);
    const Client fresh{.sni = "a.example.com", .max_version = max_version};
    Outcome initial = handshake(first->context("default"), fresh);
    ASSERT_TRUE(initial.ok) << initial.error;
    ASSERT_TRUE(initial.session);
    EXPECT_EQ(SSL_SESSION_is_resumable(initial.session.get()), 1);
    EXPECT_EQ(SSL_SESSION_has_ticket(initial.session.get()), 1);
    const Client again{.sni = "a.example.com", .max_version = max_version, .session = initial.session.get()};
    Outcome resumed = handshake(second->context("default"), again);
    ASSERT_TRUE(resumed.ok) << resumed.error;
    EXPECT_TRUE(resumed.reused);

    // Another options set does not accept it; after two rotations the key is gone.
    Outcome other = handshake(second->context("notickets@file"), again);
    ASSERT_TRUE(other.ok) << other.error;
    EXPECT_FALSE(other.reused);
    ring->rotate();
    Outcome after_one = handshake(second->context("default"), again);
    EXPECT_TRUE(after_one.reused);
    ring->rotate();
    Outcome after_two = handshake(second->context("default"), again);
    ASSERT_TRUE(after_two.ok) << after_two.error;
    EXPECT_FALSE(after_two.reused);
  }
}

TEST(CertificateStore, ContextOutlivesTheStore) {
  Made a = make_cert("a.example.com");
  config::TlsConfig config;
  config.certificates.push_back(cert_config(a.cert_pem, a.key_pem, "t.yml:1:1"));
  auto store = build_ok(config);
  SSL_CTX* ctx = store->context("default");
  SSL_CTX_up_ref(ctx);  // what SSL_new does for a connection
  store.reset();
  Outcome o = handshake(ctx, Client{.sni = "a.example.com"});
  EXPECT_TRUE(o.ok) << o.error;
  EXPECT_EQ(o.peer_cn, "a.example.com");
  SSL_CTX_free(ctx);
}

TEST(CertificateStore, HandshakesOnSeveralThreadsWhileKeysRotate) {
  Made a = make_cert("a.example.com");
  Made w = make_cert("*.example.com");
  config::TlsConfig config;
  config.certificates.push_back(cert_config(a.cert_pem, a.key_pem, "t.yml:1:1"));
  config.certificates.push_back(cert_config(w.cert_pem, w.key_pem, "t.yml:2:1"));
  auto ring = std::make_shared<TicketKeyRing>(std::vector<TicketKey>{TicketKey::random()});
  auto store = build_ok(config, nullptr, ring);
  SSL_CTX* ctx = store->context("default");
  std::atomic<int> good{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 3; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < 15; ++i) {
        Client c;
        c.sni = "a.example.com";
        if (i % 2 != 0) c.sni.assign("x").append(std::to_string(t)).append(".example.com");
        Outcome o = handshake(ctx, c);
        if (o.ok && o.peer_cn == (i % 2 == 0 ? "a.example.com" : "*.example.com")) ++good;
      }
    });
  }
  for (int i = 0; i < 20; ++i) ring->rotate();
  for (auto& worker : workers) worker.join();
  EXPECT_EQ(good.load(), 45);
}

TEST(TicketKeyRing, ReadsNginxLayoutAndRotates) {
  std::array<uint8_t, 80> bytes{};
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = uint8_t(i);
  const TicketKey key = TicketKey::from_bytes(bytes);
  EXPECT_EQ(key.name[0], 0);
  EXPECT_EQ(key.hmac_key[0], 16);
  EXPECT_EQ(key.aes_key[0], 48);
  TicketKeyRing ring({key});
  ring.rotate();
  auto keys = ring.keys();
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[1].name, key.name);
  EXPECT_NE((*keys)[0].name, key.name);
  ring.set({});
  EXPECT_TRUE(ring.keys()->empty());
}

}  // namespace
}  // namespace berth::proxy::tls
