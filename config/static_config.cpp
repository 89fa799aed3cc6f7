// Static config loading: --configFile YAML, overlaid by --a.b.c=value flags, decoded into StaticConfig.
// Flow: flags -> tree, file -> tree, overlay, decode, defaults, checks. Every problem is collected.
#include "config/static_config.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/log.h"
#include "config/yaml_decoder.h"

namespace berth::config {
namespace {

constexpr std::string_view kDefaultEntryPoint = "traefik";

bool valid_hostname(std::string_view host) {
  for (char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

// An IPv4/IPv6 address, or one with a "/prefix" of the right length.
bool valid_ip_or_cidr(std::string_view text) {
  std::string address(text);
  std::optional<uint64_t> prefix;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    address = std::string(text.substr(0, slash));
    prefix = parse_uint(text.substr(slash + 1));
    if (!prefix) return false;
  }
  unsigned char buffer[16];
  if (inet_pton(AF_INET, address.c_str(), buffer) == 1) return !prefix || *prefix <= 32;
  if (inet_pton(AF_INET6, address.c_str(), buffer) == 1) return !prefix || *prefix <= 128;
  return false;
}

// Turns argv-style flags into a tree and finds --configFile. Flag problems are collected.
struct Flags {
  ConfigNode tree;
  std::string config_file;
};

Flags parse_flags(const std::vector<std::string>& args, std::vector<Error>& errors) {
  Flags flags;
  flags.tree.kind = ConfigNode::Kind::kMap;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (!arg.starts_with("--") || arg.size() == 2) {
      errors.push_back(Error{"argument \"" + args[i] + "\"", "expected a flag of the form --key=value"});
      continue;
    }
    arg.remove_prefix(2);
    const size_t eq = arg.find('=');
    const std::string key(arg.substr(0, eq));
    const bool has_value = eq != std::string_view::npos;
    std::string value = has_value ? std::string(arg.substr(eq + 1)) : std::string("true");
    const std::string where = "flag --" + key;

    if (iequals(key, "configFile")) {
      if (!has_value) {
        if (i + 1 < args.size() && !args[i + 1].starts_with("-")) {
          value = args[++i];
        } else {
          errors.push_back(Error{where, "expected a file name (--configFile=path)"});
          continue;
        }
      }
      if (trim(value).empty()) {
        errors.push_back(Error{where, "expected a file name (--configFile=path)"});
        continue;
      }
      flags.config_file = value;
      continue;
    }

    std::vector<std::string> path;
    bool well_formed = true;
    size_t start = 0;
    while (true) {
      const size_t dot = key.find('.', start);
      std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (part.empty()) well_formed = false;
      path.push_back(std::move(part));
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    if (!well_formed) {
      errors.push_back(Error{where, "malformed flag name"});
      continue;
    }
    set_path(flags.tree, path, std::move(value), where);
  }
  return flags;
}

// Reads and parses the config file; a problem is returned as an error naming the file.
std::optional<ConfigNode> read_config_file(const std::string& file, std::vector<Error>& errors) {
  const std::string extension = to_lower(file.substr(std::min(file.size(), file.rfind('.'))));
  if (extension == ".toml") {
    errors.push_back(Error{file, "TOML config files are not supported; write the static config in YAML"});
    return std::nullopt;
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    errors.push_back(Error{file, std::string("cannot read config file: ") + std::strerror(errno)});
    return std::nullopt;
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    errors.push_back(Error{file, "cannot read config file"});
    return std::nullopt;
  }
  auto tree = parse_yaml(text.str(), file);
  if (!tree) {
    errors.push_back(tree.error());
    return std::nullopt;
  }
  if (!tree->is_map() && !tree->is_null()) {
    errors.push_back(Error{tree->where, "expected a map at the top level"});
    return std::nullopt;
  }
  return std::move(*tree);
}

// Decodes the merged tree into a StaticConfig, then applies Traefik's defaults and checks.
class StaticDecoder {
 public:
  StaticDecoder(StaticConfig& config, std::vector<Error>& errors) : c_(config), d_(errors) {}

  void decode(const ConfigNode& root) {
    for (const ConfigNode* e : d_.entries(root, "")) {
      const std::string& k = e->key;
      if (iequals(k, "entryPoints")) decode_entry_points(*e);
      else if (iequals(k, "providers")) decode_providers(*e);
      else if (iequals(k, "certificatesResolvers")) decode_resolvers(*e);
      else if (iequals(k, "serversTransport")) decode_servers_transport(*e);
      else if (iequals(k, "log")) decode_log(*e);
      else if (iequals(k, "ping")) decode_ping(*e);
      else if (iequals(k, "api")) decode_api(*e);
      else if (iequals(k, "metrics")) decode_metrics(*e);
      else if (iequals(k, "accessLog")) decode_access_log(*e);
      else if (iequals(k, "workers")) d_.read_int(*e, "", c_.workers, 0, 4096);
      else if (iequals(k, "ioUring")) d_.read_bool(*e, "", c_.io_uring);
      else if (iequals(k, "global")) decode_global(*e);
      else if (iequals(k, "admin")) decode_admin(*e);
      else d_.unknown_key(*e, "");
    }
  }

  void apply_defaults_and_check(const std::string& defaults_where) {
    if (c_.entry_points.empty()) add_entry_point("http", ":80", 80);
    if (c_.admin.socket.empty() && !admin_socket_set_) c_.admin.socket = default_admin_socket();
    if (c_.admin.state_file.empty()) c_.admin.state_file = default_admin_state_file();
    const bool ping_needs_traefik =
        c_.ping.enabled && !c_.ping.manual_routing && iequals(c_.ping.entry_point, kDefaultEntryPoint);
    const bool metrics_need_traefik = c_.prometheus.enabled && !c_.prometheus.manual_routing &&
                                      iequals(c_.prometheus.entry_point, kDefaultEntryPoint);
    if ((ping_needs_traefik || metrics_need_traefik || c_.api_insecure) && c_.find_entry_point(kDefaultEntryPoint) == nullptr)
      add_entry_point(std::string(kDefaultEntryPoint), ":8080", 8080);
    std::sort(c_.entry_points.begin(), c_.entry_points.end(), [](const auto& a, const auto& b) {
      const std::string la = to_lower(a.name), lb = to_lower(b.name);
      return la != lb ? la < lb : a.name < b.name;
    });
    if (c_.prometheus.enabled && !c_.prometheus.manual_routing && c_.find_entry_point(c_.prometheus.entry_point) == nullptr)
      d_.error(prometheus_where_.empty() ? defaults_where : prometheus_where_,
               "metrics.prometheus.entryPoint \"" + c_.prometheus.entry_point + "\" is not a defined entry point");
    if (c_.ping.enabled && !c_.ping.manual_routing && c_.find_entry_point(c_.ping.entry_point) == nullptr)
      d_.error(ping_where_.empty() ? defaults_where : ping_where_,
               "ping.entryPoint \"" + c_.ping.entry_point + "\" is not a defined entry point");
    for (const auto& ep : c_.entry_points) {
      if (!ep.redirect) continue;
      const std::string& to = ep.redirect->to;
      uint16_t port = 0;
      std::string host;
      if (c_.find_entry_point(to) == nullptr && !(to[0] == ':' && parse_address(to, host, port)))
        d_.error(ep.redirect->where, "entryPoints." + ep.name + ".http.redirections.entryPoint.to: \"" + to +
                                         "\" is neither an entry point nor a :port");
    }
    for (const auto& r : c_.acme_resolvers)
      if (!r.http_entry_point.empty() && c_.find_entry_point(r.http_entry_point) == nullptr)
        d_.error(r.where, "certificatesResolvers." + r.name + ".acme.httpChallenge.entryPoint \"" +
                              r.http_entry_point + "\" is not a defined entry point");
    if (c_.file.enabled) {
      if (!c_.file.filename.empty() && !c_.file.directory.empty())
        d_.error(file_where_, "providers.file: filename and directory are mutually exclusive");
      else if (c_.file.filename.empty() && c_.file.directory.empty())
        d_.error(file_where_, "providers.file: neither filename nor directory is defined");
    }
  }

 private:
  void add_entry_point(std::string name, std::string address, uint16_t port) {
    EntryPointConfig& ep = c_.entry_points.emplace_back();
    ep.name = std::move(name);
    ep.address = std::move(address);
    ep.port = port;
  }

  void decode_entry_points(const ConfigNode& node) {
    for (const ConfigNode* e : d_.entries(node, "entryPoints")) {
      if (e->key.empty()) {
        d_.error(e->key_where, "entry point name must not be empty");
        continue;
      }
      EntryPointConfig ep;
      ep.name = e->key;
      if (decode_entry_point(*e, ep)) c_.entry_points.push_back(std::move(ep));
    }
  }

  // Returns false when the entry point has no usable address.
  bool decode_entry_point(const ConfigNode& node, EntryPointConfig& ep) {
    const std::string path = "entryPoints." + ep.name;
    std::string address_where = node.key_where;
    for (const ConfigNode* e : d_.entries(node, path)) {
      const std::string& k = e->key;
      if (iequals(k, "address")) {
        d_.read_string(*e, path, ep.address);
        address_where = e->where;
      } else if (iequals(k, "asDefault")) {
        d_.read_bool(*e, path, ep.as_default);
      } else if (iequals(k, "transport")) {
        decode_transport(*e, path + ".transport", ep);
      } else if (iequals(k, "forwardedHeaders")) {
        decode_forwarded_headers(*e, path + ".forwardedHeaders", ep);
      } else if (iequals(k, "http")) {
        decode_entry_point_http(*e, path + ".http", ep);
      } else if (iequals(k, "webSocket")) {  // berth's: Traefik has no WebSocket limits
        const std::string wpath = path + ".webSocket";
        for (const ConfigNode* o : d_.entries(*e, wpath)) {
          if (iequals(o->key, "maxLifetime")) d_.read_duration(*o, wpath, ep.websocket_max_lifetime);
          else d_.unknown_key(*o, wpath);
        }
      } else if (iequals(k, "http2")) {
        const std::string h2path = path + ".http2";
        for (const ConfigNode* o : d_.entries(*e, h2path)) {
          if (iequals(o->key, "maxConcurrentStreams")) d_.read_int(*o, h2path, ep.max_concurrent_streams, 1, INT32_MAX);
          else d_.unknown_key(*o, h2path);
        }
      } else {
        d_.unknown_key(*e, path);
      }
    }
    std::string_view address = trim(ep.address);
    if (address.empty()) {
      d_.error(address_where, "entry point \"" + ep.name + "\" has no address");
      return false;
    }
    if (const size_t slash = address.rfind('/');
        slash != std::string_view::npos && iequals(address.substr(slash + 1), "udp")) {
      d_.error(address_where, "entry point \"" + ep.name + "\": udp entry points are not supported");
      return false;
    }
    if (!parse_address(address, ep.host, ep.port)) {
      d_.error(address_where, "entry point \"" + ep.name + "\": invalid address \"" + ep.address +
                                  "\" (expected host:port, :port or [ipv6]:port)");
      return false;
    }
    return true;
  }

  void decode_entry_point_http(const ConfigNode& node, const std::string& path, EntryPointConfig& ep) {
    for (const ConfigNode* e : d_.entries(node, path)) {
      if (iequals(e->key, "middlewares")) {
        d_.read_list(*e, path, ep.middlewares);
      } else if (iequals(e->key, "tls")) {
        ep.tls = decode_router_tls(*e, d_, path);
      } else if (iequals(e->key, "redirections")) {
        const std::string rpath = path + ".redirections";
        for (const ConfigNode* r : d_.entries(*e, rpath)) {
          if (!iequals(r->key, "entryPoint")) {
            d_.unknown_key(*r, rpath);
            continue;
          }
          EntryPointRedirect redirect;
          redirect.where = r->key_where;
          const std::string epath = rpath + ".entryPoint";
          for (const ConfigNode* o : d_.entries(*r, epath)) {
            if (iequals(o->key, "to")) d_.read_string(*o, epath, redirect.to);
            else if (iequals(o->key, "scheme")) d_.read_string(*o, epath, redirect.scheme);
            else if (iequals(o->key, "permanent")) d_.read_bool(*o, epath, redirect.permanent);
            else if (iequals(o->key, "priority")) d_.read_int(*o, epath, redirect.priority, 1, INT64_MAX - 1);
            else d_.unknown_key(*o, epath);
          }
          if (redirect.to.empty()) d_.error(redirect.where, epath + ".to is required");
          else ep.redirect = std::move(redirect);
        }
      } else {
        d_.unknown_key(*e, path);
      }
    }
  }

  void decode_transport(const ConfigNode& node, const std::string& path, EntryPointConfig& ep) {
    for (const ConfigNode* e : d_.entries(node, path)) {
      if (iequals(e->key, "respondingTimeouts")) {
        const std::string sub = path + ".respondingTimeouts";
        for (const ConfigNode* t : d_.entries(*e, sub)) {
          if (iequals(t->key, "readTimeout")) d_.read_duration(*t, sub, ep.read_timeout);
          else if (iequals(t->key, "writeTimeout")) d_.read_duration(*t, sub, ep.write_timeout);
          else if (iequals(t->key, "idleTimeout")) d_.read_duration(*t, sub, ep.idle_timeout);
          else d_.unknown_key(*t, sub);
        }
      } else if (iequals(e->key, "lifeCycle")) {
        const std::string sub = path + ".lifeCycle";
        for (const ConfigNode* t : d_.entries(*e, sub)) {
          if (iequals(t->key, "requestAcceptGraceTimeout"))
            d_.read_duration(*t, sub, ep.request_accept_grace_timeout);
          else if (iequals(t->key, "graceTimeOut")) d_.read_duration(*t, sub, ep.grace_timeout);
          else d_.unknown_key(*t, sub);
        }
      } else {
        d_.unknown_key(*e, path);
      }
    }
  }

  void decode_forwarded_headers(const ConfigNode& node, const std::string& path, EntryPointConfig& ep) {
    for (const ConfigNode* e : d_.entries(node, path)) {
      if (iequals(e->key, "trustedIPs")) {
        std::vector<std::string> ips, wheres;
        if (!d_.read_list(*e, path, ips, &wheres)) continue;
        for (size_t i = 0; i < ips.size(); ++i) {
          if (valid_ip_or_cidr(ips[i])) ep.trusted_ips.push_back(ips[i]);
          else d_.error(wheres[i], "invalid IP address or CIDR \"" + ips[i] + "\" in " + path + ".trustedIPs");
        }
      } else if (iequals(e->key, "insecure")) {
        d_.read_bool(*e, path, ep.forwarded_insecure);
      } else {
        d_.unknown_key(*e, path);
      }
    }
  }

  void decode_providers(const ConfigNode& node) {
    for (const ConfigNode* e : d_.entries(node, "providers")) {
      if (iequals(e->key, "file")) decode_file_provider(*e);
      else if (iequals(e->key, "docker")) decode_docker_provider(*e);
      else if (iequals(e->key, "providersThrottleDuration"))
        d_.read_duration(*e, "providers", c_.providers_throttle_duration);
      else d_.unknown_key(*e, "providers");
    }
  }

  void decode_file_provider(const ConfigNode& node) {
    file_where_ = node.key_where;
    if (!d_.read_section(node, "providers", c_.file.enabled)) return;
    for (const ConfigNode* e : d_.entries(node, "providers.file")) {
      if (iequals(e->key, "filename")) d_.read_string(*e, "providers.file", c_.file.filename);
      else if (iequals(e->key, "directory")) d_.read_string(*e, "providers.file", c_.file.directory);
      else if (iequals(e->key, "watch")) d_.read_bool(*e, "providers.file", c_.file.watch);
      else d_.unknown_key(*e, "providers.file");
    }
  }

  void decode_resolvers(const ConfigNode& node) {
    for (const ConfigNode* r : d_.entries(node, "certificatesResolvers")) {
      AcmeResolverConfig c;
      c.name = r->key;
      c.where = r->key_where;
      const std::string path = "certificatesResolvers." + r->key;
      const size_t errors_before = d_.error_count();
      bool has_acme = false;
      for (const ConfigNode* e : d_.entries(*r, path)) {
        if (!iequals(e->key, "acme")) {
          d_.unknown_key(*e, path);
          continue;
        }
        has_acme = true;
        const std::string apath = path + ".acme";
        for (const ConfigNode* o : d_.entries(*e, apath)) {
          const std::string& k = o->key;
          if (iequals(k, "email")) d_.read_string(*o, apath, c.email);
          else if (iequals(k, "storage")) d_.read_string(*o, apath, c.storage);
          else if (iequals(k, "caServer")) d_.read_string(*o, apath, c.ca_server);
          else if (iequals(k, "keyType")) d_.read_string(*o, apath, c.key_type);
          else if (iequals(k, "certificatesDuration")) d_.read_int(*o, apath, c.certificates_duration, 1, 1'000'000);
          else if (iequals(k, "preferredChain")) d_.read_string(*o, apath, c.preferred_chain);
          else if (iequals(k, "caCertificates")) d_.read_list(*o, apath, c.ca_certificates);
          else if (iequals(k, "caSystemCertPool") || iequals(k, "caServerName") || iequals(k, "clientTimeout") ||
                   iequals(k, "clientResponseHeaderTimeout") || iequals(k, "profile") || iequals(k, "emailAddresses") ||
                   iequals(k, "disableCommonName"))
            continue;  // accepted; berth's defaults apply
          else if (iequals(k, "httpChallenge")) {
            const std::string hpath = apath + ".httpChallenge";
            for (const ConfigNode* h : d_.entries(*o, hpath)) {
              if (iequals(h->key, "entryPoint")) d_.read_string(*h, hpath, c.http_entry_point);
              else if (iequals(h->key, "delay")) continue;
              else d_.unknown_key(*h, hpath);
            }
            if (c.http_entry_point.empty()) d_.error(o->key_where, hpath + ".entryPoint is required");
          } else if (iequals(k, "tlsChallenge")) {
            if (d_.read_section(*o, apath, c.tls_challenge))
              for (const ConfigNode* x : d_.entries(*o, apath + ".tlsChallenge")) d_.unknown_key(*x, apath + ".tlsChallenge");
          } else if (iequals(k, "eab")) {
            const std::string epath = apath + ".eab";
            for (const ConfigNode* x : d_.entries(*o, epath)) {
              if (iequals(x->key, "kid")) d_.read_string(*x, epath, c.eab_kid);
              else if (iequals(x->key, "hmacEncoded")) d_.read_string(*x, epath, c.eab_hmac);
              else d_.unknown_key(*x, epath);
            }
            if (c.eab_kid.empty() || c.eab_hmac.empty()) d_.error(o->key_where, epath + " needs kid and hmacEncoded");
          } else if (iequals(k, "dnsChallenge")) {
            d_.error(o->key_where, apath + ".dnsChallenge is not supported yet (use httpChallenge or tlsChallenge)");
          } else {
            d_.unknown_key(*o, apath);
          }
        }
      }
      if (!has_acme) d_.error(r->key_where, path + " has no acme section");
      else if (c.http_entry_point.empty() && !c.tls_challenge && d_.error_count() == errors_before)
        d_.error(r->key_where, path + ".acme needs httpChallenge or tlsChallenge");
      if (d_.error_count() == errors_before) c_.acme_resolvers.push_back(std::move(c));
    }
  }

  void decode_docker_provider(const ConfigNode& node) {
    auto& c = c_.docker;
    c.where = node.key_where;
    if (!d_.read_section(node, "providers", c.enabled)) return;
    const std::string path = "providers.docker";
    for (const ConfigNode* e : d_.entries(node, path)) {
      const std::string& k = e->key;
      if (iequals(k, "endpoint")) d_.read_string(*e, path, c.endpoint);
      else if (iequals(k, "exposedByDefault")) d_.read_bool(*e, path, c.exposed_by_default);
      else if (iequals(k, "network")) d_.read_string(*e, path, c.network);
      else if (iequals(k, "defaultRule")) d_.read_string(*e, path, c.default_rule);
      else if (iequals(k, "constraints")) d_.read_string(*e, path, c.constraints);
      else if (iequals(k, "watch")) d_.read_bool(*e, path, c.watch);
      else if (iequals(k, "allowEmptyServices")) d_.read_bool(*e, path, c.allow_empty_services);
      else if (iequals(k, "useBindPortIP")) d_.read_bool(*e, path, c.use_bind_port_ip);
      else if (iequals(k, "httpClientTimeout")) d_.read_duration(*e, path, c.http_client_timeout);
      else if (iequals(k, "username")) d_.read_string(*e, path, c.username);
      else if (iequals(k, "password")) d_.read_string(*e, path, c.password);
      else if (iequals(k, "tls"))
        d_.error(e->key_where, "providers.docker.tls: TLS to the Docker daemon is not supported yet; use a unix "
                               "socket or a socket proxy on loopback");
      else d_.unknown_key(*e, path);
    }
  }

  void decode_servers_transport(const ConfigNode& node) {
    for (const ConfigNode* e : d_.entries(node, "serversTransport"))
      if (!decode_servers_transport_key(*e, d_, "serversTransport", false, c_.servers_transport))
        d_.unknown_key(*e, "serversTransport");
  }

  void decode_log(const ConfigNode& node) {
    constexpr std::string_view kPath = "log";
    for (const ConfigNode* e : d_.entries(node, kPath)) {
      const std::string& k = e->key;
      if (iequals(k, "level")) {
        std::string level;
        if (!d_.read_string(*e, kPath, level)) continue;
        log::Level parsed;
        if (!log::parse_level(trim(level), parsed)) {
          d_.error(e->where, "invalid log.level \"" + level + "\" (expected TRACE, DEBUG, INFO, WARN, ERROR, FATAL or PANIC)");
          continue;
        }
        c_.log_level = to_upper(trim(level));
      } else if (iequals(k, "format")) {
        std::string format;
        if (!d_.read_string(*e, kPath, format)) continue;
        log::Format parsed;
        if (!log::parse_format(trim(format), parsed)) {
          d_.error(e->where, "invalid log.format \"" + format + "\" (expected common or json)");
          continue;
        }
        c_.log_format = to_lower(trim(format));
      } else if (iequals(k, "filePath")) {
        std::string path;
        if (d_.read_string(*e, kPath, path)) c_.log_file_path = std::string(trim(path));
      } else if (iequals(k, "noColor")) {
        bool ignored = false;
        d_.read_bool(*e, kPath, ignored);  // berth never colours its log
      } else if (iequals(k, "maxSize") || iequals(k, "maxAge") || iequals(k, "maxBackups") || iequals(k, "compress")) {
        d_.error(e->where, "log." + k + " is not supported by berth: rotate the file with logrotate (berth reopens it on SIGUSR1)");
      } else {
        d_.unknown_key(*e, kPath);
      }
    }
  }

  void decode_ping(const ConfigNode& node) {
    ping_where_ = node.key_where;
    if (!d_.read_section(node, "", c_.ping.enabled)) return;
    for (const ConfigNode* e : d_.entries(node, "ping")) {
      if (iequals(e->key, "entryPoint")) {
        d_.read_string(*e, "ping", c_.ping.entry_point);
        ping_where_ = e->where;
      } else if (iequals(e->key, "terminatingStatusCode")) {
        d_.read_int(*e, "ping", c_.ping.terminating_status_code, 100, 599);
      } else if (iequals(e->key, "manualRouting")) {
        d_.read_bool(*e, "ping", c_.ping.manual_routing);
      } else {
        d_.unknown_key(*e, "ping");
      }
    }
  }

  void decode_metrics(const ConfigNode& node) {
    for (const ConfigNode* e : d_.entries(node, "metrics")) {
      if (iequals(e->key, "addInternals")) {
        bool ignored = false;
        d_.read_bool(*e, "metrics", ignored);  // berth's own answers are never counted
      } else if (iequals(e->key, "prometheus")) {
        decode_prometheus(*e);
      } else {
        d_.unknown_key(*e, "metrics");
      }
    }
  }

  void decode_prometheus(const ConfigNode& node) {
    auto& p = c_.prometheus;
    if (!d_.read_section(node, "", p.enabled)) return;
    prometheus_where_ = node.key_where;
    constexpr std::string_view kPath = "metrics.prometheus";
    for (const ConfigNode* e : d_.entries(node, kPath)) {
      const std::string& k = e->key;
      if (iequals(k, "buckets")) {
        std::vector<std::string> items;
        if (!d_.read_list(*e, kPath, items)) continue;
        std::vector<double> buckets;
        bool ok = !items.empty();
        for (const auto& item : items) {
          char* end = nullptr;
          std::string text(trim(item));
          double v = std::strtod(text.c_str(), &end);
          if (text.empty() || end != text.c_str() + text.size() || !(v > 0) || (!buckets.empty() && v <= buckets.back()))
            ok = false;
          buckets.push_back(v);
        }
        if (!ok) d_.error(e->where, "metrics.prometheus.buckets: expected increasing positive numbers of seconds");
        else p.buckets = std::move(buckets);
      } else if (iequals(k, "addEntryPointsLabels")) {
        d_.read_bool(*e, kPath, p.add_entry_points_labels);
      } else if (iequals(k, "addRoutersLabels")) {
        d_.read_bool(*e, kPath, p.add_routers_labels);
      } else if (iequals(k, "addServicesLabels")) {
        d_.read_bool(*e, kPath, p.add_services_labels);
      } else if (iequals(k, "entryPoint")) {
        d_.read_string(*e, kPath, p.entry_point);
        prometheus_where_ = e->where;
      } else if (iequals(k, "manualRouting")) {
        d_.read_bool(*e, kPath, p.manual_routing);
      } else if (iequals(k, "prefix")) {
        std::string prefix;
        if (!d_.read_string(*e, kPath, prefix)) continue;
        bool ok = !prefix.empty() && !(prefix[0] >= '0' && prefix[0] <= '9');
        for (char ch : prefix) ok &= std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == ':';
        if (!ok) d_.error(e->where, "metrics.prometheus.prefix \"" + prefix + "\" is not a valid metric name prefix");
        else p.prefix = prefix;
      } else if (iequals(k, "headerLabels")) {
        d_.error(e->where, "metrics.prometheus.headerLabels is not supported by berth");
      } else {
        d_.unknown_key(*e, kPath);
      }
    }
  }

  // accessLog: see AccessLogConfig.
  void decode_access_log(const ConfigNode& node) {
    auto& a = c_.access_log;
    if (!d_.read_section(node, "", a.enabled)) return;
    constexpr std::string_view kPath = "accessLog";
    for (const ConfigNode* e : d_.entries(node, kPath)) {
      const std::string& k = e->key;
      if (iequals(k, "filePath")) {
        std::string path;
        if (d_.read_string(*e, kPath, path)) a.file_path = std::string(trim(path));
      } else if (iequals(k, "format")) {
        std::string format;
        if (!d_.read_string(*e, kPath, format)) continue;
        const std::string_view f = trim(format);
        if (iequals(f, "common")) a.format = "common";
        else if (iequals(f, "genericCLF")) a.format = "genericCLF";
        else if (iequals(f, "json")) a.format = "json";
        else d_.error(e->where, "invalid accessLog.format \"" + format + "\" (expected common, genericCLF or json)");
      } else if (iequals(k, "bufferingSize")) {
        d_.read_int(*e, kPath, a.buffering_size, 0, int64_t{1} << 24);
      } else if (iequals(k, "addInternals")) {
        d_.read_bool(*e, kPath, a.add_internals);
      } else if (iequals(k, "filters")) {
        decode_access_log_filters(*e);
      } else if (iequals(k, "fields")) {
        decode_access_log_fields(*e);
      } else if (iequals(k, "otlp") || iequals(k, "dualOutput")) {
        d_.error(e->where, "accessLog." + k + " is not supported by berth (OpenTelemetry logs)");
      } else {
        d_.unknown_key(*e, kPath);
      }
    }
  }

  // filters: a line is kept when any filter that is set matches (none set: every line).
  void decode_access_log_filters(const ConfigNode& node) {
    auto& a = c_.access_log;
    constexpr std::string_view kPath = "accessLog.filters";
    bool present = false;
    if (!d_.read_section(node, "accessLog", present)) return;  // `--accessLog.filters`: none set
    for (const ConfigNode* e : d_.entries(node, kPath)) {
      const std::string& k = e->key;
      if (iequals(k, "statusCodes")) {
        std::vector<std::string> items, wheres;
        if (!d_.read_list(*e, kPath, items, &wheres)) continue;
        a.status_codes.clear();
        for (size_t i = 0; i < items.size(); ++i)
          for (const std::string& block : split_list(items[i])) add_status_range(block, wheres[i]);
      } else if (iequals(k, "retryAttempts")) {
        d_.read_bool(*e, kPath, a.retry_attempts);
      } else if (iequals(k, "minDuration")) {
        d_.read_duration(*e, kPath, a.min_duration);
      } else {
        d_.unknown_key(*e, kPath);
      }
    }
    a.has_filters = !a.status_codes.empty() || a.retry_attempts || a.min_duration > Duration::zero();
  }

  // "404" or "500-599", as Traefik's HTTPCodeRanges.
  void add_status_range(const std::string& block, const std::string& where) {
    const size_t dash = block.find('-');
    auto from = parse_uint(trim(std::string_view(block).substr(0, dash)));
    auto to = dash == std::string::npos ? from : parse_uint(trim(std::string_view(block).substr(dash + 1)));
    if (!from || !to || *from < 100 || *to > 599 || *from > *to) {
      d_.error(where, "invalid accessLog.filters.statusCodes entry \"" + block +
                          "\" (expected a status like 404 or a range like 500-599)");
      return;
    }
    c_.access_log.status_codes.emplace_back(static_cast<int>(*from), static_cast<int>(*to));
  }

  void decode_access_log_fields(const ConfigNode& node) {
    auto& a = c_.access_log;
    constexpr std::string_view kPath = "accessLog.fields";
    bool present = false;
    if (!d_.read_section(node, "accessLog", present)) return;
    for (const ConfigNode* e : d_.entries(node, kPath)) {
      const std::string& k = e->key;
      if (iequals(k, "defaultMode")) {
        read_log_mode(*e, kPath, false, a.fields_default_mode);
      } else if (iequals(k, "names")) {
        for (const ConfigNode* f : d_.entries(*e, "accessLog.fields.names")) {
          if (!is_access_log_field(f->key)) {
            d_.error(f->key_where, "unknown access log field \"" + f->key + "\" in accessLog.fields.names");
            continue;
          }
          std::string mode;
          if (read_log_mode(*f, "accessLog.fields.names", false, mode)) a.field_modes.emplace_back(f->key, mode);
        }
      } else if (iequals(k, "headers")) {
        constexpr std::string_view kHeaders = "accessLog.fields.headers";
        for (const ConfigNode* h : d_.entries(*e, kHeaders)) {
          if (iequals(h->key, "defaultMode")) {
            read_log_mode(*h, kHeaders, true, a.headers_default_mode);
          } else if (iequals(h->key, "names")) {
            for (const ConfigNode* n : d_.entries(*h, "accessLog.fields.headers.names")) {
              std::string mode;
              if (read_log_mode(*n, "accessLog.fields.headers.names", true, mode)) a.header_modes.emplace_back(n->key, mode);
            }
          } else {
            d_.unknown_key(*h, kHeaders);
          }
        }
      } else if (iequals(k, "queryParameters")) {
        d_.error(e->where, "accessLog.fields.queryParameters is not supported by berth");
      } else {
        d_.unknown_key(*e, kPath);
      }
    }
  }

  // keep | drop, and redact for headers; stored lower-case.
  bool read_log_mode(const ConfigNode& entry, std::string_view path, bool allow_redact, std::string& out) {
    std::string mode;
    if (!d_.read_string(entry, path, mode)) return false;
    const std::string lower = to_lower(trim(mode));
    if (lower != "keep" && lower != "drop" && (lower != "redact" || !allow_redact)) {
      d_.error(entry.where, "invalid mode \"" + mode + "\" for " + YamlDecoder::join(path, entry.key) +
                                (allow_redact ? " (expected keep, drop or redact)" : " (expected keep or drop)"));
      return false;
    }
    out = lower;
    return true;
  }

  // Traefik's access log fields (pkg/middlewares/accesslog/logdata.go), including those berth does
  // not write (tracing, Kubernetes, the documented *Line fields): naming them is not a mistake.
  static bool is_access_log_field(std::string_view name) {
    static constexpr std::string_view kFields[] = {
        "StartUTC", "StartLocal", "Duration", "RouterName", "ServiceName", "ServiceURL", "ServiceAddr",
        "ClientAddr", "ClientHost", "ClientPort", "ClientUsername", "RequestAddr", "RequestHost", "RequestPort",
        "RequestMethod", "RequestPath", "RequestProtocol", "RequestScheme", "RequestLine", "RequestContentSize",
        "OriginDuration", "OriginContentSize", "OriginStatus", "OriginStatusLine", "DownstreamStatus",
        "DownstreamStatusLine", "DownstreamContentSize", "RequestCount", "GzipRatio", "Overhead", "RetryAttempts",
        "TLSVersion", "TLSCipher", "TLSClientSubject", "TraceId", "SpanId", "trace_id", "span_id",
        "entryPointName", "KubernetesIngressNamespace", "KubernetesIngressName", "KubernetesServiceName",
        "KubernetesServicePort"};
    for (std::string_view f : kFields)
      if (iequals(f, name)) return true;
    return false;
  }

  // api: Traefik's API (and the dashboard, on unless `dashboard: false`). With `insecure` both answer
  // on the `traefik` entry point; otherwise only through routers naming api@internal.
  void decode_api(const ConfigNode& node) {
    bool enabled = false;
    const bool has_options = d_.read_section(node, "", enabled);
    c_.api_enabled = enabled;
    c_.api_dashboard = enabled;
    c_.api_insecure = false;
    if (!has_options) return;
    for (const ConfigNode* e : d_.entries(node, "api")) {
      bool ignored = false;
      if (iequals(e->key, "dashboard")) d_.read_bool(*e, "api", c_.api_dashboard);
      else if (iequals(e->key, "insecure")) d_.read_bool(*e, "api", c_.api_insecure);
      // Traefik's pprof handlers and its dashboard's Hub ad: berth has neither.
      else if (iequals(e->key, "debug") || iequals(e->key, "disableDashboardAd")) d_.read_bool(*e, "api", ignored);
      else d_.unknown_key(*e, "api");
    }
  }

  // Traefik compose files often set these; berth never phones home, so they are read and dropped.
  void decode_admin(const ConfigNode& node) {
    bool present = false;
    if (!d_.read_section(node, "", present)) return;
    for (const ConfigNode* e : d_.entries(node, "admin")) {
      if (iequals(e->key, "socket")) {
        admin_socket_set_ = d_.read_string(*e, "admin", c_.admin.socket);
        if (admin_socket_set_ && c_.admin.socket.empty()) c_.admin.enabled = false;
      } else if (iequals(e->key, "stateFile")) {
        d_.read_string(*e, "admin", c_.admin.state_file);
      } else {
        d_.unknown_key(*e, "admin");
      }
    }
  }

  void decode_global(const ConfigNode& node) {
    for (const ConfigNode* e : d_.entries(node, "global")) {
      bool ignored = false;
      if (iequals(e->key, "checkNewVersion") || iequals(e->key, "sendAnonymousUsage"))
        d_.read_bool(*e, "global", ignored);
      else d_.unknown_key(*e, "global");
    }
  }

  StaticConfig& c_;
  YamlDecoder d_;
  std::string ping_where_;
  bool admin_socket_set_ = false;
  std::string prometheus_where_;
  std::string file_where_;
};

}  // namespace

const EntryPointConfig* StaticConfig::find_entry_point(std::string_view name) const {
  for (const auto& ep : entry_points)
    if (iequals(ep.name, name)) return &ep;
  return nullptr;
}

bool decode_servers_transport_key(const ConfigNode& e, YamlDecoder& d, const std::string& path, bool named,
                                  ServersTransportConfig& st) {
  const std::string& k = e.key;
  if (iequals(k, "forwardingTimeouts")) {
    const std::string fpath = path + ".forwardingTimeouts";
    for (const ConfigNode* t : d.entries(e, fpath)) {
      if (iequals(t->key, "dialTimeout")) d.read_duration(*t, fpath, st.dial_timeout);
      else if (iequals(t->key, "responseHeaderTimeout")) d.read_duration(*t, fpath, st.response_header_timeout);
      else if (iequals(t->key, "idleConnTimeout")) d.read_duration(*t, fpath, st.idle_conn_timeout);
      else if (named && iequals(t->key, "readIdleTimeout")) d.read_duration(*t, fpath, st.read_idle_timeout);
      else if (named && iequals(t->key, "pingTimeout")) d.read_duration(*t, fpath, st.ping_timeout);
      else d.unknown_key(*t, fpath);
    }
  } else if (iequals(k, "maxIdleConnsPerHost")) {
    d.read_int(e, path, st.max_idle_conns_per_host, -1, 1'000'000);
  } else if (iequals(k, "insecureSkipVerify")) {
    d.read_bool(e, path, st.insecure_skip_verify);
  } else if (iequals(k, "rootCAs")) {
    d.read_list(e, path, st.root_cas);
  } else if (iequals(k, "spiffe")) {
    st.ignored.push_back(k);
  } else if (named && iequals(k, "serverName")) {
    d.read_string(e, path, st.server_name);
  } else if (named && iequals(k, "disableHTTP2")) {
    d.read_bool(e, path, st.disable_http2);
  } else if (named && iequals(k, "peerCertURI")) {
    d.read_string(e, path, st.peer_cert_uri);
  } else if (named && iequals(k, "certificates")) {
    if (e.is_null()) return true;
    if (e.kind != ConfigNode::Kind::kList) {
      d.error(e.where, "expected a list for " + YamlDecoder::join(path, k));
      return true;
    }
    for (size_t i = 0; i < e.children.size(); ++i) {
      const std::string cpath = path + ".certificates[" + std::to_string(i) + "]";
      TlsCertificateConfig cert;
      cert.where = e.children[i].where;
      for (const ConfigNode* c : d.entries(e.children[i], cpath)) {
        if (iequals(c->key, "certFile")) d.read_string(*c, cpath, cert.cert_file);
        else if (iequals(c->key, "keyFile")) d.read_string(*c, cpath, cert.key_file);
        else d.unknown_key(*c, cpath);
      }
      if (cert.cert_file.empty() || cert.key_file.empty()) d.error(cert.where, cpath + " needs certFile and keyFile");
      else st.certificates.push_back(std::move(cert));
    }
  } else {
    return false;
  }
  return true;
}

bool parse_address(std::string_view address, std::string& host, uint16_t& port) {
  std::string_view a = trim(address);
  if (const size_t slash = a.find('/'); slash != std::string_view::npos) {
    if (!iequals(a.substr(slash + 1), "tcp")) return false;
    a = a.substr(0, slash);
  }
  std::string_view h, p;
  if (a.starts_with('[')) {
    const size_t close = a.find(']');
    if (close == std::string_view::npos || close + 1 >= a.size() || a[close + 1] != ':') return false;
    h = a.substr(1, close - 1);
    p = a.substr(close + 2);
    std::string ip(h.substr(0, h.find('%')));  // a zone ("fe80::1%eth0") is not part of the address
    unsigned char buffer[16];
    if (inet_pton(AF_INET6, ip.c_str(), buffer) != 1) return false;
  } else {
    const size_t colon = a.rfind(':');
    if (colon == std::string_view::npos) return false;
    h = a.substr(0, colon);
    p = a.substr(colon + 1);
    if (!valid_hostname(h)) return false;  // also rejects an unbracketed IPv6 address
  }
  const auto n = parse_uint(p);
  if (!n || *n > 65535) return false;
  host = std::string(h);
  port = static_cast<uint16_t>(*n);
  return true;
}

StaticLoad load_static_config(const std::vector<std::string>& args) {
  StaticLoad load;
  Flags flags = parse_flags(args, load.errors);
  ConfigNode root;
  root.kind = ConfigNode::Kind::kMap;
  if (!flags.config_file.empty()) {
    load.config.config_file = flags.config_file;
    if (auto file_tree = read_config_file(flags.config_file, load.errors)) root = std::move(*file_tree);
  }
  overlay(root, std::move(flags.tree));
  StaticDecoder decoder(load.config, load.errors);
  decoder.decode(root);
  decoder.apply_defaults_and_check(flags.config_file.empty() ? std::string("flags") : flags.config_file);
  return load;
}

std::string default_admin_socket() {
  if (const char* env = std::getenv("BERTH_ADMIN_SOCKET"); env && *env) return env;
  if (::geteuid() == 0) return "/run/berth/admin.sock";
  return "/tmp/berth-" + std::to_string(::geteuid()) + "/admin.sock";
}

std::string default_admin_state_file() {
  if (const char* env = std::getenv("BERTH_DEPLOY_STATE"); env && *env) return env;
  if (::geteuid() == 0) return "/var/lib/berth/deploy.json";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/tmp") + "/.local/state/berth/deploy.json";
}

uint32_t StaticConfig::worker_count() const {
  return workers > 0 ? static_cast<uint32_t>(workers) : std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace berth::config
