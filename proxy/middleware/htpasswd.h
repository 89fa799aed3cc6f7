// Credentials behind the basicAuth and digestAuth middlewares: htpasswd / htdigest users, password
// hash checks (bcrypt, MD5-crypt, APR1, {SHA}), the Authorization header parsers and digest nonces.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "base/text.h"

namespace berth::proxy::middleware {

/// One `user:hash` entry: an item of Traefik's basicAuth `users` or an htpasswd line.
struct BasicCredential {
  std::string user;
  std::string hash;
};

/// One `user:realm:HA1` entry: an item of Traefik's digestAuth `users` or an htdigest line.
struct DigestCredential {
  std::string user;
  std::string realm;
  std::string ha1;  ///< hex MD5(user:realm:password), lower-cased
};

/// Parses `user:hash`; like Traefik, exactly one ':' (no `where` in the error). Thread: any.
Result<BasicCredential> parse_basic_credential(std::string_view entry);
/// Parses `user:realm:HA1`; like Traefik, exactly two ':'. Thread: any.
Result<DigestCredential> parse_digest_credential(std::string_view entry);

/// Parses an htpasswd / htdigest file. Lines are trimmed; blank lines and lines starting with '#'
/// are skipped; the first malformed line fails the file with `where` = "<source>:<line>".
/// Thread: any.
Result<std::vector<BasicCredential>> parse_htpasswd(std::string_view text, std::string_view source);
Result<std::vector<DigestCredential>> parse_htdigest(std::string_view text, std::string_view source);

/// True if `password` matches `hash` in a format Traefik (go-http-auth CheckSecret) accepts:
/// bcrypt `$2a$ $2b$ $2x$ $2y$` (all hashed as `$2b$`, as Go does), MD5-crypt `$1$`, APR1 `$apr1$`,
/// `{SHA}base64(sha1)`. Anything else, plaintext included, never matches. Compares in constant
/// time. bcrypt costs ~50-100 ms at cost 10: callers on a worker go through BasicAuthUsers.
/// Thread: any.
bool check_password(std::string_view password, std::string_view hash);

/// The users of one basicAuth middleware, compiled once per snapshot. Each user remembers the last
/// password that matched, as SHA-256(random per-process key, password) under a seqlock of atomics,
/// so a client's repeated requests cost one hash instead of one bcrypt.
class BasicAuthUsers {
 public:
  /// A later entry for a user replaces an earlier one. Thread: control.
  explicit BasicAuthUsers(const std::vector<BasicCredential>& users);
  BasicAuthUsers(const BasicAuthUsers&) = delete;
  BasicAuthUsers& operator=(const BasicAuthUsers&) = delete;

  /// True if `user` is known and `password` matches its hash. No lock is taken; concurrent calls
  /// from several workers are safe. Thread: any.
  bool verify(std::string_view user, std::string_view password) const;

  enum class Quick : uint8_t { kAccepted, kRejected, kNeedsHash };
  /// The answer verify() would give when it is cheap (unknown user, a remembered password, or an
  /// MD5/SHA-1 hash); kNeedsHash when only a bcrypt run can tell, which a worker hands to a blocking
  /// pool instead of stalling its event loop. Thread: any.
  Quick quick_verify(std::string_view user, std::string_view password) const;

  /// Splits an Authorization value `Basic base64(user:password)` (RFC 7617): the scheme is
  /// case-insensitive, the password may be empty or hold ':'. False on malformed input, leaving
  /// the outputs unspecified. Reuses the outputs' capacity. Thread: any.
  static bool parse_authorization(std::string_view value, std::string& user, std::string& password);

  size_t size() const { return users_.size(); }

 private:
  using Fingerprint = std::array<unsigned char, 32>;
  struct Entry {
    std::string hash;
    // Seqlock: 0 = empty, odd = a writer is storing `words`; a reader that sees either, or sees
    // `seq` move, just misses the cache.
    mutable std::atomic<uint32_t> seq{0};
    mutable std::array<std::atomic<uint64_t>, 4> words{};

    bool remembers(const Fingerprint& fp) const;
    void remember(const Fingerprint& fp) const;
  };
  /// verify() for a known entry; `fp` (may be null) is the password's cache fingerprint.
  bool check(const Entry& entry, std::string_view password, const Fingerprint* fp) const;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  std::unordered_map<std::string, Entry, StringHash, std::equal_to<>> users_;
};

/// The fields of an `Authorization: Digest ...` value (RFC 7616); unknown parameters are ignored.
struct DigestFields {
  std::string username, realm, nonce, uri, response, qop, nc, cnonce, opaque, algorithm;
};

/// Parses an Authorization value `Digest k=v, k="v", ...` (scheme case-insensitive). Fails on bad
/// syntax, a repeated field, a missing username/realm/nonce/uri/response, or qop without nc and
/// cnonce. Never reads outside `value`. Thread: any.
Result<DigestFields> parse_digest_authorization(std::string_view value);

enum class DigestVerdict {
  kAccepted,
  kStale,     ///< everything holds but the nonce is too old: answer 401 with stale=true
  kRejected,
};

/// The users and nonces of one digestAuth middleware. A nonce is
/// base64url(8-byte big-endian Unix seconds || HMAC-SHA256(secret, those 8 bytes)), so any worker
/// checks it without shared state. With the default (per-process) secret, nonces and the opaque
/// value survive snapshot rebuilds. Nonce counts are not tracked: a captured header replays for
/// the same method and URI until its nonce expires.
class DigestAuth {
 public:
  using Clock = std::chrono::system_clock;

  /// Keeps only the users of `realm` (others could never match). An empty `secret` means the
  /// random per-process key. Control characters in `realm` are dropped from challenges.
  /// Thread: control.
  DigestAuth(std::string realm, const std::vector<DigestCredential>& users, Duration nonce_lifetime,
             std::string secret = {});

  /// Checks realm, opaque, algorithm (MD5 or absent), qop (auth or absent), uri == `target` (the
  /// request-target as received), the nonce's MAC, then the response MD5(HA1:nonce:nc:cnonce:qop:HA2)
  /// or MD5(HA1:nonce:HA2), HA2 = MD5(method:uri), in constant time; then the nonce's age.
  /// Thread: any.
  DigestVerdict verify(const DigestFields& fields, std::string_view method, std::string_view target,
                       Clock::time_point now = Clock::now()) const;

  /// A nonce issued at `now`. Thread: any.
  std::string issue_nonce(Clock::time_point now = Clock::now()) const;

  /// The WWW-Authenticate value: `Digest realm="...", nonce="...", opaque="...", algorithm=MD5,
  /// qop="auth"`, plus `, stale=true` when `stale`. Thread: any.
  std::string challenge(bool stale, Clock::time_point now = Clock::now()) const;

  const std::string& realm() const { return realm_; }
  const std::string& opaque() const { return opaque_; }
  size_t size() const { return ha1_.size(); }

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  /// Seconds since the epoch carried by a nonce whose MAC checks out.
  bool nonce_time(std::string_view nonce, Clock::time_point& issued) const;

  std::string realm_;
  std::string secret_;
  std::string opaque_;
  Duration lifetime_;
  std::unordered_map<std::string, std::string, StringHash, std::equal_to<>> ha1_;  ///< user -> HA1
};

}  // namespace berth::proxy::middleware
