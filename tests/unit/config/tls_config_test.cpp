// Unit tests for decoding Traefik's dynamic `tls:` section (certificates, options, stores) with the
// place of every problem, and for merging it across files and providers.
#include "config/tls_config.h"

#include <gtest/gtest.h>

namespace berth::config {
namespace {

struct Decoded {
  TlsConfig tls;
  std::vector<Error> errors;
};

Decoded decode(std::string_view yaml, const std::string& file = "a.yml", const std::string& provider = "file") {
  Decoded out;
  auto tree = parse_yaml(yaml, file);
  EXPECT_TRUE(tree.ok()) << (tree.ok() ? "" : tree.error().to_string());
  if (!tree.ok()) return out;
  YamlDecoder d(out.errors);
  if (const ConfigNode* tls = tree->find("tls")) decode_tls(*tls, d, provider, out.tls);
  return out;
}

std::string all_errors(const std::vector<Error>& errors) {
  std::string out;
  for (const auto& e : errors) out += e.to_string() + "\n";
  return out;
}

bool has_error(const std::vector<Error>& errors, std::string_view where, std::string_view message) {
  for (const auto& e : errors)
    if (e.where == where && e.message.find(message) != std::string::npos) return true;
  return false;
}

TEST(TlsConfig, DecodesCertificatesOptionsAndStores) {
  auto c = decode(R"y(tls:
  certificates:
    - certFile: /certs/a.crt
      keyFile: /certs/a.key
    - certFile: |
        -----BEGIN CERTIFICATE-----
        MIIB
        -----END CERTIFICATE-----
      keyFile: |
        -----BEGIN PRIVATE KEY-----
        MIIE
        -----END PRIVATE KEY-----
      stores: [default, other]
  options:
    modern:
      minVersion: VersionTLS13
      maxVersion: VersionTLS13
      sniStrict: true
      alpnProtocols: [h2]
      disableSessionTickets: true
    legacy:
      minVersion: VersionTLS10
      maxVersion: VersionTLS12
      cipherSuites:
        - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        - TLS_RSA_WITH_AES_256_CBC_SHA
      curvePreferences: [CurveP521, secp384r1, x25519]
      preferServerCipherSuites: true
      clientAuth:
        caFiles: [/certs/ca1.pem, /certs/ca2.pem]
        clientAuthType: VerifyClientCertIfGiven
  stores:
    default:
      defaultCertificate:
        certFile: /certs/default.crt
        keyFile: /certs/default.key
    acme:
      defaultGeneratedCert:
        resolver: le
        domain:
          main: example.com
          sans: [www.example.com, api.example.com]
)y");
  ASSERT_TRUE(c.errors.empty()) << all_errors(c.errors);

  ASSERT_EQ(c.tls.certificates.size(), 2u);
  const TlsCertificateConfig& path_cert = c.tls.certificates[0];
  EXPECT_EQ(path_cert.cert_file, "/certs/a.crt");
  EXPECT_EQ(path_cert.key_file, "/certs/a.key");
  EXPECT_TRUE(path_cert.stores.empty());
  EXPECT_EQ(path_cert.where, "a.yml:3:7");
  EXPECT_FALSE(is_inline_pem(path_cert.cert_file));
  const TlsCertificateConfig& inline_cert = c.tls.certificates[1];
  EXPECT_TRUE(is_inline_pem(inline_cert.cert_file));
  EXPECT_TRUE(is_inline_pem(inline_cert.key_file));
  EXPECT_EQ(inline_cert.cert_file, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
  EXPECT_EQ(inline_cert.stores, (std::vector<std::string>{"default", "other"}));

  ASSERT_EQ(c.tls.options.size(), 2u);
  const TlsOptionsConfig& modern = c.tls.options.at("modern@file");
  EXPECT_EQ(modern.name, "modern@file");
  EXPECT_EQ(modern.where, "a.yml:15:5");
  EXPECT_EQ(modern.min_version, TlsVersion::kTls13);
  EXPECT_EQ(modern.max_version, TlsVersion::kTls13);
  EXPECT_TRUE(modern.sni_strict);
  EXPECT_EQ(modern.alpn_protocols, (std::vector<std::string>{"h2"}));
  EXPECT_TRUE(modern.disable_session_tickets);
  const TlsOptionsConfig& legacy = c.tls.options.at("legacy@file");
  EXPECT_EQ(legacy.min_version, TlsVersion::kTls10);
  EXPECT_EQ(legacy.max_version, TlsVersion::kTls12);
  EXPECT_EQ(legacy.cipher_suites, (std::vector<std::string>{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                                                            "TLS_RSA_WITH_AES_256_CBC_SHA"}));
  EXPECT_EQ(legacy.curve_preferences, (std::vector<std::string>{"CurveP521", "CurveP384", "X25519"}));
  EXPECT_TRUE(legacy.prefer_server_cipher_suites_set);
  EXPECT_EQ(legacy.client_ca_files, (std::vector<std::string>{"/certs/ca1.pem", "/certs/ca2.pem"}));
  EXPECT_EQ(legacy.client_auth_type, ClientAuthType::kVerifyClientCertIfGiven);

  ASSERT_EQ(c.tls.stores.size(), 2u);
  const TlsStoreConfig& def = c.tls.stores.at("default");
  EXPECT_EQ(def.name, "default");
  ASSERT_TRUE(def.default_certificate.has_value());
  EXPECT_EQ(def.default_certificate->cert_file, "/certs/default.crt");
  EXPECT_EQ(def.default_certificate->key_file, "/certs/default.key");
  EXPECT_FALSE(def.default_generated_cert.has_value());
  const TlsStoreConfig& acme = c.tls.stores.at("acme@file");
  ASSERT_TRUE(acme.default_generated_cert.has_value());
  EXPECT_EQ(acme.default_generated_cert->resolver, "le");
  EXPECT_EQ(acme.default_generated_cert->main, "example.com");
  EXPECT_EQ(acme.default_generated_cert->sans, (std::vector<std::string>{"www.example.com", "api.example.com"}));
}

TEST(TlsConfig, OptionsDefaultsAreTraefiks) {
  auto c = decode("tls:\n  options:\n    plain: {}\n    empty:\n");
  ASSERT_TRUE(c.errors.empty()) << all_errors(c.errors);
  for (const char* name : {"plain@file", "empty@file"}) {
    const TlsOptionsConfig& o = c.tls.options.at(name);
    EXPECT_EQ(o.min_version, TlsVersion::kTls12);
    EXPECT_FALSE(o.max_version.has_value());
    EXPECT_TRUE(o.cipher_suites.empty());
    EXPECT_TRUE(o.curve_preferences.empty());
    EXPECT_EQ(o.alpn_protocols, (std::vector<std::string>{"h2", "http/1.1", "acme-tls/1"}));
    EXPECT_FALSE(o.sni_strict);
    EXPECT_FALSE(o.disable_session_tickets);
    EXPECT_TRUE(o.client_ca_files.empty());
    EXPECT_EQ(o.client_auth_type, ClientAuthType::kNoClientCert);
  }
}

TEST(TlsConfig, DefaultOptionsAndStoreStayGlobalOthersAreQualified) {
  auto c = decode("tls:\n  options:\n    default: {sniStrict: true}\n    mine: {}\n"
                  "  stores:\n    default: {}\n    other: {}\n",
                  "d.yml", "docker");
  ASSERT_TRUE(c.errors.empty()) << all_errors(c.errors);
  EXPECT_TRUE(c.tls.options.at("default").sni_strict);
  EXPECT_EQ(c.tls.options.count("mine@docker"), 1u);
  EXPECT_EQ(c.tls.stores.count("default"), 1u);
  EXPECT_EQ(c.tls.stores.count("other@docker"), 1u);
}

TEST(TlsConfig, CaFilesAloneMeanRequireAndVerify) {
  auto c = decode("tls:\n  options:\n    mtls:\n      clientAuth:\n        caFiles: /ca.pem\n");
  ASSERT_TRUE(c.errors.empty()) << all_errors(c.errors);
  EXPECT_EQ(c.tls.options.at("mtls@file").client_auth_type, ClientAuthType::kRequireAndVerifyClientCert);
  EXPECT_EQ(c.tls.options.at("mtls@file").client_ca_files, (std::vector<std::string>{"/ca.pem"}));
}

TEST(TlsConfig, EveryClientAuthTypeDecodes) {
  const std::pair<const char*, ClientAuthType> cases[] = {
      {"NoClientCert", ClientAuthType::kNoClientCert},
      {"RequestClientCert", ClientAuthType::kRequestClientCert},
      {"RequireAnyClientCert", ClientAuthType::kRequireAnyClientCert},
      {"VerifyClientCertIfGiven", ClientAuthType::kVerifyClientCertIfGiven},
      {"RequireAndVerifyClientCert", ClientAuthType::kRequireAndVerifyClientCert},
  };
  for (const auto& [name, type] : cases) {
    auto c = decode(std::string("tls:\n  options:\n    o:\n      clientAuth:\n        caFiles: [/ca.pem]\n"
                                "        clientAuthType: ") + name + "\n");
    ASSERT_TRUE(c.errors.empty()) << name << ": " << all_errors(c.errors);
    EXPECT_EQ(c.tls.options.at("o@file").client_auth_type, type) << name;
    EXPECT_EQ(to_string(type), name);
  }
}

TEST(TlsConfig, CipherSuitesAreCanonicalAndTls13NamesAccepted) {
  auto c = decode("tls:\n  options:\n    o:\n      cipherSuites: [tls_ecdhe_ecdsa_with_aes_256_gcm_sha384, "
                  "TLS_AES_128_GCM_SHA256, TLS_FALLBACK_SCSV, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305]\n");
  ASSERT_TRUE(c.errors.empty()) << all_errors(c.errors);
  EXPECT_EQ(c.tls.options.at("o@file").cipher_suites,
            (std::vector<std::string>{"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256",
                                      "TLS_FALLBACK_SCSV", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"}));
  ASSERT_NE(find_cipher_suite("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"), nullptr);
  EXPECT_EQ(find_cipher_suite("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")->openssl, "ECDHE-RSA-AES128-GCM-SHA256");
  EXPECT_EQ(find_cipher_suite("TLS_CHACHA20_POLY1305_SHA256")->openssl, "");  // TLS 1.3: not configurable
  EXPECT_EQ(find_cipher_suite("ECDHE-RSA-AES128-GCM-SHA256"), nullptr);       // OpenSSL names are not Go names
}

TEST(TlsConfig, InlinePemIsRecognisedByItsHeader) {
  EXPECT_TRUE(is_inline_pem("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"));
  EXPECT_TRUE(is_inline_pem("\n  -----BEGIN EC PRIVATE KEY-----\n"));
  EXPECT_FALSE(is_inline_pem("/etc/certs/a.pem"));
  EXPECT_FALSE(is_inline_pem("certs/-----BEGIN.pem"));
  EXPECT_FALSE(is_inline_pem(""));
}

TEST(TlsConfig, BadOptionsAreReportedWithPlacesAndDropped) {
  auto c = decode(R"y(tls:
  options:
    versions:
      minVersion: TLS12
      maxVersion: VersionTLS14
    suites:
      cipherSuites:
        - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        - TLS_MADE_UP
    curves:
      curvePreferences: [CurveP256, P-256]
    auth:
      clientAuth:
        clientAuthType: RequireSomething
    verify:
      clientAuth:
        clientAuthType: RequireAndVerifyClientCert
    inverted:
      minVersion: VersionTLS13
      maxVersion: VersionTLS12
    typo:
      sniStrict: yes-please
      alpn: [h2]
    good:
      sniStrict: true
)y");
  EXPECT_TRUE(has_error(c.errors, "a.yml:4:19", "unknown TLS version \"TLS12\" for tls.options.versions.minVersion"))
      << all_errors(c.errors);
  EXPECT_TRUE(has_error(c.errors, "a.yml:5:19", "unknown TLS version \"VersionTLS14\"")) << all_errors(c.errors);
  EXPECT_TRUE(
      has_error(c.errors, "a.yml:9:11", "unknown cipher suite \"TLS_MADE_UP\" in tls.options.suites.cipherSuites"))
      << all_errors(c.errors);
  EXPECT_TRUE(has_error(c.errors, "a.yml:11:37", "unknown curve \"P-256\"")) << all_errors(c.errors);
  EXPECT_TRUE(has_error(c.errors, "a.yml:14:25", "unknown clientAuthType \"RequireSomething\""))
      << all_errors(c.errors);
  EXPECT_TRUE(has_error(c.errors, "a.yml:17:25",
                        "clientAuthType RequireAndVerifyClientCert of TLS options verify@file needs "
                        "clientAuth.caFiles"))
      << all_errors(c.errors);
  EXPECT_TRUE(has_error(c.errors, "a.yml:18:5",
                        "TLS options inverted@file: maxVersion VersionTLS12 is below minVersion VersionTLS13"))
      << all_errors(c.errors);
  EXPECT_TRUE(has_error(c.errors, "a.yml:22:18", "invalid boolean \"yes-please\" for tls.options.typo.sniStrict"))
      << all_errors(c.errors);
  EXPECT_TRUE(has_error(c.errors, "a.yml:23:7", "unknown key \"alpn\" in tls.options.typo")) << all_errors(c.errors);
  EXPECT_EQ(c.errors.size(), 9u) << all_errors(c.errors);
  ASSERT_EQ(c.tls.options.size(), 1u);
  EXPECT_EQ(c.tls.options.count("good@file"), 1u);
}

TEST(TlsConfig, BadCertificatesAreReportedWithPlacesAndDropped) {
  auto c = decode(R"y(tls:
  certificates:
    - certFile: /a.crt
    - keyFile: /b.key
      stores: [default]
    - certFile: /c.crt
      keyFile: /c.key
      store: default
    - certFile: /d.crt
      keyFile: /d.key
    - just-a-string
)y");
  EXPECT_TRUE(has_error(c.errors, "a.yml:3:7", "tls.certificates[0] has no keyFile")) << all_errors(c.errors);
  EXPECT_TRUE(has_error(c.errors, "a.yml:4:7", "tls.certificates[1] has no certFile")) << all_errors(c.errors);
  EXPECT_TRUE(has_error(c.errors, "a.yml:8:7", "unknown key \"store\" in tls.certificates[2]")) << all_errors(c.errors);
  EXPECT_TRUE(has_error(c.errors, "a.yml:11:7", "expected a map for tls.certificates[4]")) << all_errors(c.errors);
  ASSERT_EQ(c.tls.certificates.size(), 1u) << all_errors(c.errors);
  EXPECT_EQ(c.tls.certificates[0].cert_file, "/d.crt");
}

TEST(TlsConfig, BadStoresAndSectionsAreReported) {
  auto c = decode(R"y(tls:
  certificates: {certFile: /a.crt}
  stores:
    half:
      defaultCertificate:
        certFile: /x.crt
    typo:
      defaultGeneratedCert:
        resolver: le
        domains: {main: a.com}
    "bad@name": {}
    fine:
      defaultGeneratedCert:
        resolver: le
        domain: {main: a.com}
  option: {}
)y");
  EXPECT_TRUE(has_error(c.errors, "a.yml:2:17", "expected a list for tls.certificates")) << all_errors(c.errors);
  EXPECT_TRUE(has_error(c.errors, "a.yml:6:9", "tls.stores.half.defaultCertificate has no keyFile"))
      << all_errors(c.errors);
  EXPECT_TRUE(has_error(c.errors, "a.yml:10:9", "unknown key \"domains\" in tls.stores.typo.defaultGeneratedCert"))
      << all_errors(c.errors);
  EXPECT_TRUE(has_error(c.errors, "a.yml:11:5", "TLS store name \"bad@name\" must not contain '@'"))
      << all_errors(c.errors);
  EXPECT_TRUE(has_error(c.errors, "a.yml:16:3", "unknown key \"option\" in tls")) << all_errors(c.errors);
  EXPECT_EQ(c.errors.size(), 5u) << all_errors(c.errors);
  ASSERT_EQ(c.tls.stores.size(), 1u);
  EXPECT_EQ(c.tls.stores.count("fine@file"), 1u);
}

TEST(TlsConfig, EqualityIgnoresPlaces) {
  auto a = decode("tls:\n  options:\n    o: {sniStrict: true}\n", "a.yml");
  auto b = decode("\n\ntls:\n  options:\n    o: {sniStrict: true}\n", "b.yml");
  EXPECT_NE(a.tls.options.at("o@file").where, b.tls.options.at("o@file").where);
  EXPECT_EQ(a.tls.options.at("o@file"), b.tls.options.at("o@file"));
  b.tls.options.at("o@file").alpn_protocols = {"h2"};
  EXPECT_FALSE(a.tls.options.at("o@file") == b.tls.options.at("o@file"));
}

TEST(TlsConfig, MergeAppendsCertificatesAndKeepsIdenticalOptions) {
  auto into = decode("tls:\n  certificates: [{certFile: /a.crt, keyFile: /a.key}]\n"
                     "  options:\n    o: {sniStrict: true}\n  stores:\n    default: {}\n",
                     "a.yml");
  auto from = decode("tls:\n  certificates: [{certFile: /b.crt, keyFile: /b.key}]\n"
                     "  options:\n    o: {sniStrict: true}\n    p: {}\n  stores:\n    default: {}\n",
                     "b.yml");
  std::vector<Error> errors;
  merge_tls(into.tls, std::move(from.tls), errors);
  EXPECT_TRUE(errors.empty()) << all_errors(errors);
  ASSERT_EQ(into.tls.certificates.size(), 2u);
  EXPECT_EQ(into.tls.certificates[1].cert_file, "/b.crt");
  EXPECT_EQ(into.tls.options.size(), 2u);
  EXPECT_EQ(into.tls.options.at("o@file").where, "a.yml:4:5");  // the first copy is kept
  EXPECT_EQ(into.tls.stores.size(), 1u);
}

TEST(TlsConfig, MergeDropsConflictingOptionsAndStoresNamingBothPlaces) {
  auto into = decode("tls:\n  options:\n    default: {sniStrict: true}\n    o: {}\n"
                     "  stores:\n    default:\n      defaultCertificate: {certFile: /a.crt, keyFile: /a.key}\n",
                     "a.yml");
  auto from = decode("tls:\n  options:\n    default: {sniStrict: false}\n    o: {}\n"
                     "  stores:\n    default: {}\n",
                     "b.yml", "file");
  std::vector<Error> errors;
  merge_tls(into.tls, std::move(from.tls), errors);
  ASSERT_EQ(errors.size(), 2u) << all_errors(errors);
  EXPECT_TRUE(has_error(errors, "b.yml:3:5",
                        "TLS options default is defined in a.yml:3:5 and b.yml:3:5 with different configurations"))
      << all_errors(errors);
  EXPECT_TRUE(has_error(errors, "b.yml:6:5",
                        "TLS store default is defined in a.yml:6:5 and b.yml:6:5 with different configurations"))
      << all_errors(errors);
  EXPECT_EQ(into.tls.options.count("default"), 0u);
  EXPECT_EQ(into.tls.options.count("o@file"), 1u);
  EXPECT_EQ(into.tls.stores.count("default"), 0u);
  EXPECT_EQ(into.tls.conflicting_options.at("default"), "a.yml:3:5");

  // A third definition of a conflicting name stays dropped, and is reported too.
  auto third = decode("tls:\n  options:\n    default: {sniStrict: true}\n", "c.yml");
  merge_tls(into.tls, std::move(third.tls), errors);
  EXPECT_EQ(into.tls.options.count("default"), 0u);
  EXPECT_TRUE(has_error(errors, "c.yml:3:5", "TLS options default is defined in a.yml:3:5 and c.yml:3:5"))
      << all_errors(errors);

  // A merged config that already dropped a name makes the target drop it as well.
  auto target = decode("tls:\n  options:\n    default: {}\n", "d.yml");
  merge_tls(target.tls, std::move(into.tls), errors);
  EXPECT_EQ(target.tls.options.count("default"), 0u);
  EXPECT_EQ(target.tls.conflicting_options.count("default"), 1u);
}

}  // namespace
}  // namespace berth::config
