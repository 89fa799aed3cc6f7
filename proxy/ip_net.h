// IP addresses and CIDR ranges as compiled once from config (forwardedHeaders.trustedIPs, later ClientIP).
#pragma once

#include <arpa/inet.h>

#include <boost/asio/ip/address.hpp>
#include <optional>
#include <string_view>

namespace berth::proxy {

/// An IPv4 or IPv6 network; IPv4-mapped IPv6 peers match IPv4 networks.
class IpNet {
 public:
  /// Parses "10.0.0.0/8", "::1", "192.168.1.7". Thread: any.
  static std::optional<IpNet> parse(std::string_view text);
  bool contains(const boost::asio::ip::address& addr) const;

 private:
  boost::asio::ip::address_v6::bytes_type bytes_{};  ///< IPv4 stored as IPv4-mapped IPv6
  int prefix_ = 128;                                  ///< in IPv6 bits
};

/// An IPv4-mapped IPv6 address as the IPv4 address it maps; any other unchanged. Thread: any.
boost::asio::ip::address unmapped(const boost::asio::ip::address& a);

/// Writes an address as text into `buf` (no allocation); returns the view. Thread: any.
std::string_view render_ip(const boost::asio::ip::address& a, char (&buf)[INET6_ADDRSTRLEN]);

}  // namespace berth::proxy
