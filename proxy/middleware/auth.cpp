// basicAuth and digestAuth; see auth.h. Failures answer 401 with a challenge, as Traefik does; a
// bcrypt check that the per-user cache cannot answer runs on the blocking pool.
#include "proxy/middleware/auth.h"

#include <fstream>
#include <sstream>

#include "proxy/coro/blocking.h"
#include "proxy/middleware/htpasswd.h"

namespace berth::proxy::middleware {
namespace {

using namespace std::string_view_literals;

constexpr std::string_view kUnauthorized = "401 Unauthorized\n";
// bcrypt checks queued beyond this answer 503 at once: a flood of wrong passwords must not pile up
// work (and memory) without bound.
constexpr size_t kMaxBlockingBacklog = 256;

Result<std::string> read_file(const std::string& path, const config::MiddlewareConfig& c) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{c.where, "middleware " + c.name + ": cannot read usersFile \"" + path + "\""};
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Header edits shared by both: the user name header, and removing Authorization.
void on_accepted(Context& ctx, std::string_view header_field, bool remove_header) {
  if (!header_field.empty()) ctx.edits.request.emplace_back(header_field, ctx.edits.user);
  if (remove_header) ctx.edits.request.emplace_back("Authorization"sv, ""sv);
}

bool deny(Context& ctx, std::string_view challenge) {
  ctx.edits.status = 401;
  ctx.edits.reply_body = kUnauthorized;
  ctx.edits.response.emplace_back("WWW-Authenticate"sv, challenge);
  return false;
}

class BasicAuth final : public Middleware {
 public:
  BasicAuth(const std::vector<BasicCredential>& users, const std::string& realm, bool remove_header,
            std::string header_field)
      : users_(users),
        challenge_("Basic realm=\"" + realm + "\""),
        remove_header_(remove_header),
        header_field_(std::move(header_field)) {}

  bool is_async() const override { return true; }

  // The synchronous form (benchmarks, chains run without a worker) hashes inline.
  bool on_request(Context& ctx) const override {
    if (!parse(ctx)) return deny(ctx, challenge_);
    if (!users_.verify(ctx.edits.user, ctx.edits.password)) return deny(ctx, challenge_);
    on_accepted(ctx, header_field_, remove_header_);
    return true;
  }

  coro::Task<bool> on_request_async(Context& ctx) const override {
    if (!parse(ctx)) co_return deny(ctx, challenge_);
    bool ok = false;
    switch (users_.quick_verify(ctx.edits.user, ctx.edits.password)) {
      case BasicAuthUsers::Quick::kAccepted: ok = true; break;
      case BasicAuthUsers::Quick::kRejected: ok = false; break;
      case BasicAuthUsers::Quick::kNeedsHash:
        if (coro::blocking_backlog().load(std::memory_order_relaxed) >= kMaxBlockingBacklog) {
          ctx.edits.status = 503;
          co_return false;
        }
        ok = co_await coro::run_blocking(ctx.executor, [this, &edits = ctx.edits] {
          return users_.verify(edits.user, edits.password);
        });
        break;
    }
    if (!ok) co_return deny(ctx, challenge_);
    on_accepted(ctx, header_field_, remove_header_);
    co_return true;
  }

 private:
  bool parse(Context& ctx) const {
    std::string_view value = find_header(ctx.request, http::HeaderId::kAuthorization);
    return !value.empty() && BasicAuthUsers::parse_authorization(value, ctx.edits.user, ctx.edits.password);
  }

  BasicAuthUsers users_;
  std::string challenge_;
  bool remove_header_;
  std::string header_field_;
};

class DigestAuthMiddleware final : public Middleware {
 public:
  DigestAuthMiddleware(std::string realm, const std::vector<DigestCredential>& users, bool remove_header,
                       std::string header_field)
      : auth_(std::move(realm), users, kNonceLifetime),
        remove_header_(remove_header),
        header_field_(std::move(header_field)) {}

  // MD5 is cheap: no need to leave the worker.
  bool on_request(Context& ctx) const override {
    std::string_view value = find_header(ctx.request, http::HeaderId::kAuthorization);
    bool stale = false;
    if (!value.empty()) {
      auto fields = parse_digest_authorization(value);
      if (fields) {
        DigestVerdict verdict = auth_.verify(*fields, ctx.request.method, ctx.request.target);
        if (verdict == DigestVerdict::kAccepted) {
          ctx.edits.user = fields->username;
          on_accepted(ctx, header_field_, remove_header_);
          return true;
        }
        stale = verdict == DigestVerdict::kStale;
      }
    }
    ctx.edits.challenge = auth_.challenge(stale);
    return deny(ctx, ctx.edits.challenge);
  }

 private:
  // Stateless nonces can be replayed until they expire, so they expire soon; clients renew them
  // transparently on `stale=true`.
  static constexpr Duration kNonceLifetime{5 * 60 * 1000};
  DigestAuth auth_;
  bool remove_header_;
  std::string header_field_;
};

// Inline entries, then the file's, so that a file can extend (or override) the inline users.
template <typename Credential>
Result<std::vector<Credential>> load_users(const config::MiddlewareConfig& c,
                                           Result<Credential> (*parse_entry)(std::string_view),
                                           Result<std::vector<Credential>> (*parse_file)(std::string_view,
                                                                                         std::string_view)) {
  std::vector<Credential> users;
  for (const auto& entry : c.users) {
    auto cred = parse_entry(entry);
    if (!cred) return Error{c.where, "middleware " + c.name + ": user entry \"" + entry.substr(0, entry.find(':')) +
                                         ":...\": " + cred.error().message};
    users.push_back(std::move(*cred));
  }
  if (!c.users_file.empty()) {
    auto text = read_file(c.users_file, c);
    if (!text) return text.error();
    auto file_users = parse_file(*text, c.users_file);
    if (!file_users) return Error{file_users.error().where, "middleware " + c.name + ": " + file_users.error().message};
    users.insert(users.end(), std::make_move_iterator(file_users->begin()), std::make_move_iterator(file_users->end()));
  }
  return users;
}

}  // namespace

std::string_view find_header(const http::h1::RequestHead& request, http::HeaderId id) {
  for (const auto& h : request.headers)
    if (h.id == id) return h.value;
  return {};
}

coro::Task<bool> Middleware::on_request_async(Context& ctx) const { co_return on_request(ctx); }

Result<std::unique_ptr<Middleware>> compile_basic_auth(const config::MiddlewareConfig& c) {
  auto users = load_users<BasicCredential>(c, parse_basic_credential, parse_htpasswd);
  if (!users) return users.error();
  return std::unique_ptr<Middleware>(new BasicAuth(*users, c.realm, c.remove_header, c.header_field));
}

Result<std::unique_ptr<Middleware>> compile_digest_auth(const config::MiddlewareConfig& c) {
  auto users = load_users<DigestCredential>(c, parse_digest_credential, parse_htdigest);
  if (!users) return users.error();
  return std::unique_ptr<Middleware>(new DigestAuthMiddleware(c.realm, *users, c.remove_header, c.header_field));
}

}  // namespace berth::proxy::middleware
