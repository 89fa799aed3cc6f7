// The ACME protocol (RFC 8555): directory, nonces, accounts (with External Account Binding), orders,
// HTTP-01 / TLS-ALPN-01 challenges, finalize and certificate download. The client knows nothing of
// berth's data plane: the challenges it needs answered go out through ChallengeHooks, whose publish
// must make them live before it returns. Thread: control (one io_context).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <deque>
#include <functional>
#include <optional>
#include <variant>
#include <string>
#include <vector>

#include "acme/crypto.h"
#include "acme/https_client.h"

namespace berth::acme {

/// An ACME problem document (RFC 7807), or a transport failure (type empty).
struct Problem {
  std::string type;    ///< "urn:ietf:params:acme:error:rateLimited", ...
  std::string detail;
  int status = 0;      ///< HTTP status (0: no answer)
  std::optional<Duration> retry_after;
  std::string to_string() const;
  bool is(std::string_view short_type) const;  ///< is("badNonce"), is("rateLimited"), ...
  /// The CA judged the request and said no (a failed validation, a rejected name, a rate limit), as
  /// opposed to a problem that says nothing about the request: no answer, a 5xx, serverInternal, or
  /// badNonce (a nonce pebble and busy CAs may refuse at random). Refusals are retried slowly.
  bool is_refusal() const;
};

template <typename T>
using AcmeResult = std::variant<T, Problem>;

/// What the client needs answered during an order.
struct ChallengeHooks {
  bool http01 = false;     ///< the resolver has httpChallenge
  bool tls_alpn01 = false; ///< the resolver has tlsChallenge
  /// Make the challenge live (HTTP-01: token + key authorization; TLS-ALPN-01: the domain's
  /// certificate) before returning.
  std::function<void(std::string_view type, const std::string& domain, const std::string& token,
                     const std::string& key_authorization)> publish;
  /// Withdraw every challenge published for this order.
  std::function<void()> withdraw;
  /// Whether what publish made is served by every worker yet (the CA may connect at once).
  std::function<bool()> live;
};

class AcmeClient {
 public:
  AcmeClient(boost::asio::io_context& io, HttpsClient& https, std::string directory_url);

  /// Creates the account for `key` (or finds it: newAccount answers an existing account with its URL).
  /// Returns the account URL; `registration` gets the account object's JSON.
  boost::asio::awaitable<AcmeResult<std::string>> register_account(const Key& key, const std::string& email,
                                                                   const std::string& eab_kid,
                                                                   const std::string& eab_hmac,
                                                                   std::string& registration);

  /// One order for `domains` (first = CN) with the account (`account_key`, `account_url`):
  /// challenges through `hooks`, a CSR signed with `cert_key`, the chain downloaded (the one whose
  /// top issuer CN is `preferred_chain`, if offered). Returns the PEM chain, or a Problem.
  boost::asio::awaitable<AcmeResult<std::string>> obtain(const Key& account_key, const std::string& account_url,
                                                         const std::vector<std::string>& domains, const Key& cert_key,
                                                         ChallengeHooks& hooks, const std::string& preferred_chain);

 private:
  boost::asio::awaitable<Result<bool>> load_directory();
  /// A JWS-signed POST (POST-as-GET when `payload` is empty and `as_get`), with a fresh nonce and
  /// a few retries on badNonce. `kid` empty: the key's JWK goes in the header (newAccount).
  boost::asio::awaitable<AcmeResult<HttpsResponse>> post(const Key& key, const std::string& kid, const std::string& url,
                                                         const std::string& payload, bool as_get,
                                                         const std::string& accept = {});
  /// POST-as-GET `url` until its "status" leaves `pending`/`processing` (or `timeout`); the object's JSON.
  boost::asio::awaitable<AcmeResult<std::string>> poll(const Key& key, const std::string& kid, const std::string& url,
                                                       Duration timeout);
  boost::asio::awaitable<void> sleep(Duration d);

  boost::asio::io_context& io_;
  HttpsClient& https_;
  std::string directory_url_;
  std::string new_nonce_, new_account_, new_order_;
  std::deque<std::string> nonces_;
};

}  // namespace berth::acme
