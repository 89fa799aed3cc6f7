// An upstream URL (a server of a service, a forwardAuth address) parsed and resolved once, when the
// snapshot is built, so the data plane never resolves names.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <string>

#include "base/result.h"

namespace berth::proxy::upstream {

struct UpstreamAddress {
  bool tls = false;                        ///< https://
  bool h2c = false;                        ///< h2c://: HTTP/2 without TLS (prior knowledge)
  std::string host;                        ///< as written, without brackets or port (SNI, verification)
  std::string authority;                   ///< "host[:port]" as written (a Host header value)
  std::string path_and_query;              ///< "/" if the URL has none
  boost::asio::ip::tcp::endpoint address;  ///< resolved (IPv4 preferred)
};

/// Parses an http://, https:// or h2c:// URL (default ports 80, 443 and 80) and resolves its host. Errors name the URL and carry `where`. `what`
/// names the URL in messages ("server URL", "forwardAuth address"). Thread: control (may block on DNS).
Result<UpstreamAddress> resolve_url(const std::string& url, const std::string& where, const std::string& what);

}  // namespace berth::proxy::upstream
