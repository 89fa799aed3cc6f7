// Docker Engine API client: one fresh HTTP/1.1 connection per call (Connection: close), Boost.Beast's
// parser for the answer. Every call keeps its socket in a shared Call so that a timer or cancel_stream()
// can close it while the coroutine waits; see engine_client.h.
#include "discovery/docker/engine_client.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/parse.hpp>
#include <sys/un.h>

#include <optional>
#include <utility>

// GCC 12 takes Asio's coroutine frame allocation (aligned_new in the frame's operator new, freed by its
// operator delete) for a mismatch at -O1 and above: a false positive, reported on each coroutine.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace berth::discovery::docker {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

constexpr std::string_view kExpected = "expected unix:///path/to/docker.sock, tcp://host:port or http://host:port";
constexpr size_t kMaxHead = 64 * 1024;
// The container list of a big host is a few MiB; this only stops a runaway peer.
constexpr uint64_t kMaxBody = 64 * 1024 * 1024;
// One event is a few KiB (the container's labels ride along in Actor.Attributes).
constexpr size_t kMaxLine = 4 * 1024 * 1024;
constexpr size_t kMaxErrorBody = 4096;
// dockerd sends the head of /events at once, before any event; a peer that does not is stuck.
constexpr Duration kStreamHeadTimeout{30000};

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t n = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
    out += kAlphabet[n >> 18];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  if (i < in.size()) {
    uint32_t n = uint32_t(uint8_t(in[i])) << 16;
    if (i + 1 < in.size()) n |= uint32_t(uint8_t(in[i + 1])) << 8;
    out += kAlphabet[n >> 18];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string endpoint_text(const EngineEndpoint& ep) {
  if (!ep.text.empty()) return ep.text;
  if (ep.unix_socket) return "unix://" + ep.path;
  bool is_v6 = ep.host.find(':') != std::string::npos;
  return "tcp://" + (is_v6 ? "[" + ep.host + "]" : ep.host) + ":" + std::to_string(ep.port);
}

// dockerd answers errors as {"message": "..."}; anything else is quoted as it came, cut short.
std::string error_message(std::string_view body) {
  error_code ec;
  auto v = boost::json::parse(body, ec);
  if (!ec && v.is_object()) {
    if (const auto* m = v.get_object().if_contains("message"); m != nullptr && m->is_string())
      return std::string(m->get_string());
  }
  body = trim(body);
  if (body.size() > 200) return std::string(body.substr(0, 200)) + "...";
  return std::string(body);
}

// One request on its own connection. Shared by the coroutine and whoever may close it early: the
// timeout timer's handler and cancel_stream(); those only close, the coroutine sees the error.
struct Call {
  explicit Call(asio::io_context& io) : socket(io), resolver(io), timer(io) {}

  asio::generic::stream_protocol::socket socket;
  asio::ip::tcp::resolver resolver;
  asio::steady_timer timer;
  std::string where;    ///< the endpoint, as written
  std::string request;  ///< "GET /v1.41/events", for messages
  Duration timeout{0};
  bool is_timed_out = false;
  bool is_cancelled = false;

  void close() {
    error_code ignored;
    resolver.cancel();
    socket.close(ignored);
  }

  Error fail(std::string message) const { return Error{where, std::move(message)}; }
  // A failed operation: the timer or cancel_stream() closing the socket shows up as some error of
  // the operation, so those flags decide the message first.
  Error fail(std::string_view doing, const error_code& ec) const {
    if (is_timed_out) return fail(request + ": timed out after " + format_duration(timeout));
    if (is_cancelled) return fail(request + ": cancelled");
    return fail(std::string(doing) + ": " + ec.message());
  }
};

// Closes the call's socket when `timeout` passes, unless disarm() came first.
void arm(const std::shared_ptr<Call>& call, Duration timeout) {
  call->timeout = timeout;
  call->timer.expires_after(timeout);
  call->timer.async_wait([call](error_code ec) {
    if (ec) return;
    call->is_timed_out = true;
    call->close();
  });
}

void disarm(Call& call) { call.timer.cancel(); }

// Opens call.socket to the daemon; the error says what failed.
asio::awaitable<std::optional<Error>> connect(Call& call, const EngineEndpoint& ep) {
  if (ep.unix_socket) {
    // Asio throws on a path sun_path cannot hold; parse_engine_endpoint() refuses those already.
    if (ep.path.size() >= sizeof(sockaddr_un::sun_path))
      co_return call.fail("cannot connect to the Docker daemon: the socket path is too long");
    asio::generic::stream_protocol::endpoint to(asio::local::stream_protocol::endpoint(ep.path));
    auto [ec] = co_await call.socket.async_connect(to, kUseTuple);
    if (ec) co_return call.fail("cannot connect to the Docker daemon", ec);
    co_return std::nullopt;
  }
  auto [rec, results] = co_await call.resolver.async_resolve(ep.host, std::to_string(ep.port), kUseTuple);
  if (rec) co_return call.fail("cannot resolve " + ep.host, rec);
  // Every address in turn (localhost may be ::1 then 127.0.0.1); the last error tells.
  error_code last = asio::error::host_not_found;
  for (const auto& entry : results) {
    if (call.is_timed_out || call.is_cancelled) break;
    error_code ignored;
    call.socket.close(ignored);
    asio::generic::stream_protocol::endpoint to(entry.endpoint());
    auto [ec] = co_await call.socket.async_connect(to, kUseTuple);
    if (!ec) co_return std::nullopt;
    last = ec;
  }
  co_return call.fail("cannot connect to the Docker daemon", last);
}

// The request target may carry ids from the daemon's own answers; none of them has a reason to hold
// a space or a control byte, and those would break the request line.
bool is_valid_target(std::string_view target) {
  if (target.empty() || target.front() != '/') return false;
  for (unsigned char c : target) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

// What a read error means, for the message.
std::string read_failure(const error_code& ec) {
  if (ec == http::error::end_of_stream) return "connection closed before the response";
  if (ec == http::error::partial_message) return "connection closed in the middle of the response";
  if (ec == http::error::body_limit) return "response body exceeds " + std::to_string(kMaxBody >> 20) + " MiB";
  if (ec == http::error::header_limit) return "response head exceeds " + std::to_string(kMaxHead >> 10) + " KiB";
  if (ec.category() == http::make_error_code(http::error::bad_version).category())
    return "malformed response: " + ec.message();
  return ec.message();
}

// Feeds the decoded body of /events to on_line, one call per '\n'-terminated line, until the call is
// cancelled (on_line may cancel it: the lines after, even in the same chunk, are not delivered).
class LineSplitter {
 public:
  LineSplitter(const std::function<void(std::string_view)>& on_line, const Call& call)
      : on_line_(on_line), call_(call) {}

  // False when a line grows past kMaxLine.
  bool feed(std::string_view data) {
    while (!data.empty() && !call_.is_cancelled) {
      auto nl = data.find('\n');
      if (nl == std::string_view::npos) {
        pending_.append(data);
        return pending_.size() <= kMaxLine;
      }
      if (pending_.empty()) {
        emit(data.substr(0, nl));
      } else {
        pending_.append(data.substr(0, nl));
        emit(pending_);
        pending_.clear();
      }
      data.remove_prefix(nl + 1);
    }
    return true;
  }

  // At the clean end of the body: a last line without its newline is still a line.
  void finish() {
    if (!pending_.empty() && !call_.is_cancelled) emit(pending_);
    pending_.clear();
  }

 private:
  void emit(std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    on_line_(line);
  }

  const std::function<void(std::string_view)>& on_line_;
  const Call& call_;
  std::string pending_;
};

}  // namespace

Result<EngineEndpoint> parse_engine_endpoint(std::string_view text) {
  const std::string where(text);
  auto fail = [&](std::string message) { return Error{where, std::move(message)}; };
  if (text.empty()) return fail("empty Docker endpoint; " + std::string(kExpected));
  auto sep = text.find("://");
  if (sep == std::string_view::npos) {
    if (text.front() == '/') return fail("missing scheme; write unix://" + where);
    return fail("missing scheme; " + std::string(kExpected));
  }
  auto scheme = to_lower(text.substr(0, sep));
  auto rest = text.substr(sep + 3);

  EngineEndpoint ep;
  ep.text = where;
  if (scheme == "unix") {
    if (rest.empty() || rest.front() != '/')
      return fail("the unix socket path must be absolute (unix:///var/run/docker.sock)");
    if (rest.size() >= sizeof(sockaddr_un::sun_path))
      return fail("the unix socket path is longer than " + std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                  " bytes");
    if (rest.find('\0') != std::string_view::npos) return fail("the unix socket path holds a NUL byte");
    ep.unix_socket = true;
    ep.path = std::string(rest);
    return ep;
  }
  if (scheme == "https")
    return fail("TLS to dockerd is not supported yet; use unix:// or a plain tcp:// endpoint (a socket proxy)");
  if (scheme == "ssh")
    return fail("ssh:// endpoints are not supported; forward the socket (ssh -L /tmp/docker.sock:/var/run/docker.sock "
                "host) and use unix:///tmp/docker.sock");
  if (scheme == "npipe") return fail("npipe:// (Windows named pipes) is not supported");
  if (scheme != "tcp" && scheme != "http") return fail("unsupported scheme \"" + scheme + "\"; " + std::string(kExpected));

  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find_first_of("/?#") != std::string_view::npos)
    return fail("a path after host:port is not supported; " + std::string(kExpected));
  if (rest.find('@') != std::string_view::npos)
    return fail("credentials in the endpoint are not supported; " + std::string(kExpected));
  std::string_view host, port;
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos) return fail("missing ']' after the IPv6 address");
    host = rest.substr(1, close - 1);
    auto after = rest.substr(close + 1);
    if (after.empty()) return fail("missing port (tcp://[::1]:2375)");
    if (after.front() != ':') return fail("expected ':port' after the IPv6 address");
    port = after.substr(1);
  } else {
    auto colon = rest.rfind(':');
    if (colon == std::string_view::npos) return fail("missing port (tcp://host:2375)");
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return fail("an IPv6 address goes in brackets (tcp://[::1]:2375)");
  }
  if (host.empty()) return fail("missing host; " + std::string(kExpected));
  auto n = parse_uint(port);
  if (!n || *n == 0 || *n > 65535) return fail("the port must be a number from 1 to 65535");
  ep.unix_socket = false;
  ep.host = std::string(host);
  ep.port = uint16_t(*n);
  return ep;
}

struct EngineClient::Impl {
  std::weak_ptr<Call> stream;  ///< the running stream_lines() call, if any
};

EngineClient::EngineClient(asio::io_context& io, EngineEndpoint endpoint, std::string api_prefix,
                           std::string username, std::string password)
    : io_(io),
      endpoint_(std::move(endpoint)),
      api_prefix_(std::move(api_prefix)),
      impl_(std::make_unique<Impl>()) {
  if (!username.empty() || !password.empty()) authorization_ = "Basic " + base64(username + ":" + password);
  while (!api_prefix_.empty() && api_prefix_.back() == '/') api_prefix_.pop_back();
}

// A running stream_lines() only holds its Call, not the client, after its first suspension, so
// closing its socket here lets it end on its own.
EngineClient::~EngineClient() { cancel_stream(); }

void EngineClient::cancel_stream() {
  if (auto call = impl_->stream.lock()) {
    call->is_cancelled = true;
    call->close();
  }
}

namespace {

std::string request_head(const EngineEndpoint& ep, std::string_view path, const std::string& authorization) {
  std::string host = "docker";
  // A proxy in front of a TCP dockerd may route by Host; dockerd itself ignores it.
  if (!ep.unix_socket) {
    host = ep.host.find(':') != std::string::npos ? "[" + ep.host + "]" : ep.host;
    host += ":" + std::to_string(ep.port);
  }
  std::string head;
  head.reserve(160 + path.size());
  head.append("GET ").append(path).append(" HTTP/1.1\r\nHost: ").append(host);
  head.append("\r\nUser-Agent: berth/" BERTH_VERSION "\r\nAccept: application/json\r\n");
  if (!authorization.empty()) head.append("Authorization: ").append(authorization).append("\r\n");
  head.append("Connection: close\r\n\r\n");
  return head;
}

// What get() and stream_lines() start with: the Call (everything the coroutine needs after its first
// suspension is copied into it) and the request head; nullopt head for an invalid target.
std::pair<std::shared_ptr<Call>, std::optional<std::string>> start_call(asio::io_context& io, const EngineEndpoint& ep,
                                                                        const std::string& prefix,
                                                                        const std::string& target,
                                                                        const std::string& authorization) {
  auto call = std::make_shared<Call>(io);
  call->where = endpoint_text(ep);
  const std::string path = prefix + target;
  call->request = "GET " + path;
  if (!is_valid_target(target)) return {std::move(call), std::nullopt};
  return {std::move(call), request_head(ep, path, authorization)};
}

}  // namespace

asio::awaitable<Result<EngineResponse>> EngineClient::get(std::string target, Duration timeout) {
  auto [call, head] = start_call(io_, endpoint_, api_prefix_, target, authorization_);
  if (!head) co_return call->fail(call->request + ": invalid request target");
  const EngineEndpoint ep = endpoint_;

  arm(call, timeout);
  if (auto failed = co_await connect(*call, ep)) {
    disarm(*call);
    co_return *failed;
  }
  auto [wec, written] = co_await asio::async_write(call->socket, asio::buffer(*head), kUseTuple);
  if (wec) {
    disarm(*call);
    co_return call->fail(call->request + ": cannot send the request", wec);
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.header_limit(kMaxHead);
  parser.body_limit(kMaxBody);
  auto [rec, read] = co_await http::async_read(call->socket, buffer, parser, kUseTuple);
  disarm(*call);
  if (rec) {
    if (call->is_timed_out) co_return call->fail(call->request, rec);
    co_return call->fail(call->request + ": " + read_failure(rec));
  }
  error_code ignored;
  call->socket.close(ignored);
  auto response = parser.release();
  co_return EngineResponse{int(response.result_int()), std::move(response.body())};
}

asio::awaitable<Result<bool>> EngineClient::stream_lines(std::string target,
                                                         std::function<void(std::string_view line)> on_line) {
  auto [call, head] = start_call(io_, endpoint_, api_prefix_, target, authorization_);
  if (!head) co_return call->fail(call->request + ": invalid request target");
  const EngineEndpoint ep = endpoint_;
  // A cancel_stream() from here on reaches this call.
  impl_->stream = call;

  arm(call, kStreamHeadTimeout);
  if (auto failed = co_await connect(*call, ep)) {
    disarm(*call);
    if (call->is_cancelled) co_return false;
    co_return *failed;
  }
  auto [wec, written] = co_await asio::async_write(call->socket, asio::buffer(*head), kUseTuple);
  if (wec) {
    disarm(*call);
    if (call->is_cancelled) co_return false;
    co_return call->fail(call->request + ": cannot send the request", wec);
  }
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.header_limit(kMaxHead);
  parser.body_limit(boost::none);
  auto [hec, head_bytes] = co_await http::async_read_header(call->socket, buffer, parser, kUseTuple);
  disarm(*call);
  if (call->is_cancelled) co_return false;
  if (hec) {
    if (call->is_timed_out) co_return call->fail(call->request, hec);
    co_return call->fail(call->request + ": " + read_failure(hec));
  }
  const int status = int(parser.get().result_int());

  LineSplitter lines(on_line, *call);
  std::string error_body;
  char chunk[16 * 1024];
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof chunk;
    auto [ec, n] = co_await http::async_read_some(call->socket, buffer, parser, kUseTuple);
    if (ec == http::error::need_buffer) ec = {};
    std::string_view got(chunk, sizeof chunk - parser.get().body().size);
    if (call->is_cancelled) co_return false;
    if (status != 200) {
      error_body.append(got.substr(0, kMaxErrorBody - std::min(kMaxErrorBody, error_body.size())));
    } else if (!lines.feed(got)) {
      co_return call->fail(call->request + ": a line of the stream exceeds " + std::to_string(kMaxLine >> 20) +
                           " MiB");
    }
    // dockerd going away ends the stream the way the end of the body does: the caller reconnects.
    if (ec == http::error::partial_message || ec == http::error::end_of_stream || ec == asio::error::eof) break;
    if (ec) co_return call->fail(call->request + ": " + read_failure(ec));
    if (status != 200 && error_body.size() >= kMaxErrorBody) break;
  }
  error_code ignored;
  call->socket.close(ignored);
  if (status != 200) {
    co_return call->fail(call->request + ": HTTP " + std::to_string(status) +
                         (error_body.empty() ? "" : ": " + error_message(error_body)));
  }
  if (parser.is_done()) lines.finish();
  if (call->is_cancelled) co_return false;
  co_return true;
}

}  // namespace berth::discovery::docker
