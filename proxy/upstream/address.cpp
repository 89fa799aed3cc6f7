// Upstream URL parsing and resolution; see address.h.
#include "proxy/upstream/address.h"

#include <netdb.h>

#include <boost/url/parse.hpp>
#include <cstring>

#include "base/text.h"

namespace berth::proxy::upstream {
namespace {

namespace ip = boost::asio::ip;

// Resolves a host name or literal to one address (IPv4 preferred, as Go's dialer tries it first on loopback).
bool resolve(const std::string& host, uint16_t port, ip::tcp::endpoint& out, std::string& error) {
  boost::system::error_code ec;
  std::string bare = host;
  if (bare.size() > 2 && bare.front() == '[' && bare.back() == ']') bare = bare.substr(1, bare.size() - 2);
  auto addr = ip::make_address(bare, ec);
  if (!ec) {
    out = ip::tcp::endpoint(addr, port);
    return true;
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(bare.c_str(), nullptr, &hints, &res);
  if (rc != 0 || !res) {
    error = std::string("cannot resolve host \"") + bare + "\": " + gai_strerror(rc);
    return false;
  }
  const addrinfo* pick = res;
  for (const addrinfo* a = res; a; a = a->ai_next)
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  ip::tcp::endpoint ep;
  std::memcpy(ep.data(), pick->ai_addr, pick->ai_addrlen);
  ep.port(port);
  out = ep;
  freeaddrinfo(res);
  return true;
}

}  // namespace

Result<UpstreamAddress> resolve_url(const std::string& url, const std::string& where, const std::string& what) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) return Error{where, "invalid " + what + " \"" + url + "\""};
  std::string scheme = to_lower(parsed->scheme());
  if (scheme != "http" && scheme != "https" && scheme != "h2c")
    return Error{where, what + " \"" + url + "\": scheme \"" + scheme + "\" is not supported (use http, https or h2c)"};
  std::string host(parsed->encoded_host());
  if (host.empty()) return Error{where, what + " \"" + url + "\" has no host"};
  uint16_t port = scheme == "https" ? 443 : 80;
  if (parsed->has_port()) {
    auto p = parse_uint(parsed->port());
    if (!p || *p == 0 || *p > 65535) return Error{where, what + " \"" + url + "\" has an invalid port"};
    port = static_cast<uint16_t>(*p);
  }
  UpstreamAddress out;
  out.tls = scheme == "https";
  out.h2c = scheme == "h2c";
  out.host = host.size() > 2 && host.front() == '[' ? host.substr(1, host.size() - 2) : host;
  out.authority = parsed->has_port() ? host + ":" + std::string(parsed->port()) : host;
  out.path_and_query = std::string(parsed->encoded_path());
  if (out.path_and_query.empty()) out.path_and_query = "/";
  if (parsed->has_query()) out.path_and_query += "?" + std::string(parsed->encoded_query());
  std::string error;
  if (!resolve(host, port, out.address, error)) return Error{where, what + " \"" + url + "\": " + error};
  return out;
}

}  // namespace berth::proxy::upstream
