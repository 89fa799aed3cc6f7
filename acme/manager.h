// The ACME provider: for each certificatesResolvers.<r>.acme, the certificates its routers need
// (their tls.domains, else the Host() names of their rule), obtained, stored and renewed. Like
// Traefik's acme provider it hands the control plane a dynamic config: its certificates (as inline
// PEM in the default store) and the challenges in progress, which the snapshot carries to the
// workers. It never touches the data plane. Thread: control (one io_context).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "config/dynamic_config.h"
#include "config/static_config.h"

namespace berth::acme {

class AcmeManager {
 public:
  /// `on_change` is called when config() changed; it must apply the config before it returns (a
  /// challenge has to be live before the CA is told to validate it).
  using OnChange = std::function<void()>;

  AcmeManager(boost::asio::io_context& io, const config::StaticConfig& sc);
  ~AcmeManager();

  /// Checks the resolvers' settings and reads their storage files (once, before start). Problems
  /// with a file are reported and the resolver goes on without what could not be read; an Error
  /// (a bad keyType, an unreadable caCertificates file) stops berth at start.
  Result<bool> load(std::vector<Error>& problems);

  /// The ACME provider's dynamic config now.
  config::DynamicConfig config() const;

  /// `is_live` says whether the last applied config is served by every worker.
  void start(OnChange on_change, std::function<bool()> is_live);

  /// The merged config just applied: which names each resolver's routers need. New needs start
  /// orders; names already covered by a valid certificate get none.
  void update(const config::DynamicConfig& merged);

  /// Orders that ended, per resolver, since start (the metrics' acme_orders_total).
  /// Thread: any, once load() returned.
  struct OrderCount {
    std::string resolver;
    uint64_t obtained = 0, failed = 0;
  };
  std::vector<OrderCount> order_counts() const;

 private:
  struct Resolver;
  /// One order for `names`; its outcome is stored, or backed off.
  boost::asio::awaitable<void> order(Resolver& r, std::vector<std::string> names, std::string why);

  boost::asio::io_context& io_;
  const config::StaticConfig& sc_;
  std::vector<std::unique_ptr<Resolver>> resolvers_;
  OnChange on_change_;
  std::function<bool()> is_live_;
  std::set<std::string> unwritable_;  ///< storage files that exist but could not be read
  /// Certificates from other sources (the file provider's tls.certificates): the names they cover
  /// and until when. Names they cover get no order (Traefik's getUncheckedDomains).
  struct Covering {
    std::vector<std::string> dns_names;
    std::chrono::system_clock::time_point not_after;
  };
  std::vector<Covering> external_;
  config::AcmeChallenges challenges_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace berth::acme
