// From containers to dynamic config, as Traefik's docker provider does it (config.go, shared.go,
// configuration.go, merge.go): labels decoded into a tree and through the YAML decoder, then the
// automatic router and service, the server address (port, network), and the merge of every container
// into one config, replicas' servers joined. Pure functions of their inputs: the provider calls them
// on each change, the unit tests directly. Thread: control.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "config/dynamic_config.h"
#include "config/static_config.h"
#include "discovery/docker/constraints.h"
#include "discovery/docker/container.h"
#include "discovery/docker/rule_template.h"

namespace berth::discovery::docker {

/// providers.docker with its template and constraints compiled (once, at start).
struct ProviderSettings {
  config::DockerProviderConfig config;
  RuleTemplate default_rule;
  Constraints constraints;

  /// Compiles `config`; a bad defaultRule, constraints or endpoint is an Error naming the key.
  static Result<ProviderSettings> compile(const config::DockerProviderConfig& config);
};

/// How a container takes part, before its labels are read.
enum class Participation {
  kSkip,     ///< not routed: disabled, filtered out, not running, or starting/unhealthy
  kServing,  ///< routers, services and this container as a server
  kEmpty,    ///< routers and services, but no server: starting/unhealthy with allowEmptyServices,
             ///< allownonrunning, or being stopped (a kill or stop event came): new requests go
             ///< to its siblings, or get 503 when it has none
};

/// Decides a container's part; `stopping` says Docker is stopping it. Thread: any.
Participation participation(const Container& c, bool stopping, const ProviderSettings& s);

/// The name Traefik gives a container's router and service: "<service>_<project>" of compose
/// labels, else the container name, normalized ("web-shop", "my-app-1").
std::string service_name(const Container& c);

/// The docker provider's whole config. `containers` by id; `stopping` holds the ids Docker is
/// stopping; `self_id` is the id of the container berth runs in, if any (its networks are preferred
/// when a container is on several). A container whose labels cannot be used is left out with
/// errors naming it and the label; the others are unaffected. Same-named elements of several
/// containers must be equal (or both are dropped, as in Traefik), except that load balancers equal
/// but for their servers merge their servers (replicas). Elements of containers that get no traffic
/// (kEmpty) never displace those of serving ones: an old container being stopped cannot break the
/// routes of its replacement when their labels differ.
config::DynamicConfig build_config(const std::map<std::string, Container>& containers,
                                   const std::set<std::string>& stopping, const std::string& self_id,
                                   const ProviderSettings& settings);

}  // namespace berth::discovery::docker
