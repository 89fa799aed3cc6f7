// Downstream connection: the read loop, the watchdog that enforces timeouts, and the shared
// body relay and local-reply steps that forwarder.cpp calls.
#include "proxy/downstream_connection.h"

#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <cstring>
#include <span>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "proxy/ip_net.h"
#include "proxy/local_reply.h"
#include "proxy/observe/metrics.h"
#include "proxy/tls/client_hello.h"

namespace berth::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {
// The first line of the HTTP/2 connection preface (RFC 9113 3.4), which is also a whole
// HTTP/1.1-looking head.
constexpr std::string_view kH2cPreface = "PRI * HTTP/2.0\r\n\r\n";
}  // namespace

DownstreamConnection::DownstreamConnection(Worker& worker, size_t ep_index, Socket socket)
    : worker_(worker),
      settings_(worker.info().entry_points[ep_index]),
      ep_index_(ep_index),
      stream_(std::move(socket)) {
  deadline_.owner = this;
  deadline_.fire = &DownstreamConnection::on_deadline;
  boost::system::error_code ec;
  stream_.socket().set_option(tcp::no_delay(true), ec);
  auto peer = stream_.socket().remote_endpoint(ec);
  if (!ec) {
    v6_ = peer.address().is_v6();
    auto addr = unmapped(peer.address());
    peer_ = addr;
    peer_port_ = peer.port();
    trusted_ = settings_.trust_all;
    for (const auto& net : settings_.trusted)
      if (net.contains(addr)) trusted_ = true;
  }
  worker_.track(this, ep_index_);
}

DownstreamConnection::DownstreamConnection(const DownstreamConnection& parent, std::shared_ptr<H2Stream> stream,
                                           std::string_view head)
    : worker_(parent.worker_),
      settings_(parent.settings_),
      ep_index_(parent.ep_index_),
      stream_(parent.worker_.context().get_executor(), std::move(stream), parent.stream_.is_tls()),
      trusted_(parent.trusted_),
      first_read_(false),
      peer_(parent.peer_),
      peer_port_(parent.peer_port_) {
  deadline_.owner = this;
  deadline_.fire = &DownstreamConnection::on_deadline;
  worker_.track(this, ep_index_, false);  // its connection is counted, not each stream
  if (SSL* ssl = parent.stream_.ssl(); ssl != nullptr && SSL_up_ref(ssl) == 1) parent_ssl_ = ssl;
  in_.attach(worker_.buffers());
  if (head.size() > in_.write_space()) in_.grow(head.size());
  size_t n = std::min(head.size(), in_.write_space());
  std::memcpy(in_.write_ptr(), head.data(), n);
  in_.commit(n);
}

std::string_view DownstreamConnection::server_name() const {
  SSL* ssl = tls_session();
  const char* name = ssl != nullptr ? SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) : nullptr;
  return name != nullptr ? name : "";
}

void DownstreamConnection::start_stream() { coro::spawn(run()); }

DownstreamConnection::~DownstreamConnection() {
  if (detached_fd_ >= 0) ::close(detached_fd_);
  if (parent_ssl_ != nullptr) SSL_free(parent_ssl_);
  worker_.deadlines().disarm(deadline_);
  worker_.untrack(this, ep_index_, !stream_.is_h2());
  if (ex_) worker_.give_exchange_state(std::move(ex_));
  in_.release(worker_.buffers());
}

void DownstreamConnection::wake_if_idle(size_t ep) {
  if (ep == ep_index_ && h2_) {
    h2_->shutdown();  // GOAWAY: streams in flight finish, then the connection closes
    return;
  }
  // A connection that has not sent its first request yet is left alone: the request is probably on
  // its way (it was accepted just before the drain), and a new connection, unlike a reused one, is
  // not retried by clients. It is answered with Connection: close, or ends at its idle timeout.
  if (!idle_ || ep != ep_index_ || !served_ || close_parked()) return;
  boost::system::error_code ec;
  stream_.socket().cancel(ec);  // warm: the read wakes with operation_aborted and the loop sees the drain
}

void DownstreamConnection::abort() {
  if (close_parked()) return;
  closing_ = true;
  boost::system::error_code ec;
  // Shut down rather than closed: the coroutine closes the descriptor as it unwinds, so no late
  // write (OpenSSL's included) reaches a descriptor number another connection got meanwhile.
  stream_.socket().shutdown(Socket::shutdown_both, ec);
  stream_.cancel();
  if (up_) {
    up_->stream.socket().shutdown(Socket::shutdown_both, ec);
    up_->stream.cancel();
  }
  disarm();
}

void DownstreamConnection::stop_exchange() {
  closing_ = true;
  stream_.cancel();
  if (up_) up_->stream.cancel();
}

bool DownstreamConnection::drains_into(const DrainTarget& target) const {
  if (!ex_) return false;
  if (ex_->upstream_health != nullptr) {
    for (const auto& s : target.servers)
      if (s.get() == ex_->upstream_health) return true;
    return false;
  }
  return ex_->routed_service != nullptr && ex_->routed_generation < target.before_generation &&
         ex_->routed_service->name == target.service;
}

void DownstreamConnection::evict(const DrainTarget& gone) {
  if (!ex_ || ex_->upstream_health == nullptr) return;
  bool on = false;
  for (const auto& s : gone.servers) on |= s.get() == ex_->upstream_health;
  if (!on) return;
  if (stream_.is_h2()) stop_exchange();
  else abort();
}

// ---- watchdog: one entry in the worker's deadline wheel (HP-6) ----

void DownstreamConnection::arm(Phase phase, std::chrono::milliseconds timeout) {
  phase_ = phase;
  if (timeout.count() <= 0) worker_.deadlines().disarm(deadline_);
  else worker_.deadlines().arm_after(deadline_, timeout);
}

void DownstreamConnection::disarm() {
  phase_ = Phase::kNone;
  worker_.deadlines().disarm(deadline_);
}

void DownstreamConnection::on_deadline(void* owner) {
  // Whatever waits on either socket wakes with operation_aborted and reads expired_.
  auto* self = static_cast<DownstreamConnection*>(owner);
  self->expired_ = self->phase_;
  if (self->close_parked()) return;
  boost::system::error_code ec;
  self->stream_.cancel();
  if (self->up_) self->up_->stream.cancel();
}

// ---- the read loop ----

void DownstreamConnection::start() { park(Phase::kReadRequest); }

void DownstreamConnection::park(Phase phase) {
  // Cold idle: no coroutine frame, no buffer, no exchange state, no pending Asio operation; the
  // deadline is an entry in the worker's wheel (HP-6).
  in_.release(worker_.buffers());
  // After an exchange the connection has already waited kWarmIdle of its idleTimeout.
  auto idle = settings_.idle_timeout > kWarmIdle ? settings_.idle_timeout - kWarmIdle : settings_.idle_timeout;
  arm(phase, phase == Phase::kReadRequest ? settings_.read_timeout : idle);
  idle_ = true;
  parked_self_ = shared_from_this();
  int fd = stream_.socket().native_handle();
  // Idle after a request, it may wait minutes: its descriptor leaves Asio's reactor meanwhile.
  // (A new connection keeps it: its first request is usually on its way.)
  if (phase == Phase::kIdle) detached_fd_ = stream_.detach();
  if (!worker_.parks().park(fd, this, park_registered_)) {
    idle_ = false;
    auto self = std::move(parked_self_);
    if (reattach()) close();
  }
}

bool DownstreamConnection::reattach() {
  if (detached_fd_ < 0) return true;
  return stream_.reattach(std::exchange(detached_fd_, -1), v6_);
}

void DownstreamConnection::on_ready() {
  idle_ = false;
  auto self = std::move(parked_self_);
  if (!self) return;
  if (!reattach()) {
    closing_ = true;
    disarm();
    return;
  }
  // Draining too, a request that arrived is served (answered with Connection: close): the drain
  // closed the idle connections it could, and this one's client has already sent.
  if (closing_) {
    close();
    return;
  }
  coro::spawn(run());
}

bool DownstreamConnection::close_parked() {
  if (!parked_self_) return false;
  worker_.parks().unpark(detached_fd_ >= 0 ? detached_fd_ : stream_.socket().native_handle());
  idle_ = false;
  closing_ = true;
  reattach();  // closed below, with TLS close_notify
  // Not synchronously: the caller (the deadline wheel, the drain loop) is iterating.
  asio::post(worker_.context(), [self = std::move(parked_self_)] { self->close(); });
  return true;
}

coro::Task<DownstreamConnection::Wait> DownstreamConnection::wait_warm() {
  // Right after an exchange the connection keeps its block for kWarmIdle and reads straight into it:
  // a keep-alive client usually sends its next request at once, and parking would cost an
  // epoll_ctl per request (over TLS the wait costs one anyway, but saves a failed read). Then it parks.
  auto warm = settings_.idle_timeout.count() > 0 ? std::min(settings_.idle_timeout, kWarmIdle) : kWarmIdle;
  arm(Phase::kWarmIdle, warm);
  expired_ = Phase::kNone;
  idle_ = true;
  auto [ec, n] = co_await stream_.read_some(asio::buffer(in_.write_ptr(), in_.write_space()), true);
  idle_ = false;
  if (!ec) {
    in_.commit(n);
    co_return Wait::kData;
  }
  bool idle_left = settings_.idle_timeout.count() == 0 || warm < settings_.idle_timeout;  // 0: no limit
  if (expired_ == Phase::kWarmIdle && idle_left && !worker_.draining(ep_index_))
    co_return Wait::kPark;
  co_return Wait::kClose;
}

coro::Task<void> DownstreamConnection::run() {
  auto self = shared_from_this();
  bool park_after = false;
  bool woken = true;  // run() starts when a parked connection became readable: read at once
  try {
    if (std::exchange(first_read_, false)) {
      if (!co_await accept_tls()) {
        closing_ = true;
      } else if (const unsigned char* alpn = nullptr; stream_.ssl() != nullptr) {
        unsigned int alpn_length = 0;
        SSL_get0_alpn_selected(stream_.ssl(), &alpn, &alpn_length);
        if (std::string_view(reinterpret_cast<const char*>(alpn), alpn_length) == "h2") {
          co_await serve_h2();
          closing_ = true;
        }
      }
    }
    while (!closing_) {
      if (in_.empty() && !std::exchange(woken, false)) {
        if (ex_) worker_.give_exchange_state(std::move(ex_));
        if (worker_.draining(ep_index_)) break;
        // TLS bytes OpenSSL read ahead never make the socket readable again: read them first.
        if (stream_.has_buffered()) in_.attach(worker_.buffers());
        Wait w = in_.has_block() ? co_await wait_warm() : Wait::kPark;
        if (w == Wait::kClose) break;
        if (w == Wait::kPark) {
          park_after = true;
          break;
        }
      }
      in_.attach(worker_.buffers());
      if (!ex_) ex_ = worker_.take_exchange_state();
      arm(Phase::kReadRequest, settings_.read_timeout);
      expired_ = Phase::kNone;

      size_t head_size = 0;
      size_t scanned = 0;
      bool eof = false;
      while (true) {
        // RFC 9112 2.2: ignore empty lines before a request-line.
        while (!in_.empty() && (in_.data()[0] == '\r' || in_.data()[0] == '\n') && scanned == 0) in_.consume(1);
        if ((head_size = http::h1::find_head_end(in_.view(), scanned)) != 0) break;
        scanned = in_.size();
        if (in_.size() >= settings_.max_header_bytes) break;
        if (in_.write_space() == 0 && !in_.grow(settings_.max_header_bytes + 4)) break;
        auto [ec, n] = co_await stream_.read_some(asio::buffer(in_.write_ptr(), in_.write_space()));
        if (ec) {
          eof = true;
          break;
        }
        in_.commit(n);
      }
      if (eof) {
        if (expired_ == Phase::kReadRequest && !in_.empty())
          co_await reply_local(408, local_reply::kRequestTimeout, local_reply::kTextPlain, true);
        break;
      }
      if (head_size == 0) {
        co_await reply_local(431, local_reply::kHeadersTooLarge, local_reply::kTextPlain, true);
        break;
      }
      if (in_.view().starts_with(kH2cPreface) && !stream_.is_h2() && !h2_ && !stream_.is_tls()) {
        co_await serve_h2();  // h2c with prior knowledge: the preface parses as a head "PRI * HTTP/2.0"
        break;
      }
      auto status = http::h1::parse_request(in_.view().substr(0, head_size), ex_->request);
      if (status == http::h1::ParseStatus::kNotImplemented) {
        co_await reply_local(501, local_reply::kNotImplemented, local_reply::kTextPlain, true);
        break;
      }
      if (status != http::h1::ParseStatus::kOk) {
        co_await reply_local(400, local_reply::kBadRequest, local_reply::kTextPlain, true);
        break;
      }
      begin_exchange(head_size);
      const bool keep_alive = co_await serve_exchange(head_size);
      finish_exchange(head_size);
      served_ = true;
      if (!keep_alive) break;
    }
  } catch (const std::exception& e) {
    LOG_ERROR("connection on entry point ", settings_.name, " failed: ", e.what());
    park_after = false;
  }
  if (park_after && !closing_ && !stream_.is_h2()) park(Phase::kIdle);
  else close();
}

coro::Task<bool> DownstreamConnection::accept_tls() {
  // The ClientHello is peeked (left in the socket for OpenSSL) until its server name is known.
  in_.attach(worker_.buffers());
  arm(Phase::kReadRequest, settings_.read_timeout);
  expired_ = Phase::kNone;
  int fd = stream_.socket().native_handle();
  bool acme_tls = false;  // an ACME TLS-ALPN-01 validation
  std::string sni;        // the server name, lower-cased
  ssize_t peeked = 0;     // bytes of an incomplete ClientHello seen so far
  while (true) {
    ssize_t n = ::recv(fd, in_.write_ptr(), in_.write_space(), MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) co_return false;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) co_return false;
    if (n > 0) {
      auto status = tls::parse_client_hello(std::span(reinterpret_cast<const uint8_t*>(in_.write_ptr()), size_t(n)),
                                            sni, &acme_tls);
      if (status == tls::HelloStatus::kNotTls) co_return true;  // plain HTTP (decided by the first byte)
      if (status == tls::HelloStatus::kDone) break;
      // Malformed, or too big to peek whole (over 32 KiB): refused, since going on with the
      // default options could skip what the host's own options demand (client certificates).
      if (status == tls::HelloStatus::kMalformed || size_t(n) == in_.write_space()) co_return false;
      if (n == peeked) {
        // No more bytes than before: a readiness event from before the wait, or the client
        // closed (or failed) mid-ClientHello.
        pollfd p{fd, POLLRDHUP, 0};
        if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) co_return false;
      } else {
        // Incomplete: wake only once more bytes than these have come. The bytes stay in the
        // socket, so a plain readiness wait would wake at once, again and again, and half a
        // ClientHello would keep the worker busy until the read timeout.
        peeked = n;
        int lowat = static_cast<int>(n) + 1;
        ::setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
      }
    }
    auto [ec] = co_await stream_.socket().async_wait(Socket::wait_read, coro::use_task);
    if (ec) co_return false;
  }
  if (peeked != 0) {
    int one = 1;  // back to the default for OpenSSL's reads
    ::setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
  }
  std::shared_ptr<const Snapshot> snap = worker_.snapshot();
  std::string_view options = snap->entry_points[ep_index_].tls_options_for(sni, false);
  SSL_CTX* context = snap->certificates ? snap->certificates->context(options) : nullptr;
  auto challenge = acme_tls ? snap->acme_tls_alpn.find(sni) : snap->acme_tls_alpn.end();
  if (challenge != snap->acme_tls_alpn.end()) context = challenge->second.get();
  SSL* ssl = context != nullptr ? SSL_new(context) : nullptr;
  if (ssl == nullptr) {
    LOG_DEBUG("TLS connection on entry point ", settings_.name, " refused: no TLS options \"", options, "\"");
    co_return false;
  }
  boost::system::error_code ec;
  auto local = stream_.socket().local_endpoint(ec);
  if (!ec) {
    char text[INET6_ADDRSTRLEN];
    tls::CertificateStore::set_local_address(ssl, render_ip(unmapped(local.address()), text));
  }
  stream_.start_tls(ssl, Stream::Side::kServer);
  auto failed = co_await stream_.handshake();
  if (observe::Metrics* metrics = worker_.info().metrics)
    metrics->worker(static_cast<size_t>(worker_.index())).record_handshake(static_cast<uint32_t>(ep_index_), !failed);
  if (failed) {
    LOG_DEBUG("TLS handshake on entry point ", settings_.name, " failed: ", failed.message());
    co_return false;
  }
  // A TLS-ALPN-01 validation is over once the CA has seen the certificate (RFC 8737 3).
  co_return challenge == snap->acme_tls_alpn.end();
}

coro::Task<void> DownstreamConnection::serve_h2() {
  disarm();
  h2_ = std::make_shared<H2Session>(*this);
  co_await h2_->run();
  h2_.reset();
}

void DownstreamConnection::close() {
  closing_ = true;
  close_upstream();
  stream_.close();
  disarm();
}

void DownstreamConnection::close_upstream() {
  if (!up_) return;
  up_->stream.close();
  up_->buffer.consume(up_->buffer.size());
  up_->buffer.release(worker_.buffers());
  up_.reset();
}

// ---- shared steps ----

coro::Task<bool> DownstreamConnection::reply_local(int status, std::string_view body,
                                                   std::string_view content_type, bool close,
                                                   std::string_view location, const middleware::HeaderEdits* headers) {
  bool is_head = (ex_ && ex_->request.method == "HEAD") || status == 304;  // no body either way
  if (ex_) ex_->edits.final_status = status;
  if (!close && ex_ && !co_await discard_request_body()) close = true;
  if (!close && (!ex_->request.keep_alive() || worker_.draining(ep_index_))) close = true;
  std::string& out = ex_->out;  // ex_ exists whenever a request is being read
  out.clear();
  local_reply::render_head(out, status, body.size(), content_type, close, location,
                           headers ? std::span(*headers) : std::span<const local_reply::HeaderPair>());
  ex_->log.response_head = out.size();
  arm(Phase::kWriteResponse, settings_.write_timeout);
  std::array<asio::const_buffer, 2> bufs{asio::buffer(out), asio::buffer(body.data(), is_head ? 0 : body.size())};
  auto [ec, n] = co_await stream_.write(bufs, close);
  disarm();
  co_return !ec && !close;
}

coro::Task<bool> DownstreamConnection::discard_request_body() {
  // A local reply to a request with a body must consume that body, or the next request on this
  // connection would start in the middle of it. Bodies over 1 MiB are not worth reading: close.
  if (ex_->body_done) co_return true;
  const auto& f = ex_->request.framing;
  if (f.chunked || f.content_length > (1 << 20)) co_return false;
  uint64_t left = f.content_length > 0 ? static_cast<uint64_t>(f.content_length) : 0;
  while (left > 0) {
    if (in_.empty()) {
      if (in_.write_space() == 0) co_return false;
      auto [ec, n] = co_await stream_.read_some(asio::buffer(in_.write_ptr(), in_.write_space()));
      if (ec) co_return false;
      in_.commit(n);
    }
    size_t take = std::min<uint64_t>(left, in_.size());
    in_.consume(take);
    left -= take;
  }
  co_return true;
}

coro::Task<bool> DownstreamConnection::relay_body(Stream& from, IoBuffer& buffer, Stream& to,
                                                      BodyMode mode, uint64_t length, bool& source_failed,
                                                      http::h1::ChunkedFramer* framer_state) {
  // Streams one message body from `from` to `to` through `buffer`, which may already hold its first
  // bytes. Only one buffer's worth is in flight, so memory stays bounded whatever the size (backpressure).
  source_failed = false;
  if (mode == BodyMode::kNone) co_return true;
  http::h1::ChunkedFramer local_framer;
  http::h1::ChunkedFramer& framer = framer_state ? *framer_state : local_framer;
  uint64_t left = length;
  while (true) {
    if (!buffer.empty()) {
      size_t take = buffer.size();
      bool done = false;
      if (mode == BodyMode::kLength) {
        take = static_cast<size_t>(std::min<uint64_t>(left, take));
        left -= take;
        done = left == 0;
      } else if (mode == BodyMode::kChunked) {
        auto st = framer.consume(buffer.view(), take);
        if (st == http::h1::ChunkedFramer::Status::kError) {
          source_failed = true;
          co_return false;
        }
        done = st == http::h1::ChunkedFramer::Status::kDone;
      }
      if (take > 0) {
        auto [ec, n] = co_await to.write(asio::buffer(buffer.data(), take));
        if (ec) co_return false;
        buffer.consume(take);
      }
      if (done) co_return true;
    } else if (mode == BodyMode::kLength && left == 0) {
      co_return true;
    }
    auto [ec, n] = co_await from.read_some(asio::buffer(buffer.write_ptr(), buffer.write_space()));
    if (ec) {
      if (mode == BodyMode::kUntilClose && ec == asio::error::eof) co_return true;
      source_failed = true;
      co_return false;
    }
    buffer.commit(n);
  }
}

coro::Task<int> DownstreamConnection::read_response_head(upstream::UpstreamConnection& up, size_t& head_size) {
  // Returns 0 on success, else the status to answer (502 malformed/closed, 504 timed out), or -1
  // when a reused connection closed before answering (safe to retry).
  size_t scanned = 0;
  bool got_bytes = !up.buffer.empty();
  while ((head_size = http::h1::find_head_end(up.buffer.view(), scanned)) == 0) {
    scanned = up.buffer.size();
    if (up.buffer.write_space() == 0 && !up.buffer.grow(settings_.max_header_bytes)) co_return 502;
    auto [ec, n] = co_await up.stream.read_some(asio::buffer(up.buffer.write_ptr(), up.buffer.write_space()));
    if (ec) {
      if (expired_ == Phase::kAwaitResponse) co_return 504;
      co_return got_bytes ? 502 : -1;
    }
    got_bytes = true;
    up.buffer.commit(n);
  }
  auto st = http::h1::parse_response(up.buffer.view().substr(0, head_size), ex_->response);
  co_return st == http::h1::ParseStatus::kOk ? 0 : 502;
}

}  // namespace berth::proxy
