// Stream's TLS reads over a real loopback connection: OpenSSL takes the bytes Asio read into the
// caller's buffer, so a record that straddles two reads, several records in one read, and reads
// smaller than a record must all give back exactly the bytes the client sent. A blocking OpenSSL
// client in its own thread is the peer.
#include "proxy/stream.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <string>
#include <thread>

#include "proxy/coro/task.h"
#include "tests/unit/proxy/socket_test_util.h"

namespace berth::proxy {
namespace {

namespace asio = boost::asio;
using testing::pattern;
using testing::queued;

// A server context with a fresh self-signed P-256 certificate, TLS 1.3, read-ahead and released
// buffers as berth's own contexts have.
SSL_CTX* server_context() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("stream.test"), -1, -1,
                             0);
  X509_set_issuer_name(cert, name);
  X509_sign(cert, key, EVP_sha256());
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_use_certificate(ctx, cert);
  SSL_CTX_use_PrivateKey(ctx, key);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_read_ahead(ctx, 1);
  X509_free(cert);
  EVP_PKEY_free(key);
  return ctx;
}

struct Received {
  std::string bytes;
  boost::system::error_code end;  // why reading stopped
  bool handshake_ok = false;
  bool wrote_reply = false;
};

// Reads until the client closes, cycling through read sizes from 1 byte (a fraction of a record)
// to 70,000 (several records), half of them as a keep-alive connection's "likely empty" read.
coro::Task<void> serve(Stream& stream, Received& out) {
  if (co_await stream.handshake()) co_return;
  out.handshake_ok = true;
  static constexpr std::array<size_t, 7> kSizes = {1, 7, 100, 5000, 16384, 17000, 70000};
  std::string buffer(70000, '\0');
  for (size_t i = 0;; ++i) {
    const size_t size = kSizes[i % kSizes.size()];
    // An error some other code left on the thread's queue must not make a read fail: the Stream
    // empties the queue first (SSL_get_error() reads it), as it only does when it is not empty.
    if (i % 3 == 0) ERR_raise(ERR_LIB_SSL, SSL_R_BAD_PACKET_LENGTH);
    auto [ec, n] = co_await stream.read_some(asio::buffer(buffer.data(), size), i % 2 == 0);
    if (ec) {
      out.end = ec;
      break;
    }
    out.bytes.append(buffer.data(), n);
    if (out.bytes.size() == 3 * 1024 * 1024) {  // all of it: answer through the BIO's send side
      auto [wec, wn] = co_await stream.write(asio::buffer(std::string_view("done")));
      out.wrote_reply = !wec && wn == 4;
    }
  }
}

// A blocking OpenSSL client in its own thread connects, finishes its handshake, then runs `then`
// with its SSL and its descriptor, while `server` runs on a Stream in this thread (at most
// `limit`; then its socket is shut, so that a server that stopped reading fails the test instead
// of leaving the client blocked).
template <typename Server, typename Client>
void with_client(Server server, Client then, std::chrono::seconds limit = std::chrono::seconds(20)) {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const uint16_t port = acceptor.local_endpoint().port();
  std::thread client([&] {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    asio::io_context cio;
    asio::ip::tcp::socket s(cio);
    s.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, s.native_handle());
    if (SSL_connect(ssl) == 1) then(ssl, s.native_handle());
    SSL_free(ssl);
    SSL_CTX_free(ctx);
  });
  Socket socket(io.get_executor());
  acceptor.accept(socket);
  SSL_CTX* ctx = server_context();
  Stream stream(std::move(socket));
  stream.start_tls(SSL_new(ctx), Stream::Side::kServer);
  coro::spawn(server(stream));
  io.run_for(limit);
  boost::system::error_code ignored;
  stream.socket().shutdown(asio::socket_base::shutdown_both, ignored);
  client.join();
  SSL_CTX_free(ctx);
}

TEST(StreamTls, ReadsGiveBackExactlyWhatTheClientSentWhateverTheReadSizes) {
  const std::string sent = pattern(3 * 1024 * 1024);
  std::string reply;
  Received got;
  bool buffered_left = true;
  with_client(
      [&](Stream& stream) -> coro::Task<void> {
        co_await serve(stream, got);
        buffered_left = stream.has_buffered();
      },
      // Writes of every size from 1 byte to 3 records, so records straddle the server's reads in
      // every way, then reads the reply and closes with close_notify.
      [&](SSL* ssl, int) {
        static constexpr std::array<size_t, 6> kWrites = {1, 300, 16384, 16385, 40000, 49152};
        for (size_t at = 0, i = 0; at < sent.size(); ++i) {
          size_t n = std::min(kWrites[i % kWrites.size()], sent.size() - at);
          size_t written = 0;
          if (SSL_write_ex(ssl, sent.data() + at, n, &written) != 1) break;
          at += written;
        }
        char buf[16];
        size_t n = 0;
        if (SSL_read_ex(ssl, buf, sizeof buf, &n) == 1) reply.assign(buf, n);
        SSL_shutdown(ssl);
      },
      std::chrono::seconds(60));
  ASSERT_TRUE(got.handshake_ok);
  EXPECT_EQ(got.end, asio::error::eof);  // close_notify: a clean end
  ASSERT_EQ(got.bytes.size(), sent.size());
  EXPECT_TRUE(got.bytes == sent) << "the bytes read differ from the bytes sent";
  EXPECT_TRUE(got.wrote_reply);
  EXPECT_EQ(reply, "done");
  EXPECT_FALSE(buffered_left);
}

TEST(StreamTls, TheSessionTicketLeavesWithTheFirstWrite) {
  // A TLS 1.3 server writes its session ticket as its handshake ends. It waits for the first
  // write, to go out in the same send(2): one packet, not two, on every new connection.
  std::atomic<int> client_fd{-1};
  std::atomic<bool> looked{false};  // the client reads only once the server has looked at its queue
  size_t queued_after_handshake = 99, queued_after_write = 0;
  bool resumable = false;
  std::string reply;
  with_client(
      [&](Stream& stream) -> coro::Task<void> {
        if (co_await stream.handshake()) {
          looked = true;
          co_return;
        }
        // The client has sent its Finished; on loopback, what the server sent is in its queue.
        while (client_fd.load() < 0) std::this_thread::yield();
        queued_after_handshake = queued(client_fd.load());
        co_await stream.write(asio::buffer(std::string_view("hello")));
        queued_after_write = queued(client_fd.load());
        looked = true;
      },
      [&](SSL* ssl, int fd) {
        client_fd = fd;
        while (!looked.load()) std::this_thread::yield();
        char buf[16];
        size_t got = 0;
        if (SSL_read_ex(ssl, buf, sizeof buf, &got) == 1) reply.assign(buf, got);
        SSL_SESSION* session = SSL_get1_session(ssl);
        resumable = session != nullptr && SSL_SESSION_is_resumable(session) == 1;
        SSL_SESSION_free(session);
        SSL_shutdown(ssl);
      });
  EXPECT_EQ(queued_after_handshake, 0u) << "the ticket left before the first write";
  EXPECT_GT(queued_after_write, 5u + 100u) << "the ticket and the data, together";
  EXPECT_EQ(reply, "hello");
  EXPECT_TRUE(resumable) << "the client got its ticket";
}

TEST(StreamTls, HeldBytesLeaveBeforeTheServerWaitsForInput) {
  // A server that reads first must not sit on its ticket: a client may wait for it (or for
  // anything else the handshake wrote last) before it sends.
  std::string got;
  bool ticket_came = false;
  with_client(
      [&](Stream& stream) -> coro::Task<void> {
        if (co_await stream.handshake()) co_return;
        char buf[16];
        auto [ec, n] = co_await stream.read_some(asio::buffer(buf, sizeof buf), true);
        if (!ec) got.assign(buf, n);
      },
      [&](SSL* ssl, int fd) {
        pollfd p{fd, POLLIN, 0};
        ticket_came = ::poll(&p, 1, 5000) == 1;  // nothing sent yet: only the server's bytes can come
        size_t written = 0;
        SSL_write_ex(ssl, "ping", 4, &written);
        SSL_shutdown(ssl);
      });
  EXPECT_TRUE(ticket_came) << "the server waited for input with bytes still held";
  EXPECT_EQ(got, "ping");
}

TEST(StreamTls, ALastWriteCarriesTheCloseNotify) {
  // A response before a close: the client finds the data and the close_notify together, before
  // the server's close() (which then sends no second one).
  std::atomic<bool> read_all{false};
  std::string reply;
  int after_reply = 0;
  with_client(
      [&](Stream& stream) -> coro::Task<void> {
        if (co_await stream.handshake()) {
          read_all = true;
          co_return;
        }
        co_await stream.write(asio::buffer(std::string_view("bye")), true);
        // Not closed before the client has read (or has given up: 5 s without a close_notify).
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!read_all.load() && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
        stream.close();
      },
      [&](SSL* ssl, int fd) {
        timeval limit{2, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
        char buf[16];
        size_t got = 0;
        if (SSL_read_ex(ssl, buf, sizeof buf, &got) == 1) reply.assign(buf, got);
        after_reply = SSL_read_ex(ssl, buf, sizeof buf, &got) == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, 0);
        read_all = true;
      });
  EXPECT_EQ(reply, "bye");
  EXPECT_EQ(after_reply, SSL_ERROR_ZERO_RETURN) << "close_notify before close()";
}

}  // namespace
}  // namespace berth::proxy
