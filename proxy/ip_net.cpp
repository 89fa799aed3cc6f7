// IpNet parsing and matching; see ip_net.h.
#include "proxy/ip_net.h"

#include <string>

#include "base/text.h"

namespace berth::proxy {
namespace {

boost::asio::ip::address_v6::bytes_type as_v6(const boost::asio::ip::address& a) {
  if (a.is_v4()) return boost::asio::ip::make_address_v6(boost::asio::ip::v4_mapped, a.to_v4()).to_bytes();
  return a.to_v6().to_bytes();
}

}  // namespace

std::optional<IpNet> IpNet::parse(std::string_view text) {
  text = trim(text);
  std::string_view addr_text = text;
  std::optional<uint64_t> prefix;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    addr_text = text.substr(0, slash);
    prefix = parse_uint(text.substr(slash + 1));
    if (!prefix) return std::nullopt;
  }
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(std::string(addr_text), ec);
  if (ec) return std::nullopt;
  IpNet net;
  net.bytes_ = as_v6(addr);
  int max = addr.is_v4() ? 32 : 128;
  int p = prefix ? static_cast<int>(*prefix) : max;
  if (p > max) return std::nullopt;
  net.prefix_ = addr.is_v4() ? p + 96 : p;
  return net;
}

bool IpNet::contains(const boost::asio::ip::address& addr) const {
  auto b = as_v6(addr);
  int bits = prefix_;
  for (size_t i = 0; i < 16 && bits > 0; ++i, bits -= 8) {
    uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
    if ((b[i] & mask) != (bytes_[i] & mask)) return false;
  }
  return true;
}

boost::asio::ip::address unmapped(const boost::asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6());
  return a;
}

std::string_view render_ip(const boost::asio::ip::address& a, char (&buf)[INET6_ADDRSTRLEN]) {
  if (a.is_v4()) {
    // Every proxied request renders its client's address (X-Forwarded-For, X-Real-Ip); glibc's
    // inet_ntop goes through sprintf for IPv4, which costs more than the rest of the header.
    char* p = buf;
    for (uint8_t octet : a.to_v4().to_bytes()) {
      if (p != buf) *p++ = '.';
      if (octet >= 100) *p++ = static_cast<char>('0' + octet / 100);
      if (octet >= 10) *p++ = static_cast<char>('0' + octet / 10 % 10);
      *p++ = static_cast<char>('0' + octet % 10);
    }
    return {buf, static_cast<size_t>(p - buf)};
  }
  const char* r = ::inet_ntop(AF_INET6, a.to_v6().to_bytes().data(), buf, sizeof buf);
  return r ? std::string_view(buf) : std::string_view{};
}

}  // namespace berth::proxy
