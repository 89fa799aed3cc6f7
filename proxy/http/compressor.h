// Response compression for the `compress` middleware: choosing an encoding from Accept-Encoding,
// deciding by Content-Type, and a reusable streaming gzip/br/zstd encoder the response relay feeds.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace berth::proxy::http {

enum class Encoding : uint8_t { kIdentity, kGzip, kBrotli, kZstd };

/// The Content-Encoding token: "identity", "gzip", "br", "zstd". Thread: any.
std::string_view encoding_name(Encoding e);

/// The server's side of negotiation, compiled once per snapshot (HP-4). Thread: any (immutable).
struct EncodingPolicy {
  std::array<Encoding, 3> preferred{Encoding::kGzip, Encoding::kBrotli, Encoding::kZstd};
  uint8_t count = 3;  ///< entries of `preferred` in use; their order breaks q-value ties
  /// Used when the request has no Accept-Encoding, and for `*`; kIdentity: none configured.
  Encoding default_encoding = Encoding::kIdentity;
};

/// Compiles Traefik's `encodings` (empty: gzip, br, zstd) and `defaultEncoding` (empty: none).
/// Errors on an unknown name, or a default that is not among the encodings. Thread: control.
Result<EncodingPolicy> make_encoding_policy(const std::vector<std::string>& encodings,
                                            std::string_view default_encoding);

/// A request's Accept-Encoding (RFC 9110 12.5.3), folded across its header lines on the stack.
/// Tokens are case-insensitive ("x-gzip" is gzip); q-values are 0..1 with up to 3 decimals;
/// an element with a malformed q is skipped; unknown codings are ignored; a coding listed twice
/// keeps its highest q. Thread: any.
class AcceptEncoding {
 public:
  /// Adds one Accept-Encoding field value; call once per header line.
  void add(std::string_view field_value);

  /// The encoding to respond with; kIdentity to send the body as is. As Traefik v3: no header
  /// means the policy's default encoding (identity if none), an empty one means identity. Among
  /// enabled encodings the highest q wins (unlisted ones take the q of `*`, else are refused),
  /// ties go to the default encoding when `*` is at that q, then to the policy's order; identity
  /// wins only when listed with a higher q than every enabled encoding.
  Encoding choose(const EncodingPolicy& policy) const;

 private:
  static constexpr int16_t kUnlisted = -1;
  static constexpr size_t kStar = 4;
  // q-values in thousandths, indexed by Encoding, then `*`.
  std::array<int16_t, 5> q_{kUnlisted, kUnlisted, kUnlisted, kUnlisted, kUnlisted};
  bool present_ = false;
};

/// AcceptEncoding for a request with one header line (nullopt: none). Thread: any.
Encoding choose_encoding(std::optional<std::string_view> accept_encoding, const EncodingPolicy& policy);

/// Which response types may be compressed, compiled once per snapshot (HP-4). Thread: any (immutable).
struct ContentTypeFilter {
  std::vector<std::string> excluded;  ///< lower-case media types without parameters
  std::vector<std::string> included;  ///< when non-empty, only these (exclusive with `excluded`)
};

/// Compiles Traefik's `excludedContentTypes` / `includedContentTypes`: they are mutually exclusive
/// and each must be a media type ("type/subtype", parameters dropped). Thread: control.
Result<ContentTypeFilter> make_content_type_filter(const std::vector<std::string>& excluded,
                                                   const std::vector<std::string>& included);

/// Whether a response with this Content-Type value may be compressed. The media type (parameters
/// dropped, case-insensitive) must be included, or not excluded. application/grpc (and
/// application/grpc+...) and text/event-stream are never compressed. An absent or empty type is
/// compressible: Traefik sniffs the body first, berth does not. Thread: any.
bool compressible(std::string_view content_type, const ContentTypeFilter& filter);

// Default levels: the fast end of each codec, since every compressed response pays for them on a
// worker thread. gzip 5 is ~25% faster than zlib's default 6 for ~2% more bytes; brotli 4 is the
// last quality before the slow block-splitting path; zstd 3 is zstd's own default.
inline constexpr int kGzipLevel = 5;
inline constexpr int kBrotliQuality = 4;
inline constexpr int kZstdLevel = 3;

/// Output space a call needs at least (zlib repeats flush markers into smaller buffers).
inline constexpr size_t kMinOutputSize = 16;

/// Streams one response body at a time through gzip, brotli or zstd into caller buffers. The gzip
/// and zstd contexts are created on first use and kept: reset() reuses them without allocating
/// (deflateReset, ZSTD_CCtx_reset), holding ~265 KiB (gzip) and ~2 MiB (zstd, 512 KiB window).
/// Brotli has no reset, so each brotli response creates an encoder and frees it at finish (or at
/// the next reset): ~20 allocations per response, peaking at ~0.6 MiB for small bodies and ~6 MiB
/// for bodies of 1 MiB and more (quality 4, 512 KiB window). Thread: one owner at a time (the
/// worker serving the exchange).
///
/// Every call follows one loop, which ends because each call consumes or produces bytes:
///   do { auto p = c.write(in, buf); /* error */ send(buf.first(p->written));
///        in.remove_prefix(p->consumed); } while (p->more);
class Compressor {
 public:
  /// What one call did.
  struct Progress {
    size_t consumed = 0;  ///< input bytes taken
    size_t written = 0;   ///< bytes written to the front of `out`
    bool more = false;    ///< not done: call again, same operation, the rest of the input, new space
  };

  Compressor();
  ~Compressor();
  Compressor(Compressor&&) noexcept;
  Compressor& operator=(Compressor&&) noexcept;

  /// Starts a new stream (dropping any unfinished one). `level` defaults to the k*Level above and
  /// is clamped to the codec's range; keep it the same from one response to the next, as a new
  /// gzip level rebuilds the context. kIdentity copies bytes through. Errors if a codec context
  /// cannot be created.
  Result<bool> reset(Encoding e, std::optional<int> level = std::nullopt);

  /// Compresses `in`; the codec may hold output back until flush or finish.
  Result<Progress> write(std::string_view in, std::span<char> out) { return run(in, out, Op::kWrite); }
  /// Compresses `in`, then emits everything so far so the client can decode it (streamed
  /// responses). Costs a few bytes of ratio: call it when the upstream pauses, not per write.
  Result<Progress> flush(std::string_view in, std::span<char> out) { return run(in, out, Op::kFlush); }
  /// Compresses `in` and ends the stream; afterwards calls fail until reset().
  Result<Progress> finish(std::string_view in, std::span<char> out) { return run(in, out, Op::kFinish); }

  Encoding encoding() const { return encoding_; }

 private:
  enum class Op : uint8_t { kWrite, kFlush, kFinish };
  enum class State : uint8_t { kIdle, kStreaming, kFinished };
  struct Gzip;
  struct Brotli;
  struct Zstd;

  Result<Progress> run(std::string_view in, std::span<char> out, Op op);

  std::unique_ptr<Gzip> gzip_;  // contexts behind pointers: zlib's must not move
  std::unique_ptr<Brotli> brotli_;
  std::unique_ptr<Zstd> zstd_;
  Encoding encoding_ = Encoding::kIdentity;
  State state_ = State::kIdle;
};

}  // namespace berth::proxy::http
