// Encoding negotiation, the content-type filter and the streaming encoders; see compressor.h.
#include "proxy/http/compressor.h"

#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "base/text.h"

namespace berth::proxy::http {
namespace {

// Windows of 512 KiB: on web bodies the ratio is within 1% of the 4 MiB (brotli) and 2 MiB (zstd)
// defaults, while a zstd context holds ~2 MiB instead of ~3.5 MiB and a brotli encoder peaks at
// ~6 MiB instead of ~13 MiB on a 1 MiB body.
constexpr int kBrotliWindowLog = 19;
constexpr int kZstdWindowLog = 19;

// zlib counts bytes in uInt.
constexpr size_t kMaxZlibChunk = size_t{1} << 30;

std::optional<Encoding> parse_encoding(std::string_view name) {
  if (iequals(name, "gzip") || iequals(name, "x-gzip")) return Encoding::kGzip;
  if (iequals(name, "br")) return Encoding::kBrotli;
  if (iequals(name, "zstd")) return Encoding::kZstd;
  if (iequals(name, "identity")) return Encoding::kIdentity;
  return std::nullopt;
}

// RFC 9110 qvalue: "0" ["." 0*3DIGIT] / "1" ["." 0*3("0")], in thousandths.
std::optional<int16_t> parse_qvalue(std::string_view v) {
  if (v.empty() || v.size() > 5 || (v[0] != '0' && v[0] != '1')) return std::nullopt;
  int q = (v[0] - '0') * 1000;
  if (v.size() == 1) return int16_t(q);
  if (v[1] != '.') return std::nullopt;
  int scale = 100;
  for (char c : v.substr(2)) {
    if (c < '0' || c > '9') return std::nullopt;
    q += (c - '0') * scale;
    scale /= 10;
  }
  if (q > 1000) return std::nullopt;
  return int16_t(q);
}

// "Text/HTML ; charset=utf-8" -> "Text/HTML".
std::string_view media_type(std::string_view content_type) {
  return trim(content_type.substr(0, content_type.find(';')));
}

bool in_list(std::string_view type, const std::vector<std::string>& list) {
  return std::any_of(list.begin(), list.end(), [&](const std::string& t) { return iequals(type, t); });
}

}  // namespace

std::string_view encoding_name(Encoding e) {
  switch (e) {
    case Encoding::kGzip: return "gzip";
    case Encoding::kBrotli: return "br";
    case Encoding::kZstd: return "zstd";
    case Encoding::kIdentity: break;
  }
  return "identity";
}

Result<EncodingPolicy> make_encoding_policy(const std::vector<std::string>& encodings,
                                            std::string_view default_encoding) {
  EncodingPolicy policy;
  if (!encodings.empty()) {
    policy.count = 0;
    for (const auto& name : encodings) {
      auto e = parse_encoding(trim(name));
      if (!e || *e == Encoding::kIdentity) return Error{"", "unsupported encoding: " + name};
      auto used = policy.preferred.begin() + policy.count;
      if (std::find(policy.preferred.begin(), used, *e) == used) policy.preferred[policy.count++] = *e;
    }
  }
  default_encoding = trim(default_encoding);
  if (!default_encoding.empty()) {
    auto e = parse_encoding(default_encoding);
    auto used = policy.preferred.begin() + policy.count;
    if (!e || std::find(policy.preferred.begin(), used, *e) == used)
      return Error{"", "unsupported default encoding: " + std::string(default_encoding)};
    policy.default_encoding = *e;
  }
  return policy;
}

void AcceptEncoding::add(std::string_view field_value) {
  present_ = true;
  for (;;) {
    size_t comma = field_value.find(',');
    std::string_view element = field_value.substr(0, comma);
    size_t semi = element.find(';');
    std::string_view coding = trim(element.substr(0, semi));
    std::optional<size_t> slot;
    if (coding == "*") {
      slot = kStar;
    } else if (auto e = parse_encoding(coding)) {
      slot = size_t(*e);
    }
    bool valid = slot.has_value();  // codings berth does not produce are ignored
    int16_t q = 1000;
    while (valid && semi != std::string_view::npos) {
      element.remove_prefix(semi + 1);
      semi = element.find(';');
      std::string_view param = trim(element.substr(0, semi));
      if (param.empty()) continue;
      size_t eq = param.find('=');
      if (eq == std::string_view::npos) {
        valid = false;
      } else if (iequals(trim(param.substr(0, eq)), "q")) {
        auto v = parse_qvalue(trim(param.substr(eq + 1)));
        valid = v.has_value();
        q = v.value_or(0);
      }  // other parameters are not defined for codings: ignored
    }
    if (valid) q_[*slot] = std::max(q_[*slot], q);
    if (comma == std::string_view::npos) break;
    field_value.remove_prefix(comma + 1);
  }
}

Encoding AcceptEncoding::choose(const EncodingPolicy& policy) const {
  if (!present_) return policy.default_encoding;
  auto q = [&](Encoding e) -> int {
    int16_t v = q_[size_t(e)];
    return v != kUnlisted ? v : std::max<int>(q_[kStar], 0);
  };
  int best = 0;
  for (size_t i = 0; i < policy.count; ++i) best = std::max(best, q(policy.preferred[i]));
  if (best == 0 || q_[size_t(Encoding::kIdentity)] > best) return Encoding::kIdentity;
  // Traefik: `*` at the top picks the default encoding.
  if (policy.default_encoding != Encoding::kIdentity && q_[kStar] == best && q(policy.default_encoding) == best)
    return policy.default_encoding;
  for (size_t i = 0; i < policy.count; ++i)
    if (q(policy.preferred[i]) == best) return policy.preferred[i];
  return Encoding::kIdentity;
}

Encoding choose_encoding(std::optional<std::string_view> accept_encoding, const EncodingPolicy& policy) {
  AcceptEncoding accept;
  if (accept_encoding) accept.add(*accept_encoding);
  return accept.choose(policy);
}

Result<ContentTypeFilter> make_content_type_filter(const std::vector<std::string>& excluded,
                                                   const std::vector<std::string>& included) {
  if (!excluded.empty() && !included.empty())
    return Error{"", "excludedContentTypes and includedContentTypes are mutually exclusive"};
  ContentTypeFilter filter;
  for (auto [from, to] : {std::pair{&excluded, &filter.excluded}, std::pair{&included, &filter.included}}) {
    for (const auto& entry : *from) {
      std::string_view type = media_type(entry);
      size_t slash = type.find('/');
      if (slash == 0 || slash == std::string_view::npos || slash + 1 == type.size())
        return Error{"", "invalid media type: " + entry};
      to->push_back(to_lower(type));
    }
  }
  return filter;
}

bool compressible(std::string_view content_type, const ContentTypeFilter& filter) {
  std::string_view type = media_type(content_type);
  if (type.empty()) return true;
  // gRPC frames its own (optionally compressed) messages; server-sent events must not be buffered.
  constexpr std::string_view kGrpc = "application/grpc";
  if (iequals(type.substr(0, kGrpc.size()), kGrpc) && (type.size() == kGrpc.size() || type[kGrpc.size()] == '+'))
    return false;
  if (iequals(type, "text/event-stream")) return false;
  return filter.included.empty() ? !in_list(type, filter.excluded) : in_list(type, filter.included);
}

struct Compressor::Gzip {
  z_stream z{};
  int level = 0;
  ~Gzip() { deflateEnd(&z); }
};

// Brotli has no reset: an encoder serves one response and is freed as soon as it ends, since its
// buffers grow with the body (to ~6 MiB) and would otherwise stay held by an idle Compressor.
struct Compressor::Brotli {
  BrotliEncoderState* encoder = nullptr;
  void release() {
    if (encoder) BrotliEncoderDestroyInstance(std::exchange(encoder, nullptr));
  }
  ~Brotli() { release(); }
};

struct Compressor::Zstd {
  ZSTD_CStream* stream = ZSTD_createCStream();
  ~Zstd() { ZSTD_freeCStream(stream); }
};

Compressor::Compressor() = default;
Compressor::~Compressor() = default;
Compressor::Compressor(Compressor&& other) noexcept { *this = std::move(other); }

// The source keeps no stream, so a call on it fails instead of reaching a moved context.
Compressor& Compressor::operator=(Compressor&& other) noexcept {
  gzip_ = std::move(other.gzip_);
  brotli_ = std::move(other.brotli_);
  zstd_ = std::move(other.zstd_);
  encoding_ = other.encoding_;
  state_ = std::exchange(other.state_, State::kIdle);
  return *this;
}

Result<bool> Compressor::reset(Encoding e, std::optional<int> level) {
  state_ = State::kIdle;
  encoding_ = e;
  if (brotli_) brotli_->release();  // an abandoned brotli stream
  switch (e) {
    case Encoding::kIdentity:
      break;
    case Encoding::kGzip: {
      int l = std::clamp(level.value_or(kGzipLevel), 1, 9);
      // A new level rebuilds the context: deflateParams on a reset stream can write into the last
      // call's output buffer on zlib before 1.2.12.
      if (gzip_ && gzip_->level != l) gzip_.reset();
      if (!gzip_) {
        auto gzip = std::make_unique<Gzip>();
        // windowBits 15 + 16: the full 32 KiB window, framed with a gzip header and trailer.
        if (deflateInit2(&gzip->z, l, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
          return Error{"", "gzip: cannot create an encoder"};
        gzip->level = l;
        gzip_ = std::move(gzip);
      } else if (deflateReset(&gzip_->z) != Z_OK) {
        return Error{"", "gzip: cannot reset the encoder"};
      }
      break;
    }
    case Encoding::kBrotli: {
      if (!brotli_) brotli_ = std::make_unique<Brotli>();
      brotli_->encoder = BrotliEncoderCreateInstance(nullptr, nullptr, nullptr);
      if (!brotli_->encoder) return Error{"", "brotli: cannot create an encoder"};
      int quality = std::clamp(level.value_or(kBrotliQuality), BROTLI_MIN_QUALITY, BROTLI_MAX_QUALITY);
      BrotliEncoderSetParameter(brotli_->encoder, BROTLI_PARAM_QUALITY, uint32_t(quality));
      BrotliEncoderSetParameter(brotli_->encoder, BROTLI_PARAM_LGWIN, kBrotliWindowLog);
      break;
    }
    case Encoding::kZstd: {
      if (!zstd_) zstd_ = std::make_unique<Zstd>();
      if (!zstd_->stream) {
        zstd_.reset();
        return Error{"", "zstd: cannot create an encoder"};
      }
      // Same parameters as last time: the context keeps its workspace, nothing is allocated.
      int l = std::clamp(level.value_or(kZstdLevel), ZSTD_minCLevel(), ZSTD_maxCLevel());
      size_t rc = ZSTD_CCtx_reset(zstd_->stream, ZSTD_reset_session_only);
      if (!ZSTD_isError(rc)) rc = ZSTD_CCtx_setParameter(zstd_->stream, ZSTD_c_compressionLevel, l);
      if (!ZSTD_isError(rc)) rc = ZSTD_CCtx_setParameter(zstd_->stream, ZSTD_c_windowLog, kZstdWindowLog);
      if (ZSTD_isError(rc)) return Error{"", std::string("zstd: ") + ZSTD_getErrorName(rc)};
      break;
    }
  }
  state_ = State::kStreaming;
  return true;
}

Result<Compressor::Progress> Compressor::run(std::string_view in, std::span<char> out, Op op) {
  if (state_ != State::kStreaming)
    return Error{"", state_ == State::kIdle ? "compressor: no stream started" : "compressor: stream already finished"};
  if (out.size() < kMinOutputSize) return Error{"", "compressor: output buffer too small"};
  auto fail = [this](std::string message) {
    state_ = State::kIdle;  // the codec's state is unknown: only reset() may follow
    if (brotli_) brotli_->release();
    return Error{"", std::move(message)};
  };
  Progress p;
  switch (encoding_) {
    case Encoding::kIdentity: {
      p.consumed = p.written = std::min(in.size(), out.size());
      if (p.written > 0) std::memcpy(out.data(), in.data(), p.written);
      p.more = p.consumed < in.size();
      break;
    }
    case Encoding::kGzip: {
      z_stream& z = gzip_->z;
      // A flush or finish applies once the last part of the input is in.
      std::string_view chunk = in.substr(0, kMaxZlibChunk);
      int flush = chunk.size() < in.size() || op == Op::kWrite ? Z_NO_FLUSH
                  : op == Op::kFlush                           ? Z_SYNC_FLUSH
                                                               : Z_FINISH;
      size_t room = std::min(out.size(), kMaxZlibChunk);
      z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(chunk.data()));
      z.avail_in = uInt(chunk.size());
      z.next_out = reinterpret_cast<Bytef*>(out.data());
      z.avail_out = uInt(room);
      int rc = deflate(&z, flush);
      if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)  // Z_BUF_ERROR: nothing to do
        return fail("gzip: deflate failed");
      p.consumed = chunk.size() - z.avail_in;
      p.written = room - z.avail_out;
      // A full buffer after a sync flush may hide more of it (zlib's rule).
      p.more = p.consumed < in.size() || (op == Op::kFlush && z.avail_out == 0) ||
               (op == Op::kFinish && rc != Z_STREAM_END);
      break;
    }
    case Encoding::kBrotli: {
      BrotliEncoderState* s = brotli_->encoder;
      size_t avail_in = in.size();
      size_t avail_out = out.size();
      auto* next_in = reinterpret_cast<const uint8_t*>(in.data());
      auto* next_out = reinterpret_cast<uint8_t*>(out.data());
      auto operation = op == Op::kWrite   ? BROTLI_OPERATION_PROCESS
                       : op == Op::kFlush ? BROTLI_OPERATION_FLUSH
                                          : BROTLI_OPERATION_FINISH;
      if (!BrotliEncoderCompressStream(s, operation, &avail_in, &next_in, &avail_out, &next_out, nullptr))
        return fail("brotli: encoding failed");
      p.consumed = in.size() - avail_in;
      p.written = out.size() - avail_out;
      p.more = avail_in > 0 || (op == Op::kFlush && BrotliEncoderHasMoreOutput(s)) ||
               (op == Op::kFinish && !BrotliEncoderIsFinished(s));
      break;
    }
    case Encoding::kZstd: {
      ZSTD_inBuffer src{in.data(), in.size(), 0};
      ZSTD_outBuffer dst{out.data(), out.size(), 0};
      auto directive = op == Op::kWrite ? ZSTD_e_continue : op == Op::kFlush ? ZSTD_e_flush : ZSTD_e_end;
      size_t left = ZSTD_compressStream2(zstd_->stream, &dst, &src, directive);  // flush/end: bytes still held
      if (ZSTD_isError(left)) return fail(std::string("zstd: ") + ZSTD_getErrorName(left));
      p.consumed = src.pos;
      p.written = dst.pos;
      p.more = src.pos < src.size || (op != Op::kWrite && left != 0);
      break;
    }
  }
  // Every codec moves forward when given input or room; this keeps callers' loops finite regardless.
  if (p.more && p.consumed == 0 && p.written == 0) return fail("compressor: no progress");
  if (op == Op::kFinish && !p.more) {
    state_ = State::kFinished;
    if (encoding_ == Encoding::kBrotli) brotli_->release();
  }
  return p;
}

}  // namespace berth::proxy::http
