// The ACME client's HTTPS (HTTP/1.1 over TLS, one connection per request, Boost.Beast on Asio's
// OpenSSL stream). Trusts the system's CAs, plus the PEM files of `caCertificates` and of the
// LEGO_CA_CERTIFICATES environment variable (':'-separated, as lego and so Traefik read it).
// Thread: control (one io_context).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/text.h"

namespace berth::acme {

struct HttpsResponse {
  int status = 0;
  std::string body;
  std::string location;      ///< Location
  std::string replay_nonce;  ///< Replay-Nonce
  std::string retry_after;   ///< Retry-After, as sent
  std::string content_type;
  std::vector<std::string> alternates;  ///< URLs of Link: <...>;rel="alternate"
};

class HttpsClient {
 public:
  /// `ca_files`: PEM files trusted besides the system's. An unreadable file is an Error.
  static Result<std::unique_ptr<HttpsClient>> create(boost::asio::io_context& io, const std::vector<std::string>& ca_files);
  ~HttpsClient();

  /// One request to an https:// (or http://) URL. A connection, TLS or protocol problem, or
  /// `timeout` passing, is an Error naming the URL.
  boost::asio::awaitable<Result<HttpsResponse>> request(std::string method, std::string url, std::string body,
                                                        std::string content_type, std::string accept = {},
                                                        Duration timeout = Duration(30'000));

 private:
  struct Impl;
  explicit HttpsClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Seconds to wait from a Retry-After value (delta-seconds or an HTTP date), or nullopt.
std::optional<Duration> parse_retry_after(std::string_view value);

}  // namespace berth::acme
