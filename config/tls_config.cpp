// Decoding of Traefik's dynamic `tls:` section and its merge across files and providers; see
// tls_config.h. Nothing here reads certificate files: proxy/tls/certificate_store does, per snapshot.
#include "config/tls_config.h"

#include <array>
#include <functional>
#include <utility>

#include "base/text.h"
#include "config/merge.h"

namespace berth::config {
namespace {

struct VersionName {
  std::string_view name;
  TlsVersion version;
};
constexpr std::array<VersionName, 4> kVersions{{{"VersionTLS10", TlsVersion::kTls10},
                                                {"VersionTLS11", TlsVersion::kTls11},
                                                {"VersionTLS12", TlsVersion::kTls12},
                                                {"VersionTLS13", TlsVersion::kTls13}}};

struct ClientAuthName {
  std::string_view name;
  ClientAuthType type;
};
constexpr std::array<ClientAuthName, 5> kClientAuthTypes{{
    {"NoClientCert", ClientAuthType::kNoClientCert},
    {"RequestClientCert", ClientAuthType::kRequestClientCert},
    {"RequireAnyClientCert", ClientAuthType::kRequireAnyClientCert},
    {"VerifyClientCertIfGiven", ClientAuthType::kVerifyClientCertIfGiven},
    {"RequireAndVerifyClientCert", ClientAuthType::kRequireAndVerifyClientCert},
}};

// Traefik's CurveIDs map: Go's names and the RFC 8446 spellings.
struct CurveName {
  std::string_view name;
  std::string_view canonical;
};
constexpr std::array<CurveName, 8> kCurves{{{"CurveP256", "CurveP256"},
                                            {"secp256r1", "CurveP256"},
                                            {"CurveP384", "CurveP384"},
                                            {"secp384r1", "CurveP384"},
                                            {"CurveP521", "CurveP521"},
                                            {"secp521r1", "CurveP521"},
                                            {"X25519", "X25519"},
                                            {"x25519", "X25519"}}};

bool is_verifying(ClientAuthType t) {
  return t == ClientAuthType::kVerifyClientCertIfGiven || t == ClientAuthType::kRequireAndVerifyClientCert;
}

class TlsDecoder {
 public:
  TlsDecoder(YamlDecoder& d, const std::string& provider, TlsConfig& out) : d_(d), provider_(provider), out_(out) {}

  void decode(const ConfigNode& node) {
    for (const ConfigNode* e : d_.entries(node, "tls")) {
      if (iequals(e->key, "certificates")) {
        decode_certificates(*e);
      } else if (iequals(e->key, "options")) {
        for (const ConfigNode* o : d_.entries(*e, "tls.options")) decode_options(*o);
      } else if (iequals(e->key, "stores")) {
        for (const ConfigNode* s : d_.entries(*e, "tls.stores")) decode_store(*s);
      } else {
        d_.unknown_key(*e, "tls");
      }
    }
  }

 private:
  // "default" stays global; any other name becomes "<name>@<provider>"; nullopt (reported) if unusable.
  std::optional<std::string> qualify(const ConfigNode& node, std::string_view kind) {
    if (node.key.empty()) {
      d_.error(node.key_where, std::string(kind) + " name must not be empty");
      return std::nullopt;
    }
    if (node.key.find('@') != std::string::npos) {
      d_.error(node.key_where, std::string(kind) + " name \"" + node.key + "\" must not contain '@'");
      return std::nullopt;
    }
    if (node.key == kDefaultTlsName) return node.key;
    return node.key + "@" + provider_;
  }

  void decode_certificates(const ConfigNode& node) {
    if (node.is_null()) return;
    if (node.kind != ConfigNode::Kind::kList) {
      d_.error(node.where, "expected a list for tls.certificates");
      return;
    }
    for (size_t i = 0; i < node.children.size(); ++i) {
      const ConfigNode& item = node.children[i];
      const std::string path = "tls.certificates[" + std::to_string(i) + "]";
      const size_t errors_before = d_.error_count();
      TlsCertificateConfig cert;
      cert.where = item.where;
      for (const ConfigNode* e : d_.entries(item, path)) {
        if (iequals(e->key, "certFile")) d_.read_string(*e, path, cert.cert_file);
        else if (iequals(e->key, "keyFile")) d_.read_string(*e, path, cert.key_file);
        else if (iequals(e->key, "stores")) d_.read_list(*e, path, cert.stores);
        else d_.unknown_key(*e, path);
      }
      if (d_.error_count() != errors_before) continue;
      if (!check_pair(item, path, cert.cert_file, cert.key_file)) continue;
      out_.certificates.push_back(std::move(cert));
    }
  }

  // Both halves of a certificate must be given; reports at the element's place.
  bool check_pair(const ConfigNode& node, const std::string& path, const std::string& cert_file,
                  const std::string& key_file) {
    bool ok = true;
    if (trim(cert_file).empty()) {
      d_.error(node.where, path + " has no certFile");
      ok = false;
    }
    if (trim(key_file).empty()) {
      d_.error(node.where, path + " has no keyFile");
      ok = false;
    }
    return ok;
  }

  bool read_version(const ConfigNode& e, const std::string& path, TlsVersion& out) {
    std::string text;
    if (!d_.read_string(e, path, text)) return false;
    for (const auto& v : kVersions) {
      if (iequals(trim(text), v.name)) {
        out = v.version;
        return true;
      }
    }
    d_.error(e.where, "unknown TLS version \"" + text + "\" for " + YamlDecoder::join(path, e.key) +
                          " (expected VersionTLS10, VersionTLS11, VersionTLS12 or VersionTLS13)");
    return false;
  }

  void decode_options(const ConfigNode& node) {
    const size_t errors_before = d_.error_count();
    auto name = qualify(node, "TLS options");
    if (!name) return;
    TlsOptionsConfig o;
    o.name = std::move(*name);
    o.where = node.key_where;
    const std::string path = "tls.options." + node.key;
    bool has_auth_type = false;
    std::string auth_type_where;
    for (const ConfigNode* e : d_.entries(node, path)) {
      const std::string& k = e->key;
      if (iequals(k, "minVersion")) {
        read_version(*e, path, o.min_version);
      } else if (iequals(k, "maxVersion")) {
        TlsVersion v{};
        if (read_version(*e, path, v)) o.max_version = v;
      } else if (iequals(k, "cipherSuites")) {
        decode_cipher_suites(*e, path, o);
      } else if (iequals(k, "curvePreferences")) {
        decode_curves(*e, path, o);
      } else if (iequals(k, "alpnProtocols")) {
        std::vector<std::string> wheres;
        if (d_.read_list(*e, path, o.alpn_protocols, &wheres)) {
          for (size_t i = 0; i < o.alpn_protocols.size(); ++i)
            if (o.alpn_protocols[i].size() > 255)
              d_.error(wheres[i], "ALPN protocol names are at most 255 bytes long");
        }
      } else if (iequals(k, "sniStrict")) {
        d_.read_bool(*e, path, o.sni_strict);
      } else if (iequals(k, "disableSessionTickets")) {
        d_.read_bool(*e, path, o.disable_session_tickets);
      } else if (iequals(k, "preferServerCipherSuites")) {
        bool ignored = false;  // deprecated in Go and Traefik: accepted, no effect
        o.prefer_server_cipher_suites_set = d_.read_bool(*e, path, ignored);
      } else if (iequals(k, "clientAuth")) {
        const std::string cpath = path + ".clientAuth";
        for (const ConfigNode* c : d_.entries(*e, cpath)) {
          if (iequals(c->key, "caFiles")) {
            d_.read_list(*c, cpath, o.client_ca_files);
          } else if (iequals(c->key, "clientAuthType")) {
            std::string text;
            if (!d_.read_string(*c, cpath, text)) continue;
            auth_type_where = c->where;
            has_auth_type = !trim(text).empty();
            if (!has_auth_type) continue;  // Traefik: empty means "not set"
            bool known = false;
            for (const auto& t : kClientAuthTypes) {
              if (iequals(trim(text), t.name)) {
                o.client_auth_type = t.type;
                known = true;
              }
            }
            if (!known)
              d_.error(c->where, "unknown clientAuthType \"" + text + "\" for " + cpath +
                                     " (expected NoClientCert, RequestClientCert, RequireAnyClientCert, "
                                     "VerifyClientCertIfGiven or RequireAndVerifyClientCert)");
          } else {
            d_.unknown_key(*c, cpath);
          }
        }
      } else {
        d_.unknown_key(*e, path);
      }
    }
    if (!has_auth_type && !o.client_ca_files.empty()) o.client_auth_type = ClientAuthType::kRequireAndVerifyClientCert;
    if (has_auth_type && is_verifying(o.client_auth_type) && o.client_ca_files.empty())
      d_.error(auth_type_where, "clientAuthType " + std::string(to_string(o.client_auth_type)) + " of TLS options " +
                                    o.name + " needs clientAuth.caFiles");
    if (o.max_version && *o.max_version < o.min_version)
      d_.error(o.where, "TLS options " + o.name + ": maxVersion " + std::string(to_string(*o.max_version)) +
                            " is below minVersion " + std::string(to_string(o.min_version)));
    if (d_.error_count() != errors_before) return;
    out_.options.insert_or_assign(o.name, std::move(o));
  }

  void decode_cipher_suites(const ConfigNode& e, const std::string& path, TlsOptionsConfig& o) {
    std::vector<std::string> names, wheres;
    if (!d_.read_list(e, path, names, &wheres)) return;
    o.cipher_suites.clear();
    for (size_t i = 0; i < names.size(); ++i) {
      const CipherSuiteName* suite = find_cipher_suite(names[i]);
      if (suite == nullptr) {
        d_.error(wheres[i], "unknown cipher suite \"" + names[i] + "\" in " + YamlDecoder::join(path, e.key) +
                                " (expected a Go name such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)");
        continue;
      }
      o.cipher_suites.emplace_back(suite->go);
    }
  }

  void decode_curves(const ConfigNode& e, const std::string& path, TlsOptionsConfig& o) {
    std::vector<std::string> names, wheres;
    if (!d_.read_list(e, path, names, &wheres)) return;
    o.curve_preferences.clear();
    for (size_t i = 0; i < names.size(); ++i) {
      const CurveName* found = nullptr;
      for (const auto& c : kCurves)
        if (names[i] == c.name) found = &c;
      if (found == nullptr) {
        d_.error(wheres[i], "unknown curve \"" + names[i] + "\" in " + YamlDecoder::join(path, e.key) +
                                " (expected CurveP256, CurveP384, CurveP521 or X25519)");
        continue;
      }
      o.curve_preferences.emplace_back(found->canonical);
    }
  }

  void decode_store(const ConfigNode& node) {
    const size_t errors_before = d_.error_count();
    auto name = qualify(node, "TLS store");
    if (!name) return;
    TlsStoreConfig store;
    store.name = std::move(*name);
    store.where = node.key_where;
    const std::string path = "tls.stores." + node.key;
    for (const ConfigNode* e : d_.entries(node, path)) {
      if (iequals(e->key, "defaultCertificate")) {
        const std::string cpath = path + ".defaultCertificate";
        TlsDefaultCertificateConfig cert;
        cert.where = e->where;
        for (const ConfigNode* c : d_.entries(*e, cpath)) {
          if (iequals(c->key, "certFile")) d_.read_string(*c, cpath, cert.cert_file);
          else if (iequals(c->key, "keyFile")) d_.read_string(*c, cpath, cert.key_file);
          else d_.unknown_key(*c, cpath);
        }
        if (check_pair(*e, cpath, cert.cert_file, cert.key_file)) store.default_certificate = std::move(cert);
      } else if (iequals(e->key, "defaultGeneratedCert")) {
        const std::string gpath = path + ".defaultGeneratedCert";
        TlsGeneratedCertConfig gen;
        gen.where = e->where;
        for (const ConfigNode* g : d_.entries(*e, gpath)) {
          if (iequals(g->key, "resolver")) {
            d_.read_string(*g, gpath, gen.resolver);
          } else if (iequals(g->key, "domain")) {
            const std::string dpath = gpath + ".domain";
            for (const ConfigNode* m : d_.entries(*g, dpath)) {
              if (iequals(m->key, "main")) d_.read_string(*m, dpath, gen.main);
              else if (iequals(m->key, "sans")) d_.read_list(*m, dpath, gen.sans);
              else d_.unknown_key(*m, dpath);
            }
          } else {
            d_.unknown_key(*g, gpath);
          }
        }
        store.default_generated_cert = std::move(gen);
      } else {
        d_.unknown_key(*e, path);
      }
    }
    if (d_.error_count() != errors_before) return;
    out_.stores.insert_or_assign(store.name, std::move(store));
  }

  YamlDecoder& d_;
  const std::string& provider_;
  TlsConfig& out_;
};

}  // namespace

bool is_inline_pem(std::string_view value) {
  const size_t start = value.find_first_not_of(" \t\r\n");
  return start != std::string_view::npos && value.substr(start).starts_with("-----BEGIN");
}

std::string_view to_string(TlsVersion v) {
  for (const auto& n : kVersions)
    if (n.version == v) return n.name;
  return "unknown";
}

std::string_view to_string(ClientAuthType t) {
  for (const auto& n : kClientAuthTypes)
    if (n.type == t) return n.name;
  return "unknown";
}

const std::vector<CipherSuiteName>& cipher_suite_names() {
  static const std::vector<CipherSuiteName> kNames{
      // AEADs with ECDHE
      {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"},
      {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"},
      {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"},
      {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"},
      {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"},
      {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "ECDHE-ECDSA-CHACHA20-POLY1305"},
      {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"},
      {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"},
      // CBC with ECDHE
      {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"},
      {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"},
      {"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"},
      {"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"},
      // AEADs and CBC without ECDHE (RSA key exchange)
      {"TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"},
      {"TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"},
      {"TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"},
      {"TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"},
      // 3DES, CBC_SHA256 and RC4: accepted by Go when configured; OpenSSL 3 builds usually lack 3DES
      // and RC4, which the store then reports as unavailable.
      {"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "ECDHE-RSA-DES-CBC3-SHA"},
      {"TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA"},
      {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256"},
      {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256"},
      {"TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"},
      {"TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "ECDHE-ECDSA-RC4-SHA"},
      {"TLS_ECDHE_RSA_WITH_RC4_128_SHA", "ECDHE-RSA-RC4-SHA"},
      {"TLS_RSA_WITH_RC4_128_SHA", "RC4-SHA"},
      // Not configurable (TLS 1.3) or not a suite (SCSV): accepted, no effect.
      {"TLS_AES_128_GCM_SHA256", ""},
      {"TLS_AES_256_GCM_SHA384", ""},
      {"TLS_CHACHA20_POLY1305_SHA256", ""},
      {"TLS_FALLBACK_SCSV", ""},
  };
  return kNames;
}

const CipherSuiteName* find_cipher_suite(std::string_view go_name) {
  for (const auto& n : cipher_suite_names())
    if (iequals(n.go, trim(go_name))) return &n;
  return nullptr;
}

void decode_tls(const ConfigNode& tls_node, YamlDecoder& d, const std::string& provider, TlsConfig& out) {
  TlsDecoder(d, provider, out).decode(tls_node);
}

std::vector<std::string> referenced_files(const TlsConfig& config) {
  std::vector<std::string> out;
  auto add = [&](const std::string& value) {
    if (!value.empty() && !is_inline_pem(value)) out.push_back(value);
  };
  for (const auto& c : config.certificates) {
    add(c.cert_file);
    add(c.key_file);
  }
  for (const auto& [_, o] : config.options)
    for (const auto& ca : o.client_ca_files) add(ca);
  for (const auto& [_, store] : config.stores) {
    if (!store.default_certificate) continue;
    add(store.default_certificate->cert_file);
    add(store.default_certificate->key_file);
  }
  return out;
}

std::optional<RouterTlsConfig> decode_router_tls(const ConfigNode& entry, YamlDecoder& d, const std::string& path) {
  bool enabled = true;
  RouterTlsConfig tls;
  const size_t errors_before = d.error_count();
  if (!d.read_section(entry, path, enabled))
    return enabled && d.error_count() == errors_before ? std::optional(tls) : std::nullopt;
  const std::string sub = YamlDecoder::join(path, entry.key);
  for (const ConfigNode* e : d.entries(entry, sub)) {
    if (iequals(e->key, "options")) {
      d.read_string(*e, sub, tls.options);
    } else if (iequals(e->key, "certResolver")) {
      d.read_string(*e, sub, tls.cert_resolver);
    } else if (iequals(e->key, "domains")) {
      if (e->is_null()) continue;
      if (e->kind != ConfigNode::Kind::kList) {
        d.error(e->where, "expected a list for " + YamlDecoder::join(sub, e->key));
        continue;
      }
      for (size_t i = 0; i < e->children.size(); ++i) {
        const std::string item_path = sub + ".domains[" + std::to_string(i) + "]";
        RouterTlsConfig::Domain domain;
        for (const ConfigNode* f : d.entries(e->children[i], item_path)) {
          if (iequals(f->key, "main")) d.read_string(*f, item_path, domain.main);
          else if (iequals(f->key, "sans")) d.read_list(*f, item_path, domain.sans);
          else d.unknown_key(*f, item_path);
        }
        tls.domains.push_back(std::move(domain));
      }
    } else {
      d.unknown_key(*e, sub);
    }
  }
  return tls;
}

void merge_tls(TlsConfig& into, TlsConfig&& from, std::vector<Error>& errors, Redefinition redefinition) {
  into.certificates.insert(into.certificates.end(), std::make_move_iterator(from.certificates.begin()),
                           std::make_move_iterator(from.certificates.end()));
  // Their operator== leaves places out.
  merge_named("TLS options", into.options, into.conflicting_options, std::move(from.options),
              std::move(from.conflicting_options), errors, std::equal_to<>(), redefinition);
  merge_named("TLS store", into.stores, into.conflicting_stores, std::move(from.stores),
              std::move(from.conflicting_stores), errors, std::equal_to<>(), redefinition);
}

}  // namespace berth::config
