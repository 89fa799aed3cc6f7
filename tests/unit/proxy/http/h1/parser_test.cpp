// Unit tests for the HTTP/1.1 head parser and the chunked-body framer (the smuggling-sensitive edge).
#include "proxy/http/h1/parser.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace berth::proxy::http::h1 {
namespace {

using namespace std::string_view_literals;

// Runs find_head_end then parse_request, the way a connection does.
ParseStatus parse(std::string_view data, RequestHead& head) {
  size_t end = find_head_end(data);
  if (end == 0) return ParseStatus::kIncomplete;
  return parse_request(data.substr(0, end), head);
}

ParseStatus parse(std::string_view data) {
  RequestHead head;
  return parse(data, head);
}

ParseStatus parse_resp(std::string_view data, ResponseHead& head) {
  size_t end = find_head_end(data);
  if (end == 0) return ParseStatus::kIncomplete;
  return parse_response(data.substr(0, end), head);
}

// ---- request line and headers ----------------------------------------------------------------

TEST(RequestParser, ParsesSimpleGet) {
  std::string_view data = "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: test\r\n\r\n";
  RequestHead head;
  ASSERT_EQ(parse(data, head), ParseStatus::kOk);
  EXPECT_EQ(head.method, "GET");
  EXPECT_EQ(head.target, "/index.html?q=1");
  EXPECT_EQ(head.version_minor, 1);
  EXPECT_EQ(head.host, "example.com");
  EXPECT_EQ(head.head_size, data.size());
  ASSERT_EQ(head.headers.size(), 2u);
  EXPECT_EQ(head.headers[1].name, "User-Agent");
  EXPECT_EQ(head.headers[1].value, "test");
  EXPECT_EQ(head.framing.content_length, -1);
  EXPECT_FALSE(head.framing.chunked);
  EXPECT_FALSE(head.expect_continue);
  EXPECT_FALSE(head.is_head());
}

TEST(RequestParser, ViewsPointIntoTheCallersBuffer) {
  std::string data = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
  RequestHead head;
  ASSERT_EQ(parse(data, head), ParseStatus::kOk);
  EXPECT_EQ(head.target.data(), data.data() + 4);
  EXPECT_EQ(head.host.data(), data.data() + data.find("h\r\n\r\n"));
}

TEST(RequestParser, AssignsIdsToWellKnownHeadersInAnyCase) {
  std::string_view data =
      "POST /u HTTP/1.1\r\n"
      "hOsT: a\r\n"
      "CONTENT-LENGTH: 3\r\n"
      "connection: keep-alive\r\n"
      "X-Forwarded-For: 1.2.3.4\r\n"
      "x-real-ip: 1.2.3.4\r\n"
      "Accept: */*\r\n"
      "Expect: 100-continue\r\n"
      "\r\n";
  RequestHead head;
  ASSERT_EQ(parse(data, head), ParseStatus::kOk);
  ASSERT_EQ(head.headers.size(), 7u);
  EXPECT_EQ(head.headers[0].id, HeaderId::kHost);
  EXPECT_EQ(head.headers[1].id, HeaderId::kContentLength);
  EXPECT_EQ(head.headers[2].id, HeaderId::kConnection);
  EXPECT_EQ(head.headers[3].id, HeaderId::kXForwardedFor);
  EXPECT_EQ(head.headers[4].id, HeaderId::kXRealIp);
  EXPECT_EQ(head.headers[5].id, HeaderId::kOther);
  EXPECT_EQ(head.headers[6].id, HeaderId::kExpect);
  EXPECT_EQ(head.headers[0].name, "hOsT");  // names are kept as sent
  EXPECT_EQ(head.framing.content_length, 3);
}

TEST(HeaderId, MapsNamesCaseInsensitivelyAndUnknownToOther) {
  EXPECT_EQ(header_id("Transfer-Encoding"), HeaderId::kTransferEncoding);
  EXPECT_EQ(header_id("te"), HeaderId::kTe);
  EXPECT_EQ(header_id("X-Forwarded-Tls-Client-Cert-Info"), HeaderId::kXForwardedTlsClientCertInfo);
  EXPECT_EQ(header_id("Hosts"), HeaderId::kOther);
  EXPECT_EQ(header_id("Accept"), HeaderId::kOther);
  EXPECT_EQ(header_id(""), HeaderId::kOther);
  EXPECT_TRUE(is_hop_by_hop(HeaderId::kConnection));
  EXPECT_FALSE(is_hop_by_hop(HeaderId::kHost));
  EXPECT_TRUE(is_forwarded_family(HeaderId::kXRealIp));
  EXPECT_FALSE(is_forwarded_family(HeaderId::kHost));
}

TEST(RequestParser, TrimsHeaderValueWhitespace) {
  RequestHead head;
  ASSERT_EQ(parse("GET / HTTP/1.1\r\nHost: \t a.com \t\r\n\r\n", head), ParseStatus::kOk);
  EXPECT_EQ(head.host, "a.com");
}

TEST(RequestParser, RecognisesHeadMethod) {
  RequestHead head;
  ASSERT_EQ(parse("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", head), ParseStatus::kOk);
  EXPECT_TRUE(head.is_head());
}

TEST(RequestParser, IgnoresOneEmptyLineBeforeTheRequestLine) {
  std::string_view data = "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
  RequestHead head;
  ASSERT_EQ(parse(data, head), ParseStatus::kOk);
  EXPECT_EQ(head.method, "GET");
  EXPECT_EQ(head.head_size, data.size());
}

TEST(RequestParser, ReusesTheHeadAcrossRequests) {
  RequestHead head;
  ASSERT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
                  "Upgrade: websocket\r\nConnection: close\r\n\r\n",
                  head),
            ParseStatus::kOk);
  ASSERT_EQ(parse("GET /b HTTP/1.1\r\nHost: b\r\n\r\n", head), ParseStatus::kOk);
  EXPECT_EQ(head.headers.size(), 1u);
  EXPECT_EQ(head.host, "b");
  EXPECT_EQ(head.framing.content_length, -1);
  EXPECT_FALSE(head.expect_continue);
  EXPECT_FALSE(head.has_upgrade);
  EXPECT_TRUE(head.keep_alive());
}

// ---- keep-alive ------------------------------------------------------------------------------

TEST(RequestParser, KeepsHttp11AliveByDefault) {
  RequestHead head;
  ASSERT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n", head), ParseStatus::kOk);
  EXPECT_TRUE(head.keep_alive());
}

TEST(RequestParser, ClosesHttp11OnConnectionClose) {
  RequestHead head;
  ASSERT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n", head), ParseStatus::kOk);
  EXPECT_FALSE(head.keep_alive());
  ASSERT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n", head), ParseStatus::kOk);
  EXPECT_FALSE(head.keep_alive());
}

TEST(RequestParser, ClosesHttp10UnlessKeepAliveIsAsked) {
  RequestHead head;
  ASSERT_EQ(parse("GET / HTTP/1.0\r\n\r\n", head), ParseStatus::kOk);
  EXPECT_EQ(head.version_minor, 0);
  EXPECT_FALSE(head.keep_alive());
  ASSERT_EQ(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", head), ParseStatus::kOk);
  EXPECT_TRUE(head.keep_alive());
}

TEST(RequestParser, ReadsConnectionTokensFromAList) {
  RequestHead head;
  ASSERT_EQ(parse("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive ,  Upgrade\r\nUpgrade: websocket\r\n\r\n", head),
            ParseStatus::kOk);
  EXPECT_TRUE(head.framing.connection_upgrade);
  EXPECT_TRUE(head.framing.connection_keep_alive);
  EXPECT_FALSE(head.framing.connection_close);
  EXPECT_TRUE(head.has_upgrade);
}

// ---- find_head_end ---------------------------------------------------------------------------

TEST(FindHeadEnd, ReturnsZeroUntilTheHeadIsComplete) {
  EXPECT_EQ(find_head_end(""), 0u);
  EXPECT_EQ(find_head_end("GET / HTTP/1.1\r\nHost: a\r\n"), 0u);
  EXPECT_EQ(find_head_end("GET / HTTP/1.1\r\nHost: a\r\n\r"), 0u);
}

TEST(FindHeadEnd, ReturnsTheFirstHeadSizeWithPipelinedData) {
  std::string_view first = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
  std::string_view second = "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
  std::string data = std::string(first) + std::string(second);
  size_t end = find_head_end(data);
  ASSERT_EQ(end, first.size());
  RequestHead head;
  ASSERT_EQ(parse_request(std::string_view(data).substr(0, end), head), ParseStatus::kOk);
  EXPECT_EQ(head.target, "/1");
  EXPECT_EQ(head.head_size, first.size());
  std::string_view rest = std::string_view(data).substr(end);
  ASSERT_EQ(find_head_end(rest), second.size());
  ASSERT_EQ(parse_request(rest, head), ParseStatus::kOk);
  EXPECT_EQ(head.target, "/2");
}

TEST(FindHeadEnd, ResumesFromWhereThePreviousScanStopped) {
  std::string_view full = "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\nBODY";
  size_t expected = full.size() - 4;
  // Feed the bytes in every possible split; resuming at the old size must find the same end.
  for (size_t split = 0; split <= full.size(); ++split) {
    std::string_view part = full.substr(0, split);
    size_t first = find_head_end(part);
    if (first != 0) {
      EXPECT_EQ(first, expected) << "split " << split;
      continue;
    }
    EXPECT_EQ(find_head_end(full, split), expected) << "split " << split;
  }
}

TEST(FindHeadEnd, FindsTheTerminatorStraddlingTwoReads) {
  std::string_view full = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  // The previous read ended right after "\r\n\r": the terminator began three bytes back.
  EXPECT_EQ(find_head_end(full.substr(0, full.size() - 1)), 0u);
  EXPECT_EQ(find_head_end(full, full.size() - 1), full.size());
}

TEST(FindHeadEnd, AcceptsLfOnlyLineEndings) {
  std::string_view data = "GET / HTTP/1.1\nHost: a\n\nnext";
  EXPECT_EQ(find_head_end(data), data.size() - 4);
}

TEST(RequestParser, AcceptsLfOnlyLineEndings) {
  std::string_view data = "GET /lf HTTP/1.1\nHost: a.com\nX-A: b\n\n";
  RequestHead head;
  ASSERT_EQ(parse(data, head), ParseStatus::kOk);
  EXPECT_EQ(head.target, "/lf");
  EXPECT_EQ(head.host, "a.com");
  ASSERT_EQ(head.headers.size(), 2u);
  EXPECT_EQ(head.headers[1].value, "b");
  EXPECT_EQ(head.head_size, data.size());
}

TEST(RequestParser, ReportsIncompleteWithoutTheFinalEmptyLine) {
  RequestHead head;
  EXPECT_EQ(parse_request("GET / HTTP/1.1\r\nHost: a\r\n", head), ParseStatus::kIncomplete);
  EXPECT_EQ(parse_request("GET / HTTP/1.1", head), ParseStatus::kIncomplete);
}

// ---- malformed heads -------------------------------------------------------------------------

TEST(RequestParser, RejectsObsFold) {
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n two\r\n\r\n"), ParseStatus::kBadRequest);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n\ttwo\r\n\r\n"), ParseStatus::kBadRequest);
}

TEST(RequestParser, RejectsWhitespaceBeforeColon) {
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), ParseStatus::kBadRequest);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 0\r\n\r\n"), ParseStatus::kBadRequest);
}

TEST(RequestParser, RejectsHeaderLinesWithoutNameOrColon) {
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n"), ParseStatus::kBadRequest);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"), ParseStatus::kBadRequest);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nBad(Name): v\r\n\r\n"), ParseStatus::kBadRequest);
}

TEST(RequestParser, RejectsControlCharactersInHeaderValues) {
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01z\r\n\r\n"sv), ParseStatus::kBadRequest);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nX: a\rz\r\n\r\n"sv), ParseStatus::kBadRequest);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nX: a\0z\r\n\r\n"sv), ParseStatus::kBadRequest);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nX: a\tz\r\n\r\n"sv), ParseStatus::kOk);
}

TEST(RequestParser, RejectsBadVersions) {
  for (std::string_view v : {"HTTP/2.0", "HTTP/1.", "HTTP/1.x", "http/1.1", "HTTP/1.10", "HTTP/1.1 ", "HTTP/11", ""}) {
    std::string data = "GET / " + std::string(v) + "\r\nHost: a\r\n\r\n";
    EXPECT_EQ(parse(data), ParseStatus::kBadRequest) << "version \"" << v << "\"";
  }
}

TEST(RequestParser, RejectsMalformedRequestLines) {
  EXPECT_EQ(parse("GET\r\nHost: a\r\n\r\n"), ParseStatus::kBadRequest);
  EXPECT_EQ(parse("GET /\r\nHost: a\r\n\r\n"), ParseStatus::kBadRequest);
  EXPECT_EQ(parse("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), ParseStatus::kBadRequest);  // empty target
  EXPECT_EQ(parse("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), ParseStatus::kBadRequest);  // method not a token
  EXPECT_EQ(parse(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), ParseStatus::kBadRequest);
}

TEST(RequestParser, RejectsInvalidCharactersInTarget) {
  EXPECT_EQ(parse("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), ParseStatus::kBadRequest);
  EXPECT_EQ(parse("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n"sv), ParseStatus::kBadRequest);
  EXPECT_EQ(parse("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n"sv), ParseStatus::kBadRequest);
  EXPECT_EQ(parse("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n"sv), ParseStatus::kBadRequest);
  EXPECT_EQ(parse("GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n"sv), ParseStatus::kBadRequest);
}

TEST(RequestParser, RejectsHttp11WithoutHost) {
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"), ParseStatus::kBadRequest);
  // Absolute form does not excuse the Host header (RFC 9112 3.2).
  EXPECT_EQ(parse("GET http://a.com/ HTTP/1.1\r\n\r\n"), ParseStatus::kBadRequest);
}

TEST(RequestParser, AcceptsHttp10WithoutHost) {
  RequestHead head;
  ASSERT_EQ(parse("GET / HTTP/1.0\r\n\r\n", head), ParseStatus::kOk);
  EXPECT_EQ(head.host, "");
}

TEST(RequestParser, RejectsDuplicateHost) {
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), ParseStatus::kBadRequest);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), ParseStatus::kBadRequest);
}

// ---- framing ---------------------------------------------------------------------------------

TEST(RequestParser, RejectsDuplicateContentLengthThatDiffers) {
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            ParseStatus::kBadRequest);
}

TEST(RequestParser, AcceptsIdenticalDuplicateContentLength) {
  RequestHead head;
  ASSERT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", head),
            ParseStatus::kOk);
  EXPECT_EQ(head.framing.content_length, 5);
}

TEST(RequestParser, RejectsMalformedContentLength) {
  for (std::string_view v : {"-1", "+5", "5x", "0x10", "", "5 5", "5,5", "99999999999999999999999"}) {
    std::string data = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + std::string(v) + "\r\n\r\n";
    EXPECT_EQ(parse(data), ParseStatus::kBadRequest) << "Content-Length \"" << v << "\"";
  }
}

TEST(RequestParser, AcceptsZeroContentLength) {
  RequestHead head;
  ASSERT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", head), ParseStatus::kOk);
  EXPECT_EQ(head.framing.content_length, 0);
}

TEST(RequestParser, RejectsContentLengthWithTransferEncoding) {
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ParseStatus::kBadRequest);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
            ParseStatus::kBadRequest);
}

TEST(RequestParser, AcceptsChunkedInAnyCase) {
  RequestHead head;
  ASSERT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", head), ParseStatus::kOk);
  EXPECT_TRUE(head.framing.chunked);
  EXPECT_EQ(head.framing.content_length, -1);
}

TEST(RequestParser, ReturnsNotImplementedForOtherTransferCodings) {
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"), ParseStatus::kNotImplemented);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            ParseStatus::kNotImplemented);
}

TEST(RequestParser, RejectsRepeatedTransferEncodingHeaders) {
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ParseStatus::kBadRequest);
}

TEST(RequestParser, RejectsChunkedInHttp10) {
  EXPECT_EQ(parse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), ParseStatus::kBadRequest);
}

TEST(RequestParser, FlagsExpectContinue) {
  RequestHead head;
  ASSERT_EQ(parse("PUT /f HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nExpect: 100-Continue\r\n\r\n", head),
            ParseStatus::kOk);
  EXPECT_TRUE(head.expect_continue);
  ASSERT_EQ(parse("PUT /f HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nExpect: something\r\n\r\n", head),
            ParseStatus::kOk);
  EXPECT_FALSE(head.expect_continue);
}

TEST(RequestParser, KeepsAbsoluteFormTarget) {
  RequestHead head;
  ASSERT_EQ(parse("GET http://example.com:8080/p?q HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", head),
            ParseStatus::kOk);
  EXPECT_EQ(head.target, "http://example.com:8080/p?q");
  EXPECT_EQ(head.host, "example.com:8080");
}

TEST(RequestParser, AcceptsAsteriskAndAuthorityForms) {
  RequestHead head;
  ASSERT_EQ(parse("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", head), ParseStatus::kOk);
  EXPECT_EQ(head.target, "*");
  ASSERT_EQ(parse("CONNECT a.com:443 HTTP/1.1\r\nHost: a.com:443\r\n\r\n", head), ParseStatus::kOk);
  EXPECT_EQ(head.target, "a.com:443");
}

// ---- responses -------------------------------------------------------------------------------

TEST(ResponseParser, ParsesStatusReasonAndHeaders) {
  std::string_view data = "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nContent-Type: text/plain\r\n\r\n";
  ResponseHead head;
  ASSERT_EQ(parse_resp(data, head), ParseStatus::kOk);
  EXPECT_EQ(head.version_minor, 1);
  EXPECT_EQ(head.status, 404);
  EXPECT_EQ(head.reason, "Not Found");
  EXPECT_EQ(head.framing.content_length, 9);
  ASSERT_EQ(head.headers.size(), 2u);
  EXPECT_EQ(head.headers[0].id, HeaderId::kContentLength);
  EXPECT_EQ(head.head_size, data.size());
}

TEST(ResponseParser, AcceptsEmptyReason) {
  ResponseHead head;
  ASSERT_EQ(parse_resp("HTTP/1.1 200 \r\n\r\n", head), ParseStatus::kOk);
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.reason, "");
  ASSERT_EQ(parse_resp("HTTP/1.1 200\r\n\r\n", head), ParseStatus::kOk);
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.reason, "");
}

TEST(ResponseParser, ParsesNoContentWithoutFraming) {
  ResponseHead head;
  ASSERT_EQ(parse_resp("HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n", head), ParseStatus::kOk);
  EXPECT_EQ(head.status, 204);
  EXPECT_EQ(head.framing.content_length, -1);
  EXPECT_FALSE(head.framing.chunked);
}

TEST(ResponseParser, ParsesHttp10) {
  ResponseHead head;
  ASSERT_EQ(parse_resp("HTTP/1.0 200 OK\r\n\r\n", head), ParseStatus::kOk);
  EXPECT_EQ(head.version_minor, 0);
}

TEST(ResponseParser, LetsChunkedWinOverContentLength) {
  ResponseHead head;
  ASSERT_EQ(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n", head),
            ParseStatus::kOk);
  EXPECT_TRUE(head.framing.chunked);
  EXPECT_EQ(head.framing.content_length, -1);
}

TEST(ResponseParser, RejectsMalformedStatusLines) {
  ResponseHead head;
  for (std::string_view line : {"HTTP/1.1 20 OK", "HTTP/1.1 2000 OK", "HTTP/1.1 abc OK", "HTTP/1.1 099 X",
                                "HTTP/2.0 200 OK", "HTTP/1.x 200 OK", "HTTP/1.1  200 OK", "HTTP/1.1", "ICY 200 OK"}) {
    std::string data = std::string(line) + "\r\n\r\n";
    EXPECT_EQ(parse_response(data, head), ParseStatus::kBadRequest) << "status line \"" << line << "\"";
  }
}

TEST(ResponseParser, RejectsDifferingDuplicateContentLength) {
  ResponseHead head;
  EXPECT_EQ(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", head),
            ParseStatus::kBadRequest);
}

// ---- chunked framing -------------------------------------------------------------------------

TEST(ChunkedFramer, ConsumesAWholeBodyInOneCall) {
  std::string_view body = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
  ChunkedFramer f;
  size_t used = 0;
  EXPECT_EQ(f.consume(body, used), ChunkedFramer::Status::kDone);
  EXPECT_EQ(used, body.size());
  EXPECT_EQ(f.payload(), 11u);
  EXPECT_EQ(f.framing(), body.size() - 11);
}

TEST(ChunkedFramer, CountsNoFramingPastTheMessageEnd) {
  // A pipelined request after the body is not this body's framing.
  std::string_view body = "3\r\nabc\r\n0\r\n\r\n";
  std::string stream = std::string(body) + "GET / HTTP/1.1\r\n\r\n";
  ChunkedFramer f;
  size_t used = 0;
  EXPECT_EQ(f.consume(stream, used), ChunkedFramer::Status::kDone);
  EXPECT_EQ(used, body.size());
  EXPECT_EQ(f.payload(), 3u);
  EXPECT_EQ(f.framing(), body.size() - 3);
}

TEST(ChunkedFramer, ConsumesByteByByte) {
  std::string_view body = "5\r\nhello\r\nA;x=y\r\n0123456789\r\n0\r\nX-Trailer: v\r\n\r\n";
  ChunkedFramer f;
  for (size_t i = 0; i < body.size(); ++i) {
    size_t used = 99;
    auto st = f.consume(body.substr(i, 1), used);
    EXPECT_EQ(used, 1u) << "byte " << i;
    if (i + 1 < body.size()) ASSERT_EQ(st, ChunkedFramer::Status::kMore) << "byte " << i;
    else EXPECT_EQ(st, ChunkedFramer::Status::kDone);
  }
  EXPECT_EQ(f.payload(), 15u);  // "hello" and "0123456789": no sizes, extensions, CRLFs or trailers
  EXPECT_EQ(f.framing(), body.size() - 15);
}

TEST(ChunkedFramer, ConsumesInArbitrarySplits) {
  std::string_view body = "1a\r\nabcdefghijklmnopqrstuvwxyz\r\n3;ext\r\nabc\r\n0\r\nT: 1\r\n\r\n";
  for (size_t split = 0; split <= body.size(); ++split) {
    ChunkedFramer f;
    size_t used = 0;
    auto st = f.consume(body.substr(0, split), used);
    EXPECT_EQ(used, split);
    if (split < body.size()) {
      ASSERT_EQ(st, ChunkedFramer::Status::kMore) << "split " << split;
      EXPECT_EQ(f.consume(body.substr(split), used), ChunkedFramer::Status::kDone) << "split " << split;
      EXPECT_EQ(used, body.size() - split);
    } else {
      EXPECT_EQ(st, ChunkedFramer::Status::kDone);
    }
  }
}

TEST(ChunkedFramer, AcceptsChunkExtensions) {
  std::string_view body = "5;name=value;quoted=\"a b\"\r\nhello\r\n0;last\r\n\r\n";
  ChunkedFramer f;
  size_t used = 0;
  EXPECT_EQ(f.consume(body, used), ChunkedFramer::Status::kDone);
  EXPECT_EQ(used, body.size());
}

TEST(ChunkedFramer, AcceptsUpperAndLowerCaseHex) {
  std::string body = "aB\r\n" + std::string(0xab, 'x') + "\r\n0\r\n\r\n";
  ChunkedFramer f;
  size_t used = 0;
  EXPECT_EQ(f.consume(body, used), ChunkedFramer::Status::kDone);
  EXPECT_EQ(used, body.size());
}

TEST(ChunkedFramer, ConsumesTrailers) {
  std::string_view body = "3\r\nabc\r\n0\r\nX-Checksum: 123\r\nX-Other: y\r\n\r\n";
  ChunkedFramer f;
  size_t used = 0;
  EXPECT_EQ(f.consume(body, used), ChunkedFramer::Status::kDone);
  EXPECT_EQ(used, body.size());
}

TEST(ChunkedFramer, StopsAtTheEndLeavingTheNextMessageUnused) {
  std::string_view body = "3\r\nabc\r\n0\r\n\r\n";
  std::string data = std::string(body) + "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
  ChunkedFramer f;
  size_t used = 0;
  ASSERT_EQ(f.consume(data, used), ChunkedFramer::Status::kDone);
  EXPECT_EQ(used, body.size());
  EXPECT_EQ(std::string_view(data).substr(used, 4), "GET ");
}

TEST(ChunkedFramer, StopsAfterTrailersLeavingTheNextMessageUnused) {
  std::string_view body = "0\r\nT: v\r\n\r\n";
  std::string data = std::string(body) + "HTTP/1.1 200 OK\r\n";
  ChunkedFramer f;
  size_t used = 0;
  ASSERT_EQ(f.consume(data, used), ChunkedFramer::Status::kDone);
  EXPECT_EQ(used, body.size());
}

TEST(ChunkedFramer, UsesNothingOnceDone) {
  ChunkedFramer f;
  size_t used = 0;
  ASSERT_EQ(f.consume("0\r\n\r\n", used), ChunkedFramer::Status::kDone);
  EXPECT_EQ(f.consume("more", used), ChunkedFramer::Status::kDone);
  EXPECT_EQ(used, 0u);
}

TEST(ChunkedFramer, ResetStartsANewMessage) {
  ChunkedFramer f;
  size_t used = 0;
  ASSERT_EQ(f.consume("0\r\n\r\n", used), ChunkedFramer::Status::kDone);
  f.reset();
  std::string_view body = "2\r\nab\r\n0\r\n\r\n";
  EXPECT_EQ(f.consume(body, used), ChunkedFramer::Status::kDone);
  EXPECT_EQ(used, body.size());
}

TEST(ChunkedFramer, RejectsBadHex) {
  for (std::string_view body : {"g\r\n", "5g\r\nhello\r\n", "\r\n", ";ext\r\n", "-5\r\n", "0x5\r\n", " 5\r\n"}) {
    ChunkedFramer f;
    size_t used = 0;
    EXPECT_EQ(f.consume(body, used), ChunkedFramer::Status::kError) << "body \"" << body << "\"";
  }
}

TEST(ChunkedFramer, RejectsMissingCrlfAfterData) {
  ChunkedFramer f;
  size_t used = 0;
  EXPECT_EQ(f.consume("5\r\nhelloX\r\n0\r\n\r\n", used), ChunkedFramer::Status::kError);
  f.reset();
  EXPECT_EQ(f.consume("5\r\nhello\rX0\r\n\r\n", used), ChunkedFramer::Status::kError);
  f.reset();
  // Data longer than announced.
  EXPECT_EQ(f.consume("3\r\nhello\r\n0\r\n\r\n", used), ChunkedFramer::Status::kError);
}

TEST(ChunkedFramer, RejectsBareLfAfterTheSize) {
  ChunkedFramer f;
  size_t used = 0;
  EXPECT_EQ(f.consume("5\nhello\r\n0\r\n\r\n", used), ChunkedFramer::Status::kError);
  f.reset();
  EXPECT_EQ(f.consume("5;ext\nhello\r\n", used), ChunkedFramer::Status::kError);
  f.reset();
  EXPECT_EQ(f.consume("5\rhello", used), ChunkedFramer::Status::kError);
}

TEST(ChunkedFramer, RejectsBareLfInTrailers) {
  ChunkedFramer f;
  size_t used = 0;
  EXPECT_EQ(f.consume("0\r\nT: v\n\r\n", used), ChunkedFramer::Status::kError);
  f.reset();
  EXPECT_EQ(f.consume("0\r\n\n", used), ChunkedFramer::Status::kError);
  f.reset();
  EXPECT_EQ(f.consume("0\r\n\rX", used), ChunkedFramer::Status::kError);
}

TEST(ChunkedFramer, RejectsOversizeChunkSize) {
  ChunkedFramer f;
  size_t used = 0;
  EXPECT_EQ(f.consume("10000000000000000\r\n", used), ChunkedFramer::Status::kError);  // 2^64: 17 digits
  f.reset();
  EXPECT_EQ(f.consume("ffffffffffffffff\r\n", used), ChunkedFramer::Status::kError);  // 16 digits
  f.reset();
  EXPECT_EQ(f.consume("fffffffffffffff\r\n", used), ChunkedFramer::Status::kMore);  // 15 digits: large but allowed
}

}  // namespace
}  // namespace berth::proxy::http::h1
