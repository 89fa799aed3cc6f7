// Traefik's dynamic `tls:` section (certificates, options, stores) as decoded from one provider, and
// its merge across files and providers. Called from dynamic_config.cpp; compiled by proxy/tls/certificate_store.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "config/merge.h"
#include "config/yaml_decoder.h"

namespace berth::config {

/// Traefik's names for its global options set and store: never qualified with a provider.
inline constexpr std::string_view kDefaultTlsName = "default";

/// A certFile / keyFile / caFiles value is a path, or the PEM content itself (Traefik's FileOrContent).
/// True when `value`, leading whitespace aside, starts with "-----BEGIN": then it is inline PEM.
/// Thread: any.
bool is_inline_pem(std::string_view value);

/// tls.certificates[]: one certificate and its key, added to `stores` (empty: the default store).
struct TlsCertificateConfig {
  std::string cert_file;            ///< a path or inline PEM (the leaf first, then its chain)
  std::string key_file;             ///< a path or inline PEM
  std::vector<std::string> stores;  ///< as written (Traefik never qualifies these)
  std::string where;                ///< "file:line:col" of the list item
  bool operator==(const TlsCertificateConfig& o) const {
    return cert_file == o.cert_file && key_file == o.key_file && stores == o.stores;
  }
};

/// A router's `tls` section (present: the router serves HTTPS only), or an entry point's
/// `http.tls`, which routers on that entry point without their own take.
struct RouterTlsConfig {
  std::string options;                    ///< tls.options: a TLS options name ("" = "default")
  std::string cert_resolver;              ///< tls.certResolver (ACME fills it, issue 6)
  struct Domain {
    std::string main;
    std::vector<std::string> sans;
    bool operator==(const Domain&) const = default;
  };
  std::vector<Domain> domains;            ///< tls.domains (ACME, issue 6)
  bool operator==(const RouterTlsConfig&) const = default;
};

/// Go's tls.VersionTLS1x, written "VersionTLS10".."VersionTLS13".
enum class TlsVersion : uint8_t { kTls10, kTls11, kTls12, kTls13 };

/// Go's tls.ClientAuthType, by Traefik's names.
enum class ClientAuthType : uint8_t {
  kNoClientCert,
  kRequestClientCert,            ///< asked for, not required, not verified
  kRequireAnyClientCert,         ///< required, not verified
  kVerifyClientCertIfGiven,      ///< verified against caFiles when sent
  kRequireAndVerifyClientCert,   ///< required and verified against caFiles
};

/// "VersionTLS12" for kTls12, and so on; the ClientAuthType's Traefik name. Thread: any.
std::string_view to_string(TlsVersion v);
std::string_view to_string(ClientAuthType t);

/// One Go cipher suite name Traefik accepts and what OpenSSL calls it. `openssl` is empty for the
/// TLS 1.3 suites and TLS_FALLBACK_SCSV: Go (so Traefik) accepts them in cipherSuites and ignores
/// them (TLS 1.3 suites are not configurable), and so does berth.
struct CipherSuiteName {
  std::string_view go;
  std::string_view openssl;
};
/// Every name Traefik accepts, in Go's server preference order (crypto/tls
/// cipherSuitesPreferenceOrder), TLS 1.3 and SCSV entries last. Thread: any.
const std::vector<CipherSuiteName>& cipher_suite_names();
/// The entry for a Go name (ASCII case ignored), or nullptr. Thread: any.
const CipherSuiteName* find_cipher_suite(std::string_view go_name);

/// tls.options.<name>: how a TLS entry point (router) negotiates. Defaults are Traefik v3's.
struct TlsOptionsConfig {
  std::string name;   ///< "default", or qualified "<name>@<provider>"
  std::string where;  ///< place of the name
  TlsVersion min_version = TlsVersion::kTls12;
  std::optional<TlsVersion> max_version;        ///< unset: the newest (TLS 1.3)
  /// Go names, canonical spelling, as written (order does not matter: Go and berth use Go's own
  /// preference order). Empty: Go's default since Go 1.22 (Traefik v3): the ECDHE suites of
  /// tls.CipherSuites() without CBC_SHA256 (every default suite is forward-secret).
  std::vector<std::string> cipher_suites;
  /// Go names, canonical spelling ("CurveP256", "CurveP384", "CurveP521", "X25519"), in the order
  /// written (berth's server preference order); RFC spellings ("secp256r1", "x25519") are accepted
  /// and stored canonically.
  /// Empty: Go's default (X25519, P-256, P-384, P-521).
  std::vector<std::string> curve_preferences;
  std::vector<std::string> alpn_protocols{"h2", "http/1.1", "acme-tls/1"};  ///< server preference order
  bool sni_strict = false;
  std::vector<std::string> client_ca_files;  ///< clientAuth.caFiles: paths or inline PEM
  /// clientAuth.clientAuthType; when absent it is RequireAndVerifyClientCert if caFiles is set.
  ClientAuthType client_auth_type = ClientAuthType::kNoClientCert;
  bool disable_session_tickets = false;           ///< disableSessionTickets (Traefik v3)
  bool prefer_server_cipher_suites_set = false;   ///< deprecated and ineffective, as in Traefik
  bool operator==(const TlsOptionsConfig& o) const {
    return name == o.name && min_version == o.min_version && max_version == o.max_version &&
           cipher_suites == o.cipher_suites && curve_preferences == o.curve_preferences &&
           alpn_protocols == o.alpn_protocols && sni_strict == o.sni_strict &&
           client_ca_files == o.client_ca_files && client_auth_type == o.client_auth_type &&
           disable_session_tickets == o.disable_session_tickets &&
           prefer_server_cipher_suites_set == o.prefer_server_cipher_suites_set;
  }
};

/// tls.stores.<name>.defaultCertificate.
struct TlsDefaultCertificateConfig {
  std::string cert_file;  ///< a path or inline PEM
  std::string key_file;   ///< a path or inline PEM
  std::string where;
  bool operator==(const TlsDefaultCertificateConfig& o) const {
    return cert_file == o.cert_file && key_file == o.key_file;
  }
};

/// tls.stores.<name>.defaultGeneratedCert: an ACME resolver's certificate for `main` + `sans` is the
/// store's default certificate once it is in the store.
struct TlsGeneratedCertConfig {
  std::string resolver;
  std::string main;
  std::vector<std::string> sans;
  std::string where;
  bool operator==(const TlsGeneratedCertConfig& o) const {
    return resolver == o.resolver && main == o.main && sans == o.sans;
  }
};

/// tls.stores.<name>. Only the `default` store serves connections (as in Traefik, whose routers all
/// use it); other stores are decoded and compiled but nothing selects from them.
struct TlsStoreConfig {
  std::string name;   ///< "default", or qualified "<name>@<provider>"
  std::string where;  ///< place of the name
  std::optional<TlsDefaultCertificateConfig> default_certificate;
  std::optional<TlsGeneratedCertConfig> default_generated_cert;
  bool operator==(const TlsStoreConfig& o) const {
    return name == o.name && default_certificate == o.default_certificate &&
           default_generated_cert == o.default_generated_cert;
  }
};

/// One provider's (or, merged, every provider's) `tls:` section. Bad elements are absent; their
/// errors went to the decoder's error list.
struct TlsConfig {
  std::vector<TlsCertificateConfig> certificates;
  std::map<std::string, TlsOptionsConfig> options;  ///< by name ("default" or qualified)
  std::map<std::string, TlsStoreConfig> stores;     ///< by name ("default" or qualified)
  /// Names merge_tls dropped because two definitions differ -> place of the first definition; kept
  /// so a third definition stays dropped, and so the builder knows a missing "default" options set
  /// was dropped (routers using it fail, as in Traefik) rather than never defined (built-in defaults).
  std::map<std::string, std::string> conflicting_options;
  std::map<std::string, std::string> conflicting_stores;
};

/// Decodes the value of a top-level `tls:` key (a map; null is empty) for provider `provider` into
/// `out`, reporting every problem with its place through `d`. A bad certificate, options set or
/// store is reported and left out; unknown keys are errors. Option and store names are qualified
/// "<name>@<provider>" like routers, except `default`, which Traefik keeps global (a name holding
/// '@' or empty is an error). Values are checked (versions, suite and curve names, client auth
/// type, caFiles required by the verifying types) but files are not read: the certificate store
/// reads them when it builds. Thread: control.
void decode_tls(const ConfigNode& tls_node, YamlDecoder& d, const std::string& provider, TlsConfig& out);

/// The files `config` names (certificates, keys, client CA files; inline PEM left out), so a
/// provider can watch them: a replaced certificate file applies on the next handshake. Thread: any.
std::vector<std::string> referenced_files(const TlsConfig& config);

/// Decodes a router's `tls` entry or an entry point's `http.tls` at `path` (its parent's path):
/// a map (null or `true` is an empty one), or `false` for none. Problems are reported through `d`;
/// the options name is kept as written (the snapshot builder qualifies it). Thread: control.
std::optional<RouterTlsConfig> decode_router_tls(const ConfigNode& entry, YamlDecoder& d, const std::string& path);

/// Folds `from` into `into`: certificates append; an options set or store defined in both with a
/// different configuration (places aside) is an error naming both places, and both copies are
/// dropped, as merge_dynamic does for routers (identical copies are kept once). This applies to
/// `default` too: Traefik rejects `default` defined by two providers even when identical, berth
/// accepts identical copies. Thread: control.
void merge_tls(TlsConfig& into, TlsConfig&& from, std::vector<Error>& errors,
               Redefinition redefinition = Redefinition::kConflict);

}  // namespace berth::config
