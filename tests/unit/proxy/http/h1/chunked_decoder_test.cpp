// Unit tests for the streaming chunked-body decoder and the chunk encoder: every split point of
// sample bodies, malformed and over-limit input, and a round trip through the encoder.
#include "proxy/http/h1/chunked_decoder.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/http/h1/parser.h"

namespace berth::proxy::http::h1 {
namespace {

using namespace std::string_view_literals;
using Status = ChunkedDecoder::Status;

struct Decoded {
  Status status = Status::kNeedMore;
  std::string payload;
  size_t consumed = 0;  ///< bytes of the input the body took (for kDone) or that were used before kError
  std::string error;
};

// Feeds `pieces` in order, the way a reader would; stops at kDone or kError.
Decoded decode_pieces(const std::vector<std::string_view>& pieces, ChunkedLimits limits = {}) {
  ChunkedDecoder decoder(limits);
  Decoded out;
  for (std::string_view piece : pieces) {
    std::string_view in = piece;
    while (true) {
      size_t used = 0;
      std::string_view data;
      out.status = decoder.decode(in, used, data);
      EXPECT_LE(used, in.size());
      out.consumed += used;
      if (out.status == Status::kData) {
        EXPECT_FALSE(data.empty());
        // The payload is a view into the input, not a copy.
        EXPECT_GE(data.data(), in.data());
        EXPECT_LE(data.data() + data.size(), in.data() + used);
        out.payload.append(data);
        in.remove_prefix(used);
        continue;
      }
      if (out.status == Status::kNeedMore) {
        EXPECT_EQ(used, in.size());
      }
      break;
    }
    if (out.status == Status::kDone || out.status == Status::kError) break;
  }
  out.error = std::string(decoder.error());
  return out;
}

Decoded decode_whole(std::string_view body, ChunkedLimits limits = {}) { return decode_pieces({body}, limits); }

// Bodies that decode to `payload`, with features worth splitting inside.
struct Sample {
  std::string_view body;
  std::string_view payload;
};
const Sample kSamples[] = {
    {"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world"},
    {"0\r\n\r\n", ""},
    {"1a;name=value;quoted=\"a;b\"\r\nabcdefghijklmnopqrstuvwxyz\r\n0;last\r\n\r\n", "abcdefghijklmnopqrstuvwxyz"},
    {"A\r\n0123456789\r\n00000003\r\nxyz\r\n0\r\nExpires: never\r\nX-Checksum:  abc \r\n\r\n", "0123456789xyz"},
    {"3 ;ext\r\n\r\n\n\r\n2\t\r\nab\r\n0\r\n\r\n", "\r\n\nab"},
};

TEST(ChunkedDecoder, DecodesWholeBodies) {
  for (const auto& s : kSamples) {
    SCOPED_TRACE(s.body);
    Decoded d = decode_whole(s.body);
    EXPECT_EQ(d.status, Status::kDone) << d.error;
    EXPECT_EQ(d.payload, s.payload);
    EXPECT_EQ(d.consumed, s.body.size());
  }
}

TEST(ChunkedDecoder, DecodesEveryTwoWaySplit) {
  for (const auto& s : kSamples) {
    for (size_t cut = 0; cut <= s.body.size(); ++cut) {
      SCOPED_TRACE(std::string(s.body) + " cut at " + std::to_string(cut));
      Decoded d = decode_pieces({s.body.substr(0, cut), s.body.substr(cut)});
      EXPECT_EQ(d.status, Status::kDone) << d.error;
      EXPECT_EQ(d.payload, s.payload);
      EXPECT_EQ(d.consumed, s.body.size());
    }
  }
}

TEST(ChunkedDecoder, DecodesEveryThreeWaySplit) {
  for (const auto& s : kSamples) {
    for (size_t a = 0; a <= s.body.size(); ++a) {
      for (size_t b = a; b <= s.body.size(); ++b) {
        Decoded d = decode_pieces({s.body.substr(0, a), s.body.substr(a, b - a), s.body.substr(b)});
        ASSERT_EQ(d.status, Status::kDone) << s.body << " cut at " << a << "," << b << ": " << d.error;
        ASSERT_EQ(d.payload, s.payload) << s.body << " cut at " << a << "," << b;
      }
    }
  }
}

TEST(ChunkedDecoder, DecodesOneByteAtATime) {
  for (const auto& s : kSamples) {
    std::vector<std::string_view> bytes;
    for (size_t i = 0; i < s.body.size(); ++i) bytes.push_back(s.body.substr(i, 1));
    Decoded d = decode_pieces(bytes);
    EXPECT_EQ(d.status, Status::kDone) << s.body << ": " << d.error;
    EXPECT_EQ(d.payload, s.payload);
  }
}

TEST(ChunkedDecoder, AgreesWithTheFramerOnWhereTheBodyEnds) {
  for (const auto& s : kSamples) {
    std::string stream = std::string(s.body) + "GET /next HTTP/1.1\r\n";
    ChunkedFramer framer;
    size_t framed = 0;
    ASSERT_EQ(framer.consume(stream, framed), ChunkedFramer::Status::kDone) << s.body;
    Decoded d = decode_whole(stream);
    EXPECT_EQ(d.status, Status::kDone);
    EXPECT_EQ(d.consumed, framed) << s.body;
  }
}

TEST(ChunkedDecoder, StopsAtTheEndOfTheBodyAndLeavesWhatFollows) {
  std::string_view stream = "3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n";
  Decoded d = decode_whole(stream);
  EXPECT_EQ(d.status, Status::kDone);
  EXPECT_EQ(d.payload, "abc");
  EXPECT_EQ(stream.substr(d.consumed), "HTTP/1.1 200 OK\r\n");
}

TEST(ChunkedDecoder, KeepsAnsweringDoneAfterTheEnd) {
  ChunkedDecoder decoder;
  size_t used = 0;
  std::string_view data;
  ASSERT_EQ(decoder.decode("0\r\n\r\n", used, data), Status::kDone);
  EXPECT_TRUE(decoder.is_done());
  EXPECT_EQ(decoder.decode("more", used, data), Status::kDone);
  EXPECT_EQ(used, 0u);
  EXPECT_TRUE(data.empty());
  EXPECT_EQ(decoder.decode("", used, data), Status::kDone);
}

TEST(ChunkedDecoder, EmptyInputNeedsMore) {
  ChunkedDecoder decoder;
  size_t used = 7;
  std::string_view data;
  EXPECT_EQ(decoder.decode("", used, data), Status::kNeedMore);
  EXPECT_EQ(used, 0u);
}

TEST(ChunkedDecoder, YieldsLargeChunksInPiecesAsTheyArrive) {
  std::string payload(100000, 'x');
  std::string body;
  append_chunk(body, payload);
  append_last_chunk(body);
  std::vector<std::string_view> pieces;
  for (size_t i = 0; i < body.size(); i += 1000) pieces.push_back(std::string_view(body).substr(i, 1000));
  Decoded d = decode_pieces(pieces);
  EXPECT_EQ(d.status, Status::kDone);
  EXPECT_EQ(d.payload, payload);
}

TEST(ChunkedDecoder, ResetStartsANewMessage) {
  ChunkedDecoder decoder;
  size_t used = 0;
  std::string_view data;
  ASSERT_EQ(decoder.decode("x", used, data), Status::kError);
  decoder.reset();
  EXPECT_TRUE(decoder.error().empty());
  ASSERT_EQ(decoder.decode("1\r\n", used, data), Status::kNeedMore);
  ASSERT_EQ(decoder.decode("z", used, data), Status::kData);
  EXPECT_EQ(data, "z");
}

// ---- malformed input ---------------------------------------------------------------------------

TEST(ChunkedDecoder, RejectsMalformedFraming) {
  const std::string_view bad[] = {
      "\r\n",                               // no size
      "g\r\n",                              // not hex
      "-1\r\n",                             // sign
      "+1\r\nx\r\n0\r\n\r\n",               // sign
      "0x5\r\nhello\r\n0\r\n\r\n",          // C prefix
      " 5\r\nhello\r\n0\r\n\r\n",           // leading whitespace
      "5\nhello\r\n0\r\n\r\n",              // bare LF after size
      "5\r\r\nhello\r\n0\r\n\r\n",          // CR CR
      "5 x\r\nhello\r\n0\r\n\r\n",          // junk after whitespace
      "5;a\nb\r\nhello\r\n0\r\n\r\n",       // bare LF in an extension
      "5;a\x01\r\nhello\r\n0\r\n\r\n",      // control character in an extension
      "5\r\nhelloX\r\n0\r\n\r\n",           // chunk longer than its size
      "5\r\nhello\n0\r\n\r\n",              // bare LF after data
      "5\r\nhello\r0\r\n\r\n",              // CR without LF after data
      "5\r\nhello\r\n0\r\n\n",              // bare LF at the end
      "0\r\n\r\r",                          // CR CR at the end
      "0\r\n: value\r\n\r\n",               // trailer without a name
      "0\r\n folded\r\n\r\n",               // obs-fold in trailers
      "0\r\nName value\r\n\r\n",            // trailer without a colon
      "0\r\nName : value\r\n\r\n",          // whitespace before the colon
      "0\r\nName: a\x7f\r\n\r\n",           // control character in a trailer value
      "0\r\nName: a\nb\r\n\r\n",            // bare LF in a trailer
      "0\r\nName: a\r\r\n\r\n",             // CR CR in a trailer
  };
  for (std::string_view body : bad) {
    SCOPED_TRACE(body);
    Decoded d = decode_whole(body);
    EXPECT_EQ(d.status, Status::kError);
    EXPECT_FALSE(d.error.empty());
    // The same verdict whatever the split.
    for (size_t cut = 0; cut <= body.size(); ++cut)
      EXPECT_EQ(decode_pieces({body.substr(0, cut), body.substr(cut)}).status, Status::kError) << "cut " << cut;
  }
}

TEST(ChunkedDecoder, ErrorIsStickyAndPointsAtTheOffendingByte) {
  ChunkedDecoder decoder;
  size_t used = 0;
  std::string_view data;
  ASSERT_EQ(decoder.decode("5\r\nhello\r\nZ", used, data), Status::kData);
  EXPECT_EQ(decoder.decode("\r\nZ", used, data), Status::kError);
  EXPECT_EQ(used, 2u);
  EXPECT_EQ(decoder.error(), "chunk size is not a hex number");
  EXPECT_EQ(decoder.decode("0\r\n\r\n", used, data), Status::kError);
  EXPECT_EQ(used, 0u);
}

TEST(ChunkedDecoder, RejectsChunkSizesThatWouldOverflow) {
  // 2^64 and beyond must not wrap around to a small size.
  EXPECT_EQ(decode_whole("10000000000000000\r\n").status, Status::kError);
  EXPECT_EQ(decode_whole("ffffffffffffffff\r\n").status, Status::kError);
  EXPECT_EQ(decode_whole("1000000000000000000000000005\r\nhello\r\n0\r\n\r\n").status, Status::kError);
  Decoded d = decode_whole("ffffffffffffffffff");
  EXPECT_EQ(d.status, Status::kError);
  EXPECT_EQ(d.error, "chunk size too large");
  // Even with no limit of its own, the decoder refuses what does not fit in 64 bits.
  ChunkedLimits unbounded;
  unbounded.max_chunk_size = UINT64_MAX;
  EXPECT_EQ(decode_whole("ffffffffffffffff\r\n", unbounded).status, Status::kNeedMore);
  EXPECT_EQ(decode_whole("10000000000000000\r\n", unbounded).status, Status::kError);
}

TEST(ChunkedDecoder, AcceptsLeadingZerosWithinTheLineLimit) {
  std::string body = std::string(30, '0') + "3\r\nabc\r\n0\r\n\r\n";
  Decoded d = decode_whole(body);
  EXPECT_EQ(d.status, Status::kDone);
  EXPECT_EQ(d.payload, "abc");
}

TEST(ChunkedDecoder, EnforcesTheChunkSizeLimit) {
  ChunkedLimits limits;
  limits.max_chunk_size = 16;
  EXPECT_EQ(decode_whole("10\r\n0123456789abcdef\r\n0\r\n\r\n", limits).status, Status::kDone);
  Decoded d = decode_whole("11\r\n", limits);
  EXPECT_EQ(d.status, Status::kError);
  EXPECT_EQ(d.error, "chunk size too large");
  limits.max_chunk_size = 0;
  EXPECT_EQ(decode_whole("0\r\n\r\n", limits).status, Status::kDone);
  EXPECT_EQ(decode_whole("1\r\n", limits).status, Status::kError);
}

TEST(ChunkedDecoder, EnforcesTheSizeLineLimit) {
  ChunkedLimits limits;
  limits.max_line = 16;
  std::string ok = "5;" + std::string(14, 'e') + "\r\nhello\r\n0\r\n\r\n";  // 16 bytes before CRLF
  EXPECT_EQ(decode_whole(ok, limits).status, Status::kDone);
  std::string long_ext = "5;" + std::string(15, 'e') + "\r\nhello\r\n0\r\n\r\n";
  Decoded d = decode_whole(long_ext, limits);
  EXPECT_EQ(d.status, Status::kError);
  EXPECT_EQ(d.error, "chunk size line too long");
  EXPECT_EQ(decode_whole(std::string(17, '0'), limits).status, Status::kError);
  EXPECT_EQ(decode_whole("5" + std::string(16, ' '), limits).status, Status::kError);
  // Without a line end the line is refused once it passes the limit, not buffered forever.
  Decoded endless = decode_pieces({"5;", std::string(1000, 'e'), std::string(1000, 'e')}, limits);
  EXPECT_EQ(endless.status, Status::kError);
}

TEST(ChunkedDecoder, EnforcesTheTrailerLimit) {
  ChunkedLimits limits;
  limits.max_trailers = 20;
  EXPECT_EQ(decode_whole("0\r\nA: 1\r\nB: 2\r\n\r\n", limits).status, Status::kDone);
  Decoded d = decode_whole("0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", limits);
  EXPECT_EQ(d.status, Status::kError);
  EXPECT_EQ(d.error, "trailer section too long");
}

// ---- encoder -----------------------------------------------------------------------------------

TEST(ChunkEncoder, WritesHexSizeDataAndCrlf) {
  std::string out = "prefix:";
  append_chunk(out, "hello");
  EXPECT_EQ(out, "prefix:5\r\nhello\r\n");
  out.clear();
  append_chunk(out, std::string(255, 'a'));
  EXPECT_EQ(out.substr(0, 4), "ff\r\n");
  EXPECT_EQ(out.size(), 4u + 255u + 2u);
  out.clear();
  append_chunk(out, std::string(4096, 'a'));
  EXPECT_EQ(out.substr(0, 6), "1000\r\n");
}

TEST(ChunkEncoder, SkipsEmptyDataSoTheBodyDoesNotEnd) {
  std::string out;
  append_chunk(out, "");
  EXPECT_EQ(out, "");
  append_last_chunk(out);
  EXPECT_EQ(out, "0\r\n\r\n");
}

TEST(ChunkEncoder, DoesNotReallocateWhenTheCallerReserved) {
  std::string out;
  out.reserve(256);
  const char* before = out.data();
  append_chunk(out, "abc");
  append_chunk(out, std::string_view("0123456789", 10));
  append_last_chunk(out);
  EXPECT_EQ(out.data(), before);
}

TEST(ChunkedRoundTrip, DecodesWhatTheEncoderWrote) {
  std::mt19937 rng(12345);
  for (int round = 0; round < 50; ++round) {
    std::string payload(std::uniform_int_distribution<size_t>(0, 5000)(rng), '\0');
    for (auto& c : payload) c = static_cast<char>(rng());  // binary, CRLFs included
    std::string body;
    for (size_t pos = 0; pos < payload.size();) {
      size_t len = std::min(payload.size() - pos, std::uniform_int_distribution<size_t>(1, 700)(rng));
      append_chunk(body, std::string_view(payload).substr(pos, len));
      pos += len;
    }
    append_last_chunk(body);
    std::vector<std::string_view> pieces;
    for (size_t pos = 0; pos < body.size();) {
      size_t len = std::min(body.size() - pos, std::uniform_int_distribution<size_t>(1, 300)(rng));
      pieces.push_back(std::string_view(body).substr(pos, len));
      pos += len;
    }
    Decoded d = decode_pieces(pieces);
    ASSERT_EQ(d.status, Status::kDone) << "round " << round << ": " << d.error;
    ASSERT_EQ(d.payload, payload) << "round " << round;
    ASSERT_EQ(d.consumed, body.size());
  }
}

}  // namespace
}  // namespace berth::proxy::http::h1
