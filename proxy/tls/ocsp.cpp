// OCSP stapling; see ocsp.h.
#include "proxy/tls/ocsp.h"

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <ctime>

#include "base/log.h"
#include "proxy/coro/task.h"
#include "proxy/net.h"
#include "proxy/upstream/address.h"
#include "proxy/upstream/http_fetch.h"

namespace berth::proxy::tls {

namespace {

constexpr auto kRetry = std::chrono::minutes(1);      // after a failed fetch
constexpr auto kMaxRefresh = std::chrono::hours(1);

std::string fingerprint(X509* x) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  X509_digest(x, EVP_sha256(), md, &n);
  return std::string(reinterpret_cast<char*>(md), n);
}

std::chrono::system_clock::time_point to_time(const ASN1_GENERALIZEDTIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return {};
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

}  // namespace

struct OcspStapler::Entry {
  explicit Entry(boost::asio::io_context& io) : timer(io.get_executor()) {}
  std::string url;
  std::shared_ptr<const Certificate> certificate;                  ///< the newest copy (leaf and issuer)
  std::vector<std::weak_ptr<const Certificate>> copies;            ///< every snapshot's copy, to staple
  std::shared_ptr<const std::string> response;
  std::chrono::system_clock::time_point next_update{};
  Timer timer;
  bool fetching = false;
  bool stopped = false;
};

Result<std::chrono::system_clock::time_point> check_ocsp_response(std::string_view der, X509* leaf, X509* issuer) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  OCSP_RESPONSE* response = d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size()));
  if (response == nullptr) return Error{"", "malformed OCSP response"};
  struct Free {
    OCSP_RESPONSE* r;
    OCSP_BASICRESP* b = nullptr;
    OCSP_CERTID* id = nullptr;
    STACK_OF(X509)* certs = nullptr;
    X509_STORE* store = nullptr;
    ~Free() {
      OCSP_CERTID_free(id);
      OCSP_BASICRESP_free(b);
      OCSP_RESPONSE_free(r);
      sk_X509_free(certs);
      X509_STORE_free(store);
      ERR_clear_error();
    }
  } f{response};
  if (OCSP_response_status(response) != OCSP_RESPONSE_STATUS_SUCCESSFUL)
    return Error{"", std::string("OCSP responder says ") + OCSP_response_status_str(OCSP_response_status(response))};
  f.b = OCSP_response_get1_basic(response);
  if (f.b == nullptr) return Error{"", "OCSP response without a basic response"};
  // Trusted: the issuer; the responder may be the issuer or a certificate it issued for OCSP.
  f.store = X509_STORE_new();
  f.certs = sk_X509_new_null();
  if (f.store == nullptr || f.certs == nullptr || X509_STORE_add_cert(f.store, issuer) != 1 ||
      sk_X509_push(f.certs, issuer) == 0)
    return Error{"", "out of memory"};
  if (OCSP_basic_verify(f.b, f.certs, f.store, OCSP_TRUSTOTHER) != 1)
    return Error{"", "OCSP response not signed by the issuer or its delegate"};
  f.id = OCSP_cert_to_id(nullptr, leaf, issuer);
  int status = -1, reason = -1;
  ASN1_GENERALIZEDTIME *revoked = nullptr, *this_update = nullptr, *next_update = nullptr;
  if (f.id == nullptr || OCSP_resp_find_status(f.b, f.id, &status, &reason, &revoked, &this_update, &next_update) != 1)
    return Error{"", "OCSP response does not cover the certificate"};
  if (status != V_OCSP_CERTSTATUS_GOOD)
    return Error{"", std::string("OCSP status is ") + OCSP_cert_status_str(status)};
  if (OCSP_check_validity(this_update, next_update, 300, -1) != 1) return Error{"", "OCSP response is not current"};
  if (next_update == nullptr) return std::chrono::system_clock::now() + kMaxRefresh;
  return to_time(next_update);
}

namespace {

coro::Task<void> fetch(std::shared_ptr<OcspStapler::Entry> e);

void schedule(const std::shared_ptr<OcspStapler::Entry>& e, std::chrono::milliseconds after) {
  e->timer.expires_after(after);
  e->timer.async_wait([e](boost::system::error_code ec) {
    if (!ec && !e->stopped) coro::spawn(fetch(e));
  });
}

coro::Task<void> fetch(std::shared_ptr<OcspStapler::Entry> e) {
  if (e->fetching || e->stopped) co_return;
  e->fetching = true;
  // Held for the whole fetch: a reload may replace e->certificate meanwhile.
  std::shared_ptr<const Certificate> certificate = e->certificate;
  X509* leaf = certificate->leaf();
  X509* issuer = certificate->issuer();
  std::string problem;
  auto address = upstream::resolve_url(e->url, "", "OCSP responder");
  OCSP_REQUEST* request = OCSP_REQUEST_new();
  OCSP_CERTID* id = OCSP_cert_to_id(nullptr, leaf, issuer);
  std::string body;
  if (request != nullptr && id != nullptr && OCSP_request_add0_id(request, id) != nullptr) {
    id = nullptr;  // owned by the request now
    int n = i2d_OCSP_REQUEST(request, nullptr);
    if (n > 0) {
      body.resize(static_cast<size_t>(n));
      auto* out = reinterpret_cast<unsigned char*>(body.data());
      i2d_OCSP_REQUEST(request, &out);
    }
  }
  OCSP_CERTID_free(id);
  OCSP_REQUEST_free(request);
  ERR_clear_error();
  if (!address) {
    problem = address.error().message;
  } else if (address->tls || address->h2c) {
    problem = "only http:// OCSP responders are supported";
  } else if (body.empty()) {
    problem = "cannot build the OCSP request";
  } else {
    std::string http = "POST " + address->path_and_query + " HTTP/1.1\r\nHost: " + address->authority +
                       "\r\nContent-Type: application/ocsp-request\r\nContent-Length: " + std::to_string(body.size()) +
                       "\r\nConnection: close\r\n\r\n" + body;
    upstream::FetchLimits limits;
    limits.timeout = std::chrono::seconds(10);
    auto answer = co_await upstream::fetch(e->timer.get_executor(), address->address, http, limits);
    if (!answer) {
      problem = answer.error().message;
    } else if (answer->status != 200) {
      problem = "HTTP status " + std::to_string(answer->status);
    } else if (auto next = check_ocsp_response(answer->body, leaf, issuer); !next) {
      problem = next.error().message;
    } else {
      e->response = std::make_shared<const std::string>(std::move(answer->body));
      e->next_update = *next;
    }
  }
  e->fetching = false;
  if (e->stopped) co_return;
  auto now = std::chrono::system_clock::now();
  if (!problem.empty()) {
    LOG_WARN("OCSP stapling for ", e->certificate->source(), " (", e->url, "): ", problem, "; retrying in 1m");
    // A response that has run out is no longer stapled.
    if (e->response && e->next_update <= now) e->response.reset();
    schedule(e, kRetry);
  } else {
    LOG_DEBUG("OCSP response for ", e->certificate->source(), " stapled");
    auto half = std::chrono::duration_cast<std::chrono::milliseconds>((e->next_update - now) / 2);
    schedule(e, std::clamp<std::chrono::milliseconds>(half, kRetry, kMaxRefresh));
  }
  for (auto& weak : e->copies)
    if (auto c = weak.lock()) c->set_ocsp_response(e->response);
}

}  // namespace

OcspStapler::~OcspStapler() { stop(); }

void OcspStapler::stop() {
  for (auto& [_, e] : entries_) {
    e->stopped = true;
    e->timer.cancel();
  }
  entries_.clear();
}

void OcspStapler::update(const CertificateStore& store) {
  std::map<std::string, std::shared_ptr<Entry>> next;
  for (const auto& cert : store.certificates()) {
    if (cert->ocsp_url().empty() || cert->issuer() == nullptr) continue;
    std::string key = fingerprint(cert->leaf());
    auto it = next.find(key);
    if (it == next.end()) {
      auto old = entries_.find(key);
      if (old != entries_.end()) {
        it = next.emplace(key, std::move(old->second)).first;
        entries_.erase(old);
        std::erase_if(it->second->copies, [](const auto& w) { return w.expired(); });
      } else {
        auto e = std::make_shared<Entry>(io_);
        e->url = cert->ocsp_url();
        it = next.emplace(key, e).first;
      }
    }
    Entry& e = *it->second;
    e.certificate = cert;
    e.copies.push_back(cert);
    if (e.response) cert->set_ocsp_response(e.response);
    else if (!e.fetching) coro::spawn(fetch(it->second));
  }
  // Certificates no longer loaded: their refreshes stop.
  for (auto& [_, e] : entries_) {
    e->stopped = true;
    e->timer.cancel();
  }
  entries_ = std::move(next);
}

}  // namespace berth::proxy::tls
