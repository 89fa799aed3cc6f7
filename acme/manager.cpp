// The ACME provider; see manager.h. One coroutine per resolver does its orders one at a time: new
// names first, then renewals (at a third of the lifetime left, minus a little jitter), each failure
// backing off (3 s doubling to 1 h; a rate limit waits what the CA says, at least an hour).
#include "acme/manager.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <set>

#include "acme/client.h"
#include "acme/crypto.h"
#include "acme/storage.h"
#include "base/log.h"
#include "config/rule.h"

namespace berth::acme {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Clock = std::chrono::system_clock;

constexpr Duration kFirstBackoff = 3s;          // the CA could not be reached
constexpr Duration kFirstRefusalBackoff = 60s;  // the CA refused (validation failed, name rejected)
constexpr Duration kMaxBackoff = 1h;

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ",") + n;
  return out;
}

bool name_covers(const std::string& cert_name, const std::string& name) {
  if (cert_name == name) return true;
  if (!cert_name.starts_with("*.")) return false;
  const size_t dot = name.find('.');
  return dot != std::string::npos && name.substr(dot) == cert_name.substr(1);
}

std::string render_time(Clock::time_point t) {
  const std::time_t tt = Clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return out;
}

// Every shared storage file, by path: resolvers may share one.
std::map<std::string, StorageFile>& storage_files() {
  static std::map<std::string, StorageFile> files;
  return files;
}

}  // namespace

struct AcmeManager::Resolver {
  std::atomic<uint64_t> obtained{0}, failed{0};  ///< orders that ended, read by metrics scrapes
  struct Held {
    std::vector<std::string> names;  ///< main first, then sans, as ordered
    std::string cert_pem, key_pem, store = "default";
    Clock::time_point not_before, not_after;
    std::vector<std::string> dns_names;  ///< what the certificate covers
  };
  struct Backoff {
    Clock::time_point next;
    Duration delay{0};
  };

  config::AcmeResolverConfig cfg;
  KeyType key_type = KeyType::kEC256;
  std::unique_ptr<HttpsClient> https;
  std::unique_ptr<AcmeClient> client;
  Key account_key;
  std::string account_url, registration;
  std::vector<Held> certs;
  std::vector<std::vector<std::string>> wanted;
  std::map<std::string, Backoff> failures;  ///< by joined names
  std::unique_ptr<asio::steady_timer> wake;
  std::string lego_key_type;            ///< Account.KeyType as Traefik (lego) spells keyType: "P256", "4096", ...
  Clock::time_point hold_until{};       ///< a rate limit: no order of this resolver before then
  bool storage_writable = true;         ///< false when the file exists but could not be read
  std::set<std::string> reported;       ///< problems logged once (wildcards)

  bool covers(const std::vector<std::string>& names, Clock::time_point now) const {
    return std::any_of(certs.begin(), certs.end(), [&](const Held& h) {
      return now < h.not_after && std::all_of(names.begin(), names.end(), [&](const std::string& n) {
               return std::any_of(h.dns_names.begin(), h.dns_names.end(),
                                  [&](const std::string& c) { return name_covers(c, n); });
             });
    });
  }

  static Clock::time_point renew_at(const Held& h) {
    const auto lifetime = h.not_after - h.not_before;
    // Up to a twentieth of the lifetime earlier, spread by name so renewals of many certificates
    // do not all go at once.
    const auto jitter = lifetime / 20'000 * static_cast<int64_t>(std::hash<std::string>{}(joined(h.names)) % 1000);
    return h.not_after - lifetime / 3 - jitter;
  }

  // Storage entry of this resolver, from what it holds.
  ResolverData stored() const {
    ResolverData d;
    if (account_key && !account_url.empty()) {
      StoredAccount a;
      a.email = cfg.email;
      a.registration_uri = account_url;
      a.registration_body = registration;
      a.private_key_der = account_key.to_der();
      a.key_type = lego_key_type;
      d.account = std::move(a);
    }
    for (const auto& h : certs) {
      StoredCertificate c;
      c.main = h.names.front();
      c.sans.assign(h.names.begin() + 1, h.names.end());
      c.cert_pem = h.cert_pem;
      c.key_pem = h.key_pem;
      c.store = h.store;
      d.certificates.push_back(std::move(c));
    }
    return d;
  }

  void save() {
    if (!storage_writable) {
      LOG_ERROR("acme: resolver ", cfg.name, ": not writing ", cfg.storage,
                " (it could not be read, and would lose what it holds); the certificates stay in memory");
      return;
    }
    auto& file = storage_files()[cfg.storage];
    file[cfg.name] = stored();
    if (auto saved = save_storage(cfg.storage, file); !saved)
      LOG_ERROR("acme: resolver ", cfg.name, ": ", saved.error().to_string(),
                "; the certificates stay in memory and serve until berth stops");
  }
};

AcmeManager::AcmeManager(asio::io_context& io, const config::StaticConfig& sc) : io_(io), sc_(sc) {}

AcmeManager::~AcmeManager() { *alive_ = false; }

Result<bool> AcmeManager::load(std::vector<Error>& problems) {
  for (const auto& cfg : sc_.acme_resolvers) {
    auto r = std::make_unique<Resolver>();
    r->cfg = cfg;
    const std::string where = "certificatesResolvers." + cfg.name + ".acme";
    auto type = parse_key_type(cfg.key_type);
    if (!type) return Error{cfg.where, where + ".keyType: " + type.error().message};
    r->key_type = *type;
    auto https = HttpsClient::create(io_, cfg.ca_certificates);
    if (!https) return Error{cfg.where, where + ": " + https.error().to_string()};
    r->https = std::move(*https);
    r->client = std::make_unique<AcmeClient>(io_, *r->https, cfg.ca_server);
    r->wake = std::make_unique<asio::steady_timer>(io_);
    static constexpr std::pair<KeyType, const char*> kLego[] = {
        {KeyType::kEC256, "P256"}, {KeyType::kEC384, "P384"}, {KeyType::kRSA2048, "2048"},
        {KeyType::kRSA4096, "4096"}, {KeyType::kRSA8192, "8192"}};
    for (const auto& [t, name] : kLego)
      if (t == r->key_type) r->lego_key_type = name;
    // Resolvers sharing a file share one copy of it, whatever the path's spelling.
    std::error_code ec;
    const auto canonical = std::filesystem::weakly_canonical(std::filesystem::absolute(cfg.storage), ec);
    if (!ec) r->cfg.storage = canonical.string();

    auto& files = storage_files();
    if (!files.count(r->cfg.storage)) {
      const size_t before = problems.size();
      files[r->cfg.storage] = load_storage(r->cfg.storage, problems);
      for (size_t i = before; i < problems.size(); ++i)
        if (problems[i].message.starts_with("cannot read")) unwritable_.insert(r->cfg.storage);
    }
    r->storage_writable = !unwritable_.count(r->cfg.storage);
    auto& file = files[r->cfg.storage];
    if (auto it = file.find(cfg.name); it != file.end()) {
      const ResolverData& data = it->second;
      if (data.account) {
        auto key = Key::from_der(data.account->private_key_der);
        if (key) {
          r->account_key = std::move(*key);
          r->account_url = data.account->registration_uri;
          r->registration = data.account->registration_body;
          // An account of another CA (caServer changed, staging -> production): the key is kept,
          // the account is registered anew (Traefik's isAccountMatchingCaServer).
          auto host_of = [](const std::string& url) {
            const size_t start = url.find("://");
            if (start == std::string::npos) return std::string();
            return url.substr(start + 3, url.find('/', start + 3) - start - 3);
          };
          if (!r->account_url.empty() && host_of(r->account_url) != host_of(cfg.ca_server)) {
            problems.push_back(Error{cfg.storage, cfg.name + ": the stored account belongs to " +
                                                      host_of(r->account_url) + ", not caServer's " +
                                                      host_of(cfg.ca_server) + "; a new account will be registered"});
            r->account_url.clear();
          }
        } else {
          problems.push_back(Error{cfg.storage, cfg.name + ": the account key cannot be read (" + key.error().message +
                                                    "); a new account will be made"});
        }
      }
      for (const auto& c : data.certificates) {
        auto info = read_certificate(c.cert_pem);
        if (!info) {
          problems.push_back(Error{cfg.storage, cfg.name + ": the certificate for " + c.main +
                                                    " cannot be read (" + info.error().message + "); it is obtained anew"});
          continue;
        }
        Resolver::Held h;
        h.names.push_back(c.main);
        h.names.insert(h.names.end(), c.sans.begin(), c.sans.end());
        h.cert_pem = c.cert_pem;
        h.key_pem = c.key_pem;
        h.store = c.store;
        h.not_before = info->not_before;
        h.not_after = info->not_after;
        h.dns_names = info->dns_names;
        // Duplicate entries for one name set: the one that lasts longest.
        auto same = std::find_if(r->certs.begin(), r->certs.end(), [&](const Resolver::Held& x) { return x.names == h.names; });
        if (same == r->certs.end()) r->certs.push_back(std::move(h));
        else if (same->not_after < h.not_after) *same = std::move(h);
      }
    }
    resolvers_.push_back(std::move(r));
  }
  return true;
}

std::vector<AcmeManager::OrderCount> AcmeManager::order_counts() const {
  std::vector<OrderCount> out;
  for (const auto& r : resolvers_)
    out.push_back({r->cfg.name, r->obtained.load(std::memory_order_relaxed), r->failed.load(std::memory_order_relaxed)});
  return out;
}

config::DynamicConfig AcmeManager::config() const {
  config::DynamicConfig out;
  for (const auto& r : resolvers_) {
    // The certificate store keeps the first certificate of each name (and key type): the one that
    // lasts longest goes first, so a renewed or narrower one is never shadowed by an expired one.
    std::vector<const Resolver::Held*> held;
    for (const auto& h : r->certs) held.push_back(&h);
    std::stable_sort(held.begin(), held.end(), [](const auto* a, const auto* b) { return a->not_after > b->not_after; });
    for (const Resolver::Held* hp : held) {
      const Resolver::Held& h = *hp;
      config::TlsCertificateConfig c;
      c.cert_file = h.cert_pem;
      c.key_file = h.key_pem;
      c.stores = {h.store};
      c.where = "certificatesResolvers." + r->cfg.name + " (" + joined(h.names) + ")";
      out.tls.certificates.push_back(std::move(c));
    }
  }
  out.acme = challenges_;
  return out;
}

void AcmeManager::update(const config::DynamicConfig& merged) {
  external_.clear();
  for (const auto& c : merged.tls.certificates) {
    if (c.where.starts_with("certificatesResolvers.")) continue;  // this provider's own
    std::string pem = c.cert_file;
    if (pem.find("-----BEGIN") == std::string::npos) {
      std::ifstream in(c.cert_file, std::ios::binary);
      std::stringstream text;
      text << in.rdbuf();
      pem = text.str();
    }
    if (auto info = read_certificate(pem)) external_.push_back({info->dns_names, info->not_after});
  }
  for (auto& r : resolvers_) {
    std::set<std::vector<std::string>> wanted;
    for (const auto& [name, router] : merged.routers) {
      const config::RouterTlsConfig* tls = router.tls ? &*router.tls : nullptr;
      if (tls == nullptr) {  // an entry point's http.tls applies to its routers without a tls section
        for (const auto& ep : sc_.entry_points) {
          const bool on_it = router.entry_points.empty()
                                 ? !iequals(ep.name, "traefik")
                                 : std::any_of(router.entry_points.begin(), router.entry_points.end(),
                                               [&](const std::string& e) { return iequals(e, ep.name); });
          if (on_it && ep.tls && ep.tls->cert_resolver == r->cfg.name) tls = &*ep.tls;
        }
      }
      if (tls == nullptr || tls->cert_resolver != r->cfg.name) continue;
      std::vector<std::vector<std::string>> sets;
      if (!tls->domains.empty()) {
        for (const auto& d : tls->domains) {
          std::vector<std::string> names{to_lower(d.main)};
          for (const auto& s : d.sans) names.push_back(to_lower(s));
          sets.push_back(std::move(names));
        }
      } else if (auto rule = config::parse_rule(router.rule)) {
        auto names = config::rule_domains(**rule);
        if (!names.empty()) sets.push_back(std::move(names));
      }
      for (auto& names : sets) {
        std::erase_if(names, [](const std::string& n) { return n.empty(); });
        if (names.empty()) continue;
        if (std::any_of(names.begin(), names.end(), [](const std::string& n) { return n.find('*') != std::string::npos; })) {
          if (r->reported.insert(name + joined(names)).second)
            LOG_ERROR("acme: router ", name, ": ", joined(names),
                      ": wildcard names need the DNS-01 challenge, which berth does not do yet");
          continue;
        }
        wanted.insert(std::move(names));
      }
    }
    // tls.stores.<store>.defaultGeneratedCert naming this resolver: its domains too.
    for (const auto& [store, s] : merged.tls.stores) {
      if (!s.default_generated_cert || s.default_generated_cert->resolver != r->cfg.name) continue;
      std::vector<std::string> names{to_lower(s.default_generated_cert->main)};
      for (const auto& san : s.default_generated_cert->sans) names.push_back(to_lower(san));
      if (!names.front().empty()) wanted.insert(std::move(names));
    }
    std::vector<std::vector<std::string>> list(wanted.begin(), wanted.end());
    if (list != r->wanted) {
      r->wanted = std::move(list);
      r->wake->cancel();
    }
  }
}

asio::awaitable<void> AcmeManager::order(Resolver& r, std::vector<std::string> names, std::string why) {
  auto alive = alive_;
  const std::string what = joined(names);
  LOG_INFO("acme: resolver ", r.cfg.name, ": ", why, " a certificate for ", what);
  auto current = std::find_if(r.certs.begin(), r.certs.end(), [&](const Resolver::Held& h) { return h.names == names; });
  // Backoff: a CA out of reach or in trouble (5xx, badNonce after retries) is retried soon (3 s,
  // doubling); a refusal by the CA (a validation that failed, a rejected name) from a minute on,
  // since CAs count failed validations per hour; a rate limit holds every order of the resolver for
  // the CA's Retry-After, at least an hour.
  auto fail = [&](const std::string& problem, bool rate_limited, std::optional<Duration> retry_after,
                  bool refused = true) {
    auto& b = r.failures[what];
    const Duration first = refused ? kFirstRefusalBackoff : kFirstBackoff;
    b.delay = rate_limited ? std::max(retry_after.value_or(Duration(0)), Duration(kMaxBackoff))
                           : std::clamp(b.delay * 2, first, kMaxBackoff);
    b.next = Clock::now() + b.delay;
    if (rate_limited) r.hold_until = b.next;
    std::string serving = "no certificate serves it yet";
    if (auto it = std::find_if(r.certs.begin(), r.certs.end(), [&](const Resolver::Held& h) { return h.names == names; });
        it != r.certs.end())
      serving = "the current certificate keeps serving; it expires " + render_time(it->not_after);
    r.failed.fetch_add(1, std::memory_order_relaxed);
    LOG_ERROR("acme: resolver ", r.cfg.name, ": cannot get a certificate for ", what, ": ", problem, " (next try in ",
              format_duration(b.delay), "; ", serving, ")");
  };
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (r.account_url.empty()) {
      if (!r.account_key) {
        auto key = Key::generate(KeyType::kEC256);
        if (!key) co_return fail(key.error().to_string(), false, std::nullopt);
        r.account_key = std::move(*key);
      }
      auto url = co_await r.client->register_account(r.account_key, r.cfg.email, r.cfg.eab_kid, r.cfg.eab_hmac,
                                                     r.registration);
      if (!*alive) co_return;
      if (auto* p = std::get_if<Problem>(&url))
        co_return fail(p->to_string(), p->is("rateLimited"), p->retry_after, p->is_refusal());
      r.account_url = std::move(std::get<std::string>(url));
      LOG_INFO("acme: resolver ", r.cfg.name, ": account ", r.account_url);
      r.save();
    }
    auto cert_key = Key::generate(r.key_type);
    if (!cert_key) co_return fail(cert_key.error().to_string(), false, std::nullopt);
    std::vector<std::string> tokens, domains;  // what this order published
    ChallengeHooks hooks;
    hooks.http01 = !r.cfg.http_entry_point.empty();
    hooks.tls_alpn01 = r.cfg.tls_challenge;
    hooks.publish = [&, alive](std::string_view type, const std::string& domain, const std::string& token,
                               const std::string& key_authorization) {
      if (!*alive) return;
      if (type == "http-01") {
        challenges_.http01.push_back({token, key_authorization, r.cfg.http_entry_point});
        tokens.push_back(token);
      } else if (auto c = make_tls_alpn_certificate(domain, key_authorization)) {
        challenges_.tls_alpn01.push_back({to_lower(domain), c->cert_pem, c->key_pem});
        domains.push_back(to_lower(domain));
      } else {
        LOG_ERROR("acme: TLS-ALPN-01 certificate for ", domain, ": ", c.error().to_string());
      }
      on_change_();
    };
    hooks.live = [this, alive] { return !*alive || !is_live_ || is_live_(); };
    hooks.withdraw = [&, alive] {  // may run in a coroutine frame's destructor: must not throw
      if (!*alive) return;
      std::erase_if(challenges_.http01, [&](const auto& c) {
        return std::find(tokens.begin(), tokens.end(), c.token) != tokens.end();
      });
      std::erase_if(challenges_.tls_alpn01, [&](const auto& c) {
        return std::find(domains.begin(), domains.end(), c.domain) != domains.end();
      });
      try {
        on_change_();
      } catch (const std::exception& e) {
        LOG_ERROR("acme: withdrawing challenges: ", e.what());
      }
    };
    auto got = co_await r.client->obtain(r.account_key, r.account_url, names, *cert_key, hooks, r.cfg.preferred_chain);
    if (!*alive) co_return;
    if (auto* p = std::get_if<Problem>(&got)) {
      if (attempt == 0 && (p->is("accountDoesNotExist") || (p->is("unauthorized") && p->detail.find("ccount") != std::string::npos))) {
        LOG_WARN("acme: resolver ", r.cfg.name, ": the CA does not know account ", r.account_url, " (", p->to_string(),
                 "); registering again");
        r.account_url.clear();
        continue;
      }
      co_return fail(p->to_string(), p->is("rateLimited"), p->retry_after, p->is_refusal());
    }
    std::string chain = std::move(std::get<std::string>(got));
    auto info = read_certificate(chain);
    if (!info) co_return fail("the CA sent an unreadable certificate: " + info.error().message, false, std::nullopt);
    Resolver::Held h;
    h.names = names;
    h.cert_pem = std::move(chain);
    h.key_pem = cert_key->to_pem();
    h.not_before = info->not_before;
    h.not_after = info->not_after;
    h.dns_names = info->dns_names;
    current = std::find_if(r.certs.begin(), r.certs.end(), [&](const Resolver::Held& x) { return x.names == names; });
    if (current != r.certs.end()) *current = std::move(h);
    else r.certs.push_back(std::move(h));
    r.failures.erase(what);
    r.obtained.fetch_add(1, std::memory_order_relaxed);
    r.save();
    on_change_();
    LOG_INFO("acme: resolver ", r.cfg.name, ": certificate for ", what, " ", why == "renewing" ? "renewed" : "obtained",
             ", valid until ", render_time(info->not_after));
    co_return;
  }
}

void AcmeManager::start(OnChange on_change, std::function<bool()> is_live) {
  on_change_ = std::move(on_change);
  is_live_ = std::move(is_live);
  for (auto& r : resolvers_) {
    Resolver* resolver = r.get();
    auto alive = alive_;
    asio::co_spawn(
        io_,
        [this, resolver, alive]() -> asio::awaitable<void> {
          while (*alive) {
            // The next job: names no valid certificate covers, else a renewal that is due.
            const auto now = Clock::now();
            Clock::time_point next_due = Clock::time_point::max();
            std::optional<std::vector<std::string>> job;
            std::string why;
            auto ready = [&](const std::vector<std::string>& names) {
              auto f = resolver->failures.find(joined(names));
              if (f == resolver->failures.end() || f->second.next <= now) return true;
              next_due = std::min(next_due, f->second.next);
              return false;
            };
            if (resolver->hold_until > now) {  // a rate limit holds the whole resolver
              next_due = resolver->hold_until;
            } else {
              // Covered by this resolver, another one, or a certificate of the file provider.
              auto covered = [&](const std::vector<std::string>& names) {
                for (const auto& other : resolvers_)
                  if (other->covers(names, now)) return true;
                return std::any_of(external_.begin(), external_.end(), [&](const Covering& c) {
                  return now < c.not_after && std::all_of(names.begin(), names.end(), [&](const std::string& n) {
                           return std::any_of(c.dns_names.begin(), c.dns_names.end(),
                                              [&](const std::string& d) { return name_covers(d, n); });
                         });
                });
              };
              for (const auto& names : resolver->wanted)
                if (!job && !covered(names) && ready(names)) {
                  job = names;
                  why = "obtaining";
                }
            }
            for (const auto& h : resolver->certs) {
              if (job || resolver->hold_until > now) break;
              // Renewed while some router still needs it (Traefik renews every stored certificate; a
              // name dropped from the rules may no longer validate, and would fail every hour).
              const bool needed = std::any_of(resolver->wanted.begin(), resolver->wanted.end(), [&](const auto& w) {
                return std::all_of(w.begin(), w.end(), [&](const std::string& n) {
                  return std::any_of(h.dns_names.begin(), h.dns_names.end(), [&](const std::string& c) { return name_covers(c, n); });
                });
              });
              const bool wildcard = std::any_of(h.names.begin(), h.names.end(), [](const auto& n) { return n.find('*') != std::string::npos; });
              if (!needed || wildcard) continue;
              const auto at = Resolver::renew_at(h);
              if (at > now) next_due = std::min(next_due, at);
              else if (ready(h.names)) {
                job = h.names;
                why = "renewing";
              }
            }
            if (!job) {
              if (next_due == Clock::time_point::max()) resolver->wake->expires_at(asio::steady_timer::time_point::max());
              else resolver->wake->expires_after(std::chrono::duration_cast<Duration>(next_due - now) + 10ms);
              boost::system::error_code ec;
              co_await resolver->wake->async_wait(asio::redirect_error(asio::use_awaitable, ec));
              continue;
            }
            co_await order(*resolver, *job, why);
          }
        },
        asio::detached);
  }
}

}  // namespace berth::acme
