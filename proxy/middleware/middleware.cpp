// The middlewares berth implements so far, with Traefik's semantics; see middleware.h.
#include "proxy/middleware/middleware.h"

#include <cstring>

#include "base/text.h"

namespace berth::proxy::middleware {
namespace {

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

class Headers final : public Middleware {
 public:
  Headers(std::vector<std::pair<std::string, std::string>> request,
          std::vector<std::pair<std::string, std::string>> response)
      : request_(std::move(request)), response_(std::move(response)) {}
  bool on_request(Context& ctx) const override {
    for (const auto& [k, v] : request_) ctx.edits.request.emplace_back(k, v);
    for (const auto& [k, v] : response_) ctx.edits.response.emplace_back(k, v);
    return true;
  }

 private:
  std::vector<std::pair<std::string, std::string>> request_, response_;
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
    std::string_view scheme = "http";  // berth has no TLS entry points yet
    if (ctx.trusted)
      for (const auto& h : ctx.request.headers)
        if (h.id == http::HeaderId::kXForwardedProto) scheme = h.value;
    if (iequals(scheme, scheme_)) return true;
    std::string_view host = ctx.request.host;
    if (auto colon = host.rfind(':'); colon != std::string_view::npos && host.find(']', colon) == std::string_view::npos)
      host = host.substr(0, colon);
    std::string& loc = ctx.edits.location;
    loc.assign(scheme_).append("://").append(host).append(port_).append(ctx.path);
    if (!ctx.query.empty()) loc.append("?").append(ctx.query);
    bool get = ctx.request.method == "GET";
    ctx.edits.status = permanent_ ? (get ? 301 : 308) : (get ? 302 : 307);
    return false;
  }

 private:
  std::string scheme_, port_;
  bool permanent_;
};

class IpAllowList final : public Middleware {
 public:
  IpAllowList(std::vector<IpNet> ranges, int depth, std::vector<IpNet> excluded, int reject_status)
      : ranges_(std::move(ranges)), excluded_(std::move(excluded)), depth_(depth), reject_status_(reject_status) {}

  bool on_request(Context& ctx) const override {
    boost::asio::ip::address client;
    bool known = true;
    if (depth_ == 0 && excluded_.empty()) client = ctx.peer;
    else known = from_forwarded_for(ctx, client);
    if (known)
      for (const auto& r : ranges_)
        if (r.contains(client)) return true;
    ctx.edits.status = reject_status_;
    return false;
  }

 private:
  // Traefik's ipStrategy: the depth-th address from the right of X-Forwarded-For, or the rightmost one
  // not in excludedIPs. Only a trusted peer's header counts (berth drops it from others).
  bool from_forwarded_for(const Context& ctx, boost::asio::ip::address& out) const {
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
    if (depth_ > 0) return static_cast<size_t>(depth_) <= n && parse(items[n - depth_], out);
    for (size_t i = n; i-- > 0;) {
      boost::asio::ip::address a;
      if (!parse(items[i], a)) return false;
      bool excluded = false;
      for (const auto& e : excluded_) excluded |= e.contains(a);
      if (!excluded) {
        out = a;
        return true;
      }
    }
    return false;
  }

  std::vector<IpNet> ranges_, excluded_;
  int depth_;
  int reject_status_;
};

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

}  // namespace

Result<std::unique_ptr<Middleware>> compile(const config::MiddlewareConfig& c) {
  if (c.type == "ipAllowList") {
    auto ranges = parse_nets(c, c.source_range, "sourceRange");
    if (!ranges) return ranges.error();
    auto excluded = parse_nets(c, c.excluded_ips, "excludedIPs");
    if (!excluded) return excluded.error();
    return std::unique_ptr<Middleware>(new IpAllowList(std::move(*ranges), c.ip_depth, std::move(*excluded),
                                                       c.reject_status));
  }
  if (c.type == "addPrefix") return std::unique_ptr<Middleware>(new AddPrefix(c.prefix));
  if (c.type == "stripPrefix") return std::unique_ptr<Middleware>(new StripPrefix(c.prefixes));
  if (c.type == "replacePath") return std::unique_ptr<Middleware>(new ReplacePath(c.path));
  if (c.type == "headers") return std::unique_ptr<Middleware>(new Headers(c.request_headers, c.response_headers));
  if (c.type == "redirectScheme")
    return std::unique_ptr<Middleware>(new RedirectScheme(c.scheme, c.port, c.permanent));
  return Error{c.where, "middleware " + c.name + ": type " + c.type + " cannot be compiled"};
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
