// Unit tests for the one-shot HTTP/1.1 fetch client, against a tiny in-test server on 127.0.0.1
// that answers canned bytes (in pieces, with delays). Each test runs its io_context for a bounded time.
#include "proxy/upstream/http_fetch.h"

#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace berth::proxy::upstream {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
using Acceptor = asio::basic_socket_acceptor<tcp, Executor>;

constexpr std::string_view kGet = "GET /auth HTTP/1.1\r\nHost: auth.test\r\nConnection: close\r\n\r\n";

// What the in-test server does with its one connection, and what it saw.
struct Script {
  struct Step {
    std::chrono::milliseconds delay{0};  ///< before writing `bytes`
    std::string bytes;
  };
  std::vector<Step> steps;
  enum class End { kClose, kWaitForClient, kReset } end = End::kClose;

  std::string request;  ///< the request head the client sent
  bool is_finished = false;
};

// Accepts one connection, reads the request head, plays the steps, then ends as scripted.
coro::Task<void> serve(Acceptor acceptor, std::shared_ptr<Script> script) {
  Socket socket(acceptor.get_executor());
  auto [aec] = co_await acceptor.async_accept(socket, coro::use_task);
  acceptor.close();
  boost::system::error_code ec = aec;
  char buf[4096];
  // Reading the whole request first matters: closing with unread bytes would send a RST, not a FIN.
  while (!ec && script->request.find("\r\n\r\n") == std::string::npos) {
    auto [rec, n] = co_await socket.async_read_some(asio::buffer(buf), coro::use_task);
    ec = rec;
    script->request.append(buf, n);
  }
  Timer timer(socket.get_executor());
  for (const auto& step : script->steps) {
    if (ec) break;
    if (step.delay.count() > 0) {
      timer.expires_after(step.delay);
      co_await timer.async_wait(coro::use_task);
    }
    auto [wec, n] = co_await asio::async_write(socket, asio::buffer(step.bytes), coro::use_task);
    ec = wec;
  }
  if (script->end == Script::End::kWaitForClient) {
    while (!ec) {
      auto [rec, n] = co_await socket.async_read_some(asio::buffer(buf), coro::use_task);
      ec = rec;
    }
  } else if (script->end == Script::End::kReset) {
    boost::system::error_code ignored;
    socket.set_option(asio::socket_base::linger(true, 0), ignored);  // close() then sends a RST
  }
  boost::system::error_code ignored;
  socket.close(ignored);
  script->is_finished = true;
}

coro::Task<void> fetch_into(Executor ex, tcp::endpoint to, std::string request, FetchLimits limits,
                            std::optional<Result<FetchResponse>>* out) {
  out->emplace(co_await fetch(ex, to, request, limits));
}

class HttpFetch : public ::testing::Test {
 protected:
  // Starts a server on 127.0.0.1:0 that plays `script` to its first connection.
  tcp::endpoint serve_script(std::shared_ptr<Script> script) {
    Acceptor acceptor(io_.get_executor(), tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp::endpoint at = acceptor.local_endpoint();
    coro::spawn(serve(std::move(acceptor), script));
    return at;
  }

  tcp::endpoint serve_steps(std::vector<Script::Step> steps, Script::End end = Script::End::kClose) {
    script_ = std::make_shared<Script>();
    script_->steps = std::move(steps);
    script_->end = end;
    return serve_script(script_);
  }

  // Fetches and runs the io_context until everything (client and server) is done, at most 5 s.
  Result<FetchResponse> run_fetch(tcp::endpoint to, std::string_view request = kGet, FetchLimits limits = limits_) {
    std::optional<Result<FetchResponse>> out;
    coro::spawn(fetch_into(io_.get_executor(), to, std::string(request), limits, &out));
    io_.run_for(5s);
    if (!out) {
      ADD_FAILURE() << "fetch did not complete";
      return Error{"", "did not complete"};
    }
    if (script_) {
      EXPECT_TRUE(script_->is_finished);
    }
    return std::move(*out);
  }

  static void expect_error(const Result<FetchResponse>& r, std::string_view fragment) {
    ASSERT_FALSE(r.ok()) << "status " << r->status;
    EXPECT_NE(r.error().message.find(fragment), std::string::npos) << r.error().to_string();
  }

  asio::io_context io_;
  std::shared_ptr<Script> script_;
  static inline const FetchLimits limits_{2000ms};
};

// ---- framings ----------------------------------------------------------------------------------

TEST_F(HttpFetch, ReadsAContentLengthBody) {
  auto to = serve_steps({{0ms, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"}},
                        Script::End::kWaitForClient);
  auto r = run_fetch(to);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->reason, "OK");
  EXPECT_EQ(r->body, "hello");
  EXPECT_EQ(r->header("content-type"), "text/plain");
  EXPECT_EQ(r->header("Content-Length"), "5");
  EXPECT_EQ(script_->request, kGet);
}

TEST_F(HttpFetch, ReadsAContentLengthBodyArrivingInPieces) {
  auto to = serve_steps({{0ms, "HTTP/1.1 200 OK\r\nContent-Le"},
                         {20ms, "ngth: 11\r\n\r"},
                         {20ms, "\nhello"},
                         {20ms, " world"}},
                        Script::End::kWaitForClient);
  auto r = run_fetch(to);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->body, "hello world");
}

TEST_F(HttpFetch, DecodesAChunkedBodySplitAcrossWrites) {
  auto to = serve_steps({{0ms, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n5\r"},
                         {20ms, "\nhello\r\n6;ext=1\r\n wor"},
                         {20ms, "ld\r"},
                         {20ms, "\n0\r\nX-Trailer: t\r\n\r\n"}},
                        Script::End::kWaitForClient);
  auto r = run_fetch(to);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->body, "hello world");
  ASSERT_EQ(r->headers.size(), 1u);  // Transfer-Encoding is framing, trailers are skipped
  EXPECT_EQ(r->headers[0].first, "X-A");
}

TEST_F(HttpFetch, ChunkedFramingOverridesContentLength) {
  auto to = serve_steps({{0ms, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "3\r\nabc\r\n0\r\n\r\n"}},
                        Script::End::kWaitForClient);
  auto r = run_fetch(to);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->body, "abc");
  EXPECT_TRUE(r->headers.empty());
}

TEST_F(HttpFetch, ReadsUntilCloseWithoutFraming) {
  auto to = serve_steps({{0ms, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<p>"}, {20ms, "error page</p>"}});
  auto r = run_fetch(to);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->body, "<p>error page</p>");
}

TEST_F(HttpFetch, SkipsInterimResponses) {
  auto to = serve_steps({{0ms, "HTTP/1.1 100 Continue\r\n\r\n"},
                         {20ms, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 201 Cre"},
                         {20ms, "ated\r\nContent-Length: 2\r\n\r\nok"}},
                        Script::End::kWaitForClient);
  auto r = run_fetch(to);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->reason, "Created");
  EXPECT_EQ(r->body, "ok");
  ASSERT_EQ(r->headers.size(), 1u);
  EXPECT_EQ(r->headers[0].first, "Content-Length");
}

TEST_F(HttpFetch, NoBodyStatusesEndAtTheHead) {
  // The server keeps the connection open: a client waiting for a body would time out.
  for (std::string_view head : {"HTTP/1.1 204 No Content\r\nX-Auth-User: ann\r\n\r\n",
                                "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n"}) {
    io_.restart();
    auto to = serve_steps({{0ms, std::string(head)}}, Script::End::kWaitForClient);
    auto started = std::chrono::steady_clock::now();
    auto r = run_fetch(to);
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_TRUE(r->body.empty());
    EXPECT_LT(std::chrono::steady_clock::now() - started, 1s);
  }
}

TEST_F(HttpFetch, ResponseToHeadHasNoBody) {
  auto to = serve_steps({{0ms, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"}}, Script::End::kWaitForClient);
  auto r = run_fetch(to, "HEAD /page HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(r->body.empty());
  EXPECT_EQ(r->header("Content-Length"), "10");
}

TEST_F(HttpFetch, KeepsHeadersInOrderWithDuplicatesAndDropsFraming) {
  auto to = serve_steps({{0ms, "HTTP/1.1 302 Found\r\n"
                               "Set-Cookie: a=1\r\n"
                               "Connection: close\r\n"
                               "Location: /login\r\n"
                               "Keep-Alive: timeout=5\r\n"
                               "set-cookie: b=2\r\n"
                               "X-Empty:\r\n"
                               "Content-Length: 0\r\n\r\n"}});
  auto r = run_fetch(to);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->status, 302);
  using Pairs = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(r->headers, (Pairs{{"Set-Cookie", "a=1"},
                               {"Location", "/login"},
                               {"set-cookie", "b=2"},
                               {"X-Empty", ""},
                               {"Content-Length", "0"}}));
  EXPECT_EQ(r->header("SET-COOKIE"), "a=1");
  EXPECT_EQ(r->header("X-Missing"), "");
}

// ---- failures ----------------------------------------------------------------------------------

TEST_F(HttpFetch, TimesOutWhenTheServerNeverAnswers) {
  auto to = serve_steps({}, Script::End::kWaitForClient);
  auto started = std::chrono::steady_clock::now();
  auto r = run_fetch(to, kGet, FetchLimits{200ms});
  auto took = std::chrono::steady_clock::now() - started;
  expect_error(r, "timed out after 200ms reading the response head");
  EXPECT_GE(took, 190ms);
  EXPECT_LT(took, 2s);
  EXPECT_EQ(r.error().where, to.address().to_string() + ":" + std::to_string(to.port()));
}

TEST_F(HttpFetch, TimesOutInTheMiddleOfTheBody) {
  auto to = serve_steps({{0ms, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"}}, Script::End::kWaitForClient);
  auto r = run_fetch(to, kGet, FetchLimits{200ms});
  expect_error(r, "timed out after 200ms reading the response body");
}

TEST_F(HttpFetch, ReportsConnectionRefused) {
  tcp::endpoint to;
  {
    Acceptor acceptor(io_.get_executor(), tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    to = acceptor.local_endpoint();
  }  // closed: nothing listens on `to` any more
  auto r = run_fetch(to);
  expect_error(r, "connecting: ");
  EXPECT_NE(r.error().message.find("refused"), std::string::npos) << r.error().message;
}

TEST_F(HttpFetch, ReportsAReset) {
  auto to = serve_steps({{0ms, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"}}, Script::End::kReset);
  auto r = run_fetch(to);
  expect_error(r, "reading the response body: ");
  EXPECT_NE(r.error().message.find("reset"), std::string::npos) << r.error().message;
}

TEST_F(HttpFetch, ReportsACloseBeforeTheResponse) {
  auto to = serve_steps({});
  expect_error(run_fetch(to), "connection closed before the response");
}

TEST_F(HttpFetch, ReportsACloseInsideTheHead) {
  auto to = serve_steps({{0ms, "HTTP/1.1 200 OK\r\nContent-"}});
  expect_error(run_fetch(to), "connection closed in the middle of the response head");
}

TEST_F(HttpFetch, ReportsATruncatedContentLengthBody) {
  auto to = serve_steps({{0ms, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"}});
  expect_error(run_fetch(to), "connection closed after 3 of 10 body bytes");
}

TEST_F(HttpFetch, ReportsATruncatedChunkedBody) {
  auto to = serve_steps({{0ms, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"}});
  expect_error(run_fetch(to), "connection closed in the middle of the chunked body");
}

TEST_F(HttpFetch, RejectsAMalformedChunkedBody) {
  auto to = serve_steps({{0ms, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"}},
                        Script::End::kWaitForClient);
  expect_error(run_fetch(to), "malformed chunked body: chunk size is not a hex number");
}

TEST_F(HttpFetch, RejectsAMalformedStatusLine) {
  for (std::string_view head : {"HTTP/1.1 2x0 OK\r\n\r\n", "ICY 200 OK\r\n\r\n", "HTTP/1.1 99 Low\r\n\r\n",
                                "HTTP/1.1 200 OK\r\nBad Header\r\n\r\n"}) {
    io_.restart();
    auto to = serve_steps({{0ms, std::string(head)}}, Script::End::kWaitForClient);
    expect_error(run_fetch(to), "malformed response head");
  }
}

TEST_F(HttpFetch, RejectsAnUnsupportedTransferCoding) {
  auto to = serve_steps({{0ms, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"}}, Script::End::kWaitForClient);
  expect_error(run_fetch(to), "unsupported transfer coding");
}

TEST_F(HttpFetch, RejectsSwitchingProtocols) {
  auto to = serve_steps({{0ms, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"}},
                        Script::End::kWaitForClient);
  expect_error(run_fetch(to), "unexpected 101");
}

TEST_F(HttpFetch, RejectsABodyOverTheLimit) {
  FetchLimits limits{2000ms};
  limits.max_body = 8;
  const std::string_view heads[] = {
      "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n4\r\nworl\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\n\r\n0123",
  };
  for (std::string_view head : heads) {
    io_.restart();
    // The until-close body keeps coming in a second write; the others are refused on what they say.
    auto to = serve_steps({{0ms, std::string(head)}, {20ms, "45678"}}, Script::End::kWaitForClient);
    expect_error(run_fetch(to, kGet, limits), "response body exceeds 8 bytes");
  }
  // Exactly at the limit is fine.
  io_.restart();
  auto to = serve_steps({{0ms, "HTTP/1.1 200 OK\r\n\r\n0123"}, {20ms, "4567"}});
  auto r = run_fetch(to, kGet, limits);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->body, "01234567");
}

TEST_F(HttpFetch, RejectsAHeadOverTheLimit) {
  FetchLimits limits{2000ms};
  limits.max_head = 64;
  // Complete but too long, and too long without ever ending.
  for (std::string head : {"HTTP/1.1 200 OK\r\nX-Long: " + std::string(60, 'v') + "\r\n\r\n",
                           "HTTP/1.1 200 OK\r\nX-Long: " + std::string(5000, 'v')}) {
    io_.restart();
    auto to = serve_steps({{0ms, head}}, Script::End::kWaitForClient);
    expect_error(run_fetch(to, kGet, limits), "response head exceeds 64 bytes");
  }
  // Interim heads count too.
  io_.restart();
  auto to = serve_steps({{0ms, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
                               "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"}},
                        Script::End::kWaitForClient);
  expect_error(run_fetch(to, kGet, limits), "response head exceeds 64 bytes");
}

}  // namespace
}  // namespace berth::proxy::upstream
