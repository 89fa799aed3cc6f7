// One-shot HTTP/1.1 fetch; see http_fetch.h. Connect, write, read the head (skipping 1xx), read the
// body by its framing, close. Not a steady-state path, so it allocates freely but boundedly.
#include "proxy/upstream/http_fetch.h"

#include <algorithm>
#include <boost/asio/write.hpp>
#include <memory>

#include "base/text.h"
#include "proxy/http/h1/chunked_decoder.h"
#include "proxy/http/h1/parser.h"

namespace berth::proxy::upstream {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using http::HeaderId;

namespace {

constexpr size_t kReadSize = 16 * 1024;

// The socket and the deadline that closes it. The deadline's handler holds only a weak_ptr, so a
// deadline that fires as the fetch ends (its handler already queued) finds nothing to close.
struct Connection {
  explicit Connection(Executor ex) : socket(ex), deadline(ex) {}
  Socket socket;
  Timer deadline;
  bool is_timed_out = false;
};

// What one fetch carries through its steps; errors are phrased with the endpoint as `where`.
struct Exchange {
  Connection& connection;
  const tcp::endpoint& to;
  const FetchLimits& limits;

  std::string where() const {
    const auto& a = to.address();
    std::string host = a.is_v6() ? "[" + a.to_string() + "]" : a.to_string();
    return host + ":" + std::to_string(to.port());
  }
  Error fail(std::string message) const { return Error{where(), std::move(message)}; }
  // An I/O error; once the deadline has closed the socket, every error is the timeout's doing.
  Error fail_io(std::string_view doing, const error_code& ec) const {
    if (connection.is_timed_out)
      return fail("timed out after " + format_duration(limits.timeout) + " " + std::string(doing));
    return fail(std::string(doing) + ": " + ec.message());
  }
  Error body_too_large() const { return fail("response body exceeds " + std::to_string(limits.max_body) + " bytes"); }
};

// Appends what one read returns (at most `want` bytes) to `to`.
coro::Task<error_code> read_into(Socket& socket, std::string& to, size_t want) {
  const size_t old = to.size();
  to.resize(old + want);
  auto [ec, n] = co_await socket.async_read_some(asio::buffer(to.data() + old, want), coro::use_task);
  to.resize(old + n);
  co_return ec;
}

bool has_no_body(int status) { return (status >= 100 && status < 200) || status == 204 || status == 304; }

// Reads the chunked body that starts with `rest` (already received) into `out.body`.
coro::Task<Result<FetchResponse>> read_chunked(const Exchange& x, std::string rest, FetchResponse out) {
  http::h1::ChunkedDecoder decoder;
  std::string in = std::move(rest);
  while (true) {
    std::string_view pending = in;
    while (true) {
      size_t used = 0;
      std::string_view data;
      auto st = decoder.decode(pending, used, data);
      pending.remove_prefix(used);
      if (st == http::h1::ChunkedDecoder::Status::kData) {
        if (data.size() > x.limits.max_body - out.body.size()) co_return x.body_too_large();
        out.body.append(data);
        continue;
      }
      if (st == http::h1::ChunkedDecoder::Status::kDone) co_return std::move(out);
      if (st == http::h1::ChunkedDecoder::Status::kError)
        co_return x.fail("malformed chunked body: " + std::string(decoder.error()));
      break;  // kNeedMore: everything in `in` was consumed
    }
    in.clear();
    error_code ec = co_await read_into(x.connection.socket, in, kReadSize);
    if (ec == asio::error::eof) co_return x.fail("connection closed in the middle of the chunked body");
    if (ec) co_return x.fail_io("reading the response body", ec);
  }
}

coro::Task<Result<FetchResponse>> run_exchange(const Exchange& x, std::string_view request_bytes) {
  Socket& socket = x.connection.socket;
  if (auto [ec] = co_await socket.async_connect(x.to, coro::use_task); ec) co_return x.fail_io("connecting", ec);
  if (auto [ec, n] = co_await asio::async_write(socket, asio::buffer(request_bytes), coro::use_task); ec)
    co_return x.fail_io("sending the request", ec);

  // The head, after any interim 1xx heads (which count against max_head too).
  std::string in;
  http::h1::ResponseHead head;
  size_t head_end = 0;
  size_t interim_bytes = 0;
  size_t scanned = 0;
  while (true) {
    head_end = http::h1::find_head_end(in, scanned);
    if (head_end == 0 ? interim_bytes + in.size() > x.limits.max_head : interim_bytes + head_end > x.limits.max_head)
      co_return x.fail("response head exceeds " + std::to_string(x.limits.max_head) + " bytes");
    if (head_end != 0) {
      auto st = http::h1::parse_response(std::string_view(in).substr(0, head_end), head);
      if (st == http::h1::ParseStatus::kNotImplemented) co_return x.fail("unsupported transfer coding in the response");
      if (st != http::h1::ParseStatus::kOk) co_return x.fail("malformed response head");
      if (head.status == 101) co_return x.fail("unexpected 101 Switching Protocols");
      if (head.status >= 200) break;
      interim_bytes += head_end;
      in.erase(0, head_end);
      scanned = 0;
      continue;
    }
    scanned = in.size();
    error_code ec = co_await read_into(socket, in, kReadSize);
    if (ec == asio::error::eof)
      co_return x.fail(in.empty() && interim_bytes == 0 ? "connection closed before the response"
                                                         : "connection closed in the middle of the response head");
    if (ec) co_return x.fail_io("reading the response head", ec);
  }

  FetchResponse out;
  out.status = head.status;
  out.reason = std::string(head.reason);
  out.headers.reserve(head.headers.size());
  for (const auto& h : head.headers) {
    if (h.id == HeaderId::kTransferEncoding || h.id == HeaderId::kConnection || h.id == HeaderId::kKeepAlive) continue;
    if (h.id == HeaderId::kContentLength && head.framing.chunked) continue;
    out.headers.emplace_back(std::string(h.name), std::string(h.value));
  }
  std::string_view rest = std::string_view(in).substr(head_end);

  if (has_no_body(head.status) || request_bytes.starts_with("HEAD ")) co_return std::move(out);

  if (head.framing.chunked) co_return co_await read_chunked(x, std::string(rest), std::move(out));

  if (head.framing.content_length >= 0) {
    const auto length = static_cast<uint64_t>(head.framing.content_length);
    if (length > x.limits.max_body) co_return x.body_too_large();
    out.body.reserve(static_cast<size_t>(length));
    out.body.assign(rest.substr(0, static_cast<size_t>(length)));
    while (out.body.size() < length) {
      error_code ec = co_await read_into(socket, out.body, std::min<size_t>(kReadSize, length - out.body.size()));
      if (ec == asio::error::eof)
        co_return x.fail("connection closed after " + std::to_string(out.body.size()) + " of " +
                         std::to_string(length) + " body bytes");
      if (ec) co_return x.fail_io("reading the response body", ec);
    }
    co_return std::move(out);
  }

  // No framing: the body runs until the server closes (RFC 9112 6.3, rule 8).
  if (rest.size() > x.limits.max_body) co_return x.body_too_large();
  out.body.assign(rest);
  while (true) {
    // One byte beyond the limit is enough to know it was exceeded.
    error_code ec = co_await read_into(socket, out.body, std::min(kReadSize, x.limits.max_body - out.body.size() + 1));
    if (ec == asio::error::eof) co_return std::move(out);
    if (ec) co_return x.fail_io("reading the response body", ec);
    if (out.body.size() > x.limits.max_body) co_return x.body_too_large();
  }
}

}  // namespace

std::string_view FetchResponse::header(std::string_view name) const {
  for (const auto& [n, v] : headers)
    if (iequals(n, name)) return v;
  return {};
}

coro::Task<Result<FetchResponse>> fetch(Executor ex, tcp::endpoint to, std::string_view request_bytes,
                                        FetchLimits limits) {
  auto connection = std::make_shared<Connection>(ex);
  connection->deadline.expires_after(limits.timeout);
  connection->deadline.async_wait([weak = std::weak_ptr<Connection>(connection)](error_code ec) {
    auto c = weak.lock();
    if (ec || !c) return;
    c->is_timed_out = true;
    error_code ignored;
    c->socket.close(ignored);
  });
  Exchange x{*connection, to, limits};
  Result<FetchResponse> result = co_await run_exchange(x, request_bytes);
  error_code ignored;
  connection->socket.close(ignored);
  connection->deadline.cancel();
  co_return std::move(result);
}

}  // namespace berth::proxy::upstream
