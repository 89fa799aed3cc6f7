// Stream's plain writes through the worker's SendBatch, over real loopback connections: the writes
// of one turn wait for its end and then all leave; a write larger than the socket takes finishes
// the usual way; a write whose socket closes first leaves at the close, never at the turn's end.
#include "proxy/send_batch.h"

#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "proxy/coro/task.h"
#include "proxy/stream.h"
#include "tests/unit/proxy/socket_test_util.h"

namespace berth::proxy {
namespace {

namespace asio = boost::asio;
using testing::pattern;
using testing::queued;

// Reads a blocking socket to its end.
std::string read_all(int fd) {
  std::string out;
  char buf[1 << 16];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<size_t>(n));
  return out;
}

// The calling thread's batch for `io`'s turns, ended with the fixture.
class SendBatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!SendBatch::init_thread(io_.get_executor())) GTEST_SKIP() << "the kernel refuses io_uring here";
  }
  void TearDown() override { SendBatch::end_thread(); }

  // A connected pair: the Stream (Asio's side) and the peer's blocking socket.
  std::pair<std::unique_ptr<Stream>, asio::ip::tcp::socket> connect() {
    asio::ip::tcp::acceptor acceptor(io_, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    asio::ip::tcp::socket peer(peer_io_);
    peer.connect(acceptor.local_endpoint());
    Socket socket(io_.get_executor());
    acceptor.accept(socket);
    return {std::make_unique<Stream>(std::move(socket)), std::move(peer)};
  }

  asio::io_context io_;
  asio::io_context peer_io_;
};

struct Written {
  boost::system::error_code ec;
  size_t n = 0;
  bool done = false;
};

// `pieces` 1 or 2: the batch sends one piece with IORING_OP_SEND, more with IORING_OP_SENDMSG.
coro::Task<void> write_one(Stream& stream, std::string_view what, Written& out, bool close_after = false,
                           int pieces = 2) {
  std::array<asio::const_buffer, 2> parts = {asio::buffer(what.substr(0, what.size() / 2)),
                                             asio::buffer(what.substr(what.size() / 2))};
  auto [ec, n] = pieces == 1 ? co_await stream.write(asio::buffer(what)) : co_await stream.write(parts);
  out = {ec, n, true};
  if (close_after) stream.close();
}

TEST_F(SendBatchTest, WritesOfOneTurnLeaveTogetherAtItsEnd) {
  constexpr size_t kConnections = 300;  // more than one ring's worth (256 sends): two submissions
  std::vector<std::pair<std::unique_ptr<Stream>, asio::ip::tcp::socket>> pairs;
  std::vector<std::string> messages;
  std::vector<Written> written(kConnections);
  for (size_t i = 0; i < kConnections; ++i) {
    pairs.push_back(connect());
    messages.push_back("GET /" + std::to_string(i) + " HTTP/1.1\r\nHost: batch.test\r\n\r\n");
  }
  for (size_t i = 0; i < kConnections; ++i)
    coro::spawn(write_one(*pairs[i].first, messages[i], written[i], false, i % 2 == 0 ? 1 : 2));
  // The writes wait in the batch: nothing was sent yet, nothing has completed.
  for (size_t i = 0; i < kConnections; ++i) {
    EXPECT_EQ(queued(pairs[i].second.native_handle()), 0u) << "connection " << i;
    EXPECT_FALSE(written[i].done);
  }
  io_.run_for(std::chrono::seconds(5));
  for (size_t i = 0; i < kConnections; ++i) {
    ASSERT_TRUE(written[i].done) << "connection " << i;
    EXPECT_FALSE(written[i].ec) << written[i].ec.message();
    EXPECT_EQ(written[i].n, messages[i].size());
    EXPECT_EQ(pairs[i].first->bytes_written(), messages[i].size());
    std::string got(messages[i].size(), '\0');
    ASSERT_EQ(::recv(pairs[i].second.native_handle(), got.data(), got.size(), MSG_WAITALL),
              static_cast<ssize_t>(got.size()));
    EXPECT_EQ(got, messages[i]);
  }
}

TEST_F(SendBatchTest, AWriteLargerThanTheSocketTakesFinishesTheUsualWay) {
  const std::string big = pattern(16 * 1024 * 1024);
  for (int pieces : {1, 2}) {
    SCOPED_TRACE(pieces);
    auto [stream, peer] = connect();
    Written written;
    coro::spawn(write_one(*stream, big, written, /*close_after=*/true, pieces));
    std::string got;
    std::thread reader([&, fd = peer.native_handle()] {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the batch's send finds the socket full
      got = read_all(fd);
    });
    io_.restart();
    io_.run_for(std::chrono::seconds(30));
    reader.join();
    ASSERT_TRUE(written.done);
    EXPECT_FALSE(written.ec) << written.ec.message();
    EXPECT_EQ(written.n, big.size());
    ASSERT_EQ(got.size(), big.size());
    EXPECT_TRUE(got == big) << "the bytes that arrived differ from the bytes written";
  }
}

TEST_F(SendBatchTest, AWriteWhoseSocketClosesBeforeTheTurnEndsLeavesAtTheCloseAndOnlyThen) {
  auto [closing, closing_peer] = connect();
  auto [other, other_peer] = connect();
  const int fd = closing->socket().native_handle();
  Written early;
  coro::spawn(write_one(*closing, "bytes before the close", early));
  closing->close();
  // The descriptor number is another connection's now, as after an accept: the batch must not send there.
  ASSERT_EQ(::dup2(other->socket().native_handle(), fd), fd);
  io_.run_for(std::chrono::seconds(5));
  ::close(fd);
  ASSERT_TRUE(early.done);
  EXPECT_FALSE(early.ec) << early.ec.message();
  EXPECT_EQ(early.n, 22u);
  EXPECT_EQ(read_all(closing_peer.native_handle()), "bytes before the close");
  EXPECT_EQ(queued(other_peer.native_handle()), 0u);
}

TEST_F(SendBatchTest, AFailedSubmitSendsTheTurnsWritesOneByOneAndLeavesTheRingAlone) {
  constexpr size_t kConnections = 4;
  std::vector<std::pair<std::unique_ptr<Stream>, asio::ip::tcp::socket>> pairs;
  std::vector<Written> written(kConnections);
  for (size_t i = 0; i < kConnections; ++i) pairs.push_back(connect());
  SendBatch::current()->break_ring_for_testing();
  for (size_t i = 0; i < kConnections; ++i) coro::spawn(write_one(*pairs[i].first, "turn one", written[i]));
  io_.run_for(std::chrono::seconds(5));
  io_.restart();
  EXPECT_EQ(SendBatch::current(), nullptr);  // writes go by sendmsg(2) from now on
  std::vector<Written> later(kConnections);
  for (size_t i = 0; i < kConnections; ++i) coro::spawn(write_one(*pairs[i].first, ", turn two", later[i], true));
  io_.run_for(std::chrono::seconds(5));
  for (size_t i = 0; i < kConnections; ++i) {
    ASSERT_TRUE(written[i].done && later[i].done) << "connection " << i;
    EXPECT_FALSE(written[i].ec) << written[i].ec.message();
    EXPECT_FALSE(later[i].ec) << later[i].ec.message();
    EXPECT_EQ(read_all(pairs[i].second.native_handle()), "turn one, turn two") << "connection " << i;
  }
}

}  // namespace
}  // namespace berth::proxy
