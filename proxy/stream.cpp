// Stream: TLS over the socket's descriptor; see stream.h.
#include "proxy/stream.h"

#include <openssl/err.h>

#include <cerrno>
#include <cstring>
#include <unistd.h>

#include "base/log.h"
#include "proxy/h2_session.h"

namespace berth::proxy {

namespace asio = boost::asio;
using boost::system::error_code;

Stream::~Stream() {
  if (ssl_ != nullptr) SSL_free(ssl_);
}

void Stream::start_tls(SSL* ssl, Side side) {
  if (ssl_ != nullptr) SSL_free(ssl_);
  ssl_ = ssl;
  secure_ = true;
  error_code ec;
  socket_.non_blocking(true, ec);  // OpenSSL reads and writes the descriptor itself
  SSL_set_fd(ssl_, socket_.native_handle());
  if (side == Side::kServer) SSL_set_accept_state(ssl_);
  else SSL_set_connect_state(ssl_);
}

// Not coroutines: they hand back the H2Stream's own task.
coro::Task<IoResult> Stream::h2_read_some(asio::mutable_buffer buffer) { return h2_->read(buffer); }
coro::Task<IoResult> Stream::h2_write(ConstBufferList list) { return h2_->write(list); }

void Stream::cancel() {
  if (h2_ != nullptr) {
    h2_->cancel();
    return;
  }
  error_code ec;
  socket_.cancel(ec);
}

void Stream::close() {
  if (h2_ != nullptr) {
    h2_->close();
    return;
  }
  if (ssl_ != nullptr && SSL_is_init_finished(ssl_) == 1 && socket_.is_open()) {
    // close_notify, once and without waiting: if the socket cannot take it now, the peer sees a
    // plain close, which HTTP clients accept since every message is framed.
    ERR_clear_error();
    SSL_shutdown(ssl_);
    ERR_clear_error();
  }
  error_code ec;
  socket_.shutdown(Socket::shutdown_send, ec);
  socket_.close(ec);
}

int Stream::detach() {
  error_code ec;
  int fd = socket_.release(ec);
  return ec ? -1 : fd;
}

bool Stream::reattach(int fd, bool v6) {
  error_code ec;
  socket_.assign(v6 ? boost::asio::ip::tcp::v6() : boost::asio::ip::tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    return false;
  }
  // The descriptor is still non-blocking (release() leaves it so); Asio must know, or its first
  // operation sets it again, and OpenSSL relies on it.
  socket_.non_blocking(true, ec);
  return true;
}

coro::Task<error_code> Stream::wait_for(int ssl_error) {
  if (ssl_error == SSL_ERROR_WANT_READ || ssl_error == SSL_ERROR_WANT_WRITE) {
    auto [ec] = co_await socket_.async_wait(ssl_error == SSL_ERROR_WANT_READ ? Socket::wait_read : Socket::wait_write,
                                            coro::use_task);
    co_return ec;
  }
  if (ssl_error == SSL_ERROR_ZERO_RETURN) co_return asio::error::eof;  // close_notify
  if (ssl_error == SSL_ERROR_SYSCALL) {
    int err = errno;
    ERR_clear_error();
    co_return err == 0 ? error_code(asio::error::eof) : error_code(err, boost::system::system_category());
  }
  unsigned long err = ERR_peek_last_error();
  if (ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
    ERR_clear_error();
    co_return asio::error::connection_reset;  // closed without close_notify: maybe truncated
  }
  if (log::enabled(log::Level::kDebug)) {
    char text[256];
    ERR_error_string_n(err, text, sizeof text);
    LOG_DEBUG("TLS error: ", text);
  }
  ERR_clear_error();
  co_return asio::error::connection_aborted;
}

coro::Task<error_code> Stream::handshake() {
  while (true) {
    ERR_clear_error();
    int r = SSL_do_handshake(ssl_);
    if (r == 1) co_return error_code{};
    if (auto ec = co_await wait_for(SSL_get_error(ssl_, r))) co_return ec;
  }
}

coro::Task<IoResult> Stream::tls_read_some(asio::mutable_buffer buffer, bool likely_empty) {
  if (!socket_.is_open()) co_return IoResult{asio::error::bad_descriptor, 0};
  if (likely_empty && !has_buffered()) {
    if (auto ec = co_await wait_for(SSL_ERROR_WANT_READ)) co_return IoResult{ec, 0};
  }
  while (true) {
    size_t n = 0;
    ERR_clear_error();
    int r = SSL_read_ex(ssl_, buffer.data(), buffer.size(), &n);
    if (r == 1) co_return IoResult{error_code{}, n};
    if (auto ec = co_await wait_for(SSL_get_error(ssl_, r))) co_return IoResult{ec, 0};
  }
}

coro::Task<IoResult> Stream::tls_write(ConstBufferList list) {
  if (list.overflow) co_return IoResult{asio::error::no_buffer_space, 0};
  if (!socket_.is_open()) co_return IoResult{asio::error::bad_descriptor, 0};
  // Small pieces (a head and a short body) are gathered into one TLS record: one record, one
  // write(2). The copy lives in this coroutine's frame, which the frame pool recycles.
  constexpr size_t kGather = 8 * 1024;
  std::array<char, kGather> gathered;
  size_t total = 0;
  for (size_t i = 0; i < list.count; ++i) total += list.buffers[i].size();
  if (list.count > 1 && total <= kGather) {
    char* p = gathered.data();
    for (size_t i = 0; i < list.count; ++i) {
      std::memcpy(p, list.buffers[i].data(), list.buffers[i].size());
      p += list.buffers[i].size();
    }
    list.buffers[0] = asio::const_buffer(gathered.data(), total);
    list.count = 1;
  }
  size_t written = 0;
  for (size_t i = 0; i < list.count; ++i) {
    const char* p = static_cast<const char*>(list.buffers[i].data());
    size_t left = list.buffers[i].size();
    while (left > 0) {
      size_t n = 0;
      ERR_clear_error();
      // Without SSL_MODE_ENABLE_PARTIAL_WRITE a success wrote everything; a retry after WANT_*
      // passes the same bytes, as OpenSSL requires.
      int r = SSL_write_ex(ssl_, p, left, &n);
      if (r == 1) {
        p += n;
        left -= n;
        written += n;
        continue;
      }
      if (auto ec = co_await wait_for(SSL_get_error(ssl_, r))) co_return IoResult{ec, written};
    }
  }
  co_return IoResult{error_code{}, written};
}

}  // namespace berth::proxy
