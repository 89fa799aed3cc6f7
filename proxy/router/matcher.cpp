// Matcher compilation and evaluation; see matcher.h.
#include "proxy/router/matcher.h"

#include <re2/re2.h>

#include "base/text.h"

namespace berth::proxy::router {
namespace {

Error at(const config::RuleNode& node, std::string message) {
  return Error{"column " + std::to_string(node.column), std::move(message)};
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Go's url.QueryUnescape: %XX and '+' as space; false on a broken escape (Go drops that pair).
bool query_unescape(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += c;
    }
  }
  return true;
}

}  // namespace

Matcher::Matcher() = default;
Matcher::~Matcher() = default;

std::string_view strip_port(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(1, close - 1);
  }
  size_t colon = host.rfind(':');
  if (colon != std::string_view::npos && host.find(':') == colon) host = host.substr(0, colon);
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);  // "example.com." is example.com
  return host;
}

std::string_view port_of(std::string_view host) {
  size_t colon = host.rfind(':');
  if (colon == std::string_view::npos) return {};
  if (host.front() == '[' ? host[colon - 1] != ']' : host.find(':') != colon) return {};
  return host.substr(colon + 1);
}

Result<std::unique_ptr<Matcher>> Matcher::compile(const config::RuleNode& node) {
  auto m = std::make_unique<Matcher>();
  using K = config::RuleNode::Kind;
  if (node.kind != K::kMatcher) {
    m->kind_ = node.kind == K::kAnd ? Kind::kAnd : node.kind == K::kOr ? Kind::kOr : Kind::kNot;
    auto left = compile(*node.left);
    if (!left) return left.error();
    m->left_ = std::move(*left);
    if (node.right) {
      auto right = compile(*node.right);
      if (!right) return right.error();
      m->right_ = std::move(*right);
    }
    return m;
  }
  const std::string& name = node.matcher;
  auto want_one = [&]() -> std::optional<Error> {
    if (node.args.size() != 1)
      return at(node, name + " takes exactly one value, got " + std::to_string(node.args.size()));
    if (node.args[0].empty()) return at(node, name + " value must not be empty");
    return std::nullopt;
  };
  if (name == "Host") {
    if (auto e = want_one()) return *e;
    std::string host = to_lower(node.args[0]);
    if (host == "*") {
      m->kind_ = Kind::kHostAny;
    } else if (host.rfind("*.", 0) == 0) {
      m->kind_ = Kind::kHostWildcard;
      m->arg_ = host.substr(1);
    } else {
      m->kind_ = Kind::kHost;
      m->arg_ = host;
    }
    return m;
  }
  if (name == "Path" || name == "PathPrefix") {
    if (auto e = want_one()) return *e;
    if (node.args[0][0] != '/') return at(node, name + " value must start with \"/\": \"" + node.args[0] + "\"");
    m->kind_ = name == "Path" ? Kind::kPath : Kind::kPathPrefix;
    m->arg_ = node.args[0];
    return m;
  }
  if (name == "Method") {
    if (auto e = want_one()) return *e;
    m->kind_ = Kind::kMethod;
    m->arg_ = node.args[0];
    for (auto& c : m->arg_) c = (c >= 'a' && c <= 'z') ? char(c - 32) : c;
    return m;
  }
  auto compile_regex = [&](const std::string& pattern) -> std::optional<Error> {
    RE2::Options options;
    options.set_log_errors(false);
    m->regex_ = std::make_unique<RE2>(pattern, options);
    if (!m->regex_->ok()) return at(node, name + ": invalid regular expression \"" + pattern + "\": " + m->regex_->error());
    return std::nullopt;
  };
  if (name == "HostRegexp" || name == "PathRegexp") {
    if (auto e = want_one()) return *e;
    m->kind_ = name == "HostRegexp" ? Kind::kHostRegexp : Kind::kPathRegexp;
    if (auto e = compile_regex(node.args[0])) return *e;
    return m;
  }
  if (name == "Header" || name == "HeaderRegexp" || name == "QueryRegexp") {
    if (node.args.size() != 2 || node.args[0].empty())
      return at(node, name + " takes a name and a value, got " + std::to_string(node.args.size()) + " values");
    m->arg_ = node.args[0];
    if (name == "Header") {
      m->kind_ = Kind::kHeader;
      m->value_ = node.args[1];
    } else {
      m->kind_ = name == "HeaderRegexp" ? Kind::kHeaderRegexp : Kind::kQueryRegexp;
      if (auto e = compile_regex(node.args[1])) return *e;
    }
    return m;
  }
  if (name == "Query") {
    if (node.args.empty() || node.args.size() > 2 || node.args[0].empty())
      return at(node, "Query takes a key and an optional value, got " + std::to_string(node.args.size()) + " values");
    m->kind_ = Kind::kQuery;
    m->arg_ = node.args[0];
    m->any_value_ = node.args.size() == 1;
    if (!m->any_value_) m->value_ = node.args[1];
    return m;
  }
  if (name == "ClientIP") {
    if (auto e = want_one()) return *e;
    m->kind_ = Kind::kClientIp;
    m->net_ = IpNet::parse(node.args[0]);
    if (!m->net_) return at(node, "ClientIP: \"" + node.args[0] + "\" is not an IP address or CIDR range");
    return m;
  }
  return at(node, "unknown matcher \"" + name + "\"");
}

bool Matcher::any_query_value(const RequestView& req) const {
  // Query parameters are decoded as Go's url.ParseQuery does; scratch strings keep their capacity
  // across requests, so steady state allocates nothing (HP-1).
  thread_local std::string key, value;
  std::string_view q = req.query;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    if (!query_unescape(pair.substr(0, eq), key) || key != arg_) continue;
    if (!query_unescape(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1), value)) continue;
    if (any_value_) return true;
    if (kind_ == Kind::kQuery ? value == value_ : RE2::PartialMatch(value, *regex_)) return true;
  }
  return false;
}

bool Matcher::matches(const RequestView& req) const {
  switch (kind_) {
    case Kind::kAnd:
      return left_->matches(req) && right_->matches(req);
    case Kind::kOr:
      return left_->matches(req) || right_->matches(req);
    case Kind::kNot:
      return !left_->matches(req);
    case Kind::kHost:
      return iequals(req.host, arg_);
    case Kind::kHostWildcard: {
      // One label exactly: "*.a.com" matches "x.a.com" but not "a.com" or "y.x.a.com".
      if (req.host.size() <= arg_.size()) return false;
      std::string_view suffix = req.host.substr(req.host.size() - arg_.size());
      if (!iequals(suffix, arg_)) return false;
      std::string_view label = req.host.substr(0, req.host.size() - arg_.size());
      return label.find('.') == std::string_view::npos;
    }
    case Kind::kHostAny:
      return true;
    case Kind::kPath:
      return req.path == arg_;
    case Kind::kPathPrefix:
      return req.path.substr(0, arg_.size()) == arg_;
    case Kind::kHostRegexp: {
      // Traefik matches the canonical (lower-case) host, unanchored.
      char lower[256];
      if (req.host.size() > sizeof lower) return false;
      for (size_t i = 0; i < req.host.size(); ++i) lower[i] = lower_ascii(req.host[i]);
      return RE2::PartialMatch(std::string_view(lower, req.host.size()), *regex_);
    }
    case Kind::kPathRegexp:
      return RE2::PartialMatch(req.path, *regex_);
    case Kind::kMethod:
      return req.method == arg_;
    case Kind::kHeader:
    case Kind::kHeaderRegexp:
      if (!req.headers) return false;
      for (const auto& h : *req.headers)
        if (iequals(h.name, arg_) &&
            (kind_ == Kind::kHeader ? h.value == value_ : RE2::PartialMatch(h.value, *regex_)))
          return true;
      return false;
    case Kind::kQuery:
    case Kind::kQueryRegexp:
      return any_query_value(req);
    case Kind::kClientIp:
      return req.client && net_->contains(*req.client);
  }
  return false;
}

bool Matcher::required_hosts(std::vector<std::string>& out) const {
  switch (kind_) {
    case Kind::kHost:
      out.push_back(arg_);
      return true;
    case Kind::kHostWildcard:
      out.push_back("*" + arg_);
      return true;
    case Kind::kAnd: {
      // Either side's host set restricts the conjunction; prefer the left one.
      size_t mark = out.size();
      if (left_->required_hosts(out)) return true;
      out.resize(mark);
      if (right_->required_hosts(out)) return true;
      out.resize(mark);
      return false;
    }
    case Kind::kOr: {
      size_t mark = out.size();
      if (left_->required_hosts(out) && right_->required_hosts(out)) return true;
      out.resize(mark);
      return false;
    }
    default:
      return false;
  }
}

}  // namespace berth::proxy::router
