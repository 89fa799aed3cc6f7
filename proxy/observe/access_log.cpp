// Access log lines in Traefik's layouts (pkg/middlewares/accesslog: logger.go, logger_formatters.go,
// logrus' JSON formatter), and the rings and writer thread that take them to the file.
#include "proxy/observe/access_log.h"

#include <arpa/inet.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <ctime>

#include "base/log.h"
#include "base/text.h"

namespace berth::proxy::observe {
namespace {

using Mode = LineFormatter::Mode;

// Traefik's core fields, in the byte order of their names: the order of encoding/json's map keys,
// hence of Traefik's json lines.
enum Field : uint8_t {
  kClientAddr,
  kClientHost,
  kClientPort,
  kClientUsername,
  kDownstreamContentSize,
  kDownstreamStatus,
  kDuration,
  kGzipRatio,
  kOriginContentSize,
  kOriginDuration,
  kOriginStatus,
  kOverhead,
  kRequestAddr,
  kRequestContentSize,
  kRequestCount,
  kRequestHost,
  kRequestMethod,
  kRequestPath,
  kRequestPort,
  kRequestProtocol,
  kRequestScheme,
  kRetryAttempts,
  kRouterName,
  kServiceAddr,
  kServiceName,
  kServiceURL,
  kStartLocal,
  kStartUTC,
  kTLSCipher,
  kTLSClientSubject,
  kTLSVersion,
  kEntryPointName,  // lower-case: after the headers of the downstream_ group
  kFieldCount
};

constexpr std::string_view kFieldNames[kFieldCount] = {
    "ClientAddr",       "ClientHost",       "ClientPort",      "ClientUsername", "DownstreamContentSize",
    "DownstreamStatus", "Duration",         "GzipRatio",       "OriginContentSize", "OriginDuration",
    "OriginStatus",     "Overhead",         "RequestAddr",     "RequestContentSize", "RequestCount",
    "RequestHost",      "RequestMethod",    "RequestPath",     "RequestPort",    "RequestProtocol",
    "RequestScheme",    "RetryAttempts",    "RouterName",      "ServiceAddr",    "ServiceName",
    "ServiceURL",       "StartLocal",       "StartUTC",        "TLSCipher",      "TLSClientSubject",
    "TLSVersion",       "entryPointName"};

// The same as json keys, quoted and with their colon: one copy per field.
constexpr std::string_view kFieldKeys[kFieldCount] = {
    R"("ClientAddr":)", R"("ClientHost":)", R"("ClientPort":)", R"("ClientUsername":)",
    R"("DownstreamContentSize":)", R"("DownstreamStatus":)", R"("Duration":)", R"("GzipRatio":)",
    R"("OriginContentSize":)", R"("OriginDuration":)", R"("OriginStatus":)", R"("Overhead":)",
    R"("RequestAddr":)", R"("RequestContentSize":)", R"("RequestCount":)", R"("RequestHost":)",
    R"("RequestMethod":)", R"("RequestPath":)", R"("RequestPort":)", R"("RequestProtocol":)",
    R"("RequestScheme":)", R"("RetryAttempts":)", R"("RouterName":)", R"("ServiceAddr":)",
    R"("ServiceName":)", R"("ServiceURL":)", R"("StartLocal":)", R"("StartUTC":)", R"("TLSCipher":)",
    R"("TLSClientSubject":)", R"("TLSVersion":)", R"("entryPointName":)"};

constexpr size_t kMaxLoggedHeaders = 256;  ///< per header list; more are left out of the line
constexpr size_t kScratchBytes = 64 * 1024;  ///< the longest line; a longer one loses its header fields
constexpr size_t kDefaultRingBytes = 1 << 20;
constexpr size_t kMaxRingBytes = 64 << 20;
constexpr auto kMaxLatency = std::chrono::milliseconds(100);  ///< bufferingSize never delays a line longer
constexpr auto kBusyPoll = std::chrono::milliseconds(5);      ///< while lines keep coming (bufferingSize 0)
constexpr size_t kBusyBytes = 64 * 1024;  ///< drained in one go: more is coming, no pause at all

Mode parse_mode(std::string_view text) {
  if (iequals(text, "drop")) return Mode::kDrop;
  if (iequals(text, "redact")) return Mode::kRedact;
  return Mode::kKeep;
}

// RFC 9110 token bytes, the bytes Go accepts in a header name.
constexpr auto kTokenBytes = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = t[c - 32] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!kTokenBytes[static_cast<unsigned char>(c)]) return false;
  return true;
}

// Go's textproto.CanonicalMIMEHeaderKey, one byte at a time: a name with a byte that is not a
// token byte stays as it is.
char canonical_at(std::string_view s, size_t i, bool token) {
  const char c = s[i];
  if (!token) return c;
  const bool upper = i == 0 || s[i - 1] == '-';
  if (upper && c >= 'a' && c <= 'z') return char(c - 32);
  if (!upper && c >= 'A' && c <= 'Z') return char(c + 32);
  return c;
}

bool canonical_less(std::string_view a, std::string_view b) {
  const bool ta = is_token(a), tb = is_token(b);
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const auto ca = static_cast<unsigned char>(canonical_at(a, i, ta));
    const auto cb = static_cast<unsigned char>(canonical_at(b, i, tb));
    if (ca != cb) return ca < cb;
  }
  return a.size() < b.size();
}

// Go's net.SplitHostPort as Traefik's silentSplitHostPort uses it: no port -> (value, "-").
void split_host_port(std::string_view value, std::string_view& host, std::string_view& port) {
  host = value;
  port = "-";
  if (!value.empty() && value[0] == '[') {
    const size_t close = value.find(']');
    if (close == std::string_view::npos || close + 1 >= value.size() || value[close + 1] != ':') return;
    if (value.find_first_of("[]", close + 1) != std::string_view::npos) return;
    host = value.substr(1, close - 1);
    port = value.substr(close + 2);
    return;
  }
  const size_t colon = value.rfind(':');
  if (colon == std::string_view::npos || value.find(':') != colon) return;  // none, or too many
  if (value.find_first_of("[]") != std::string_view::npos) return;
  host = value.substr(0, colon);
  port = value.substr(colon + 1);
}

// RequestPath: the path and query, without scheme and authority (an absolute-form target loses them).
std::string_view request_path(std::string_view target) {
  const size_t scheme = target.find("://");
  if (scheme == std::string_view::npos || target.empty() || target[0] == '/') return target;
  std::string_view rest = target.substr(scheme + 3);
  const size_t path = rest.find_first_of("/?");
  return path == std::string_view::npos ? std::string_view() : rest.substr(path);
}

// ServiceAddr: the host[:port] of the server's URL (Traefik: url.Host).
std::string_view url_authority(std::string_view url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return {};
  std::string_view rest = url.substr(scheme + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (const size_t at = rest.rfind('@'); at != std::string_view::npos) rest.remove_prefix(at + 1);
  return rest;
}

std::string_view ip_text(const boost::asio::ip::address& a, char (&buf)[INET6_ADDRSTRLEN]) {
  if (a.is_v4()) {
    // By hand: glibc's inet_ntop formats IPv4 with sprintf, a third of a CLF line's cost.
    const auto bytes = a.to_v4().to_bytes();
    char* p = buf;
    for (size_t i = 0; i < 4; ++i) {
      if (i > 0) *p++ = '.';
      p = std::to_chars(p, buf + sizeof buf, static_cast<unsigned>(bytes[i])).ptr;
    }
    return std::string_view(buf, static_cast<size_t>(p - buf));
  } else {
    const auto bytes = a.to_v6().to_bytes();
    if (::inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf) == nullptr) return {};
  }
  return buf;
}

// A wall-clock instant in a zone, split into its civil fields (Howard Hinnant's civil_from_days).
struct Civil {
  int64_t year;
  unsigned month, day, hour, minute, second;
  uint32_t nanos;
};

Civil civil(int64_t unix_ns, int32_t offset_s) {
  int64_t secs = unix_ns / 1'000'000'000;
  int64_t nanos = unix_ns % 1'000'000'000;
  if (nanos < 0) nanos += 1'000'000'000, secs -= 1;
  secs += offset_s;
  int64_t days = secs / 86400;
  int64_t sod = secs % 86400;
  if (sod < 0) sod += 86400, days -= 1;
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const auto doe = static_cast<unsigned>(days - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned day = doy - (153 * mp + 2) / 5 + 1;
  const unsigned month = mp < 10 ? mp + 3 : mp - 9;
  const int64_t year = static_cast<int64_t>(yoe) + era * 400 + (month <= 2);
  return Civil{year,
               month,
               day,
               static_cast<unsigned>(sod / 3600),
               static_cast<unsigned>(sod / 60 % 60),
               static_cast<unsigned>(sod % 60),
               static_cast<uint32_t>(nanos)};
}

int32_t local_utc_offset() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  if (localtime_r(&now, &tm) == nullptr) return 0;
  return static_cast<int32_t>(tm.tm_gmtoff);
}

int64_t steady_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void futex_wait(std::atomic<uint32_t>& word, uint32_t expected, std::chrono::nanoseconds timeout) {
  timespec ts{static_cast<time_t>(timeout.count() / 1'000'000'000), static_cast<long>(timeout.count() % 1'000'000'000)};
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, &ts, nullptr, 0);
}

void futex_wake(std::atomic<uint32_t>& word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

}  // namespace

// A bounded writer into the line buffer: a write that does not fit marks the line failed.
struct LineFormatter::Out {
  char* begin;
  char* p;
  char* end;
  bool ok = true;

  size_t result() const { return ok ? static_cast<size_t>(p - begin) : 0; }

  void put(char c) {
    if (p != end) *p++ = c;
    else ok = false;
  }
  void append(std::string_view s) {
    if (static_cast<size_t>(end - p) >= s.size()) {
      std::memcpy(p, s.data(), s.size());
      p += s.size();
    } else {
      ok = false;
    }
  }
  template <typename T>
  void number(T v) {
    auto [q, ec] = std::to_chars(p, end, v);
    if (ec == std::errc()) p = q;
    else ok = false;
  }
  void two(unsigned v) {
    put(char('0' + v / 10 % 10));
    put(char('0' + v % 10));
  }
  void json_inner(std::string_view s) {
    const size_t n = json_escape(s, p, static_cast<size_t>(end - p));
    if (n == SIZE_MAX) ok = false;
    else p += n;
  }
  void json(std::string_view s) {
    put('"');
    json_inner(s);
    put('"');
  }
  // CLF: `"` and `\` backslashed, control bytes as \xHH (Apache's escaping); other bytes as they are.
  void clf_inner(std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    size_t i = 0;
    while (i < s.size()) {
      size_t run = i;
      while (run < s.size()) {
        const auto c = static_cast<unsigned char>(s[run]);
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') break;
        ++run;
      }
      append(s.substr(i, run - i));
      if (run == s.size()) return;
      const auto c = static_cast<unsigned char>(s[run]);
      if (c == '"' || c == '\\') {
        put('\\');
        put(static_cast<char>(c));
      } else {
        append("\\x");
        put(kHex[c >> 4]);
        put(kHex[c & 15]);
      }
      i = run + 1;
    }
  }
  // A CLF field: the value, or `-` when empty; `quoted` puts it in double quotes (`"-"` too).
  void clf(std::string_view s, bool quoted) {
    if (quoted) put('"');
    if (s.empty()) put('-');
    else clf_inner(s);
    if (quoted) put('"');
  }
  // RFC 3339 as Go's time.Time marshals it (RFC3339Nano: trailing zeros of the fraction dropped),
  // or whole seconds (logrus' `time`).
  void rfc3339(int64_t unix_ns, int32_t offset_s, bool fraction) {
    const Civil c = civil(unix_ns, offset_s);
    number(c.year);
    put('-');
    two(c.month);
    put('-');
    two(c.day);
    put('T');
    two(c.hour);
    put(':');
    two(c.minute);
    put(':');
    two(c.second);
    if (fraction && c.nanos != 0) {
      char digits[9];
      uint32_t n = c.nanos;
      for (int i = 8; i >= 0; --i, n /= 10) digits[i] = char('0' + n % 10);
      size_t len = 9;
      while (digits[len - 1] == '0') --len;
      put('.');
      append(std::string_view(digits, len));
    }
    if (offset_s == 0) {
      put('Z');
      return;
    }
    const int32_t abs = offset_s < 0 ? -offset_s : offset_s;
    put(offset_s < 0 ? '-' : '+');
    two(static_cast<unsigned>(abs / 3600));
    put(':');
    two(static_cast<unsigned>(abs / 60 % 60));
  }
  // "02/Jan/2006:15:04:05 -0700"
  void clf_time(int64_t unix_ns, int32_t offset_s) {
    static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const Civil c = civil(unix_ns, offset_s);
    two(c.day);
    put('/');
    append(kMonths[c.month - 1]);
    put('/');
    number(c.year);
    put(':');
    two(c.hour);
    put(':');
    two(c.minute);
    put(':');
    two(c.second);
    put(' ');
    const int32_t abs = offset_s < 0 ? -offset_s : offset_s;
    put(offset_s < 0 ? '-' : '+');
    two(static_cast<unsigned>(abs / 3600));
    two(static_cast<unsigned>(abs / 60 % 60));
  }
};

LineFormatter::LineFormatter(const config::AccessLogConfig& c) {
  static_assert(sizeof(keep_) / sizeof(keep_[0]) >= kFieldCount);
  if (iequals(c.format, "json")) layout_ = Layout::kJson;
  else if (iequals(c.format, "genericCLF")) layout_ = Layout::kGenericClf;
  const bool keep_default = parse_mode(c.fields_default_mode) != Mode::kDrop;
  for (bool& k : keep_) k = keep_default;
  for (const auto& [name, mode] : c.field_modes)
    for (size_t f = 0; f < kFieldCount; ++f)
      if (iequals(kFieldNames[f], name)) keep_[f] = parse_mode(mode) != Mode::kDrop;
  headers_default_ = parse_mode(c.headers_default_mode);
  any_header_kept_ = headers_default_ != Mode::kDrop;
  for (const auto& [name, mode] : c.header_modes) {
    header_modes_.emplace_back(name, parse_mode(mode));
    any_header_kept_ |= header_modes_.back().second != Mode::kDrop;
  }
  add_internals_ = c.add_internals;
  has_filters_ = !c.status_codes.empty() || c.retry_attempts || c.min_duration.count() > 0;
  status_ranges_ = c.status_codes;
  retry_attempts_ = c.retry_attempts;
  min_duration_ns_ = std::chrono::duration_cast<std::chrono::nanoseconds>(c.min_duration).count();
}

bool LineFormatter::keep(const ExchangeRecord& r) const {
  if (!add_internals_ && r.router.ends_with("@internal")) return false;
  if (!has_filters_) return true;
  for (const auto& [from, to] : status_ranges_)
    if (r.status >= from && r.status <= to) return true;
  if (retry_attempts_ && r.retry_attempts > 0) return true;
  return min_duration_ns_ > 0 && r.duration_ns > min_duration_ns_;
}

LineFormatter::Mode LineFormatter::header_mode(std::string_view name) const {
  for (const auto& [configured, mode] : header_modes_)
    if (iequals(configured, name)) return mode;
  return headers_default_;
}

size_t LineFormatter::format(const ExchangeRecord& r, int32_t utc_offset_s, char* out, size_t cap) const {
  Out o{out, out, out + cap};
  if (layout_ != Layout::kJson) return format_clf(r, utc_offset_s, o);
  if (size_t n = format_json(r, utc_offset_s, o, true)) return n;
  if (!any_header_kept_) return 0;
  Out again{out, out, out + cap};
  return format_json(r, utc_offset_s, again, false);
}

// The value CLF shows for request header `name` (Referer, User-Agent): Traefik reads it from the
// request_<name> field, so it is there only when the header modes keep (or redact) it. Repeated
// headers are joined with commas, as Traefik does.
std::string_view LineFormatter::header_value_mode(const ExchangeRecord& r, std::string_view name, Mode& mode) const {
  mode = Mode::kDrop;
  if (r.request_headers == nullptr || !any_header_kept_) return {};
  mode = header_mode(name);
  if (mode == Mode::kDrop) return {};
  for (const auto& h : *r.request_headers)
    if (iequals(h.name, name)) return h.value;
  mode = Mode::kDrop;
  return {};
}

size_t LineFormatter::format_clf(const ExchangeRecord& r, int32_t utc_offset_s, Out& o) const {
  auto quoted_header = [&](std::string_view name) {
    Mode mode;
    std::string_view first = header_value_mode(r, name, mode);
    if (mode == Mode::kRedact) {
      o.append("\"REDACTED\"");
      return;
    }
    if (mode == Mode::kDrop || first.empty()) {
      o.append("\"-\"");
      return;
    }
    o.put('"');
    bool any = false;
    for (const auto& h : *r.request_headers) {
      if (!iequals(h.name, name)) continue;
      if (any) o.put(',');
      o.clf_inner(h.value);
      any = true;
    }
    o.put('"');
  };

  char ip[INET6_ADDRSTRLEN];
  std::string_view client_host = !r.forwarded_for.empty() ? r.forwarded_for : ip_text(r.client, ip);
  o.clf(keep_[kClientHost] ? client_host : std::string_view(), false);
  o.append(" - ");
  o.clf(keep_[kClientUsername] ? r.username : std::string_view(), false);
  o.append(" [");
  if (keep_[kStartUTC]) o.clf_time(r.start_unix_ns, 0);
  else if (keep_[kStartLocal]) o.clf_time(r.start_unix_ns, utc_offset_s);
  else o.put('-');
  o.append("] \"");
  o.clf(keep_[kRequestMethod] ? r.method : std::string_view(), false);
  o.put(' ');
  o.clf(keep_[kRequestPath] ? request_path(r.target) : std::string_view(), false);
  o.put(' ');
  o.clf(keep_[kRequestProtocol] ? r.http_version : std::string_view(), false);
  o.append("\" ");
  if (keep_[kDownstreamStatus]) o.number(r.status);
  else o.put('-');
  o.put(' ');
  if (keep_[kDownstreamContentSize]) o.number(r.response_bytes);
  else o.put('-');
  o.put(' ');
  quoted_header("Referer");
  o.put(' ');
  quoted_header("User-Agent");
  if (layout_ == Layout::kCommon) {
    o.put(' ');
    if (keep_[kRequestCount]) o.number(r.request_count);
    else o.put('-');
    o.put(' ');
    o.clf(keep_[kRouterName] ? r.router : std::string_view(), true);
    o.put(' ');
    o.clf(keep_[kServiceURL] ? r.service_url : std::string_view(), true);
    o.put(' ');
    o.number(keep_[kDuration] ? r.duration_ns / 1'000'000 : 0);
    o.append("ms");
  }
  o.put('\n');
  return o.result();
}

// The request_, origin_ or downstream_ fields of one header list: the names the header modes keep
// or redact, canonical (Go's http.Header keys), sorted as encoding/json sorts map keys, repeated
// headers joined with commas. Host is no header to Go (it is RequestAddr).
void LineFormatter::header_fields(Out& o, bool& first, const std::vector<http::Header>* headers,
                                  std::string_view prefix, bool request) const {
  if (headers == nullptr || !any_header_kept_) return;
  uint16_t picks[kMaxLoggedHeaders];
  Mode modes[kMaxLoggedHeaders];
  size_t n = 0;
  const size_t count = std::min(headers->size(), size_t{UINT16_MAX});
  for (size_t i = 0; i < count && n < kMaxLoggedHeaders; ++i) {
    const http::Header& h = (*headers)[i];
    if (h.name.empty() || h.name[0] == ':' || (request && h.id == http::HeaderId::kHost)) continue;
    const Mode mode = header_mode(h.name);
    if (mode == Mode::kDrop) continue;
    bool seen = false;
    for (size_t j = 0; j < n && !seen; ++j) seen = iequals((*headers)[picks[j]].name, h.name);
    if (seen) continue;
    // Insertion sort: a few dozen names at most.
    size_t at = n;
    while (at > 0 && canonical_less(h.name, (*headers)[picks[at - 1]].name)) {
      picks[at] = picks[at - 1];
      modes[at] = modes[at - 1];
      --at;
    }
    picks[at] = static_cast<uint16_t>(i);
    modes[at] = mode;
    ++n;
  }
  for (size_t k = 0; k < n; ++k) {
    const std::string_view name = (*headers)[picks[k]].name;
    const bool token = is_token(name);
    if (!first) o.put(',');
    first = false;
    o.put('"');
    o.append(prefix);
    if (token) {
      for (size_t i = 0; i < name.size(); ++i) {
        const char c = canonical_at(name, i, true);
        if (c == '&') o.append("\\u0026");  // the only token byte encoding/json escapes
        else o.put(c);
      }
    } else {
      o.json_inner(name);
    }
    o.append("\":");
    if (modes[k] == Mode::kRedact) {
      o.append("\"REDACTED\"");
      continue;
    }
    o.put('"');
    bool any = false;
    for (size_t i = picks[k]; i < count; ++i) {
      const http::Header& h = (*headers)[i];
      if (!iequals(h.name, name)) continue;
      if (any) o.put(',');
      o.json_inner(h.value);
      any = true;
    }
    o.put('"');
  }
}

// Traefik's json line: logrus' JSONFormatter over the kept core fields, the header fields, and
// level/msg/time, keys sorted. Fields Traefik leaves out of a line are left out the same way: the
// Request{Addr,Host,Port} without a Host, the Origin* when no router took the exchange, the router
// and service names before one did, TLS* without TLS.
size_t LineFormatter::format_json(const ExchangeRecord& r, int32_t utc_offset_s, Out& o, bool with_headers) const {
  bool first = true;
  auto key = [&](Field f) {
    if (!keep_[f]) return false;
    if (!first) o.put(',');
    first = false;
    o.append(kFieldKeys[f]);
    return true;
  };
  auto string_field = [&](Field f, std::string_view v) {
    if (key(f)) o.json(v);
  };
  auto number_field = [&](Field f, auto v) {
    if (key(f)) o.number(v);
  };

  char ip[INET6_ADDRSTRLEN];
  const std::string_view client_ip = ip_text(r.client, ip);
  char port_text[8];
  const std::string_view client_port(port_text, static_cast<size_t>(
                                                    std::to_chars(port_text, port_text + sizeof port_text, r.client_port).ptr - port_text));
  std::string_view request_host, request_port;
  split_host_port(r.host, request_host, request_port);
  const bool has_origin = !r.router.empty() || r.origin_status != 0;
  const int64_t overhead = r.duration_ns - (has_origin ? r.origin_duration_ns : 0);

  o.put('{');
  if (key(kClientAddr)) {
    o.put('"');
    if (r.client.is_v6()) o.put('[');
    o.append(client_ip);
    if (r.client.is_v6()) o.put(']');
    o.put(':');
    o.append(client_port);
    o.put('"');
  }
  string_field(kClientHost, !r.forwarded_for.empty() ? r.forwarded_for : client_ip);
  string_field(kClientPort, client_port);
  string_field(kClientUsername, r.username.empty() ? std::string_view("-") : r.username);
  number_field(kDownstreamContentSize, r.response_bytes);
  number_field(kDownstreamStatus, r.status);
  number_field(kDuration, r.duration_ns);
  if (has_origin && r.response_bytes != 0 && r.response_bytes != r.origin_bytes && key(kGzipRatio)) {
    auto [q, ec] = std::to_chars(o.p, o.end, static_cast<double>(r.origin_bytes) / static_cast<double>(r.response_bytes),
                                 std::chars_format::fixed);
    if (ec == std::errc()) o.p = q;
    else o.ok = false;
  }
  if (has_origin) {
    number_field(kOriginContentSize, r.origin_bytes);
    number_field(kOriginDuration, r.origin_duration_ns);
    number_field(kOriginStatus, r.origin_status);
  }
  number_field(kOverhead, overhead);
  if (!r.host.empty()) string_field(kRequestAddr, r.host);
  number_field(kRequestContentSize, r.request_bytes);
  number_field(kRequestCount, r.request_count);
  if (!r.host.empty()) string_field(kRequestHost, request_host);
  string_field(kRequestMethod, r.method);
  string_field(kRequestPath, request_path(r.target));
  if (!r.host.empty()) string_field(kRequestPort, request_port);
  string_field(kRequestProtocol, r.http_version);
  string_field(kRequestScheme, r.tls ? "https" : "http");
  number_field(kRetryAttempts, r.retry_attempts);
  if (!r.router.empty()) string_field(kRouterName, r.router);
  if (!r.service_url.empty()) {
    const std::string_view addr = url_authority(r.service_url);
    if (!addr.empty()) string_field(kServiceAddr, addr);
  }
  if (!r.service.empty()) string_field(kServiceName, r.service);
  if (!r.service_url.empty()) string_field(kServiceURL, r.service_url);
  if (key(kStartLocal)) {
    o.put('"');
    o.rfc3339(r.start_unix_ns, utc_offset_s, true);
    o.put('"');
  }
  if (key(kStartUTC)) {
    o.put('"');
    o.rfc3339(r.start_unix_ns, 0, true);
    o.put('"');
  }
  if (r.tls && !r.tls_cipher.empty()) string_field(kTLSCipher, r.tls_cipher);
  if (!r.tls_client_subject.empty()) string_field(kTLSClientSubject, r.tls_client_subject);
  if (r.tls && !r.tls_version.empty()) string_field(kTLSVersion, r.tls_version);
  // downstream_: berth keeps no separate list of the headers it sent; they are the server's
  // (origin) headers, which is what the client got unless a middleware edited the response.
  if (with_headers) header_fields(o, first, r.origin_headers, "downstream_", false);
  if (!r.entry_point_name.empty()) string_field(kEntryPointName, r.entry_point_name);
  if (!first) o.put(',');
  first = false;
  o.append(R"("level":"info","msg":"")");
  if (with_headers) {
    header_fields(o, first, r.origin_headers, "origin_", false);
    header_fields(o, first, r.request_headers, "request_", true);
  }
  // logrus' entry time, RFC 3339 in whole seconds: when the line was made (the exchange's end).
  o.append(R"(,"time":")");
  o.rfc3339(r.start_unix_ns + r.duration_ns, utc_offset_s, false);
  o.put('"');
  o.put('}');
  o.put('\n');
  return o.result();
}

// One worker's ring: a single-producer single-consumer byte queue of whole lines. `tail` and
// `head` only grow; the producer owns tail, the writer owns head.
struct AccessLog::Ring {
  explicit Ring(size_t bytes) : data(new char[bytes]), mask(bytes - 1), scratch(new char[kScratchBytes]) {}

  alignas(64) std::atomic<uint64_t> tail{0};  ///< bytes committed (producer)
  std::atomic<uint64_t> lines_in{0};          ///< lines committed (producer)
  std::atomic<uint64_t> dropped{0};           ///< lines the producer dropped
  uint64_t cached_head = 0;                   ///< producer's last look at head
  alignas(64) std::atomic<uint64_t> head{0};  ///< bytes written out or dropped (writer)
  std::atomic<uint64_t> lines_out{0};         ///< lines written out or dropped (writer)
  alignas(64) std::unique_ptr<char[]> data;
  size_t mask;
  std::unique_ptr<char[]> scratch;            ///< where the producer formats a line

  size_t capacity() const { return mask + 1; }
  size_t count_newlines(uint64_t from, uint64_t to) const {
    size_t lines = 0;
    while (from < to) {
      const size_t at = static_cast<size_t>(from & mask);
      const size_t chunk = std::min<uint64_t>(to - from, capacity() - at);
      const char* p = data.get() + at;
      const char* const end = p + chunk;
      while ((p = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)))) != nullptr) {
        ++lines;
        if (++p == end) break;
      }
      from += chunk;
    }
    return lines;
  }
};

Result<std::unique_ptr<AccessLog>> AccessLog::open(const config::AccessLogConfig& config, size_t workers,
                                                   Options options) {
  size_t ring = options.ring_bytes;
  if (ring == 0) {
    // bufferingSize lines must fit while they wait: room for ~512 bytes each.
    ring = std::max<size_t>(kDefaultRingBytes, static_cast<size_t>(config.buffering_size) * 512);
    ring = std::min(ring, kMaxRingBytes);
  }
  size_t bytes = 4096;
  while (bytes < ring) bytes <<= 1;
  std::unique_ptr<AccessLog> log(new AccessLog(config, std::max<size_t>(workers, 1), bytes));
  if (!config.file_path.empty()) {
    auto fd = berth::log::open_append(config.file_path);
    if (!fd) return Error{"accessLog.filePath", fd.error().to_string()};
    log->fd_ = *fd;
  }
  if (options.start_writer) log->writer_ = std::thread([raw = log.get()] { raw->run(); });
  return log;
}

AccessLog::AccessLog(const config::AccessLogConfig& config, size_t workers, size_t ring_bytes)
    : formatter_(config), path_(config.file_path), buffering_(static_cast<uint64_t>(config.buffering_size)) {
  for (size_t i = 0; i < workers; ++i) rings_.push_back(std::make_unique<Ring>(ring_bytes));
  utc_offset_s_.store(local_utc_offset(), std::memory_order_relaxed);
  offset_refreshed_ns_ = steady_now_ns();
}

AccessLog::~AccessLog() { stop(); }

void AccessLog::record(size_t worker, const ExchangeRecord& r) {
  if (worker >= rings_.size() || !formatter_.keep(r)) return;
  Ring& ring = *rings_[worker];
  const size_t n =
      formatter_.format(r, utc_offset_s_.load(std::memory_order_relaxed), ring.scratch.get(), kScratchBytes);
  const auto count_drop = [&ring] {
    ring.dropped.store(ring.dropped.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  };
  if (n == 0) return count_drop();
  const uint64_t tail = ring.tail.load(std::memory_order_relaxed);
  if (tail + n - ring.cached_head > ring.capacity()) {
    ring.cached_head = ring.head.load(std::memory_order_acquire);
    if (tail + n - ring.cached_head > ring.capacity()) return count_drop();
  }
  const size_t at = static_cast<size_t>(tail & ring.mask);
  const size_t first = std::min(n, ring.capacity() - at);
  std::memcpy(ring.data.get() + at, ring.scratch.get(), first);
  if (first < n) std::memcpy(ring.data.get(), ring.scratch.get() + first, n - first);
  const uint64_t lines = ring.lines_in.load(std::memory_order_relaxed) + 1;
  ring.lines_in.store(lines, std::memory_order_relaxed);
  ring.tail.store(tail + n, std::memory_order_release);
  // Wake a sleeping writer for the first line after a quiet spell (bufferingSize 0) or once
  // bufferingSize lines wait. The fence pairs with the writer's between announcing its sleep and
  // looking at the rings: one of the two sees the other.
  if (buffering_ == 0 || lines - ring.lines_out.load(std::memory_order_relaxed) >= buffering_) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (writer_sleeping_.load(std::memory_order_relaxed) != 0 && writer_sleeping_.exchange(0) != 0)
      futex_wake(writer_sleeping_);
  }
}

void AccessLog::reopen() {
  reopen_requested_.store(true, std::memory_order_seq_cst);
  wake_writer();
}

uint64_t AccessLog::dropped_lines() const {
  uint64_t n = writer_dropped_.load(std::memory_order_relaxed);
  for (const auto& ring : rings_) n += ring->dropped.load(std::memory_order_relaxed);
  return n;
}

void AccessLog::drain() {
  if (reopen_requested_.exchange(false, std::memory_order_acq_rel)) reopen_file();
  refresh_utc_offset();
  drain_rings();
}

void AccessLog::stop() {
  if (stopped_) return;
  stopped_ = true;
  stopping_.store(true, std::memory_order_seq_cst);
  wake_writer();
  if (writer_.joinable()) writer_.join();
  else drain_rings();
  if (fd_ > 2) ::close(fd_);
  fd_ = -1;
}

void AccessLog::wake_writer() {
  writer_sleeping_.store(0, std::memory_order_seq_cst);
  futex_wake(writer_sleeping_);
}

// The writer: drain every ring, then wait. While lines keep coming it polls every few ms (not at
// all while they pour in), so workers never wake it; once the rings stay empty it sleeps until a worker's wake (bufferingSize
// 0: the next line; else bufferingSize lines), a stop or reopen, or 100 ms.
void AccessLog::run() {
  while (true) {
    const bool stopping = stopping_.load(std::memory_order_acquire);
    if (reopen_requested_.exchange(false, std::memory_order_acq_rel)) reopen_file();
    refresh_utc_offset();
    const size_t bytes = drain_rings();
    if (stopping) {
      if (bytes == 0) return;
      continue;
    }
    if (bytes >= kBusyBytes) continue;  // the rings fill fast: drain again at once
    if (bytes > 0 && buffering_ == 0) {
      futex_wait(writer_sleeping_, 0, kBusyPoll);  // value 0: only stop() and reopen() wake it
      continue;
    }
    writer_sleeping_.store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (!has_work()) futex_wait(writer_sleeping_, 1, kMaxLatency);
    writer_sleeping_.store(0, std::memory_order_relaxed);
  }
}

bool AccessLog::has_work() const {
  if (stopping_.load(std::memory_order_relaxed) || reopen_requested_.load(std::memory_order_relaxed)) return true;
  for (const auto& ring : rings_) {
    if (buffering_ == 0 ? ring->tail.load(std::memory_order_relaxed) != ring->head.load(std::memory_order_relaxed)
                        : ring->lines_in.load(std::memory_order_relaxed) -
                                  ring->lines_out.load(std::memory_order_relaxed) >=
                              buffering_)
      return true;
  }
  return false;
}

size_t AccessLog::drain_rings() {
  size_t bytes = 0;
  for (auto& ring : rings_) bytes += write_ring(*ring);
  return bytes;
}

// Writes what `ring` holds. A failed write (ENOSPC, EIO, a closed stdout...) drops the rest of
// what was taken and counts its lines: the rings must keep moving whatever the disk does.
size_t AccessLog::write_ring(Ring& ring) {
  const uint64_t head = ring.head.load(std::memory_order_relaxed);
  const uint64_t tail = ring.tail.load(std::memory_order_acquire);
  if (tail == head) return 0;
  uint64_t pos = head;
  int error = 0;
  while (pos < tail) {
    const size_t at = static_cast<size_t>(pos & ring.mask);
    const size_t chunk = std::min<uint64_t>(tail - pos, ring.capacity() - at);
    const ssize_t w = fd_ >= 0 ? ::write(fd_, ring.data.get() + at, chunk) : -1;
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      error = w < 0 ? errno : EIO;
      break;
    }
    pos += static_cast<uint64_t>(w);
  }
  const size_t written = ring.count_newlines(head, pos);
  const size_t dropped = pos < tail ? ring.count_newlines(pos, tail) : 0;
  ring.head.store(tail, std::memory_order_release);
  ring.lines_out.store(ring.lines_out.load(std::memory_order_relaxed) + written + dropped, std::memory_order_relaxed);
  written_.fetch_add(written, std::memory_order_relaxed);
  if (dropped > 0) writer_dropped_.fetch_add(dropped, std::memory_order_relaxed);
  if (error != 0 && !failing_) {
    failing_ = true;
    LOG_ERROR("access log: cannot write to ", target_name(), ": ", std::strerror(error),
              "; dropping lines until writing works again");
  } else if (error == 0 && failing_) {
    failing_ = false;
    LOG_WARN("access log: writing to ", target_name(), " again; ", dropped_lines(), " lines dropped so far");
  }
  return static_cast<size_t>(tail - head);
}

void AccessLog::reopen_file() {
  if (path_.empty()) return;
  auto fd = berth::log::open_append(path_);
  if (!fd) {
    LOG_ERROR("accessLog.filePath: ", fd.error().to_string(), " (still writing to the old file)");
    return;
  }
  if (fd_ > 2) ::close(fd_);
  fd_ = *fd;
}

void AccessLog::refresh_utc_offset() {
  const int64_t now = steady_now_ns();
  if (now - offset_refreshed_ns_ < 1'000'000'000) return;
  offset_refreshed_ns_ = now;
  utc_offset_s_.store(local_utc_offset(), std::memory_order_relaxed);
}

}  // namespace berth::proxy::observe
