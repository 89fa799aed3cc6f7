// A one-shot HTTP/1.1 client for the worker thread: the forwardAuth middleware asks its auth server
// and the errors middleware fetches error pages through it. One fresh connection per fetch.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "proxy/coro/task.h"
#include "proxy/net.h"

namespace berth::proxy::upstream {

/// Bounds on one fetch; every one is enforced against an untrusted peer.
struct FetchLimits {
  std::chrono::milliseconds timeout{30000};  ///< the whole fetch: connect, send, head and body
  size_t max_head = 64 * 1024;               ///< response head bytes, interim (1xx) heads included
  size_t max_body = 1024 * 1024;             ///< decoded body bytes
};

/// A complete response, copied out of the connection's buffers.
struct FetchResponse {
  int status = 0;
  std::string reason;
  /// In the order received, duplicates kept, names as received; without the hop-by-hop framing
  /// headers (Transfer-Encoding, Connection, Keep-Alive) and without a Content-Length that a
  /// chunked framing overrode.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  ///< decoded: by Content-Length, chunked, or until the server closed

  /// The first value of header `name` (any case), or empty. Thread: any.
  std::string_view header(std::string_view name) const;
};

/// Sends `request_bytes` (a complete HTTP/1.1 request: head, and body if any; the caller writes
/// "Connection: close" and the framing) to `to` over a fresh connection, skips interim 1xx responses,
/// and reads the final response by its framing. A response to a request whose method is HEAD, and
/// one with status 1xx, 204 or 304, has no body; a 101 is an error. The whole fetch is bounded by
/// `limits.timeout`; failures (refused, reset, malformed, over a limit, "timed out after ...") come
/// back as an Error whose `where` is the endpoint, never as an exception. `request_bytes` must stay
/// valid until the task completes. Thread: worker (the thread running `ex`).
coro::Task<Result<FetchResponse>> fetch(Executor ex, boost::asio::ip::tcp::endpoint to,
                                        std::string_view request_bytes, FetchLimits limits);

}  // namespace berth::proxy::upstream
