// Static configuration (Traefik's schema): read once at start from --configFile and command-line flags.
// Decoded by static_config.cpp; consumed by app/server.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/text.h"
#include "config/tls_config.h"
#include "config/yaml_decoder.h"

namespace berth::config {

using namespace std::chrono_literals;

/// entryPoints.<name>.http.redirections.entryPoint: every request is redirected to another entry
/// point (typically web -> websecure). Traefik's defaults.
struct EntryPointRedirect {
  std::string to;                 ///< an entry point name or ":port"
  std::string scheme = "https";
  bool permanent = true;
  int64_t priority = INT64_MAX - 1;
  std::string where;
};

struct EntryPointConfig {
  std::string name;
  std::string address;          ///< as written: "[host]:port", ":8080", "127.0.0.1:80", "[::1]:8080"
  std::string host;             ///< parsed host part; empty means all addresses
  uint16_t port = 0;            ///< parsed port
  bool as_default = false;      ///< asDefault
  Duration read_timeout = 60s;  ///< transport.respondingTimeouts.readTimeout
  Duration write_timeout = 0s;  ///< transport.respondingTimeouts.writeTimeout (0 = none)
  Duration idle_timeout = 180s; ///< transport.respondingTimeouts.idleTimeout
  Duration request_accept_grace_timeout = 0s;  ///< transport.lifeCycle.requestAcceptGraceTimeout
  Duration grace_timeout = 10s;                ///< transport.lifeCycle.graceTimeOut
  std::vector<std::string> trusted_ips;        ///< forwardedHeaders.trustedIPs (IPs or CIDRs)
  bool forwarded_insecure = false;             ///< forwardedHeaders.insecure
  std::optional<EntryPointRedirect> redirect;  ///< http.redirections.entryPoint
  std::vector<std::string> middlewares;        ///< http.middlewares: put before every router's own
  std::optional<RouterTlsConfig> tls;          ///< http.tls: routers here without a tls section get this one
  int max_concurrent_streams = 250;            ///< http2.maxConcurrentStreams
  Duration websocket_max_lifetime = 0s;        ///< webSocket.maxLifetime (berth's; 0 = none)
};

struct FileProviderConfig {
  bool enabled = false;     ///< true when providers.file is present
  std::string filename;     ///< providers.file.filename
  std::string directory;    ///< providers.file.directory
  bool watch = true;        ///< providers.file.watch (Traefik default true)
};

/// providers.docker: routes from container labels (discovery/docker). Traefik's keys and defaults.
struct DockerProviderConfig {
  bool enabled = false;                    ///< true when providers.docker is present
  std::string endpoint = "unix:///var/run/docker.sock";
  bool exposed_by_default = true;          ///< exposedByDefault
  std::string network;                     ///< network: the default network of every container
  std::string default_rule = "Host(`{{ normalize .Name }}`)";  ///< defaultRule (a Go template)
  std::string constraints;                 ///< constraints: Label(`k`,`v`) / LabelRegex expressions
  bool watch = true;                       ///< watch: follow Docker's events (else: read once)
  bool allow_empty_services = false;       ///< allowEmptyServices: keep starting/unhealthy containers' routes (503)
  bool use_bind_port_ip = false;           ///< useBindPortIP: the published host address instead of the container's
  Duration http_client_timeout = 0s;       ///< httpClientTimeout: bound on each API call (0: berth's 30 s)
  std::string username, password;          ///< Basic authorization to a socket proxy
  std::string where;                       ///< place of providers.docker, for errors
};

/// certificatesResolvers.<name>.acme: certificates from an ACME CA (acme/). Traefik's keys; berth's
/// default key type is EC256 (Traefik: RSA4096).
struct AcmeResolverConfig {
  std::string name;
  std::string email;
  std::string storage = "acme.json";
  std::string ca_server = "https://acme-v02.api.letsencrypt.org/directory";
  std::string key_type = "EC256";          ///< EC256, EC384, RSA2048, RSA4096, RSA8192
  int64_t certificates_duration = 2160;    ///< hours (Traefik's; berth renews at a third of the real lifetime left)
  std::string http_entry_point;            ///< httpChallenge.entryPoint ("" = no HTTP-01)
  bool tls_challenge = false;              ///< tlsChallenge
  std::string eab_kid, eab_hmac;           ///< eab.{kid,hmacEncoded}
  std::string preferred_chain;             ///< preferredChain: the issuer CN of the chain's top
  std::vector<std::string> ca_certificates;  ///< caCertificates: PEM files trusted for caServer
  std::string where;
};

/// The static serversTransport, or a named one (http.serversTransports.<name>): how berth talks to
/// servers. The TLS fields apply to https:// servers.
struct ServersTransportConfig {
  Duration dial_timeout = 30s;             ///< forwardingTimeouts.dialTimeout
  Duration response_header_timeout = 0s;   ///< forwardingTimeouts.responseHeaderTimeout (0 = none)
  Duration idle_conn_timeout = 90s;        ///< forwardingTimeouts.idleConnTimeout
  int max_idle_conns_per_host = 200;       ///< maxIdleConnsPerHost
  bool insecure_skip_verify = false;       ///< insecureSkipVerify
  std::vector<std::string> root_cas;       ///< rootCAs: paths or inline PEM (empty: the system's)
  std::string server_name;                 ///< serverName: SNI and the name verified (empty: the URL's host)
  std::vector<TlsCertificateConfig> certificates;  ///< certificates: client certificates to present
  bool disable_http2 = false;              ///< disableHTTP2
  std::string peer_cert_uri;               ///< peerCertURI: a URI SAN the server's certificate must carry
  Duration read_idle_timeout = 0s;         ///< forwardingTimeouts.readIdleTimeout: HTTP/2 PING after this long without a frame (0: never)
  Duration ping_timeout = 15s;             ///< forwardingTimeouts.pingTimeout: no frame this long after the PING closes the connection
  std::vector<std::string> ignored;        ///< accepted keys without effect (spiffe)
  bool operator==(const ServersTransportConfig&) const = default;
};

/// Decodes one key of a serversTransport (static, or a named one at `path`); false if `entry` is
/// not a serversTransport key. `named`: the dynamic form, which has more keys. Thread: control.
bool decode_servers_transport_key(const ConfigNode& entry, YamlDecoder& d, const std::string& path, bool named,
                                  ServersTransportConfig& out);

struct PingConfig {
  bool enabled = false;
  std::string entry_point = "traefik";     ///< ping.entryPoint
  int terminating_status_code = 503;       ///< ping.terminatingStatusCode
  bool manual_routing = false;             ///< ping.manualRouting: only through a router to ping@internal
};

/// metrics.prometheus: Traefik's keys and defaults, plus berth's `prefix` (default "berth"; "traefik"
/// gives Traefik's exact metric names).
struct PrometheusConfig {
  bool enabled = false;                    ///< metrics.prometheus present
  std::vector<double> buckets = {0.1, 0.3, 1.2, 5.0};
  bool add_entry_points_labels = true;     ///< addEntryPointsLabels
  bool add_routers_labels = false;         ///< addRoutersLabels
  bool add_services_labels = true;         ///< addServicesLabels
  std::string entry_point = "traefik";     ///< entryPoint: where /metrics is served (unless manualRouting)
  bool manual_routing = false;             ///< manualRouting: only through a router to prometheus@internal
  std::string prefix = "berth";            ///< prefix of every family name
};

/// accessLog (Traefik's keys): one line per exchange, formatted on the worker, written by a thread
/// of its own (proxy/observe/access_log.h).
struct AccessLogConfig {
  bool enabled = false;                    ///< accessLog present
  std::string file_path;                   ///< filePath ("" = stdout)
  std::string format = "common";           ///< common | genericCLF | json
  int64_t buffering_size = 0;              ///< bufferingSize: lines kept before a write (0: written at once)
  bool add_internals = false;              ///< addInternals: log exchanges of `@internal` routers too
  std::vector<std::pair<int, int>> status_codes;  ///< filters.statusCodes as ranges (inclusive)
  bool retry_attempts = false;             ///< filters.retryAttempts: keep lines with retries
  Duration min_duration = 0s;              ///< filters.minDuration: keep lines that took longer
  bool has_filters = false;                ///< any filter set: a line is kept when one matches
  std::string fields_default_mode = "keep";           ///< fields.defaultMode: keep | drop
  std::vector<std::pair<std::string, std::string>> field_modes;   ///< fields.names.<Field>: keep | drop
  std::string headers_default_mode = "drop";          ///< fields.headers.defaultMode: keep | drop | redact
  std::vector<std::pair<std::string, std::string>> header_modes;  ///< fields.headers.names.<Header>: keep | drop | redact
};

/// admin (berth extension): the local admin socket that `berth deploy|rollback|rollout|pause|stop|
/// resume|list` talk to, and the file where deploy state is kept across restarts.
struct AdminConfig {
  bool enabled = true;                     ///< admin.socket "" turns it off
  std::string socket;                      ///< default: /run/berth/admin.sock (root), else /tmp/berth-<uid>/admin.sock
  std::string state_file;                  ///< default: /var/lib/berth/deploy.json (root), else ~/.local/state/berth/deploy.json
};

/// The admin defaults: $BERTH_ADMIN_SOCKET / $BERTH_DEPLOY_STATE if set, else by user (root or
/// not); see AdminConfig. Thread: any.
std::string default_admin_socket();
std::string default_admin_state_file();

struct StaticConfig {
  std::string config_file;                 ///< the file it came from, if any
  std::vector<EntryPointConfig> entry_points;  ///< in name order
  FileProviderConfig file;
  DockerProviderConfig docker;
  std::vector<AcmeResolverConfig> acme_resolvers;  ///< certificatesResolvers, in name order
  Duration providers_throttle_duration = 0s;   ///< berth applies changes at once by default (Traefik: 2s)
  ServersTransportConfig servers_transport;
  std::string log_level = "INFO";
  std::string log_format = "common";       ///< log.format: common | json
  std::string log_file_path;               ///< log.filePath ("" = stderr)
  AccessLogConfig access_log;
  PrometheusConfig prometheus;
  PingConfig ping;
  AdminConfig admin;
  bool api_dashboard = false;              ///< api.dashboard (default true when api is present)
  bool api_insecure = false;               ///< api.insecure: /api and /dashboard on the `traefik` entry point
  bool api_enabled = false;                ///< api present
  int workers = 0;                         ///< berth extension: worker threads (0 = one per core)
  bool io_uring = true;                    ///< berth extension `ioUring`: batched writes (proxy/send_batch.h)
  /// `workers`, or the number of cores when it is 0.
  uint32_t worker_count() const;

  const EntryPointConfig* find_entry_point(std::string_view name) const;
};

/// Loads the static config: parses `--configFile=`/`--configfile=` (if given) then overlays every other
/// `--a.b.c=value` flag. Keys are case-insensitive. Every problem is returned, each with
/// "file:line:col" or "flag --x.y" as its place. Defaults: if no entry point is defined, `http` on :80;
/// when ping or api needs it and no `traefik` entry point exists, `traefik` on :8080.
/// Thread: control.
struct StaticLoad {
  StaticConfig config;
  std::vector<Error> errors;
};
StaticLoad load_static_config(const std::vector<std::string>& args);

/// Splits "[host]:port" / "host:port" / ":port" (optionally with "/tcp"). Thread: any.
bool parse_address(std::string_view address, std::string& host, uint16_t& port);

}  // namespace berth::config
