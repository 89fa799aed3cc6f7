// A minimal client of the Docker Engine API (HTTP/1.1 over the unix socket or TCP, API v1.41):
// one-shot GETs (list, inspect) and one streamed GET (/events). Thread: control (one io_context).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/text.h"

namespace berth::discovery::docker {

/// Where dockerd listens: `unix:///var/run/docker.sock`, `tcp://host:port` or `http://host:port`.
struct EngineEndpoint {
  bool unix_socket = true;
  std::string path;   ///< unix socket path
  std::string host;   ///< tcp host (name or IP literal, without brackets)
  uint16_t port = 0;  ///< tcp port
  std::string text;   ///< as written, for messages
};

/// Parses `providers.docker.endpoint`; an unsupported scheme or a malformed address is an error
/// whose message says what is expected. Thread: any.
Result<EngineEndpoint> parse_engine_endpoint(std::string_view text);

struct EngineResponse {
  int status = 0;
  std::string body;  ///< the whole body (Content-Length or chunked, decoded)
};

class EngineClient {
 public:
  /// `api_prefix` is put before every target ("/v1.41"). `username`/`password`, if set, are sent as
  /// Basic authorization (a socket proxy in front of dockerd).
  EngineClient(boost::asio::io_context& io, EngineEndpoint endpoint, std::string api_prefix = "/v1.41",
               std::string username = {}, std::string password = {});
  /// Cancels a running stream. A call in flight holds no reference to the client once started, so
  /// it may end after the client is gone.
  ~EngineClient();

  /// GET `target` (e.g. "/containers/json?all=1", already URL-encoded) on a new connection, read the
  /// whole answer (at most 64 MiB). A connection problem, a malformed answer or `timeout` passing is
  /// an Error (`where` is the endpoint, the message starts with the request: "GET /v1.41/...: timed
  /// out after 5s"); any HTTP status is an answer: dockerd's errors come as {"message": "..."}.
  /// Co_await it from a coroutine: co_spawn cannot hand a Result to a completion handler (it needs a
  /// default-constructible value).
  boost::asio::awaitable<Result<EngineResponse>> get(std::string target, Duration timeout);

  /// GET a streaming `target` (/events?filters=...) and call `on_line` with every newline-terminated
  /// line of the (chunked) body as it arrives, without its '\n'. Returns Ok(true) when the server
  /// ends the body (a last line without '\n' is delivered) or closes (a cut last line is dropped),
  /// Ok(false) when cancel_stream() is called, an Error on a connection problem, a non-200 answer
  /// ("GET ...: HTTP 400: <dockerd's message>"), or no response head within 30 s. One stream at a
  /// time per client.
  boost::asio::awaitable<Result<bool>> stream_lines(std::string target,
                                                    std::function<void(std::string_view line)> on_line);

  /// Ends a running stream_lines() (its socket is closed; it returns Ok(false) on its next turn, also
  /// when called from `on_line`); safe when none runs.
  void cancel_stream();

  const EngineEndpoint& endpoint() const { return endpoint_; }
  /// The prefix put before every target ("/v1.41"; "" for the daemon's own version).
  void set_api_prefix(std::string prefix) { api_prefix_ = std::move(prefix); }

 private:
  struct Impl;
  boost::asio::io_context& io_;
  EngineEndpoint endpoint_;
  std::string api_prefix_;
  std::string authorization_;  ///< "Basic ..." or empty
  std::unique_ptr<Impl> impl_;
};

}  // namespace berth::discovery::docker
