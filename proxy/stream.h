// Stream: one TCP connection of the data plane, with TLS on it once start_tls() was called. Reads
// and writes look the same either way, so the HTTP code above does not care which it has.
//
// TLS goes through a BIO of berth's own, not Asio's ssl::stream and its two 17 KiB memory BIOs per
// connection. OpenSSL writes the socket itself (send(2) from the BIO; Asio waits for writability
// only when the socket is full). It reads what Asio read: when OpenSSL wants bytes and holds no
// part of a record, Asio reads the socket into the caller's own read buffer and OpenSSL takes them
// from there (its record buffer gets the whole first record before it writes that record's
// plaintext, which is shorter, back; holding part of a record, Asio reads into a pooled block
// instead). So reading costs one recv(2) per burst and no readiness wait: a wait for readability
// is an epoll_ctl each time in Asio, a read is not. Bytes OpenSSL did not take move into a pooled
// block before the read returns. An idle TLS connection holds no buffers (SSL_MODE_RELEASE_BUFFERS).
//
// Plain writes go through the worker's SendBatch (send_batch.h): they leave at the end of the event
// loop's turn, with the turn's other plain writes, in one io_uring_enter(2).
//
// Writes of the handshake are held back: a flight goes out in one send(2) when OpenSSL wants the
// peer's answer, and what a finished handshake wrote last (a TLS 1.3 server's session ticket, a
// client's Finished) goes out with the first write after it, in the same send(2) and so usually
// the same packet, or before the connection waits for input, or at close. A last write (the
// connection closes after it) holds its records too, for its close_notify to go out with them.
// Thread: worker (one Stream is never used from two threads).
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <boost/asio/write.hpp>
#include <coroutine>
#include <cstddef>
#include <memory>
#include <tuple>
#include <variant>

#include "proxy/coro/task.h"
#include "proxy/net.h"

namespace berth::proxy {

/// What a read or a write yields: the error, and how many bytes moved.
using IoResult = std::tuple<boost::system::error_code, size_t>;

/// The pieces of one write, for the Stream kinds that take them apart themselves (TLS, HTTP/2).
struct ConstBufferList {
  static constexpr size_t kMax = 4;
  std::array<boost::asio::const_buffer, kMax> buffers;
  size_t count = 0;
  bool overflow = false;  ///< more than kMax pieces: the write fails
};

class H2Stream;
class SendBatch;
struct SendBatchEntry;

/// Awaits one of two awaitables that yield IoResult; which one is decided before the wait starts.
template <typename A, typename B>
class EitherAwaiter {
 public:
  /// `counter` (may be null) gets the bytes moved added to it.
  EitherAwaiter(A a, uint64_t* counter) : v_(std::in_place_index<0>, std::move(a)), counter_(counter) {}
  EitherAwaiter(B b, uint64_t* counter) : v_(std::in_place_index<1>, std::move(b)), counter_(counter) {}
  bool await_ready() const noexcept { return false; }
  template <typename P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) {
    if (v_.index() == 0) {
      std::get<0>(v_).await_suspend(h);
      return std::noop_coroutine();
    }
    return std::get<1>(v_).await_suspend(h);
  }
  IoResult await_resume() {
    IoResult r = v_.index() == 0 ? IoResult(std::get<0>(v_).await_resume()) : IoResult(std::get<1>(v_).await_resume());
    if (counter_ != nullptr) *counter_ += std::get<1>(r);
    return r;
  }

 private:
  std::variant<A, B> v_;
  uint64_t* counter_;
};

/// A Stream is one of: a plain socket, TLS on a socket, or one HTTP/2 stream of a client
/// connection (h2_session.h), which has no socket of its own.
class Stream {
 public:
  explicit Stream(Socket socket) : socket_(std::move(socket)) {}
  explicit Stream(Executor executor) : socket_(executor) {}
  /// An HTTP/2 stream; `secure`: its connection is TLS.
  Stream(Executor executor, std::shared_ptr<H2Stream> h2, bool secure)
      : socket_(executor), h2_(std::move(h2)), secure_(secure) {}
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  Socket& socket() { return socket_; }
  const Socket& socket() const { return socket_; }
  SSL* ssl() const { return ssl_; }
  /// The client reached berth over TLS (for an HTTP/2 stream: its connection did).
  bool is_tls() const { return secure_; }
  bool is_h2() const { return h2_ != nullptr; }
  const std::shared_ptr<H2Stream>& h2_stream() const { return h2_; }

  enum class Side : uint8_t { kServer, kClient };
  /// Puts TLS on the connection: takes ownership of `ssl` (fresh from SSL_new) and binds it to the
  /// socket, as the server or the client of the handshake. Call handshake() next.
  void start_tls(SSL* ssl, Side side);
  /// Runs the TLS handshake to its end; an error when it failed (the reason is logged at DEBUG).
  coro::Task<boost::system::error_code> handshake();
  /// True when TLS bytes were read from the socket but not yet decrypted and read (by OpenSSL or
  /// by this Stream): a read completes without the socket becoming readable, so the connection
  /// must not wait for readiness (park) before reading.
  bool has_buffered() const { return ssl_ != nullptr && (cipher_size_ != 0 || SSL_has_pending(ssl_) == 1); }
  /// Sends TLS close_notify if it can without waiting, then FIN, then closes the socket. An
  /// HTTP/2 stream ends (or is reset, if its response is incomplete).
  void close();
  /// Fails pending reads and writes with operation_aborted (an HTTP/2 stream: the next one too).
  void cancel();
  /// Takes the socket's descriptor out of Asio's reactor for a long wait elsewhere (ParkSet),
  /// freeing the reactor's per-socket state (168 bytes, back to the reactor's pool); returns it,
  /// or -1. The socket is closed meanwhile; reattach() gives it back. No operation may be pending.
  int detach();
  /// Registers `fd` (from detach()) with the reactor again; false if that failed (`fd` is
  /// closed then).
  bool reattach(int fd, bool v6);
  /// Bytes read and written so far (the application's bytes, after TLS). The access log and the
  /// metrics take the difference over an exchange.
  uint64_t bytes_read() const { return bytes_read_; }
  uint64_t bytes_written() const { return bytes_written_; }

  /// `auto [ec, n] = co_await stream.read_some(buffer);` End of stream is asio::error::eof.
  /// `likely_empty`: the read most likely finds nothing yet (a keep-alive connection's next
  /// request); over TLS it then reads the socket first, unless bytes are buffered, instead of
  /// asking OpenSSL, which would fail.
  auto read_some(boost::asio::mutable_buffer buffer, bool likely_empty = false) {
    using Plain = decltype(socket_.async_read_some(buffer, coro::use_task));
    using Either = EitherAwaiter<Plain, coro::Task<IoResult>>;
    if (ssl_ == nullptr && h2_ == nullptr) return Either(socket_.async_read_some(buffer, coro::use_task), &bytes_read_);
    return Either(ssl_ != nullptr ? tls_read_some(buffer, likely_empty) : h2_read_some(buffer), &bytes_read_);
  }

  /// `auto [ec, n] = co_await stream.write(buffers);` writes all of a buffer sequence (at most
  /// ConstBufferList::kMax buffers over TLS and HTTP/2). `last`: nothing follows but close(); over
  /// TLS the close_notify then goes out with these bytes, in the same send(2).
  template <typename ConstBuffers>
  auto write(const ConstBuffers& buffers, bool last = false) {
    using Plain = decltype(boost::asio::async_write(socket_, buffers, coro::use_task));
    using Either = EitherAwaiter<Plain, coro::Task<IoResult>>;
    SendBatch* batch = ssl_ == nullptr && h2_ == nullptr ? plain_batch() : nullptr;
    if (ssl_ == nullptr && h2_ == nullptr && batch == nullptr)
      return Either(boost::asio::async_write(socket_, buffers, coro::use_task), &bytes_written_);
    ConstBufferList list;
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::const_buffer b(*it);
      if (b.size() == 0) continue;
      if (list.count == ConstBufferList::kMax) {
        list.overflow = true;
        break;
      }
      list.buffers[list.count++] = b;
    }
    if (batch != nullptr) {
      if (list.overflow) return Either(boost::asio::async_write(socket_, buffers, coro::use_task), &bytes_written_);
      return Either(batched_write(list, batch), &bytes_written_);
    }
    return Either(ssl_ != nullptr ? tls_write(list, last) : h2_write(list), &bytes_written_);
  }

 private:
  /// The worker's SendBatch for a write of this plain socket, or null (write it at once).
  SendBatch* plain_batch() const;
  /// Writes `list` with the worker's batch (send_batch.h); what the socket does not take then, the
  /// usual way.
  coro::Task<IoResult> batched_write(ConstBufferList list, SendBatch* batch);
  coro::Task<IoResult> tls_read_some(boost::asio::mutable_buffer buffer, bool likely_empty);
  coro::Task<IoResult> tls_write(ConstBufferList list, bool last);
  coro::Task<IoResult> h2_read_some(boost::asio::mutable_buffer buffer);
  coro::Task<IoResult> h2_write(ConstBufferList list);
  /// Waits for what SSL_get_error() returned `ssl_error` asks for (WANT_READ: reads the socket
  /// into a pooled block); any other error is returned as an error code (the OpenSSL reason
  /// logged at DEBUG).
  coro::Task<boost::system::error_code> wait_for(int ssl_error);
  /// Reads the socket into `into` for OpenSSL to take (end of stream: cipher_eof_), after sending
  /// what is held: the peer may be waiting for it.
  coro::Task<boost::system::error_code> fill(boost::asio::mutable_buffer into);
  /// Sends the held bytes, waiting for the socket if it is full.
  coro::Task<boost::system::error_code> flush_held();
  /// Sends the held bytes if the socket takes them now, and drops them (close, detach).
  void send_held_now();
  void release_held();
  /// Moves the bytes OpenSSL left in a caller's buffer into a pooled block of this Stream's.
  void keep_leftover();
  /// cipher_block_ becomes a pooled block of `size` bytes (there is none before).
  void take_cipher_block(size_t size);
  void release_cipher_block();
  /// Frees the SSL (its BIO no longer reaching this Stream) and any TLS bytes not taken.
  void end_tls();
  static BIO* new_bio(Stream* stream);
  static int bio_read(BIO* bio, char* out, size_t size, size_t* read);
  static int bio_write(BIO* bio, const char* in, size_t size, size_t* written);
  static long bio_ctrl(BIO* bio, int cmd, long num, void* ptr);

  Socket socket_;
  // TLS bytes read from the socket that OpenSSL has not taken: in a caller's read buffer during a
  // read, else in cipher_block_.
  const char* cipher_ = nullptr;
  size_t cipher_size_ = 0;
  char* cipher_block_ = nullptr;  ///< a BlockPool block of cipher_block_size_ bytes, or null
  size_t cipher_block_size_ = 0;
  bool cipher_eof_ = false;       ///< the socket reached end of stream
  bool hold_ = false;             ///< bio_write keeps what fits in held_ (during SSL_do_handshake)
  // TLS bytes OpenSSL wrote that are not sent yet: held_[held_from_, held_to_).
  char* held_ = nullptr;          ///< a BlockPool block of kHeldBlock bytes, or null
  uint32_t held_from_ = 0;
  uint32_t held_to_ = 0;
  BIO* bio_ = nullptr;            ///< owned by ssl_
  SendBatchEntry* batched_ = nullptr;  ///< a write waiting in the worker's SendBatch
  uint64_t bytes_read_ = 0;
  uint64_t bytes_written_ = 0;
  SSL* ssl_ = nullptr;
  std::shared_ptr<H2Stream> h2_;
  bool secure_ = false;
};

}  // namespace berth::proxy
