// Unit tests for response compression: Accept-Encoding negotiation, the content-type filter, and
// gzip/br/zstd streams checked by decoding them with each codec's own decoder.
#include "proxy/http/compressor.h"

#include <brotli/decode.h>
#include <gtest/gtest.h>
#include <zlib.h>
#include <zstd.h>

#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace berth::proxy::http {
namespace {

Encoding choose(std::optional<std::string_view> header, const EncodingPolicy& policy = {}) {
  return choose_encoding(header, policy);
}

EncodingPolicy policy(const std::vector<std::string>& encodings, std::string_view default_encoding = "") {
  auto p = make_encoding_policy(encodings, default_encoding);
  EXPECT_TRUE(p.ok()) << p.error().to_string();
  return p.ok() ? *p : EncodingPolicy{};
}

TEST(AcceptEncoding, PrefersHigherQValue) {
  EXPECT_EQ(choose("gzip;q=0.5, br;q=0.8, zstd;q=0.1"), Encoding::kBrotli);
  EXPECT_EQ(choose("gzip;q=0.501, br;q=0.5"), Encoding::kGzip);  // three decimals count
}

TEST(AcceptEncoding, BreaksTiesByServerOrder) {
  EXPECT_EQ(choose("zstd, br, gzip"), Encoding::kGzip);
  EXPECT_EQ(choose("gzip, br, zstd", policy({"zstd", "br", "gzip"})), Encoding::kZstd);
  EXPECT_EQ(choose("gzip;q=0.5, br;q=0.5, zstd;q=0.4", policy({"br", "gzip"})), Encoding::kBrotli);
}

TEST(AcceptEncoding, QZeroMeansNotAcceptable) {
  EXPECT_EQ(choose("gzip;q=0, br"), Encoding::kBrotli);
  EXPECT_EQ(choose("gzip;q=0"), Encoding::kIdentity);
  EXPECT_EQ(choose("gzip;q=0.000, br;q=0."), Encoding::kIdentity);
}

TEST(AcceptEncoding, WildcardCoversUnlistedCodings) {
  EXPECT_EQ(choose("*"), Encoding::kGzip);
  EXPECT_EQ(choose("gzip;q=0, *"), Encoding::kBrotli);
  EXPECT_EQ(choose("*;q=0.5, zstd;q=0.6"), Encoding::kZstd);
  EXPECT_EQ(choose("*;q=0"), Encoding::kIdentity);
  EXPECT_EQ(choose("*;q=0, br"), Encoding::kBrotli);
}

TEST(AcceptEncoding, WildcardAtTheTopPicksTheDefaultEncoding) {
  EncodingPolicy p = policy({}, "zstd");
  EXPECT_EQ(choose("*", p), Encoding::kZstd);
  EXPECT_EQ(choose("gzip, *", p), Encoding::kZstd);
  EXPECT_EQ(choose("gzip, *;q=0.5", p), Encoding::kGzip);
  EXPECT_EQ(choose("zstd;q=0.2, *", p), Encoding::kGzip);  // the client ranked it lower
  EXPECT_EQ(choose("gzip, br", p), Encoding::kGzip);       // no `*`: server order
}

TEST(AcceptEncoding, IdentityWinsOnlyWhenPreferred) {
  EXPECT_EQ(choose("identity, gzip;q=0.5"), Encoding::kIdentity);
  EXPECT_EQ(choose("identity, gzip"), Encoding::kGzip);
  EXPECT_EQ(choose("identity;q=0, gzip"), Encoding::kGzip);
  EXPECT_EQ(choose("identity;q=0"), Encoding::kIdentity);  // nothing acceptable: send as is
  EXPECT_EQ(choose("identity"), Encoding::kIdentity);
}

TEST(AcceptEncoding, AbsentHeaderUsesTheDefaultEncoding) {
  EXPECT_EQ(choose(std::nullopt), Encoding::kIdentity);
  EXPECT_EQ(choose(std::nullopt, policy({"gzip", "br"}, "br")), Encoding::kBrotli);
}

TEST(AcceptEncoding, EmptyHeaderMeansIdentity) {
  EXPECT_EQ(choose("", policy({"gzip", "br"}, "br")), Encoding::kIdentity);
  EXPECT_EQ(choose(" , ,", policy({"gzip", "br"}, "br")), Encoding::kIdentity);
}

TEST(AcceptEncoding, IgnoresCaseAndWhitespace) {
  EXPECT_EQ(choose(" GZip ; Q=0.5 ,\tBR;q=0.4 "), Encoding::kGzip);
  EXPECT_EQ(choose("ZSTD"), Encoding::kZstd);
  EXPECT_EQ(choose("x-gzip"), Encoding::kGzip);
}

TEST(AcceptEncoding, SkipsElementsWithMalformedQ) {
  EXPECT_EQ(choose("br;q=1.5, gzip;q=0.1"), Encoding::kGzip);
  EXPECT_EQ(choose("br;q=abc, gzip;q=0.1"), Encoding::kGzip);
  EXPECT_EQ(choose("br;q=0.1234, gzip;q=0.1"), Encoding::kGzip);
  EXPECT_EQ(choose("br;q=.5, gzip;q=0.1"), Encoding::kGzip);
  EXPECT_EQ(choose("br;q, gzip;q=0.1"), Encoding::kGzip);
  EXPECT_EQ(choose("br;q=1.001, gzip;q=0.1"), Encoding::kGzip);
  EXPECT_EQ(choose("br;q=-1"), Encoding::kIdentity);
  EXPECT_EQ(choose("br;q=1.000, gzip;q=0.1"), Encoding::kBrotli);
  EXPECT_EQ(choose("br;;q=1"), Encoding::kBrotli);  // an empty parameter is harmless
}

TEST(AcceptEncoding, IgnoresCodingsItCannotProduce) {
  EXPECT_EQ(choose("deflate, compress, br;q=0.1"), Encoding::kBrotli);
  EXPECT_EQ(choose("deflate"), Encoding::kIdentity);
  EXPECT_EQ(choose("gzip, br", policy({"zstd"})), Encoding::kIdentity);
}

TEST(AcceptEncoding, FoldsSeveralHeaderLines) {
  AcceptEncoding accept;
  accept.add("gzip;q=0.2");
  accept.add("br");
  EXPECT_EQ(accept.choose({}), Encoding::kBrotli);
  accept.add("gzip");  // listed twice: the higher q stands
  EXPECT_EQ(accept.choose({}), Encoding::kGzip);
}

TEST(EncodingPolicy, DefaultsToGzipBrZstd) {
  EncodingPolicy p = policy({});
  ASSERT_EQ(p.count, 3);
  EXPECT_EQ(p.preferred[0], Encoding::kGzip);
  EXPECT_EQ(p.preferred[1], Encoding::kBrotli);
  EXPECT_EQ(p.preferred[2], Encoding::kZstd);
  EXPECT_EQ(p.default_encoding, Encoding::kIdentity);
}

TEST(EncodingPolicy, KeepsTheConfiguredOrder) {
  EncodingPolicy p = policy({"zstd", "BR", "zstd"}, "br");
  ASSERT_EQ(p.count, 2);
  EXPECT_EQ(p.preferred[0], Encoding::kZstd);
  EXPECT_EQ(p.preferred[1], Encoding::kBrotli);
  EXPECT_EQ(p.default_encoding, Encoding::kBrotli);
}

TEST(EncodingPolicy, RejectsUnknownEncodingsAndADisabledDefault) {
  EXPECT_FALSE(make_encoding_policy({"deflate"}, "").ok());
  EXPECT_FALSE(make_encoding_policy({"identity"}, "").ok());
  EXPECT_FALSE(make_encoding_policy({"gzip"}, "br").ok());
  EXPECT_FALSE(make_encoding_policy({}, "compress").ok());
}

TEST(EncodingPolicy, NamesEncodingsAsContentEncodingDoes) {
  EXPECT_EQ(encoding_name(Encoding::kGzip), "gzip");
  EXPECT_EQ(encoding_name(Encoding::kBrotli), "br");
  EXPECT_EQ(encoding_name(Encoding::kZstd), "zstd");
  EXPECT_EQ(encoding_name(Encoding::kIdentity), "identity");
}

ContentTypeFilter filter(const std::vector<std::string>& excluded, const std::vector<std::string>& included) {
  auto f = make_content_type_filter(excluded, included);
  EXPECT_TRUE(f.ok()) << f.error().to_string();
  return f.ok() ? *f : ContentTypeFilter{};
}

TEST(ContentTypeFilter, ExcludesListedTypesIgnoringCaseAndParameters) {
  ContentTypeFilter f = filter({" Application/JSON ; charset=utf-8", "image/png"}, {});
  EXPECT_FALSE(compressible("application/json", f));
  EXPECT_FALSE(compressible("APPLICATION/json; charset=utf-8", f));
  EXPECT_FALSE(compressible(" image/png ", f));
  EXPECT_TRUE(compressible("text/html; charset=utf-8", f));
}

TEST(ContentTypeFilter, IncludedTypesAreTheOnlyOnesCompressed) {
  ContentTypeFilter f = filter({}, {"text/html", "application/json"});
  EXPECT_TRUE(compressible("text/HTML;charset=utf-8", f));
  EXPECT_TRUE(compressible("application/json", f));
  EXPECT_FALSE(compressible("text/plain", f));
  EXPECT_FALSE(compressible("application/json-patch", f));
}

TEST(ContentTypeFilter, NeverCompressesGrpcOrEventStreams) {
  ContentTypeFilter all;
  EXPECT_FALSE(compressible("application/grpc", all));
  EXPECT_FALSE(compressible("application/GRPC+proto", all));
  EXPECT_FALSE(compressible("text/event-stream; charset=utf-8", all));
  EXPECT_TRUE(compressible("application/grpc-web-text", all));
  EXPECT_FALSE(compressible("text/event-stream", filter({}, {"text/event-stream"})));
}

TEST(ContentTypeFilter, AbsentTypeIsCompressible) {
  EXPECT_TRUE(compressible("", ContentTypeFilter{}));
  EXPECT_TRUE(compressible(" ", filter({}, {"text/html"})));
}

TEST(ContentTypeFilter, RejectsBothListsAndMalformedTypes) {
  EXPECT_FALSE(make_content_type_filter({"text/html"}, {"text/plain"}).ok());
  EXPECT_FALSE(make_content_type_filter({"json"}, {}).ok());
  EXPECT_FALSE(make_content_type_filter({}, {"/json"}).ok());
  EXPECT_FALSE(make_content_type_filter({"text/"}, {}).ok());
}

// --- Streams ---

struct Decoded {
  std::string data;
  bool complete = false;  // the stream's end marker was seen
  bool error = false;
  size_t trailing = 0;    // bytes after the end marker
};

Decoded gunzip(std::string_view in) {
  Decoded d;
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) return {.data = "", .error = true};  // gzip framing only
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = uInt(in.size());
  for (;;) {
    char buf[4096];
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    int rc = inflate(&z, Z_SYNC_FLUSH);
    d.data.append(buf, sizeof buf - z.avail_out);
    if (rc == Z_STREAM_END) {
      d.complete = true;
      d.trailing = z.avail_in;
      break;
    }
    if (rc == Z_BUF_ERROR || (rc == Z_OK && z.avail_in == 0 && z.avail_out != 0)) break;  // wants input
    if (rc != Z_OK) {
      d.error = true;
      break;
    }
  }
  inflateEnd(&z);
  return d;
}

Decoded unbrotli(std::string_view in) {
  Decoded d;
  BrotliDecoderState* s = BrotliDecoderCreateInstance(nullptr, nullptr, nullptr);
  size_t avail_in = in.size();
  auto* next_in = reinterpret_cast<const uint8_t*>(in.data());
  for (;;) {
    uint8_t buf[4096];
    size_t avail_out = sizeof buf;
    uint8_t* next_out = buf;
    auto r = BrotliDecoderDecompressStream(s, &avail_in, &next_in, &avail_out, &next_out, nullptr);
    d.data.append(reinterpret_cast<char*>(buf), sizeof buf - avail_out);
    if (r == BROTLI_DECODER_RESULT_SUCCESS) {
      d.complete = true;
      d.trailing = avail_in;
      break;
    }
    // It may ask for input while still holding decoded bytes.
    if (r == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT && !BrotliDecoderHasMoreOutput(s)) break;
    if (r == BROTLI_DECODER_RESULT_ERROR) {
      d.error = true;
      break;
    }
  }
  BrotliDecoderDestroyInstance(s);
  return d;
}

Decoded unzstd(std::string_view in) {
  Decoded d;
  ZSTD_DStream* s = ZSTD_createDStream();
  ZSTD_inBuffer src{in.data(), in.size(), 0};
  for (;;) {
    char buf[4096];
    ZSTD_outBuffer dst{buf, sizeof buf, 0};
    size_t rc = ZSTD_decompressStream(s, &dst, &src);
    if (ZSTD_isError(rc)) {
      d.error = true;
      break;
    }
    d.data.append(buf, dst.pos);
    if (rc == 0) {
      d.complete = true;
      d.trailing = src.size - src.pos;
      break;
    }
    if (src.pos == src.size && dst.pos < dst.size) break;  // all decodable output is out
  }
  ZSTD_freeDStream(s);
  return d;
}

Decoded decode(Encoding e, std::string_view in) {
  switch (e) {
    case Encoding::kGzip: return gunzip(in);
    case Encoding::kBrotli: return unbrotli(in);
    case Encoding::kZstd: return unzstd(in);
    case Encoding::kIdentity: break;
  }
  return {.data = std::string(in), .complete = true};
}

// Text-like bytes that compress, then a stretch of noise that does not.
std::string sample_body(size_t size, uint32_t seed = 7) {
  static constexpr std::string_view kWords[] = {"<div class=\"item\">", "</div>\n", "alpha ", "beta ",
                                               "\"name\": ", "12345, ", "gamma delta ", "\t"};
  std::mt19937 rng(seed);
  std::string s;
  while (s.size() < size * 3 / 4) s += kWords[rng() % std::size(kWords)];
  while (s.size() < size) s += char(rng());
  s.resize(size);
  return s;
}

using Call = Result<Compressor::Progress> (Compressor::*)(std::string_view, std::span<char>);

// Runs one call to completion the way the response relay does: a fixed buffer, again while `more`.
void drive(Compressor& c, Call call, std::string_view in, size_t buffer_size, std::string& out) {
  std::vector<char> buffer(buffer_size);
  for (int calls = 0;; ++calls) {
    auto p = (c.*call)(in, buffer);
    ASSERT_TRUE(p.ok()) << p.error().to_string();
    ASSERT_LE(p->consumed, in.size());
    ASSERT_LE(p->written, buffer.size());
    out.append(buffer.data(), p->written);
    in.remove_prefix(p->consumed);
    if (!p->more) break;
    ASSERT_LT(calls, 10'000'000) << "the loop does not end";
  }
  EXPECT_TRUE(in.empty());
}

std::string compress_whole(Compressor& c, Encoding e, std::string_view body, size_t buffer_size = 32 * 1024) {
  EXPECT_TRUE(c.reset(e).ok());
  std::string out;
  drive(c, &Compressor::finish, body, buffer_size, out);
  return out;
}

class CompressorStream : public ::testing::TestWithParam<Encoding> {};

TEST_P(CompressorStream, RoundTripsAMultiChunkStreamWithAFlushInTheMiddle) {
  const Encoding e = GetParam();
  const std::string body = sample_body(300 * 1024);
  const size_t cuts[] = {0, 1, 10, 5000, 70'000, 150'000, 150'001, 240'000, body.size()};
  const size_t flush_after = 150'000;  // a cut point

  Compressor c;
  ASSERT_TRUE(c.reset(e).ok());
  EXPECT_EQ(c.encoding(), e);
  std::string out;
  for (size_t i = 0; i + 1 < std::size(cuts); ++i) {
    std::string_view chunk = std::string_view(body).substr(cuts[i], cuts[i + 1] - cuts[i]);
    ASSERT_NO_FATAL_FAILURE(drive(c, &Compressor::write, chunk, 100, out));
    if (cuts[i + 1] == flush_after) {
      ASSERT_NO_FATAL_FAILURE(drive(c, &Compressor::flush, "", 100, out));
      Decoded prefix = decode(e, out);
      EXPECT_FALSE(prefix.error);
      EXPECT_FALSE(prefix.complete);
      EXPECT_TRUE(prefix.data == body.substr(0, flush_after)) << "decoded " << prefix.data.size() << " bytes";
    }
  }
  ASSERT_NO_FATAL_FAILURE(drive(c, &Compressor::finish, "", 100, out));
  Decoded whole = decode(e, out);
  EXPECT_FALSE(whole.error);
  EXPECT_TRUE(whole.complete);
  EXPECT_EQ(whole.trailing, 0u);
  EXPECT_TRUE(whole.data == body);
  EXPECT_LT(out.size(), body.size() / 2);
}

TEST_P(CompressorStream, EachFlushDeliversEverythingWrittenSoFar) {
  const Encoding e = GetParam();
  Compressor c;
  ASSERT_TRUE(c.reset(e).ok());
  std::string out, sent;
  for (int i = 0; i < 5; ++i) {
    std::string event = "data: {\"tick\": " + std::to_string(i) + "}\n\n";
    sent += event;
    ASSERT_NO_FATAL_FAILURE(drive(c, &Compressor::flush, event, kMinOutputSize, out));
    Decoded d = decode(e, out);
    EXPECT_FALSE(d.error);
    EXPECT_EQ(d.data, sent);
  }
  ASSERT_NO_FATAL_FAILURE(drive(c, &Compressor::flush, "", kMinOutputSize, out));  // a flush with nothing new
  ASSERT_NO_FATAL_FAILURE(drive(c, &Compressor::finish, "", kMinOutputSize, out));
  Decoded d = decode(e, out);
  EXPECT_TRUE(d.complete);
  EXPECT_EQ(d.data, sent);
}

TEST_P(CompressorStream, FinishTakesTheWholeBodyThroughASmallBuffer) {
  const Encoding e = GetParam();
  std::mt19937 rng(3);
  std::string noise(100 * 1024, '\0');
  for (auto& ch : noise) ch = char(rng());
  Compressor c;
  std::string out = compress_whole(c, e, noise, kMinOutputSize);
  Decoded d = decode(e, out);
  EXPECT_TRUE(d.complete);
  EXPECT_TRUE(d.data == noise);
}

TEST_P(CompressorStream, EmptyBodyIsAValidStream) {
  const Encoding e = GetParam();
  Compressor c;
  std::string out = compress_whole(c, e, "");
  EXPECT_FALSE(out.empty());
  Decoded d = decode(e, out);
  EXPECT_TRUE(d.complete);
  EXPECT_EQ(d.data, "");
}

TEST_P(CompressorStream, ResetStartsAFreshStream) {
  const Encoding e = GetParam();
  const std::string first = sample_body(50'000, 1), second = sample_body(70'000, 2);
  Compressor c;
  std::string a = compress_whole(c, e, first);

  // Abandon a stream half way, as when a client goes away.
  ASSERT_TRUE(c.reset(e).ok());
  std::string dropped;
  drive(c, &Compressor::write, second, 1000, dropped);

  std::string b = compress_whole(c, e, second);
  Decoded da = decode(e, a), db = decode(e, b);
  EXPECT_TRUE(da.complete && db.complete);
  EXPECT_TRUE(da.data == first);
  EXPECT_TRUE(db.data == second);
  EXPECT_EQ(compress_whole(c, e, first), a);  // a reused context makes the same bytes
}

TEST_P(CompressorStream, AcceptsAnyLevelByClamping) {
  const Encoding e = GetParam();
  const std::string body = sample_body(20'000);
  Compressor c;  // one context through changing levels
  for (int level : {-1000, 1, 9, 1000, 5}) {
    ASSERT_TRUE(c.reset(e, level).ok());
    std::string out;
    drive(c, &Compressor::finish, body, 4096, out);
    EXPECT_TRUE(decode(e, out).data == body) << "level " << level;
  }
}

INSTANTIATE_TEST_SUITE_P(Codecs, CompressorStream,
                         ::testing::Values(Encoding::kGzip, Encoding::kBrotli, Encoding::kZstd),
                         [](const auto& info) { return std::string(encoding_name(info.param)); });

TEST(Compressor, SwitchesEncodingsBetweenResponses) {
  const std::string body = sample_body(40'000);
  Compressor c;
  for (Encoding e : {Encoding::kGzip, Encoding::kBrotli, Encoding::kZstd, Encoding::kGzip, Encoding::kZstd,
                     Encoding::kBrotli, Encoding::kIdentity}) {
    std::string out = compress_whole(c, e, body, 1000);
    Decoded d = decode(e, out);
    EXPECT_TRUE(d.complete) << encoding_name(e);
    EXPECT_TRUE(d.data == body) << encoding_name(e);
  }
}

TEST(Compressor, IdentityCopiesBytesThrough) {
  Compressor c;
  ASSERT_TRUE(c.reset(Encoding::kIdentity).ok());
  std::string out;
  drive(c, &Compressor::write, "hello, ", 16, out);
  drive(c, &Compressor::finish, "world, in more than sixteen bytes", 16, out);
  EXPECT_EQ(out, "hello, world, in more than sixteen bytes");
}

TEST(Compressor, RefusesCallsOutsideAStream) {
  Compressor c;
  char buf[64];
  EXPECT_FALSE(c.write("x", buf).ok());  // no reset yet
  ASSERT_TRUE(c.reset(Encoding::kGzip).ok());
  EXPECT_FALSE(c.write("x", std::span(buf, kMinOutputSize - 1)).ok());
  std::string out;
  drive(c, &Compressor::finish, "x", sizeof buf, out);
  EXPECT_FALSE(c.write("y", buf).ok());
  EXPECT_FALSE(c.finish("", buf).ok());
  ASSERT_TRUE(c.reset(Encoding::kGzip).ok());
  EXPECT_TRUE(c.write("y", buf).ok());
}

TEST(Compressor, MovesMidStream) {
  const std::string body = sample_body(30'000);
  for (Encoding e : {Encoding::kGzip, Encoding::kBrotli, Encoding::kZstd}) {
    Compressor a;
    ASSERT_TRUE(a.reset(e).ok());
    std::string out;
    drive(a, &Compressor::write, std::string_view(body).substr(0, 10'000), 512, out);
    Compressor b = std::move(a);
    drive(b, &Compressor::finish, std::string_view(body).substr(10'000), 512, out);
    EXPECT_TRUE(decode(e, out).data == body) << encoding_name(e);
    char buf[64];
    EXPECT_FALSE(a.write("x", buf).ok());  // NOLINT(bugprone-use-after-move): the moved-from refuses
    EXPECT_TRUE(a.reset(e).ok());
  }
}

}  // namespace
}  // namespace berth::proxy::http
