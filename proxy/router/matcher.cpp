// Matcher compilation and evaluation; see matcher.h.
#include "proxy/router/matcher.h"

#include "base/text.h"

namespace berth::proxy::router {
namespace {

// Matchers of Traefik v3 that a later issue implements: named so the error says "not supported yet".
constexpr std::string_view kKnownLater[] = {"HostRegexp", "PathRegexp", "Header", "HeaderRegexp",
                                            "Query", "QueryRegexp", "ClientIP"};

Error at(const config::RuleNode& node, std::string message) {
  return Error{"column " + std::to_string(node.column), std::move(message)};
}

}  // namespace

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
  for (auto later : kKnownLater)
    if (name == later) return at(node, "matcher " + name + " is not supported yet");
  return at(node, "unknown matcher \"" + name + "\"");
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
    case Kind::kMethod:
      return req.method == arg_;
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
