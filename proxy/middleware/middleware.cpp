// The middlewares berth implements so far, with Traefik's semantics; see middleware.h.
#include "proxy/middleware/middleware.h"

#include <re2/re2.h>

#include <cctype>
#include <chrono>
#include <cstring>

#include "base/text.h"
#include "proxy/middleware/auth.h"
#include "proxy/middleware/circuit_breaker.h"
#include "proxy/middleware/cors.h"
#include "proxy/middleware/pass_tls_client_cert.h"
#include "proxy/middleware/forward_auth.h"
#include "proxy/middleware/retry_expression.h"
#include "proxy/middleware/traffic.h"

namespace berth::proxy::middleware {
namespace {

using namespace std::string_view_literals;

// Sets the request path, building into the scratch buffer first: `path` may view edits.path.
void set_path(Context& ctx, std::string_view a, std::string_view b = {}) {
  ctx.edits.scratch.assign(a).append(b);
  std::swap(ctx.edits.path, ctx.edits.scratch);
  ctx.edits.path_set = true;
  ctx.path = ctx.edits.path;
}

class AddPrefix final : public Middleware {
 public:
  explicit AddPrefix(std::string prefix) : prefix_(std::move(prefix)) {}
  bool on_request(Context& ctx) const override {
    set_path(ctx, prefix_, ctx.path);
    return true;
  }

 private:
  std::string prefix_;
};

class StripPrefix final : public Middleware {
 public:
  explicit StripPrefix(std::vector<std::string> prefixes) : prefixes_(std::move(prefixes)) {}
  bool on_request(Context& ctx) const override {
    // The first listed prefix that matches is removed; the result always starts with "/".
    for (const auto& p : prefixes_) {
      if (p.empty() || ctx.path.substr(0, p.size()) != p) continue;
      std::string_view rest = ctx.path.substr(p.size());
      ctx.edits.request.emplace_back("X-Forwarded-Prefix", p);
      if (rest.empty() || rest[0] != '/') set_path(ctx, "/", rest);
      else set_path(ctx, rest);
      return true;
    }
    return true;
  }

 private:
  std::vector<std::string> prefixes_;
};

class ReplacePath final : public Middleware {
 public:
  explicit ReplacePath(std::string path) : path_(std::move(path)) {}
  bool on_request(Context& ctx) const override {
    ctx.edits.replaced_path.assign(ctx.path);
    ctx.edits.request.emplace_back("X-Replaced-Path", ctx.edits.replaced_path);
    set_path(ctx, path_);
    return true;
  }

 private:
  std::string path_;
};

// Go's Regexp.Expand template ($1, ${1}, $name, ${name}, $$) as an RE2 rewrite string (\1, \\).
Result<std::string> to_re2_rewrite(std::string_view go, const RE2& re, const std::string& where) {
  std::string out;
  const auto& names = re.NamedCapturingGroups();
  for (size_t i = 0; i < go.size(); ++i) {
    char c = go[i];
    if (c == '\\') {
      out += "\\\\";
      continue;
    }
    if (c != '$') {
      out += c;
      continue;
    }
    if (i + 1 < go.size() && go[i + 1] == '$') {
      out += '$';
      ++i;
      continue;
    }
    std::string_view name;
    if (i + 1 < go.size() && go[i + 1] == '{') {
      size_t close = go.find('}', i + 2);
      if (close == std::string_view::npos) return Error{where, "replacement \"" + std::string(go) + "\": missing \"}\""};
      name = go.substr(i + 2, close - i - 2);
      i = close;
    } else {
      size_t j = i + 1;
      while (j < go.size() && (std::isalnum(static_cast<unsigned char>(go[j])) || go[j] == '_')) ++j;
      name = go.substr(i + 1, j - i - 1);
      i = j - 1;
    }
    int group = -1;
    if (auto n = parse_uint(name)) group = *n <= 1000 ? static_cast<int>(*n) : -1;
    else if (auto it = names.find(std::string(name)); it != names.end()) group = it->second;
    if (group < 0 || group > re.NumberOfCapturingGroups()) continue;  // Go expands an unknown group to ""
    if (group > 9) return Error{where, "replacement refers to group " + std::to_string(group) + "; at most 9 are supported"};
    out += '\\';
    out += static_cast<char>('0' + group);
  }
  return out;
}

std::unique_ptr<RE2> make_regex(const std::string& pattern) {
  RE2::Options options;
  options.set_log_errors(false);
  return std::make_unique<RE2>(pattern, options);
}

class StripPrefixRegex final : public Middleware {
 public:
  explicit StripPrefixRegex(std::vector<std::unique_ptr<RE2>> regexes) : regexes_(std::move(regexes)) {}
  bool on_request(Context& ctx) const override {
    for (const auto& re : regexes_) {
      re2::StringPiece match;
      if (!re->Match(ctx.path, 0, ctx.path.size(), RE2::UNANCHORED, &match, 1) || match.empty()) continue;
      std::string_view prefix(match.data(), match.size());
      if (ctx.path.substr(0, prefix.size()) != prefix) continue;
      ctx.edits.stripped.assign(prefix);
      ctx.edits.request.emplace_back("X-Forwarded-Prefix", ctx.edits.stripped);
      std::string_view rest = ctx.path.substr(prefix.size());
      if (rest.empty() || rest[0] != '/') set_path(ctx, "/", rest);
      else set_path(ctx, rest);
      return true;
    }
    return true;
  }

 private:
  std::vector<std::unique_ptr<RE2>> regexes_;
};

class ReplacePathRegex final : public Middleware {
 public:
  ReplacePathRegex(std::unique_ptr<RE2> re, std::string rewrite) : re_(std::move(re)), rewrite_(std::move(rewrite)) {}
  bool on_request(Context& ctx) const override {
    if (!RE2::PartialMatch(ctx.path, *re_)) return true;
    ctx.edits.replaced_path.assign(ctx.path);
    ctx.edits.request.emplace_back("X-Replaced-Path", ctx.edits.replaced_path);
    ctx.edits.scratch.assign(ctx.path);
    RE2::GlobalReplace(&ctx.edits.scratch, *re_, rewrite_);
    std::swap(ctx.edits.path, ctx.edits.scratch);
    ctx.edits.path_set = true;
    ctx.path = ctx.edits.path;
    return true;
  }

 private:
  std::unique_ptr<RE2> re_;
  std::string rewrite_;
};

// The scheme the client used ("https" over TLS), unless a trusted proxy in front says otherwise.
std::string_view request_scheme(const Context& ctx) {
  std::string_view scheme = ctx.tls ? "https" : "http";
  if (ctx.trusted)
    for (const auto& h : ctx.request.headers)
      if (h.id == http::HeaderId::kXForwardedProto) scheme = h.value;
  return scheme;
}

int redirect_status(const Context& ctx, bool permanent) {
  bool get = ctx.request.method == "GET";
  return permanent ? (get ? 301 : 308) : (get ? 302 : 307);
}

class RedirectRegex final : public Middleware {
 public:
  RedirectRegex(std::unique_ptr<RE2> re, std::string rewrite, bool permanent)
      : re_(std::move(re)), rewrite_(std::move(rewrite)), permanent_(permanent) {}
  bool on_request(Context& ctx) const override {
    // Matched against the whole URL, as Traefik does: scheme://host/path?query.
    std::string& url = ctx.edits.scratch;
    url.assign(request_scheme(ctx)).append("://").append(ctx.request.host).append(ctx.path);
    if (!ctx.query.empty()) url.append("?").append(ctx.query);
    if (!RE2::PartialMatch(url, *re_)) return true;
    ctx.edits.location = url;
    RE2::GlobalReplace(&ctx.edits.location, *re_, rewrite_);
    if (ctx.edits.location == url) return true;
    ctx.edits.status = redirect_status(ctx, permanent_);
    return false;
  }

 private:
  std::unique_ptr<RE2> re_;
  std::string rewrite_;
  bool permanent_;
};

class Headers final : public Middleware {
 public:
  Headers(const config::MiddlewareConfig& c, std::optional<Cors> cors)
      : request_(c.request_headers), response_(c.security_headers), custom_from_(c.security_headers.size()),
        sts_(c.sts), public_key_(c.public_key), allowed_hosts_(c.allowed_hosts),
        hosts_proxy_headers_(c.hosts_proxy_headers), ssl_proxy_headers_(c.ssl_proxy_headers),
        force_sts_(c.force_sts), is_development_(c.is_development), cors_(std::move(cors)) {
    // Custom response headers come after the security ones, so they win on the same name.
    response_.insert(response_.end(), c.response_headers.begin(), c.response_headers.end());
  }
  bool on_request(Context& ctx) const override {
    if (cors_ && cors_->is_enabled()) {
      // Echoed values are copied: response edits are read after the request head's bytes may be gone.
      auto& e = ctx.edits;
      e.cors_origin.assign(first_value(ctx, "Origin"));
      e.cors_method.assign(first_value(ctx, "Access-Control-Request-Method"));
      std::string_view origin = e.cors_origin, method = e.cors_method;
      if (cors_->is_preflight(ctx.request.method, origin, method)) {
        // Traefik answers a preflight itself: 200, no body, the Access-Control-* headers only.
        e.cors_headers.assign(first_value(ctx, "Access-Control-Request-Headers"));
        cors_->preflight_headers(origin, method, e.cors_headers, e.response);
        ctx.edits.status = 200;
        ctx.edits.reply_body = ""sv;
        return false;
      }
      cors_->response_headers(origin, ctx.edits.response);
      ctx.edits.cors = &*cors_;
    }
    for (const auto& [k, v] : request_) ctx.edits.request.emplace_back(k, v);
    if (!allowed_hosts_.empty() && !is_development_ && !host_allowed(ctx)) {
      // unrolled/secure's answer; the custom response headers still apply, the security ones not.
      for (size_t i = custom_from_; i < response_.size(); ++i) ctx.edits.response.emplace_back(response_[i]);
      ctx.edits.status = 500;
      ctx.edits.reply_body = "Bad Host\n"sv;
      return false;
    }
    // HSTS and HPKP only mean something on HTTPS (here: a trusted proxy in front, or one of the
    // sslProxyHeaders, says so), unless forced.
    const bool https = !is_development_ && is_https(ctx);
    if (!sts_.empty() && !is_development_ && (force_sts_ || https))
      ctx.edits.response.emplace_back("Strict-Transport-Security", sts_);
    if (!public_key_.empty() && https) ctx.edits.response.emplace_back("Public-Key-Pins", public_key_);
    for (const auto& [k, v] : response_) ctx.edits.response.emplace_back(k, v);
    return true;
  }

 private:
  static std::string_view first_value(const Context& ctx, std::string_view name) {
    for (const auto& h : ctx.request.headers)
      if (iequals(h.name, name)) return h.value;
    return {};
  }

  // A request header as Traefik's middlewares see it: X-Forwarded-* from a peer that is not
  // trusted were replaced by the entry point (Proto and Host by the real ones) or dropped.
  static std::string_view seen_value(const Context& ctx, std::string_view name) {
    const http::HeaderId id = http::header_id(name);
    if (id == http::HeaderId::kXForwardedProto) return request_scheme(ctx);
    if (!ctx.trusted && id == http::HeaderId::kXForwardedHost) return ctx.request.host;
    if (!ctx.trusted && http::is_forwarded_family(id)) return {};
    return first_value(ctx, name);
  }

  // The host as the client asked for it: from the first hostsProxyHeaders header present, else Host.
  bool host_allowed(const Context& ctx) const {
    std::string_view host = ctx.request.host;
    for (const auto& name : hosts_proxy_headers_)
      if (std::string_view v = seen_value(ctx, name); !v.empty()) {
        host = v;
        break;
      }
    for (const auto& allowed : allowed_hosts_)
      if (iequals(allowed, host)) return true;
    return false;
  }

  bool is_https(const Context& ctx) const {
    if (iequals(request_scheme(ctx), "https")) return true;
    for (const auto& [name, value] : ssl_proxy_headers_)
      if (seen_value(ctx, name) == value) return true;
    return false;
  }

  std::vector<std::pair<std::string, std::string>> request_, response_;
  size_t custom_from_;  ///< response_ from here on: the custom response headers
  std::string sts_, public_key_;
  std::vector<std::string> allowed_hosts_, hosts_proxy_headers_;
  std::vector<std::pair<std::string, std::string>> ssl_proxy_headers_;
  bool force_sts_, is_development_;
  std::optional<Cors> cors_;
};

// circuitBreaker: one breaker per worker (each judges its own share of the traffic; no sharing, no
// locks), as oxy runs one per router.
class Breaker final : public Middleware {
 public:
  Breaker(const BreakerExpression& expression, CircuitBreakerOptions options, uint32_t workers) {
    for (uint32_t i = 0; i < std::max(workers, 1u); ++i)
      per_worker_.push_back(std::make_unique<CircuitBreaker>(expression, options));
  }
  bool on_request(Context& ctx) const override {
    CircuitBreaker& b = *per_worker_[ctx.worker % per_worker_.size()];
    const int64_t now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                               std::chrono::steady_clock::now().time_since_epoch()).count();
    if (!b.allow(now_us / 1000)) {
      ctx.edits.status = b.response_code();
      return false;
    }
    ctx.edits.breaker = &b;
    ctx.edits.started_us = now_us;
    return true;
  }

 private:
  std::vector<std::unique_ptr<CircuitBreaker>> per_worker_;
};

// contentType: a response without Content-Type gets one sniffed from its body (Go's algorithm).
class ContentType final : public Middleware {
 public:
  explicit ContentType(bool auto_detect) : auto_detect_(auto_detect) {}
  bool on_request(Context& ctx) const override {
    ctx.edits.sniff_content_type |= auto_detect_;
    return true;
  }

 private:
  bool auto_detect_;
};

// buffering: bodies are read whole (within the limits) before they move on; see forwarder.cpp.
class Buffering final : public Middleware {
 public:
  Buffering(BufferingPolicy policy, std::optional<RetryExpression> expression)
      : policy_(policy), expression_(std::move(expression)) {
    if (expression_) policy_.retry_expression = &*expression_;
  }
  bool on_request(Context& ctx) const override {
    // A declared length over the limit is refused before a byte of the body is read.
    if (policy_.max_request_body_bytes > 0 && ctx.request.framing.content_length > policy_.max_request_body_bytes) {
      ctx.edits.status = 413;
      return false;
    }
    ctx.edits.buffering = &policy_;
    return true;
  }

 private:
  BufferingPolicy policy_;
  std::optional<RetryExpression> expression_;
};

// errors: the request flow asks for a page when the answer's status matches; the request's Host and
// target are kept now, while they can still be read.
class Errors final : public Middleware {
 public:
  explicit Errors(ErrorPages pages) : pages_(std::move(pages)) {}
  bool on_request(Context& ctx) const override {
    ctx.edits.error_pages = &pages_;
    ctx.edits.page_host.assign(ctx.request.host);
    ctx.edits.page_uri.assign(ctx.request.target);
    return true;
  }

 private:
  ErrorPages pages_;
};

Result<ErrorPages> compile_error_pages(const config::MiddlewareConfig& c, const CompileOptions& options) {
  ErrorPages pages;
  for (const auto& item : c.status) {
    std::string_view text = trim(item);
    size_t dash = text.find('-');
    auto lo = parse_uint(text.substr(0, dash));
    auto hi = dash == std::string_view::npos ? lo : parse_uint(text.substr(dash + 1));
    if (!lo || !hi || *lo < 100 || *hi > 599 || *lo > *hi)
      return Error{c.where, "middleware " + c.name + ": status \"" + item + "\" is not a status or a range like 500-599"};
    pages.ranges.emplace_back(static_cast<int>(*lo), static_cast<int>(*hi));
  }
  auto service = options.find_service ? options.find_service(c.service) : std::nullopt;
  if (!service) return Error{c.where, "middleware " + c.name + ": service \"" + c.service + "\" does not exist or is invalid"};
  pages.service = *service;
  pages.query = c.query.empty() ? "/" : c.query;
  return pages;
}

// compress: picks the encoding from Accept-Encoding now; the request flow decides on the response
// (type, size, not already encoded) and streams it through a compressor.
class Compress final : public Middleware {
 public:
  Compress(http::EncodingPolicy encodings, CompressPolicy policy)
      : encodings_(encodings), policy_(std::move(policy)) {}
  bool on_request(Context& ctx) const override {
    if (ctx.request.method == "HEAD") return true;
    http::AcceptEncoding accept;
    for (const auto& h : ctx.request.headers)
      if (h.id == http::HeaderId::kAcceptEncoding) accept.add(h.value);
    http::Encoding e = accept.choose(encodings_);
    if (e != http::Encoding::kIdentity) {
      ctx.edits.compress = &policy_;
      ctx.edits.encoding = e;
    }
    return true;
  }

 private:
  http::EncodingPolicy encodings_;
  CompressPolicy policy_;
};

class Retry final : public Middleware {
 public:
  explicit Retry(RetryPolicy policy) : policy_(policy) {}
  bool on_request(Context& ctx) const override {
    ctx.edits.retry = &policy_;
    return true;
  }

 private:
  RetryPolicy policy_;
};

class RedirectScheme final : public Middleware {
 public:
  RedirectScheme(std::string scheme, std::string port, bool permanent)
      : scheme_(to_lower(scheme)), permanent_(permanent) {
    // A default port for the scheme is left out of the URL, as Traefik does.
    if (!port.empty() && !(scheme_ == "http" && port == "80") && !(scheme_ == "https" && port == "443"))
      port_ = ":" + port;
  }
  bool on_request(Context& ctx) const override {
    if (iequals(request_scheme(ctx), scheme_)) return true;
    std::string_view host = ctx.request.host;
    if (auto colon = host.rfind(':'); colon != std::string_view::npos && host.find(']', colon) == std::string_view::npos)
      host = host.substr(0, colon);
    std::string& loc = ctx.edits.location;
    loc.assign(scheme_).append("://").append(host).append(port_).append(ctx.path);
    if (!ctx.query.empty()) loc.append("?").append(ctx.query);
    ctx.edits.status = redirect_status(ctx, permanent_);
    return false;
  }

 private:
  std::string scheme_, port_;
  bool permanent_;
};

class IpAllowList final : public Middleware {
 public:
  IpAllowList(std::vector<IpNet> ranges, IpStrategy strategy, int reject_status)
      : ranges_(std::move(ranges)), strategy_(std::move(strategy)), reject_status_(reject_status) {}

  bool on_request(Context& ctx) const override {
    boost::asio::ip::address client;
    if (strategy_.client_ip(ctx, client))
      for (const auto& r : ranges_)
        if (r.contains(client)) return true;
    ctx.edits.status = reject_status_;
    return false;
  }

 private:
  std::vector<IpNet> ranges_;
  IpStrategy strategy_;
  int reject_status_;
};

}  // namespace

bool IpStrategy::client_ip(const Context& ctx, boost::asio::ip::address& out) const {
  if (depth == 0 && excluded.empty()) {
    out = ctx.peer;
    return true;
  }
  // Only a trusted peer's X-Forwarded-For counts (berth drops it from others).
  if (!ctx.trusted) return false;
  std::string_view items[64];
  size_t n = 0;
  for (const auto& h : ctx.request.headers) {
    if (h.id != http::HeaderId::kXForwardedFor) continue;
    std::string_view v = h.value;
    while (!v.empty() && n < 64) {
      size_t comma = v.find(',');
      items[n++] = trim(v.substr(0, comma));
      v = comma == std::string_view::npos ? std::string_view{} : v.substr(comma + 1);
    }
  }
  auto parse = [](std::string_view text, boost::asio::ip::address& a) {
    boost::system::error_code ec;
    char buf[64];
    if (text.size() >= sizeof buf) return false;
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = 0;
    a = boost::asio::ip::make_address(buf, ec);
    return !ec;
  };
  if (depth > 0) return static_cast<size_t>(depth) <= n && parse(items[n - depth], out);
  for (size_t i = n; i-- > 0;) {
    boost::asio::ip::address a;
    if (!parse(items[i], a)) return false;
    bool is_excluded = false;
    for (const auto& e : excluded) is_excluded |= e.contains(a);
    if (!is_excluded) {
      out = a;
      return true;
    }
  }
  return false;
}

Result<std::vector<IpNet>> parse_nets(const config::MiddlewareConfig& c, const std::vector<std::string>& texts,
                                      std::string_view option) {
  std::vector<IpNet> nets;
  for (const auto& t : texts) {
    auto net = IpNet::parse(t);
    if (!net) return Error{c.where, "middleware " + c.name + ": " + std::string(option) + " \"" + t +
                                        "\" is not an IP address or CIDR range"};
    nets.push_back(*net);
  }
  return nets;
}

Result<std::unique_ptr<Middleware>> compile(const config::MiddlewareConfig& c, const CompileOptions& options) {
  auto regex = [&](const std::string& pattern) -> Result<std::unique_ptr<RE2>> {
    auto re = make_regex(pattern);
    if (!re->ok())
      return Error{c.where, "middleware " + c.name + ": invalid regular expression \"" + pattern + "\": " + re->error()};
    return re;
  };
  if (c.type == "stripPrefixRegex") {
    std::vector<std::unique_ptr<RE2>> regexes;
    for (const auto& p : c.regexes) {
      auto re = regex(p);
      if (!re) return re.error();
      regexes.push_back(std::move(*re));
    }
    return std::unique_ptr<Middleware>(new StripPrefixRegex(std::move(regexes)));
  }
  if (c.type == "replacePathRegex" || c.type == "redirectRegex") {
    auto re = regex(c.regexes.empty() ? std::string() : c.regexes[0]);
    if (!re) return re.error();
    auto rewrite = to_re2_rewrite(c.replacement, **re, c.where);
    if (!rewrite) return Error{c.where, "middleware " + c.name + ": " + rewrite.error().message};
    if (c.type == "replacePathRegex")
      return std::unique_ptr<Middleware>(new ReplacePathRegex(std::move(*re), std::move(*rewrite)));
    return std::unique_ptr<Middleware>(new RedirectRegex(std::move(*re), std::move(*rewrite), c.permanent));
  }
  if (c.type == "ipAllowList") {
    auto ranges = parse_nets(c, c.source_range, "sourceRange");
    if (!ranges) return ranges.error();
    auto excluded = parse_nets(c, c.excluded_ips, "excludedIPs");
    if (!excluded) return excluded.error();
    return std::unique_ptr<Middleware>(new IpAllowList(std::move(*ranges), IpStrategy{c.ip_depth, std::move(*excluded)},
                                                       c.reject_status));
  }
  if (c.type == "basicAuth") return compile_basic_auth(c);
  if (c.type == "buffering") {
    std::optional<RetryExpression> expression;
    if (!c.retry_expression.empty()) {
      auto parsed = RetryExpression::parse(c.retry_expression);
      if (!parsed)
        return Error{c.where, "middleware " + c.name + ": retryExpression \"" + c.retry_expression + "\": " +
                                  parsed.error().where + ": " + parsed.error().message};
      expression = std::move(*parsed);
    }
    return std::unique_ptr<Middleware>(
        new Buffering(BufferingPolicy{c.max_request_body_bytes, c.max_response_body_bytes}, std::move(expression)));
  }
  if (c.type == "errors") {
    auto pages = compile_error_pages(c, options);
    if (!pages) return pages.error();
    return std::unique_ptr<Middleware>(new Errors(std::move(*pages)));
  }
  if (c.type == "forwardAuth") return compile_forward_auth(c);
  if (c.type == "compress") {
    auto encodings = http::make_encoding_policy(c.encodings, c.default_encoding);
    if (!encodings) return Error{c.where, "middleware " + c.name + ": " + encodings.error().message};
    auto filter = http::make_content_type_filter(c.excluded_content_types, c.included_content_types);
    if (!filter) return Error{c.where, "middleware " + c.name + ": " + filter.error().message};
    return std::unique_ptr<Middleware>(new Compress(*encodings, CompressPolicy{std::move(*filter), c.min_response_body_bytes}));
  }
  if (c.type == "contentType") return std::unique_ptr<Middleware>(new ContentType(c.auto_detect));
  if (c.type == "passTLSClientCert") return compile_pass_tls_client_cert(c);
  if (c.type == "circuitBreaker") {
    auto expression = BreakerExpression::parse(c.expression);
    if (!expression)
      return Error{c.where, "middleware " + c.name + ": expression \"" + c.expression + "\": " +
                                expression.error().where + ": " + expression.error().message};
    CircuitBreakerOptions o{c.check_period, c.fallback_duration, c.recovery_duration, c.response_code};
    return std::unique_ptr<Middleware>(new Breaker(*expression, o, options.workers));
  }
  if (c.type == "retry") return std::unique_ptr<Middleware>(new Retry(RetryPolicy{c.attempts, c.initial_interval}));
  if (c.type == "rateLimit") return compile_rate_limit(c);
  if (c.type == "inFlightReq") return compile_in_flight_req(c);
  if (c.type == "digestAuth") return compile_digest_auth(c);
  if (c.type == "addPrefix") return std::unique_ptr<Middleware>(new AddPrefix(c.prefix));
  if (c.type == "stripPrefix") return std::unique_ptr<Middleware>(new StripPrefix(c.prefixes));
  if (c.type == "replacePath") return std::unique_ptr<Middleware>(new ReplacePath(c.path));
  if (c.type == "headers") {
    std::optional<Cors> cors;
    if (c.cors) {
      CorsConfig cc{c.cors_allow_credentials, c.cors_allow_headers, c.cors_allow_methods, c.cors_allow_origins,
                    c.cors_allow_origin_regexes, c.cors_expose_headers, std::nullopt, c.cors_add_vary};
      if (c.cors_max_age >= 0 && c.cors_max_age_set) cc.max_age = c.cors_max_age;
      auto compiled = Cors::compile(cc);
      if (!compiled) return Error{c.where, "middleware " + c.name + ": " + compiled.error().message};
      cors = std::move(*compiled);
    }
    return std::unique_ptr<Middleware>(new Headers(c, std::move(cors)));
  }
  if (c.type == "redirectScheme")
    return std::unique_ptr<Middleware>(new RedirectScheme(c.scheme, c.port, c.permanent));
  return Error{c.where, "middleware " + c.name + ": type " + c.type + " cannot be compiled"};
}

void record_outcome(Edits& edits) {
  if (!edits.breaker || edits.final_status == 0) return;
  const int64_t now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::steady_clock::now().time_since_epoch()).count();
  edits.breaker->record(now_us / 1000, edits.final_status, edits.network_error, now_us - edits.started_us);
  edits.breaker = nullptr;
}

bool apply(const std::vector<const Middleware*>& chain, Context& ctx) {
  for (const Middleware* m : chain)
    if (!m->on_request(ctx)) return false;
  return true;
}

bool edits_header(const HeaderEdits& edits, std::string_view name) {
  for (const auto& [k, v] : edits)
    if (iequals(k, name)) return true;
  return false;
}

}  // namespace berth::proxy::middleware
