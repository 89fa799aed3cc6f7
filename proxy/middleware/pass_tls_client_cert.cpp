// passTLSClientCert; see pass_tls_client_cert.h. Traefik's rendering is in
// pkg/middlewares/passtlsclientcert/pass_tls_client_cert.go.
#include "proxy/middleware/pass_tls_client_cert.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <vector>

#include "proxy/ip_net.h"

namespace berth::proxy::middleware {
namespace {

// The client's certificates as Go's tls.ConnectionState.PeerCertificates: the leaf, then the
// chain the client sent (OpenSSL's server-side chain leaves the leaf out).
std::vector<X509*> peer_certificates(SSL* ssl) {
  std::vector<X509*> out;
  X509* leaf = SSL_get0_peer_certificate(ssl);
  if (leaf == nullptr) return out;
  out.push_back(leaf);
  if (STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl))
    for (int i = 0; i < sk_X509_num(chain); ++i)
      if (X509* c = sk_X509_value(chain, i); X509_cmp(c, leaf) != 0) out.push_back(c);
  return out;
}

// Go's url.QueryEscape: unreserved bytes stay, space becomes '+', the rest %XX.
void query_escape(std::string_view in, std::string& out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : in) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else if (c == ' ') {
      out.push_back('+');
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
}

std::string asn1_text(const ASN1_STRING* s) {
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, s);
  if (n < 0) return {};
  std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
  OPENSSL_free(utf8);
  return out;
}

// Appends "PREFIX=value," for every entry of `nid` in `name`, in order (Go's writeParts).
void write_parts(const X509_NAME* name, int nid, std::string_view prefix, std::string& out) {
  for (int i = -1; (i = X509_NAME_get_index_by_NID(name, nid, i)) >= 0;) {
    std::string value = asn1_text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
    if (value.empty()) continue;
    out.append(prefix).append("=").append(value).append(",");
  }
}

// Go's getSubjectDNInfo / getIssuerDNInfo: DC first, then C, ST, L, O, OU, SN, CN. Go keeps one
// serialNumber and one CN (the last), so do we.
std::string dn_info(const X509_NAME* name, const config::MiddlewareConfig::DistinguishedName& o) {
  std::string out;
  if (o.domain_component) write_parts(name, NID_domainComponent, "DC", out);
  if (o.country) write_parts(name, NID_countryName, "C", out);
  if (o.province) write_parts(name, NID_stateOrProvinceName, "ST", out);
  if (o.locality) write_parts(name, NID_localityName, "L", out);
  if (o.organization) write_parts(name, NID_organizationName, "O", out);
  if (o.organizational_unit) write_parts(name, NID_organizationalUnitName, "OU", out);
  auto last = [&](int nid) -> std::string {
    std::string value;
    for (int i = -1; (i = X509_NAME_get_index_by_NID(name, nid, i)) >= 0;)
      value = asn1_text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
    return value;
  };
  if (o.serial_number)
    if (std::string sn = last(NID_serialNumber); !sn.empty()) out.append("SN=").append(sn).append(",");
  if (o.common_name)
    if (std::string cn = last(NID_commonName); !cn.empty()) out.append("CN=").append(cn).append(",");
  if (!out.empty()) out.pop_back();  // strings.TrimSuffix(subject, ",")
  return out;
}

int64_t unix_time(const ASN1_TIME* t) {
  struct tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

// Go's getSANs: DNS names, then email addresses, then IP addresses, then URIs.
std::string sans(X509* cert) {
  std::vector<std::string> dns, email, ips, uris;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    if (n->type == GEN_DNS) dns.push_back(asn1_text(n->d.dNSName));
    else if (n->type == GEN_EMAIL) email.push_back(asn1_text(n->d.rfc822Name));
    else if (n->type == GEN_URI) uris.push_back(asn1_text(n->d.uniformResourceIdentifier));
    else if (n->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = n->d.iPAddress;
      boost::asio::ip::address addr;
      if (ip->length == 4) {
        boost::asio::ip::address_v4::bytes_type b;
        std::copy(ip->data, ip->data + 4, b.begin());
        addr = boost::asio::ip::address_v4(b);
      } else if (ip->length == 16) {
        boost::asio::ip::address_v6::bytes_type b;
        std::copy(ip->data, ip->data + 16, b.begin());
        addr = unmapped(boost::asio::ip::address_v6(b));
      } else {
        continue;
      }
      char text[INET6_ADDRSTRLEN];
      ips.emplace_back(render_ip(addr, text));
    }
  }
  GENERAL_NAMES_free(names);
  std::string out;
  for (const auto* list : {&dns, &email, &ips, &uris})
    for (const auto& v : *list) out.append(out.empty() ? "" : ",").append(v);
  return out;
}

class PassTlsClientCert final : public Middleware {
 public:
  explicit PassTlsClientCert(const config::MiddlewareConfig& c) : config_(c) {}

  bool on_request(Context& ctx) const override {
    // Without a client certificate Traefik sets nothing (and the client's own copies of these
    // headers never pass: they are X-Forwarded-* headers, kept only from trusted peers).
    if (ctx.ssl == nullptr || SSL_get0_peer_certificate(ctx.ssl) == nullptr) return true;
    if (config_.tls_pem) {
      ctx.edits.client_cert = render_client_cert_pem(ctx.ssl);
      ctx.edits.request.emplace_back("X-Forwarded-Tls-Client-Cert", ctx.edits.client_cert);
    }
    if (config_.tls_info) {
      ctx.edits.client_cert_info = render_client_cert_info(ctx.ssl, config_);
      if (!ctx.edits.client_cert_info.empty())
        ctx.edits.request.emplace_back("X-Forwarded-Tls-Client-Cert-Info", ctx.edits.client_cert_info);
    }
    return true;
  }

 private:
  config::MiddlewareConfig config_;
};

}  // namespace

std::string render_client_cert_pem(SSL* ssl) {
  std::string out;
  for (X509* cert : peer_certificates(ssl)) {
    BIO* bio = BIO_new(BIO_s_mem());
    if (bio == nullptr) continue;
    std::string pem;
    if (PEM_write_bio_X509(bio, cert) == 1) {
      char* data = nullptr;
      long n = BIO_get_mem_data(bio, &data);
      pem.assign(data, static_cast<size_t>(n));
    }
    BIO_free(bio);
    // Go's sanitize: the armour lines and newlines removed, then url.QueryEscape.
    std::string bare;
    for (std::string_view armour : {"-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"})
      if (auto at = pem.find(armour); at != std::string::npos) pem.erase(at, armour.size());
    for (char c : pem)
      if (c != '\n') bare.push_back(c);
    if (!out.empty()) out.push_back(',');
    query_escape(bare, out);
  }
  return out;
}

std::string render_client_cert_info(SSL* ssl, const config::MiddlewareConfig& o) {
  std::string all;
  bool first_cert = true;
  for (X509* cert : peer_certificates(ssl)) {
    std::vector<std::string> values;
    if (std::string subject = dn_info(X509_get_subject_name(cert), o.info_subject); !subject.empty())
      values.push_back("Subject=\"" + subject + "\"");
    if (std::string issuer = dn_info(X509_get_issuer_name(cert), o.info_issuer); !issuer.empty())
      values.push_back("Issuer=\"" + issuer + "\"");
    if (o.info_serial_number) {
      if (BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr)) {
        if (char* dec = BN_bn2dec(bn)) {
          values.push_back("SerialNumber=\"" + std::string(dec) + "\"");
          OPENSSL_free(dec);
        }
        BN_free(bn);
      }
    }
    if (o.info_not_before) values.push_back("NB=\"" + std::to_string(unix_time(X509_get0_notBefore(cert))) + "\"");
    if (o.info_not_after) values.push_back("NA=\"" + std::to_string(unix_time(X509_get0_notAfter(cert))) + "\"");
    if (o.info_sans)
      if (std::string s = sans(cert); !s.empty()) values.push_back("SAN=\"" + s + "\"");
    std::string one;
    for (const auto& v : values) one.append(one.empty() ? "" : ";").append(v);
    if (!first_cert) all.push_back(',');
    all.append(one);
    first_cert = false;
  }
  std::string out;
  query_escape(all, out);  // Traefik escapes the joined value once
  return out;
}

std::unique_ptr<Middleware> compile_pass_tls_client_cert(const config::MiddlewareConfig& c) {
  return std::make_unique<PassTlsClientCert>(c);
}

}  // namespace berth::proxy::middleware
