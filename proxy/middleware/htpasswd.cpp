// Password hashes, Authorization parsers and digest nonces for basicAuth / digestAuth; see htpasswd.h.
#include "proxy/middleware/htpasswd.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>

namespace berth::proxy::middleware {
namespace {

using Mac = std::array<unsigned char, 32>;

bool ct_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string_view bytes(const unsigned char* p, size_t n) { return {reinterpret_cast<const char*>(p), n}; }

// Fetched once: an implicit fetch per digest would take OpenSSL's store lock each time.
const EVP_MD* md5() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "MD5", nullptr);
  return md;
}
const EVP_MD* sha1() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA1", nullptr);
  return md;
}

/// An EVP digest context; any failure sticks (across reset too), so callers check once at the end.
class Hasher {
 public:
  explicit Hasher(const EVP_MD* md) : md_(md), ctx_(EVP_MD_CTX_new()) { reset(); }
  ~Hasher() { EVP_MD_CTX_free(ctx_); }
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  Hasher& reset() {
    ok_ = ok_ && md_ && ctx_ && EVP_DigestInit_ex(ctx_, md_, nullptr) == 1;
    return *this;
  }
  Hasher& add(std::string_view s) {
    ok_ = ok_ && EVP_DigestUpdate(ctx_, s.data(), s.size()) == 1;
    return *this;
  }
  bool finish(unsigned char* out) {
    ok_ = ok_ && EVP_DigestFinal_ex(ctx_, out, nullptr) == 1;
    return ok_;
  }
  bool ok() const { return ok_; }

 private:
  const EVP_MD* md_;
  EVP_MD_CTX* ctx_;
  bool ok_ = true;
};

bool hmac_sha256(std::string_view key, std::string_view data, unsigned char* out) {
  return HMAC(EVP_sha256(), key.data(), int(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
              data.size(), out, nullptr) != nullptr;
}

const std::string& process_key() {
  static const std::string key = [] {
    std::string k(32, '\0');
    // Without entropy neither the cache key nor nonces are safe; nothing sensible to fall back to.
    if (RAND_bytes(reinterpret_cast<unsigned char*>(k.data()), int(k.size())) != 1) std::abort();
    return k;
  }();
  return key;
}

std::string to_hex(const unsigned char* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '\0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 15];
  }
  return out;
}

/// Hex MD5 of the parts joined by ':'; empty if MD5 is unavailable.
std::string md5_hex(std::initializer_list<std::string_view> parts) {
  Hasher h(md5());
  bool first = true;
  for (auto part : parts) {
    if (!first) h.add(":");
    first = false;
    h.add(part);
  }
  unsigned char d[16];
  return h.finish(d) ? to_hex(d, sizeof d) : std::string();
}

// Standard base64 with '=' padding (Basic, {SHA}), or URL-safe without padding (nonces, opaque).
std::string base64_encode(const unsigned char* p, size_t n, bool url) {
  const char* abc = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                        : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; ++i) {
    acc = acc << 8 | p[i];
    for (bits += 8; bits >= 6; bits -= 6) out += abc[(acc >> (bits - 6)) & 63];
  }
  if (bits > 0) out += abc[(acc << (6 - bits)) & 63];
  while (!url && out.size() % 4 != 0) out += '=';
  return out;
}

int base64_value(char c, bool url) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == (url ? '-' : '+')) return 62;
  if (c == (url ? '_' : '/')) return 63;
  return -1;
}

bool base64_decode(std::string_view in, bool url, std::string& out) {
  out.clear();
  if (!url) {  // padding is required, as in Go's StdEncoding
    if (in.size() % 4 != 0) return false;
    for (int i = 0; i < 2 && !in.empty() && in.back() == '='; ++i) in.remove_suffix(1);
  }
  if (in.size() % 4 == 1) return false;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = base64_value(c, url);
    if (v < 0) return false;
    acc = acc << 6 | uint32_t(v);
    if ((bits += 6) >= 8) out += char((acc >> (bits -= 8)) & 0xff);
  }
  // Nonces must be canonical (unused low bits zero) so each has one spelling; Basic, like Go, need not.
  return !url || (acc & ((1u << bits) - 1)) == 0;
}

// MD5-crypt as in FreeBSD ($1$); Apache's APR1 is the same with the magic "$apr1$".
std::string md5_crypt(std::string_view pw, std::string_view salt, std::string_view magic) {
  Hasher h(md5());
  unsigned char alt[16], fin[16];
  h.add(pw).add(salt).add(pw).finish(alt);
  h.reset().add(pw).add(magic).add(salt);
  for (size_t left = pw.size(); left > 0; left -= std::min<size_t>(left, 16))
    h.add(bytes(alt, std::min<size_t>(left, 16)));
  for (size_t i = pw.size(); i != 0; i >>= 1) h.add((i & 1) ? std::string_view("\0", 1) : pw.substr(0, 1));
  h.finish(fin);
  for (int i = 0; i < 1000; ++i) {
    std::string_view prev = bytes(fin, 16);
    h.reset().add(i & 1 ? pw : prev);
    if (i % 3 != 0) h.add(salt);
    if (i % 7 != 0) h.add(pw);
    h.add(i & 1 ? prev : pw).finish(fin);
  }
  if (!h.ok()) return {};
  static constexpr char kAbc[] = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  std::string out = std::string(magic) + std::string(salt) + "$";
  auto put = [&](uint32_t v, int chars) {
    for (; chars > 0; --chars, v >>= 6) out += kAbc[v & 63];
  };
  put(fin[0] << 16 | fin[6] << 8 | fin[12], 4);
  put(fin[1] << 16 | fin[7] << 8 | fin[13], 4);
  put(fin[2] << 16 | fin[8] << 8 | fin[14], 4);
  put(fin[3] << 16 | fin[9] << 8 | fin[15], 4);
  put(fin[4] << 16 | fin[10] << 8 | fin[5], 4);
  put(fin[11], 2);
  return out;
}

bool is_bcrypt(std::string_view hash) {
  return hash.size() >= 4 && hash.starts_with("$2") && hash[3] == '$' &&
         std::string_view("abxy").find(hash[2]) != std::string_view::npos;
}

bool bcrypt_matches(std::string_view password, std::string_view hash) {
  // crypt() stops at NUL, so "pw\0junk" would pass as "pw"; Go's bcrypt hashes the NUL too.
  if (password.find('\0') != std::string_view::npos) return false;
  // libxcrypt gives $2x$ the old sign-extension bug and $2a$ a countermeasure; Go treats every
  // minor as $2b$, so hash as $2b$ and compare what follows the prefix.
  std::string setting = "$2b$" + std::string(hash.substr(4));
  std::string phrase(password);
  // ~32 KiB: too big for a worker's stack, and a plain thread_local would cost every thread that much.
  thread_local std::unique_ptr<crypt_data> data;
  if (!data) data = std::make_unique<crypt_data>();  // zeroed, as crypt_rn wants on first use
  const char* out = crypt_rn(phrase.c_str(), setting.c_str(), data.get(), sizeof *data);
  if (out == nullptr || std::strlen(out) < 4) return false;
  return ct_equal(std::string_view(out).substr(4), hash.substr(4));
}

bool is_space(char c) { return c == ' ' || c == '\t'; }
// What Go's strings.TrimSpace strips, in ASCII.
bool is_line_space(char c) { return is_space(c) || c == '\r' || c == '\v' || c == '\f'; }

template <typename T, typename Parse>
Result<std::vector<T>> parse_lines(std::string_view text, std::string_view source, Parse parse) {
  std::vector<T> out;
  size_t line_no = 0;
  for (size_t start = 0; start < text.size();) {
    size_t end = std::min(text.find('\n', start), text.size());
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++line_no;
    while (!line.empty() && is_line_space(line.front())) line.remove_prefix(1);
    while (!line.empty() && is_line_space(line.back())) line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    auto parsed = parse(line);
    if (!parsed) return Error{std::string(source) + ":" + std::to_string(line_no), parsed.error().message};
    out.push_back(std::move(*parsed));
  }
  return out;
}

/// Strips `scheme` and the whitespace after it; false if `value` holds another scheme.
bool strip_scheme(std::string_view& value, std::string_view scheme) {
  value = trim(value);
  if (value.size() <= scheme.size() || !iequals(value.substr(0, scheme.size()), scheme) ||
      !is_space(value[scheme.size()]))
    return false;
  value = trim(value.substr(scheme.size()));
  return true;
}

/// `s` as the inside of a quoted-string; control characters dropped so a header stays one line.
std::string quoted(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) out += c;
  }
  return out;
}

}  // namespace

Result<BasicCredential> parse_basic_credential(std::string_view entry) {
  size_t colon = entry.find(':');
  if (colon == std::string_view::npos || entry.find(':', colon + 1) != std::string_view::npos)
    return Error{"", "expected user:hash"};
  return BasicCredential{std::string(entry.substr(0, colon)), std::string(entry.substr(colon + 1))};
}

Result<DigestCredential> parse_digest_credential(std::string_view entry) {
  size_t a = entry.find(':');
  size_t b = a == std::string_view::npos ? a : entry.find(':', a + 1);
  if (b == std::string_view::npos || entry.find(':', b + 1) != std::string_view::npos)
    return Error{"", "expected user:realm:HA1"};
  return DigestCredential{std::string(entry.substr(0, a)), std::string(entry.substr(a + 1, b - a - 1)),
                          to_lower(entry.substr(b + 1))};
}

Result<std::vector<BasicCredential>> parse_htpasswd(std::string_view text, std::string_view source) {
  return parse_lines<BasicCredential>(text, source, parse_basic_credential);
}

Result<std::vector<DigestCredential>> parse_htdigest(std::string_view text, std::string_view source) {
  return parse_lines<DigestCredential>(text, source, parse_digest_credential);
}

bool check_password(std::string_view password, std::string_view hash) {
  if (hash.starts_with("{SHA}")) {
    unsigned char d[20];
    if (!Hasher(sha1()).add(password).finish(d)) return false;
    return ct_equal(base64_encode(d, sizeof d, false), hash.substr(5));
  }
  if (is_bcrypt(hash)) return bcrypt_matches(password, hash);
  if (hash.starts_with("$1$") || hash.starts_with("$apr1$")) {
    std::string_view magic = hash.substr(0, hash.find('$', 1) + 1);
    size_t salt_end = hash.find('$', magic.size());
    if (salt_end == std::string_view::npos) return false;
    return ct_equal(md5_crypt(password, hash.substr(magic.size(), salt_end - magic.size()), magic), hash);
  }
  return false;
}

// ---- BasicAuthUsers

BasicAuthUsers::BasicAuthUsers(const std::vector<BasicCredential>& users) {
  for (const auto& u : users) users_.try_emplace(u.user).first->second.hash = u.hash;
}

// The cache fingerprint of a password: SHA-256 over the per-process key and the password, from a
// per-thread context that has absorbed the key already (about a tenth of an HMAC() call). It is
// only compared in memory, never shown, so a keyed hash is all it needs to be.
static bool fingerprint(std::string_view password, unsigned char* out) {
  thread_local struct Contexts {
    EVP_MD_CTX* keyed = nullptr;
    EVP_MD_CTX* work = nullptr;
    ~Contexts() {
      EVP_MD_CTX_free(keyed);
      EVP_MD_CTX_free(work);
    }
  } t;
  if (!t.keyed) {
    t.keyed = EVP_MD_CTX_new();
    t.work = EVP_MD_CTX_new();
    const std::string& key = process_key();
    if (!t.keyed || !t.work || EVP_DigestInit_ex(t.keyed, EVP_sha256(), nullptr) != 1 ||
        EVP_DigestUpdate(t.keyed, key.data(), key.size()) != 1) {
      EVP_MD_CTX_free(t.keyed);
      t.keyed = nullptr;
      return false;
    }
  }
  unsigned int len = 0;
  return EVP_MD_CTX_copy_ex(t.work, t.keyed) == 1 && EVP_DigestUpdate(t.work, password.data(), password.size()) == 1 &&
         EVP_DigestFinal_ex(t.work, out, &len) == 1 && len == 32;
}

bool BasicAuthUsers::verify(std::string_view user, std::string_view password) const {
  auto it = users_.find(user);
  if (it == users_.end()) return false;
  Fingerprint fp;
  const bool has_fp = fingerprint(password, fp.data());
  return check(it->second, password, has_fp ? &fp : nullptr);
}

bool BasicAuthUsers::check(const Entry& entry, std::string_view password, const Fingerprint* fp) const {
  if (fp && entry.remembers(*fp)) return true;
  if (!check_password(password, entry.hash)) return false;
  if (fp) entry.remember(*fp);
  return true;
}

BasicAuthUsers::Quick BasicAuthUsers::quick_verify(std::string_view user, std::string_view password) const {
  auto it = users_.find(user);
  if (it == users_.end()) return Quick::kRejected;
  const Entry& entry = it->second;
  Fingerprint fp;
  const bool has_fp = fingerprint(password, fp.data());
  if (has_fp && entry.remembers(fp)) return Quick::kAccepted;
  if (entry.hash.starts_with("$2")) return Quick::kNeedsHash;
  return check(entry, password, has_fp ? &fp : nullptr) ? Quick::kAccepted : Quick::kRejected;
}

// A seqlock in Boehm's form ("Can seqlocks get along with programming language memory models?").
bool BasicAuthUsers::Entry::remembers(const Fingerprint& fp) const {
  uint32_t before = seq.load(std::memory_order_acquire);
  if (before == 0 || (before & 1) != 0) return false;
  std::array<uint64_t, 4> copy;
  for (size_t i = 0; i < copy.size(); ++i) copy[i] = words[i].load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (seq.load(std::memory_order_relaxed) != before) return false;
  return CRYPTO_memcmp(copy.data(), fp.data(), fp.size()) == 0;
}

void BasicAuthUsers::Entry::remember(const Fingerprint& fp) const {
  uint32_t s = seq.load(std::memory_order_relaxed);
  // Another writer is busy: skip, the cache is best effort.
  if ((s & 1) != 0 || !seq.compare_exchange_strong(s, s + 1, std::memory_order_relaxed)) return;
  std::atomic_thread_fence(std::memory_order_release);
  std::array<uint64_t, 4> copy;
  std::memcpy(copy.data(), fp.data(), fp.size());
  for (size_t i = 0; i < copy.size(); ++i) words[i].store(copy[i], std::memory_order_relaxed);
  seq.store(s + 2 == 0 ? 2 : s + 2, std::memory_order_release);
}

bool BasicAuthUsers::parse_authorization(std::string_view value, std::string& user, std::string& password) {
  if (!strip_scheme(value, "Basic") || !base64_decode(value, false, password)) return false;
  size_t colon = password.find(':');
  if (colon == std::string::npos) return false;
  user.assign(password, 0, colon);
  password.erase(0, colon + 1);
  return true;
}

// ---- Digest

Result<DigestFields> parse_digest_authorization(std::string_view value) {
  if (!strip_scheme(value, "Digest")) return Error{"", "not a Digest authorization"};
  DigestFields f;
  static constexpr std::string_view kNames[] = {"username", "realm", "nonce",  "uri",    "response",
                                                "qop",      "nc",    "cnonce", "opaque", "algorithm"};
  std::string* slots[] = {&f.username, &f.realm, &f.nonce,  &f.uri,    &f.response,
                          &f.qop,      &f.nc,    &f.cnonce, &f.opaque, &f.algorithm};
  auto fail = [](std::string_view what, size_t at) {
    return Error{"", "malformed Digest authorization: " + std::string(what) + " at byte " + std::to_string(at)};
  };
  auto is_token = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  };
  unsigned seen = 0;
  size_t i = 0, n = value.size();
  auto skip_space = [&] { while (i < n && is_space(value[i])) ++i; };
  std::string v;
  while (true) {
    while (i < n && (is_space(value[i]) || value[i] == ',')) ++i;
    if (i == n) break;
    size_t start = i, name_at = i;
    while (i < n && is_token(value[i])) ++i;
    std::string_view name = value.substr(start, i - start);
    if (name.empty()) return fail("expected a parameter name", i);
    skip_space();
    if (i == n || value[i] != '=') return fail("expected '='", i);
    ++i;
    skip_space();
    v.clear();
    if (i < n && value[i] == '"') {
      bool closed = false;
      for (++i; i < n && !closed;) {
        char c = value[i++];
        if (c == '"') closed = true;
        else if (c != '\\') v += c;
        else if (i < n) v += value[i++];
      }
      if (!closed) return fail("unterminated quoted string", n);
    } else {
      // Lenient: a bare value runs to the next space or ',' (some clients leave a uri unquoted).
      for (start = i; i < n && !is_space(value[i]) && value[i] != ',' && value[i] != '"';) ++i;
      if (start == i) return fail("expected a value", i);
      v = value.substr(start, i - start);
    }
    skip_space();
    if (i < n && value[i] != ',') return fail("expected ','", i);
    for (size_t k = 0; k < std::size(kNames); ++k) {
      if (!iequals(name, kNames[k])) continue;
      if ((seen & (1u << k)) != 0) return fail("repeated " + std::string(kNames[k]), name_at);
      seen |= 1u << k;
      *slots[k] = v;
    }
  }
  for (size_t k = 0; k < 5; ++k)  // username realm nonce uri response
    if ((seen & (1u << k)) == 0) return Error{"", "Digest authorization without " + std::string(kNames[k])};
  if (!f.qop.empty() && (f.nc.empty() || f.cnonce.empty()))
    return Error{"", "Digest authorization with qop but without nc and cnonce"};
  return f;
}

DigestAuth::DigestAuth(std::string realm, const std::vector<DigestCredential>& users, Duration nonce_lifetime,
                       std::string secret)
    : realm_(std::move(realm)),
      secret_(secret.empty() ? process_key() : std::move(secret)),
      lifetime_(nonce_lifetime) {
  Mac mac{};
  hmac_sha256(secret_, "opaque", mac.data());
  opaque_ = base64_encode(mac.data(), 16, true);
  for (const auto& u : users)
    if (u.realm == realm_) ha1_.insert_or_assign(u.user, u.ha1);
}

std::string DigestAuth::issue_nonce(Clock::time_point now) const {
  auto secs = uint64_t(std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count());
  unsigned char raw[8 + 32] = {};
  for (int i = 0; i < 8; ++i) raw[i] = uint8_t(secs >> (56 - 8 * i));
  hmac_sha256(secret_, bytes(raw, 8), raw + 8);  // on failure the zero MAC never verifies
  return base64_encode(raw, sizeof raw, true);
}

bool DigestAuth::nonce_time(std::string_view nonce, Clock::time_point& issued) const {
  std::string raw;
  Mac mac;
  if (!base64_decode(nonce, true, raw) || raw.size() != 8 + mac.size()) return false;
  if (!hmac_sha256(secret_, std::string_view(raw).substr(0, 8), mac.data()) ||
      !ct_equal(bytes(mac.data(), mac.size()), std::string_view(raw).substr(8)))
    return false;
  uint64_t secs = 0;
  for (int i = 0; i < 8; ++i) secs = secs << 8 | uint8_t(raw[i]);
  if (secs > (uint64_t(1) << 40)) return false;  // only we sign nonces; keep chrono far from overflow
  issued = Clock::time_point(std::chrono::seconds(secs));
  return true;
}

DigestVerdict DigestAuth::verify(const DigestFields& f, std::string_view method, std::string_view target,
                                 Clock::time_point now) const {
  if (f.realm != realm_ || f.opaque != opaque_ || f.uri != target) return DigestVerdict::kRejected;
  if (!f.algorithm.empty() && !iequals(f.algorithm, "MD5")) return DigestVerdict::kRejected;
  if (!f.qop.empty() && !iequals(f.qop, "auth")) return DigestVerdict::kRejected;
  auto user = ha1_.find(f.username);
  Clock::time_point issued;
  if (user == ha1_.end() || !nonce_time(f.nonce, issued)) return DigestVerdict::kRejected;
  std::string ha2 = md5_hex({method, f.uri});
  std::string expected = f.qop.empty() ? md5_hex({user->second, f.nonce, ha2})
                                       : md5_hex({user->second, f.nonce, f.nc, f.cnonce, f.qop, ha2});
  if (expected.empty() || !ct_equal(expected, f.response)) return DigestVerdict::kRejected;
  return now - issued > lifetime_ ? DigestVerdict::kStale : DigestVerdict::kAccepted;
}

std::string DigestAuth::challenge(bool stale, Clock::time_point now) const {
  std::string out = "Digest realm=\"" + quoted(realm_) + "\", nonce=\"" + issue_nonce(now) + "\", opaque=\"" +
                    opaque_ + "\", algorithm=MD5, qop=\"auth\"";
  if (stale) out += ", stale=true";
  return out;
}

}  // namespace berth::proxy::middleware
