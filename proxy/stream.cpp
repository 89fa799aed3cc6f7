// Stream: TLS over the socket's descriptor; see stream.h.
#include "proxy/stream.h"

#include <openssl/err.h>

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <span>

#include "base/log.h"
#include "proxy/block_pool.h"
#include "proxy/h2_session.h"
#include "proxy/send_batch.h"

namespace berth::proxy {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
constexpr size_t kCipherBlock = 16 * 1024;  // a read outside tls_read_some (handshake, a write that must read)
constexpr size_t kHeldBlock = 16 * 1024;    // handshake writes held back; a larger flight is sent as it comes

// SSL_get_error() is right only if the thread's error queue was empty before the call. Emptying
// an empty queue still walks and frees its 16 slots (2% of an HTTPS request's CPU): look first.
void clear_tls_errors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}
}  // namespace

Stream::~Stream() { end_tls(); }

void Stream::end_tls() {
  // An HTTP/2 stream's exchange may hold the SSL a while longer (for the client's certificate): its
  // BIO must not reach this Stream then.
  if (bio_ != nullptr) BIO_set_data(bio_, nullptr);
  bio_ = nullptr;
  if (ssl_ != nullptr) SSL_free(ssl_);
  ssl_ = nullptr;
  release_cipher_block();
  release_held();
  cipher_size_ = 0;
  cipher_eof_ = false;
}

void Stream::start_tls(SSL* ssl, Side side) {
  end_tls();
  ssl_ = ssl;
  secure_ = true;
  error_code ec;
  socket_.non_blocking(true, ec);  // the BIO sends on the descriptor itself
  bio_ = new_bio(this);
  if (bio_ != nullptr) SSL_set_bio(ssl_, bio_, bio_);  // one reference for both directions
  if (side == Side::kServer) SSL_set_accept_state(ssl_);
  else SSL_set_connect_state(ssl_);
}

BIO* Stream::new_bio(Stream* stream) {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "berth stream");
    if (m != nullptr) {
      BIO_meth_set_read_ex(m, &Stream::bio_read);
      BIO_meth_set_write_ex(m, &Stream::bio_write);
      BIO_meth_set_ctrl(m, &Stream::bio_ctrl);
    }
    return m;
  }();
  BIO* bio = method != nullptr ? BIO_new(method) : nullptr;
  if (bio != nullptr) {
    BIO_set_data(bio, stream);
    BIO_set_init(bio, 1);
  }
  return bio;
}

int Stream::bio_read(BIO* bio, char* out, size_t size, size_t* read) {
  auto* s = static_cast<Stream*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  *read = 0;
  if (s == nullptr) return 0;
  if (s->cipher_size_ == 0) {
    if (!s->cipher_eof_) BIO_set_retry_read(bio);  // tls_read_some() or wait_for() reads the socket
    return 0;
  }
  size_t n = std::min(size, s->cipher_size_);
  std::memcpy(out, s->cipher_, n);
  s->cipher_ += n;
  s->cipher_size_ -= n;
  if (s->cipher_size_ == 0) s->release_cipher_block();
  *read = n;
  return 1;
}

int Stream::bio_write(BIO* bio, const char* in, size_t size, size_t* written) {
  auto* s = static_cast<Stream*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  *written = 0;
  if (s == nullptr) {
    errno = EBADF;
    return 0;
  }
  if (s->hold_ && s->held_to_ + size <= kHeldBlock) {
    if (s->held_ == nullptr) s->held_ = static_cast<char*>(BlockPool::allocate(kHeldBlock));
    std::memcpy(s->held_ + s->held_to_, in, size);
    s->held_to_ += static_cast<uint32_t>(size);
    *written = size;
    return 1;
  }
  const int fd = s->socket_.native_handle();
  ssize_t n;
  if (s->held_from_ != s->held_to_) {
    // The held bytes first, these behind them in the same send(2).
    const size_t held = s->held_to_ - s->held_from_;
    iovec iov[2] = {{s->held_ + s->held_from_, held}, {const_cast<char*>(in), size}};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    do {
      n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0 || static_cast<size_t>(n) < held) {
      if (n > 0) s->held_from_ += static_cast<uint32_t>(n);
      if (n > 0 || errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(bio);
      return 0;
    }
    s->release_held();
    if (static_cast<size_t>(n) > held) {
      *written = static_cast<size_t>(n) - held;
      return 1;
    }
  }
  do {
    n = ::send(fd, in, size, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n >= 0) {
    *written = static_cast<size_t>(n);
    return 1;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(bio);
  return 0;  // otherwise SSL_ERROR_SYSCALL, errno telling why
}

long Stream::bio_ctrl(BIO* bio, int cmd, long, void*) {
  auto* s = static_cast<Stream*>(BIO_get_data(bio));
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_EOF:
      return s != nullptr && s->cipher_eof_ && s->cipher_size_ == 0 ? 1 : 0;
    case BIO_CTRL_PENDING:
      return s != nullptr ? static_cast<long>(s->cipher_size_) : 0;
    default:
      return 0;
  }
}

coro::Task<error_code> Stream::fill(asio::mutable_buffer into) {
  if (held_from_ != held_to_) {
    if (auto ec = co_await flush_held()) co_return ec;
  }
  // Asio tries the read at once unless its last one emptied the socket; then it waits for the
  // socket's next edge without a syscall (no epoll_ctl, no read that fails).
  auto [ec, n] = co_await socket_.async_read_some(into, coro::use_task);
  if (ec == asio::error::eof) {
    cipher_eof_ = true;  // OpenSSL decides: after close_notify a clean end, else a truncation
    co_return error_code{};
  }
  if (ec) co_return ec;
  cipher_ = static_cast<const char*>(into.data());
  cipher_size_ = n;
  co_return error_code{};
}

coro::Task<error_code> Stream::flush_held() {
  while (held_from_ != held_to_) {
    ssize_t n = ::send(socket_.native_handle(), held_ + held_from_, held_to_ - held_from_, MSG_NOSIGNAL);
    if (n >= 0) {
      held_from_ += static_cast<uint32_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      error_code ec(errno, boost::system::system_category());
      release_held();
      co_return ec;
    }
    auto [ec] = co_await socket_.async_wait(Socket::wait_write, coro::use_task);
    if (ec) co_return ec;
  }
  release_held();
  co_return error_code{};
}

void Stream::send_held_now() {
  if (held_from_ != held_to_ && socket_.is_open())
    [[maybe_unused]] ssize_t n = ::send(socket_.native_handle(), held_ + held_from_, held_to_ - held_from_,
                                        MSG_NOSIGNAL | MSG_DONTWAIT);
  release_held();
}

void Stream::release_held() {
  held_from_ = held_to_ = 0;
  if (held_ == nullptr) return;
  BlockPool::deallocate(held_, kHeldBlock);
  held_ = nullptr;
}

void Stream::keep_leftover() {
  if (cipher_size_ == 0 || cipher_block_ != nullptr) return;  // nothing left, or already ours
  take_cipher_block(cipher_size_);
  std::memcpy(cipher_block_, cipher_, cipher_size_);
  cipher_ = cipher_block_;
}

void Stream::take_cipher_block(size_t size) {
  cipher_block_ = static_cast<char*>(BlockPool::allocate(size));
  cipher_block_size_ = size;
}

void Stream::release_cipher_block() {
  if (cipher_block_ == nullptr) return;
  BlockPool::deallocate(cipher_block_, cipher_block_size_);
  cipher_block_ = nullptr;
  cipher_block_size_ = 0;
}

// Not coroutines: they hand back the H2Stream's own task.
coro::Task<IoResult> Stream::h2_read_some(asio::mutable_buffer buffer) { return h2_->read(buffer); }
coro::Task<IoResult> Stream::h2_write(ConstBufferList list) { return h2_->write(list); }

SendBatch* Stream::plain_batch() const { return socket_.is_open() ? SendBatch::current() : nullptr; }

coro::Task<IoResult> Stream::batched_write(ConstBufferList list, SendBatch* batch) {
  SendBatchEntry entry;
  size_t total = 0;
  for (size_t i = 0; i < list.count; ++i) {
    entry.iov[i] = {const_cast<void*>(list.buffers[i].data()), list.buffers[i].size()};
    total += list.buffers[i].size();
  }
  if (total == 0) co_return IoResult{};
  entry.fd = socket_.native_handle();
  entry.msg.msg_iov = entry.iov;
  entry.msg.msg_iovlen = list.count;
  batched_ = &entry;
  co_await SendBatch::Send{batch, &entry};
  batched_ = nullptr;
  if (entry.result >= 0 && static_cast<size_t>(entry.result) == total) co_return IoResult{error_code{}, total};
  if (entry.result < 0 && entry.result != -EAGAIN && entry.result != -EWOULDBLOCK)
    co_return IoResult{error_code(-entry.result, boost::system::system_category()), 0};
  // The socket took part of it or nothing (it is full): the rest waits for room, as any write does.
  size_t done = entry.result > 0 ? static_cast<size_t>(entry.result) : 0;
  std::array<asio::const_buffer, ConstBufferList::kMax> rest;
  size_t n = 0;
  for (size_t i = 0, skip = done; i < list.count; ++i) {
    asio::const_buffer b = list.buffers[i];
    const size_t cut = std::min(skip, b.size());
    skip -= cut;
    b += cut;
    if (b.size() != 0) rest[n++] = b;
  }
  auto [ec, more] = co_await asio::async_write(socket_, std::span<const asio::const_buffer>(rest.data(), n),
                                               coro::use_task);
  co_return IoResult{ec, done + more};
}

void Stream::cancel() {
  if (h2_ != nullptr) {
    h2_->cancel();
    return;
  }
  if (batched_ != nullptr) SendBatch::send_now(batched_);
  error_code ec;
  socket_.cancel(ec);
}

void Stream::close() {
  if (h2_ != nullptr) {
    h2_->close();
    return;
  }
  if (ssl_ != nullptr && SSL_is_init_finished(ssl_) == 1 && (SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN) == 0 &&
      socket_.is_open()) {
    // close_notify, once and without waiting: if the socket cannot take it now, the peer sees a
    // plain close, which HTTP clients accept since every message is framed.
    ERR_clear_error();
    SSL_shutdown(ssl_);  // behind the held bytes, if any
    ERR_clear_error();
  }
  send_held_now();
  if (batched_ != nullptr) SendBatch::send_now(batched_);
  error_code ec;
  socket_.shutdown(Socket::shutdown_send, ec);
  socket_.close(ec);
}

int Stream::detach() {
  send_held_now();  // none after an exchange; a descriptor in the ParkSet must owe its peer nothing
  if (batched_ != nullptr) SendBatch::send_now(batched_);
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
  if (ssl_error == SSL_ERROR_WANT_READ) {
    if (cipher_size_ != 0 || cipher_eof_) co_return error_code{};  // OpenSSL has more to take first
    take_cipher_block(kCipherBlock);
    auto ec = co_await fill(asio::buffer(cipher_block_, kCipherBlock));
    if (cipher_size_ == 0) release_cipher_block();
    co_return ec;
  }
  if (ssl_error == SSL_ERROR_WANT_WRITE) {
    auto [ec] = co_await socket_.async_wait(Socket::wait_write, coro::use_task);
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
    clear_tls_errors();
    hold_ = true;
    int r = SSL_do_handshake(ssl_);
    hold_ = false;
    if (r == 1) co_return error_code{};  // its last writes stay held
    const int error = SSL_get_error(ssl_, r);
    auto ec = co_await wait_for(error);  // WANT_READ sends the held flight before reading
    if (ec) {
      send_held_now();  // the alert OpenSSL wrote, if any (no wait: the deadline may have passed)
      co_return ec;
    }
  }
}

coro::Task<IoResult> Stream::tls_read_some(asio::mutable_buffer buffer, bool likely_empty) {
  if (!socket_.is_open()) co_return IoResult{asio::error::bad_descriptor, 0};
  if (buffer.size() == 0) co_return IoResult{error_code{}, 0};
  bool ask_openssl = !likely_empty || has_buffered() || cipher_eof_;
  while (true) {
    if (ask_openssl) {
      size_t n = 0;
      clear_tls_errors();
      int r = SSL_read_ex(ssl_, buffer.data(), buffer.size(), &n);
      const int error = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, r);
      const int saved_errno = errno;  // for SSL_ERROR_SYSCALL
      keep_leftover();                // before `buffer` is the caller's again
      errno = saved_errno;
      if (error == SSL_ERROR_NONE) co_return IoResult{error_code{}, n};
      if (error != SSL_ERROR_WANT_READ) {
        if (auto ec = co_await wait_for(error)) co_return IoResult{ec, 0};
        continue;
      }
      if (cipher_eof_) co_return IoResult{asio::error::eof, 0};  // not expected: OpenSSL saw the end
    }
    ask_openssl = true;
    if (cipher_size_ != 0) continue;
    // OpenSSL took every byte there was. The socket's next ones go into the caller's buffer if
    // OpenSSL holds no part of a record: it then takes a whole record before writing its plaintext
    // (shorter) back. Holding the start of one, the plaintext could overwrite bytes not taken yet.
    error_code ec;
    if (SSL_has_pending(ssl_) == 1) ec = co_await wait_for(SSL_ERROR_WANT_READ);
    else ec = co_await fill(buffer);
    if (ec) co_return IoResult{ec, 0};
  }
}

coro::Task<IoResult> Stream::tls_write(ConstBufferList list, bool last) {
  if (list.overflow) co_return IoResult{asio::error::no_buffer_space, 0};
  if (!socket_.is_open()) co_return IoResult{asio::error::bad_descriptor, 0};
  // Small pieces (a head and a short body) are gathered into one TLS record: one record, one
  // send(2). The copy lives in this coroutine's frame, which the block pool recycles.
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
  hold_ = last && SSL_is_init_finished(ssl_) == 1;
  last = hold_;
  for (size_t i = 0; i < list.count; ++i) {
    const char* p = static_cast<const char*>(list.buffers[i].data());
    size_t left = list.buffers[i].size();
    while (left > 0) {
      size_t n = 0;
      clear_tls_errors();
      // Without SSL_MODE_ENABLE_PARTIAL_WRITE a success wrote everything; a retry after WANT_*
      // passes the same bytes, as OpenSSL requires.
      int r = SSL_write_ex(ssl_, p, left, &n);
      if (r == 1) {
        p += n;
        left -= n;
        written += n;
        continue;
      }
      if (auto ec = co_await wait_for(SSL_get_error(ssl_, r))) {
        hold_ = false;
        co_return IoResult{ec, written};
      }
    }
  }
  if (last) {
    ERR_clear_error();
    SSL_shutdown(ssl_);  // close_notify, held behind the records; close() sends no second one
    ERR_clear_error();
    hold_ = false;
    if (auto ec = co_await flush_held()) co_return IoResult{ec, written};
  }
  co_return IoResult{error_code{}, written};
}

}  // namespace berth::proxy
