// Unit tests for IpNet: parsing addresses and CIDR ranges, and matching peers against them; render_ip.
#include "proxy/ip_net.h"

#include <gtest/gtest.h>

#include <string>

namespace berth::proxy {
namespace {

boost::asio::ip::address ip(const std::string& text) { return boost::asio::ip::make_address(text); }

IpNet net(std::string_view text) {
  auto n = IpNet::parse(text);
  EXPECT_TRUE(n.has_value()) << text;
  return n.value_or(IpNet{});
}

TEST(IpNet, MatchesASingleV4Address) {
  IpNet n = net("192.168.1.7");
  EXPECT_TRUE(n.contains(ip("192.168.1.7")));
  EXPECT_FALSE(n.contains(ip("192.168.1.8")));
  EXPECT_FALSE(n.contains(ip("::1")));
}

TEST(IpNet, MatchesAV4Cidr) {
  IpNet n = net("10.0.0.0/8");
  EXPECT_TRUE(n.contains(ip("10.0.0.0")));
  EXPECT_TRUE(n.contains(ip("10.255.255.255")));
  EXPECT_FALSE(n.contains(ip("11.0.0.0")));
  EXPECT_FALSE(n.contains(ip("9.255.255.255")));
}

TEST(IpNet, MatchesV4CidrsOnNonOctetBoundaries) {
  IpNet n = net("172.16.0.0/12");
  EXPECT_TRUE(n.contains(ip("172.16.0.1")));
  EXPECT_TRUE(n.contains(ip("172.31.255.255")));
  EXPECT_FALSE(n.contains(ip("172.32.0.0")));
  EXPECT_FALSE(n.contains(ip("172.15.255.255")));
  IpNet m = net("192.168.1.128/25");
  EXPECT_TRUE(m.contains(ip("192.168.1.200")));
  EXPECT_FALSE(m.contains(ip("192.168.1.127")));
}

TEST(IpNet, IgnoresHostBitsInTheNetworkAddress) {
  IpNet n = net("10.1.2.3/8");
  EXPECT_TRUE(n.contains(ip("10.200.0.1")));
}

TEST(IpNet, MatchesEverythingV4WithSlashZero) {
  IpNet n = net("0.0.0.0/0");
  EXPECT_TRUE(n.contains(ip("1.2.3.4")));
  EXPECT_TRUE(n.contains(ip("255.255.255.255")));
  EXPECT_FALSE(n.contains(ip("2001:db8::1")));
}

TEST(IpNet, MatchesV6AddressesAndCidrs) {
  IpNet one = net("::1");
  EXPECT_TRUE(one.contains(ip("::1")));
  EXPECT_FALSE(one.contains(ip("::2")));
  IpNet n = net("2001:db8::/32");
  EXPECT_TRUE(n.contains(ip("2001:db8::1")));
  EXPECT_TRUE(n.contains(ip("2001:db8:ffff:ffff::1")));
  EXPECT_FALSE(n.contains(ip("2001:db9::1")));
  EXPECT_FALSE(n.contains(ip("10.0.0.1")));
  IpNet odd = net("fd00::/7");
  EXPECT_TRUE(odd.contains(ip("fdff::1")));
  EXPECT_TRUE(odd.contains(ip("fc00::1")));
  EXPECT_FALSE(odd.contains(ip("fe00::1")));
}

TEST(IpNet, MatchesV4MappedPeerAgainstV4Net) {
  IpNet n = net("10.0.0.0/8");
  EXPECT_TRUE(n.contains(ip("::ffff:10.1.2.3")));
  EXPECT_FALSE(n.contains(ip("::ffff:11.1.2.3")));
  IpNet single = net("127.0.0.1");
  EXPECT_TRUE(single.contains(ip("::ffff:127.0.0.1")));
}

TEST(IpNet, TrimsSurroundingSpaces) {
  IpNet n = net("  10.0.0.0/8 ");
  EXPECT_TRUE(n.contains(ip("10.9.9.9")));
}

TEST(IpNet, RejectsInvalidInput) {
  for (std::string_view bad : {"", "abc", "10.0.0", "256.0.0.1", "10.0.0.0/33", "::1/129", "10.0.0.0/", "10.0.0.0/-1",
                               "10.0.0.0/8/9", "10.0.0.0/x", "/8", "2001:db8:::1", "10.0.0.1:80"}) {
    EXPECT_FALSE(IpNet::parse(bad).has_value()) << "\"" << bad << "\"";
  }
}

TEST(IpNet, AcceptsPrefixBoundaries) {
  EXPECT_TRUE(IpNet::parse("10.0.0.1/32").has_value());
  EXPECT_TRUE(IpNet::parse("::/0").has_value());
  EXPECT_TRUE(IpNet::parse("::1/128").has_value());
}

TEST(RenderIp, RendersV4OctetsOfEveryWidthAndV6AsInetNtop) {
  char buf[INET6_ADDRSTRLEN];
  for (std::string text : {"0.0.0.0", "127.0.0.1", "9.10.99.100", "192.168.1.255", "255.255.255.255", "10.0.200.7",
                           "::1", "2001:db8::ff00:42:8329", "::ffff:10.1.2.3"}) {
    EXPECT_EQ(render_ip(ip(text), buf), text);
  }
}

}  // namespace
}  // namespace berth::proxy
