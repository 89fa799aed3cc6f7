// Helpers of the unit tests that drive Streams over real loopback sockets.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace berth::proxy::testing {

/// `n` pseudo-random bytes (xorshift32 from `seed`): a corrupted, reordered or repeated piece shows.
inline std::string pattern(size_t n, uint32_t seed = 2463534242u) {
  std::string s(n, '\0');
  for (auto& c : s) {
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    c = static_cast<char>(seed);
  }
  return s;
}

/// Bytes waiting in a socket's receive queue (up to 64 KiB), without taking them.
inline size_t queued(int fd) {
  char buf[1 << 16];
  ssize_t n = ::recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
  return n > 0 ? static_cast<size_t>(n) : 0;
}

}  // namespace berth::proxy::testing
