// The ACME protocol; see client.h. Every signed request goes through post(); every wait through poll().
#include "acme/client.h"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include "base/log.h"

namespace berth::acme {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;

constexpr Duration kTimeout = 30s;
constexpr int kBadNonceRetries = 3;  // per signed request
constexpr const char* kInvalidAuthorization = "berth:invalidAuthorization";  // the CA could not validate
constexpr std::string_view kChallengeTypes[] = {"http-01", "tls-alpn-01"};  // in berth's order of preference

// v[key], or nullptr when v is not an object or has no such member.
const json::value* field(const json::value& v, std::string_view key) {
  return v.is_object() ? v.as_object().if_contains(key) : nullptr;
}

std::string get_string(const json::value* v, std::string_view key) {
  if (v == nullptr || !v->is_object()) return {};
  const json::value* f = v->as_object().if_contains(key);
  return f && f->is_string() ? std::string(f->as_string()) : std::string();
}

json::value parse_json(std::string_view text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  return ec ? json::value() : v;
}

Problem problem_of(const HttpsResponse& r) {
  Problem p;
  p.status = r.status;
  json::value v = parse_json(r.body);
  p.type = get_string(&v, "type");
  p.detail = get_string(&v, "detail");
  if (p.detail.empty()) p.detail = r.body.substr(0, 200);
  if (auto* sub = v.is_object() ? v.as_object().if_contains("subproblems") : nullptr; sub && sub->is_array())
    for (const auto& s : sub->as_array()) p.detail += "; " + get_string(&s, "detail");
  if (!r.retry_after.empty()) p.retry_after = parse_retry_after(r.retry_after);
  return p;
}

// A problem found on berth's side (no problem document). A function, not braces at each use: GCC 12
// rejects aggregate initialization from a string literal inside coroutines.
Problem local_problem(std::string detail) {
  Problem p;
  p.detail = std::move(detail);
  return p;
}

// The array `v` points to, else an empty one (never a temporary: GCC 12 coroutines end the life of
// temporaries in a range-for's initializer too early).
const json::array& array_of(const json::value* v) {
  static const json::array kEmpty;
  return v && v->is_array() ? v->as_array() : kEmpty;
}

// newOrder's payload: {"identifiers":[{"type":"dns","value":...},...]}.
std::string order_payload(const std::vector<std::string>& domains) {
  json::array identifiers;
  for (const auto& d : domains) identifiers.push_back(json::object{{"type", "dns"}, {"value", d}});
  return json::serialize(json::object{{"identifiers", identifiers}});
}

std::string csr_payload(const std::string& der) { return json::serialize(json::object{{"csr", base64url(der)}}); }

Problem transport_problem(const Error& e) { return local_problem(e.to_string()); }

}  // namespace

std::string Problem::to_string() const {
  std::string out = type.empty() ? std::string() : type + ": ";
  out += detail;
  if (status) out += " (HTTP " + std::to_string(status) + ")";
  return out;
}

bool Problem::is(std::string_view short_type) const {
  return type.size() > short_type.size() && type.ends_with(short_type) && type[type.size() - short_type.size() - 1] == ':';
}

bool Problem::is_refusal() const {
  return !type.empty() && status < 500 && !is("badNonce") && !is("serverInternal");
}

AcmeClient::AcmeClient(asio::io_context& io, HttpsClient& https, std::string directory_url)
    : io_(io), https_(https), directory_url_(std::move(directory_url)) {}

asio::awaitable<void> AcmeClient::sleep(Duration d) {
  asio::steady_timer t(io_, d);
  boost::system::error_code ec;
  co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

asio::awaitable<Result<bool>> AcmeClient::load_directory() {
  if (!new_order_.empty()) co_return true;
  auto r = co_await https_.request("GET", directory_url_, {}, {}, {}, kTimeout);
  if (!r) co_return r.error();
  if (r->status != 200) co_return Error{directory_url_, "the ACME directory answered HTTP " + std::to_string(r->status)};
  json::value v = parse_json(r->body);
  new_nonce_ = get_string(&v, "newNonce");
  new_account_ = get_string(&v, "newAccount");
  new_order_ = get_string(&v, "newOrder");
  if (new_nonce_.empty() || new_account_.empty() || new_order_.empty())
    co_return Error{directory_url_, "not an ACME directory (newNonce, newAccount or newOrder missing)"};
  co_return true;
}

asio::awaitable<AcmeResult<HttpsResponse>> AcmeClient::post(const Key& key, const std::string& kid,
                                                            const std::string& url, const std::string& payload,
                                                            bool as_get, const std::string& accept) {
  if (auto dir = co_await load_directory(); !dir) co_return transport_problem(dir.error());
  for (int attempt = 0;; ++attempt) {
    if (nonces_.empty()) {
      auto r = co_await https_.request("HEAD", new_nonce_, {}, {}, {}, kTimeout);
      if (!r) co_return transport_problem(r.error());
      if (r->replay_nonce.empty()) co_return local_problem("newNonce gave no Replay-Nonce");
      nonces_.push_back(r->replay_nonce);
    }
    const std::string nonce = std::move(nonces_.front());
    nonces_.pop_front();
    auto jws = sign_jws(key, kid, nonce, url, payload, as_get);
    if (!jws) co_return transport_problem(jws.error());
    auto r = co_await https_.request("POST", url, *jws, "application/jose+json", accept, kTimeout);
    if (!r) co_return transport_problem(r.error());
    if (!r->replay_nonce.empty() && nonces_.size() < 8) nonces_.push_back(r->replay_nonce);
    if (r->status < 400) co_return std::move(*r);
    Problem p = problem_of(*r);
    // RFC 8555 6.5: retry with the fresh nonce. Pebble refuses 5 % of good nonces by default: with
    // one retry, two refusals in a row (1 request in 400) failed an order every few dozen orders.
    if (p.is("badNonce") && attempt < kBadNonceRetries) continue;
    co_return p;
  }
}

asio::awaitable<AcmeResult<std::string>> AcmeClient::register_account(const Key& key, const std::string& email,
                                                                       const std::string& eab_kid,
                                                                       const std::string& eab_hmac,
                                                                       std::string& registration) {
  if (auto dir = co_await load_directory(); !dir) co_return transport_problem(dir.error());
  json::object payload;
  payload["termsOfServiceAgreed"] = true;
  if (!email.empty()) payload["contact"] = json::array{json::string("mailto:" + email)};
  if (!eab_kid.empty()) {
    auto eab = sign_eab(key, eab_kid, eab_hmac, new_account_);
    if (!eab) co_return transport_problem(eab.error());
    payload["externalAccountBinding"] = parse_json(*eab);
  }
  auto r = co_await post(key, {}, new_account_, json::serialize(payload), false);
  if (auto* p = std::get_if<Problem>(&r)) {
    p->detail = "account registration: " + p->detail;
    co_return std::move(*p);
  }
  auto& resp = std::get<HttpsResponse>(r);
  if (resp.location.empty()) co_return local_problem(new_account_ + ": account registration answered no Location");
  registration = resp.body;
  co_return resp.location;
}

asio::awaitable<AcmeResult<std::string>> AcmeClient::poll(const Key& key, const std::string& kid,
                                                          const std::string& url, Duration timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Duration wait = 50ms;  // a CA that validates at once (pebble, Let's Encrypt's fast path) is not kept waiting
  while (true) {
    auto r = co_await post(key, kid, url, {}, true);
    if (auto* p = std::get_if<Problem>(&r)) co_return *p;
    auto& resp = std::get<HttpsResponse>(r);
    json::value v = parse_json(resp.body);
    const std::string status = get_string(&v, "status");
    if (status != "pending" && status != "processing") co_return std::move(resp.body);
    if (std::chrono::steady_clock::now() >= deadline)
      co_return local_problem(url + " still " + status + " after " + format_duration(timeout));
    Duration next = wait;
    if (auto after = parse_retry_after(resp.retry_after)) next = std::clamp(*after, Duration(50), Duration(10'000));
    co_await sleep(next);
    wait = std::min(wait * 2, Duration(2000));
  }
}

asio::awaitable<AcmeResult<std::string>> AcmeClient::obtain(const Key& account_key, const std::string& account_url,
                                                            const std::vector<std::string>& domains,
                                                            const Key& cert_key, ChallengeHooks& hooks,
                                                            const std::string& preferred_chain) {
  if (auto dir = co_await load_directory(); !dir) co_return transport_problem(dir.error());
  auto created = co_await post(account_key, account_url, new_order_, order_payload(domains), false);
  if (auto* p = std::get_if<Problem>(&created)) co_return *p;
  const std::string order_url = std::get<HttpsResponse>(created).location;
  json::value order = parse_json(std::get<HttpsResponse>(created).body);
  if (order_url.empty() || !order.is_object()) co_return local_problem("newOrder answered no order");

  // Authorizations: answer each pending one, then wait for all of them.
  struct Withdraw {
    ChallengeHooks& hooks;
    bool published = false;
    ~Withdraw() {
      if (published && hooks.withdraw) hooks.withdraw();
    }
  } withdraw{hooks};
  std::vector<std::string> pending;
  const json::value* authzs = field(order, "authorizations");
  for (const auto& a : array_of(authzs)) {
    if (!a.is_string()) continue;
    const std::string authz_url(a.as_string());
    auto got = co_await post(account_key, account_url, authz_url, {}, true);
    if (auto* p = std::get_if<Problem>(&got)) co_return *p;
    json::value authz = parse_json(std::get<HttpsResponse>(got).body);
    if (get_string(&authz, "status") == "valid") continue;
    const std::string domain = get_string(field(authz, "identifier"), "value");
    const json::value* challenges = field(authz, "challenges");
    const json::value* chosen = nullptr;
    for (std::string_view want : kChallengeTypes) {
      if ((want == "http-01" && !hooks.http01) || (want == "tls-alpn-01" && !hooks.tls_alpn01)) continue;
      for (const auto& c : array_of(challenges))
        if (get_string(&c, "type") == want) chosen = &c;
      if (chosen) break;
    }
    if (chosen == nullptr)
      co_return local_problem("the CA offers no challenge berth can answer for " + domain);
    const std::string type = get_string(chosen, "type");
    const std::string token = get_string(chosen, "token");
    const std::string key_authorization = token + "." + account_key.thumbprint();
    hooks.publish(type, domain, token, key_authorization);
    withdraw.published = true;
    for (int i = 0; i < 1000 && hooks.live && !hooks.live(); ++i) co_await sleep(1ms);
    auto answered = co_await post(account_key, account_url, get_string(chosen, "url"), "{}", false);
    if (auto* p = std::get_if<Problem>(&answered)) co_return *p;
    pending.push_back(authz_url);
  }
  for (const auto& authz_url : pending) {
    auto done = co_await poll(account_key, account_url, authz_url, 120s);
    if (auto* p = std::get_if<Problem>(&done)) co_return *p;
    json::value authz = parse_json(std::get<std::string>(done));
    if (get_string(&authz, "status") != "valid") {
      std::string why = "authorization for " + get_string(field(authz, "identifier"), "value") +
                        " is " + get_string(&authz, "status");
      for (const auto& c : array_of(field(authz, "challenges")))
          if (const auto* e = field(c, "error")) why += ": " + get_string(e, "detail");
      Problem p = local_problem(why);
      p.type = kInvalidAuthorization;
      co_return p;
    }
  }

  // Finalize with a CSR, wait for the certificate, download the chain.
  auto csr = make_csr(cert_key, domains);
  if (!csr) co_return transport_problem(csr.error());
  auto finalized = co_await post(account_key, account_url, get_string(&order, "finalize"), csr_payload(*csr), false);
  if (auto* p = std::get_if<Problem>(&finalized)) co_return *p;
  auto ready = co_await poll(account_key, account_url, order_url, 120s);
  if (auto* p = std::get_if<Problem>(&ready)) co_return *p;
  json::value final_order = parse_json(std::get<std::string>(ready));
  const std::string certificate_url = get_string(&final_order, "certificate");
  if (get_string(&final_order, "status") != "valid" || certificate_url.empty())
    co_return local_problem("the order ended " + get_string(&final_order, "status"));
  auto cert = co_await post(account_key, account_url, certificate_url, {}, true, "application/pem-certificate-chain");
  if (auto* p = std::get_if<Problem>(&cert)) co_return *p;
  std::string chain = std::move(std::get<HttpsResponse>(cert).body);
  if (!preferred_chain.empty()) {
    auto top = chain_top_issuer(chain);
    if (!top || *top != preferred_chain) {
      for (const auto& alt : std::get<HttpsResponse>(cert).alternates) {
        auto other = co_await post(account_key, account_url, alt, {}, true, "application/pem-certificate-chain");
        if (auto* r = std::get_if<HttpsResponse>(&other)) {
          if (auto t = chain_top_issuer(r->body); t && *t == preferred_chain) {
            chain = std::move(r->body);
            break;
          }
        }
      }
    }
  }
  co_return chain;
}

}  // namespace berth::acme
