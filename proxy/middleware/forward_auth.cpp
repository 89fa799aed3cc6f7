// forwardAuth; see forward_auth.h. Follows Traefik's pkg/middlewares/auth/forward.go: a GET to the
// address with the request's headers (or only authRequestHeaders), X-Forwarded-* describing the
// original request, and the answer copied back as described there.
#include "proxy/middleware/forward_auth.h"

#include <re2/re2.h>

#include "base/log.h"
#include "base/text.h"
#include "proxy/upstream/address.h"

namespace berth::proxy::middleware {
namespace {

using namespace std::string_view_literals;

class ForwardAuth final : public Middleware {
 public:
  ForwardAuth(const config::MiddlewareConfig& c, upstream::UpstreamAddress address, std::unique_ptr<RE2> regex)
      : name_(c.name),
        address_(std::move(address)),
        trust_forward_header_(c.trust_forward_header),
        response_headers_(c.auth_response_headers),
        response_headers_regex_(std::move(regex)),
        request_headers_(c.auth_request_headers),
        cookies_(c.auth_cookies) {}

  bool is_async() const override { return true; }
  // Only reachable where no worker runs the chain (benchmarks): the server cannot be asked there.
  bool on_request(Context& ctx) const override {
    ctx.edits.status = 500;
    return false;
  }

  coro::Task<bool> on_request_async(Context& ctx) const override {
    // The request to the auth server costs a string and a connection: the price of asking another
    // server, paid only on routes that do.
    std::string request = render_request(ctx);
    auto answer = co_await upstream::fetch(ctx.executor, address_.address, request, upstream::FetchLimits{});
    auto& e = ctx.edits;
    if (!answer) {
      LOG_WARN("forwardAuth ", name_, ": ", answer.error().to_string());
      e.status = 500;
      co_return false;
    }
    // Each answer keeps its own storage: the edits below view it until the exchange ends.
    const upstream::FetchResponse& f = e.fetched.emplace_back(std::move(*answer));
    if (f.status < 200 || f.status >= 300) {
      // The auth server's answer goes to the client as it is (a 401, a redirect to a login page...).
      for (const auto& [name, value] : f.headers)
        if (!iequals(name, "Content-Length") && !iequals(name, "Content-Type")) e.response.emplace_back(name, value);
      e.status = f.status;
      e.reply_body = f.body.empty() ? ""sv : std::string_view(f.body);
      e.reply_content_type = f.header("Content-Type");
      co_return false;
    }
    // Granted: authResponseHeaders replace the request's own (absent ones are removed).
    for (const auto& name : response_headers_) e.request.emplace_back(name, f.header(name));
    if (response_headers_regex_) {
      // As Traefik: the client's own headers the regex matches are removed, so a header the auth
      // server did not send cannot come from the client instead.
      for (const auto& h : ctx.request.headers)
        if (RE2::PartialMatch(h.name, *response_headers_regex_)) e.request.emplace_back(h.name, std::string_view{});
      for (const auto& [name, value] : f.headers)
        if (RE2::PartialMatch(name, *response_headers_regex_)) e.request.emplace_back(name, value);
    }
    for (const auto& [name, value] : f.headers) {
      if (!iequals(name, "Set-Cookie")) continue;
      std::string_view cookie = std::string_view(value).substr(0, value.find('='));
      for (const auto& wanted : cookies_)
        if (trim(cookie) == wanted) e.add_header("Set-Cookie", value);
    }
    co_return true;
  }

 private:
  std::string render_request(const Context& ctx) const {
    const auto& req = ctx.request;
    std::string out = "GET " + address_.path_and_query + " HTTP/1.1\r\nHost: " + address_.authority + "\r\n";
    std::string_view prior[5];  // X-Forwarded-{For,Method,Proto,Host,Uri} the client sent
    for (const auto& h : req.headers) {
      if (http::is_hop_by_hop(h.id) || h.id == http::HeaderId::kHost || h.id == http::HeaderId::kContentLength ||
          h.id == http::HeaderId::kTransferEncoding || h.id == http::HeaderId::kExpect)
        continue;
      if (http::is_forwarded_family(h.id)) {
        if (h.id == http::HeaderId::kXForwardedFor) prior[0] = h.value;
        else if (h.id == http::HeaderId::kXForwardedMethod) prior[1] = h.value;
        else if (h.id == http::HeaderId::kXForwardedProto) prior[2] = h.value;
        else if (h.id == http::HeaderId::kXForwardedHost) prior[3] = h.value;
        else if (h.id == http::HeaderId::kXForwardedUri) prior[4] = h.value;
        continue;
      }
      if (!request_headers_.empty()) {
        bool wanted = false;
        for (const auto& name : request_headers_) wanted |= iequals(name, h.name);
        if (!wanted) continue;
      }
      out.append(h.name).append(": ").append(h.value).append("\r\n");
    }
    // Traefik: the client's own X-Forwarded-* count only with trustForwardHeader, and only from a
    // peer the entry point trusts (its forwardedHeaders drop the others before any middleware:
    // an auth server deciding by X-Forwarded-Host or -Uri must not hear them from anyone).
    const bool keep = trust_forward_header_ && ctx.trusted;
    auto trusted = [&](int i, std::string_view ours) { return keep && !prior[i].empty() ? prior[i] : ours; };
    std::string peer = ctx.peer.to_string();
    std::string xff = keep && !prior[0].empty() ? std::string(prior[0]) + ", " + peer : peer;
    out.append("X-Forwarded-For: ").append(xff).append("\r\n");
    out.append("X-Forwarded-Method: ").append(trusted(1, req.method)).append("\r\n");
    out.append("X-Forwarded-Proto: ").append(trusted(2, ctx.tls ? "https" : "http")).append("\r\n");
    out.append("X-Forwarded-Host: ").append(trusted(3, req.host)).append("\r\n");
    out.append("X-Forwarded-Uri: ").append(trusted(4, req.target)).append("\r\n");
    out.append("Connection: close\r\n\r\n");
    return out;
  }

  std::string name_;
  upstream::UpstreamAddress address_;
  bool trust_forward_header_;
  std::vector<std::string> response_headers_;
  std::unique_ptr<RE2> response_headers_regex_;
  std::vector<std::string> request_headers_;
  std::vector<std::string> cookies_;
};

}  // namespace

Result<std::unique_ptr<Middleware>> compile_forward_auth(const config::MiddlewareConfig& c) {
  auto address = upstream::resolve_url(c.address, c.where, "forwardAuth address");
  if (!address) return Error{c.where, "middleware " + c.name + ": " + address.error().message};
  if (address->tls || address->h2c)
    return Error{c.where, "middleware " + c.name + ": forwardAuth supports http:// addresses only, for now"};
  std::unique_ptr<RE2> regex;
  if (!c.auth_response_headers_regex.empty()) {
    regex = std::make_unique<RE2>(c.auth_response_headers_regex, RE2::Quiet);
    if (!regex->ok())
      return Error{c.where, "middleware " + c.name + ": invalid authResponseHeadersRegex \"" +
                                c.auth_response_headers_regex + "\": " + regex->error()};
  }
  return std::unique_ptr<Middleware>(new ForwardAuth(c, std::move(*address), std::move(regex)));
}

}  // namespace berth::proxy::middleware
