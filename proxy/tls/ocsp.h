// OCSP stapling: for each loaded certificate whose Authority Information Access names an OCSP
// responder, the control thread fetches a response (HTTP POST, RFC 6960 A.1), checks it (signed
// by the issuer or its delegate, status good, current) and hands it to the certificate, which
// staples it to every handshake that serves it. Responses are kept by certificate, so a reload
// does not fetch again, and refreshed halfway to their nextUpdate (every hour at most).
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "proxy/tls/certificate_store.h"

namespace berth::proxy::tls {

class OcspStapler {
 public:
  explicit OcspStapler(boost::asio::io_context& io) : io_(io) {}
  ~OcspStapler();

  /// Staples what is known to the certificates of `store`, and fetches for the others. Thread: control.
  void update(const CertificateStore& store);
  /// Stops refreshing. Thread: control.
  void stop();

  struct Entry;

 private:
  boost::asio::io_context& io_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;  ///< by the leaf's SHA-256
};

/// Checks an OCSP response (DER) for `leaf` issued by `issuer`: a successful response, signed by
/// the issuer (or a responder it delegated to), status good, and current. On success returns
/// the time of its nextUpdate (or now + 1 hour if it has none). Thread: any.
Result<std::chrono::system_clock::time_point> check_ocsp_response(std::string_view der, X509* leaf, X509* issuer);

}  // namespace berth::proxy::tls
