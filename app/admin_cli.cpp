// See admin_cli.h. Blocking I/O: one command, one connection, lines in, lines out.
#include "app/admin_cli.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "base/text.h"
#include "config/static_config.h"

namespace berth::app {

namespace json = boost::json;

const char* const kAdminUsage =
    "Deploys (to the running berth, over its admin socket):\n"
    "  berth deploy <service> --target host:port[,...] [--host example.com ...] [--health-path /up]\n"
    "               [--health-interval 1s] [--health-timeout 5s] [--deploy-timeout 30s] [--drain-timeout 30s]\n"
    "               [--force]      switch once every new target answers 2xx on the health path, then drain\n"
    "  berth rollback <service>    back to the targets before the last deploy (health-gated)\n"
    "  berth rollout <service> [--target host:port[,...]] --percent N [--auto-rollback [--error-margin 0.05]\n"
    "               [--latency-factor 2] [--min-requests 20]]   N% of users (sticky) on the new targets\n"
    "  berth rollout <service> --stop                           everyone back on the current targets\n"
    "  berth pause <service> [--max-pause 30s] [--drain-timeout 30s]   hold new requests\n"
    "  berth stop <service> [--message text] [--drain-timeout 30s]     a 503 maintenance page\n"
    "  berth resume <service>      end a pause or a stop\n"
    "  berth list [--json]         services, targets, health, rollouts and deploys\n"
    "  Each takes --socket=PATH (else $BERTH_ADMIN_SOCKET, else admin.socket of --configFile=, else\n"
    "  /run/berth/admin.sock as root). <service> is \"app\" or \"app@docker\"; a name no provider has\n"
    "  becomes berth's own \"app@deploy\" on deploy (with a router for --host, or every host).\n";

namespace {

bool is_duration_flag(const std::string& f) {
  return f == "health-interval" || f == "health-timeout" || f == "deploy-timeout" || f == "drain-timeout" ||
         f == "max-pause";
}

std::string camel(const std::string& flag) {
  std::string out;
  bool up = false;
  for (char c : flag) {
    if (c == '-') {
      up = true;
      continue;
    }
    out += up ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    up = false;
  }
  return out;
}

std::string socket_path(const std::string& given, const std::string& config_file) {
  if (!given.empty()) return given;
  if (!config_file.empty()) {
    auto loaded = config::load_static_config({"--configFile=" + config_file});
    return loaded.config.admin.socket;
  }
  return config::default_admin_socket();  // $BERTH_ADMIN_SOCKET first
}

std::string ago(int64_t when) {
  if (when <= 0) return "";
  const int64_t s = static_cast<int64_t>(std::time(nullptr)) - when;
  if (s < 120) return std::to_string(s) + "s ago";
  if (s < 7200) return std::to_string(s / 60) + "m ago";
  if (s < 172800) return std::to_string(s / 3600) + "h ago";
  return std::to_string(s / 86400) + "d ago";
}

std::string text(const json::value* v) { return v && v->is_string() ? std::string(v->as_string()) : std::string(); }

void print_table(const json::array& services) {
  struct Row {
    std::string service, state, servers, rollout, last;
  };
  std::vector<Row> rows{{"SERVICE", "STATE", "SERVERS", "ROLLOUT", "LAST"}};
  for (const auto& v : services) {
    const auto& o = v.as_object();
    Row r{text(o.if_contains("service")), text(o.if_contains("state")), "", "", ""};
    if (const auto* busy = o.if_contains("busy")) r.state += " (" + text(busy) + ")";
    if (const auto* kind = o.if_contains("kind")) {
      r.servers = text(kind) + ":";
      for (const auto& c : o.at("children").as_array())
        r.servers += " " + text(c.as_object().if_contains("service")) + "=" + std::to_string(c.as_object().at("weight").to_number<int64_t>());
    }
    for (const auto& s : o.at("servers").as_array()) {
      const auto& so = s.as_object();
      std::string url = text(so.if_contains("url"));
      if (url.starts_with("http://")) url = url.substr(7);
      r.servers += (r.servers.empty() ? "" : " ") + url + (so.at("up").as_bool() ? " up" : " DOWN") +
                   (text(so.if_contains("role")) == "canary" ? " (canary)" : "");
    }
    if (const auto* d = o.if_contains("deploy"); d && d->is_object()) {
      const auto& dj = d->as_object();
      if (const auto* p = dj.if_contains("percent")) {
        r.rollout = std::to_string(p->to_number<int64_t>()) + "%";
        if (const auto* a = dj.if_contains("autoRollback"); a && a->as_bool()) r.rollout += " auto-rollback";
      }
      r.last = text(dj.if_contains("last"));
      if (auto when = ago(dj.at("updated").to_number<int64_t>()); !when.empty()) r.last += " (" + when + ")";
    }
    rows.push_back(std::move(r));
  }
  size_t w[4] = {};
  for (const auto& r : rows) {
    w[0] = std::max(w[0], r.service.size());
    w[1] = std::max(w[1], r.state.size());
    w[2] = std::max(w[2], r.servers.size());
    w[3] = std::max(w[3], r.rollout.size());
  }
  for (const auto& r : rows)
    std::cout << std::left << std::setw(static_cast<int>(w[0] + 2)) << r.service << std::setw(static_cast<int>(w[1] + 2))
              << r.state << std::setw(static_cast<int>(w[2] + 2)) << r.servers << std::setw(static_cast<int>(w[3] + 2))
              << r.rollout << r.last << "\n";
}

}  // namespace

bool is_admin_command(const std::string& verb) {
  return verb == "deploy" || verb == "rollback" || verb == "rollout" || verb == "pause" || verb == "resume" ||
         verb == "stop" || verb == "list" || verb == "ls";
}

int run_admin_command(const std::string& given_verb, const std::vector<std::string>& args) {
  const std::string verb = given_verb == "ls" ? "list" : given_verb;
  json::object request{{"command", verb}};
  std::string socket_flag, config_file;
  bool as_json = false;
  json::array targets, hosts;
  auto usage = [&](const std::string& problem) {
    std::cerr << "berth " << verb << ": " << problem << "\n" << kAdminUsage;
    return 2;
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (!a.starts_with("--")) {
      if (request.contains("service")) return usage("one service at a time (\"" + a + "\" is extra)");
      request["service"] = a;
      continue;
    }
    std::string flag = a.substr(2), value;
    bool has_value = false;
    if (auto eq = flag.find('='); eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_value = true;
    }
    const bool boolean = flag == "force" || flag == "auto-rollback" || flag == "stop" || flag == "json";
    if (!boolean && !has_value) {
      if (i + 1 >= args.size()) return usage("--" + flag + " needs a value");
      value = args[++i];
    }
    if (flag == "socket") socket_flag = value;
    else if (iequals(flag, "configFile")) config_file = value;
    else if (flag == "json") as_json = !has_value || parse_bool(value).value_or(true);
    else if (flag == "target") targets.emplace_back(value);
    else if (flag == "host") hosts.emplace_back(value);
    else if (boolean) {
      auto on = has_value ? parse_bool(value) : std::optional<bool>(true);
      if (!on) return usage("--" + flag + "=" + value + ": true or false");
      request[camel(flag)] = *on;
    }
    else if (is_duration_flag(flag)) {
      auto d = parse_duration(value);
      if (!d) return usage("--" + flag + " " + value + ": not a duration (like 500ms, 30s, 2m)");
      request[camel(flag)] = std::chrono::duration_cast<std::chrono::milliseconds>(*d).count();
    } else if (flag == "percent" || flag == "min-requests") {
      auto n = parse_uint(value);
      if (!n || (flag == "percent" && *n > 100)) return usage("--" + flag + " " + value + ": not a whole number" +
                                                              (flag == "percent" ? " from 0 to 100" : ""));
      request[camel(flag)] = static_cast<int64_t>(*n);
    } else if (flag == "error-margin" || flag == "latency-factor") {
      char* end = nullptr;
      const double x = std::strtod(value.c_str(), &end);
      if (end == value.c_str() || *end != '\0' || x < 0) return usage("--" + flag + " " + value + ": not a number");
      request[camel(flag)] = x;
    } else if (flag == "health-path" || flag == "message") {
      request[camel(flag)] = value;
    } else {
      return usage("unknown flag --" + flag);
    }
  }
  if (!targets.empty()) request["targets"] = targets;
  if (!hosts.empty()) request["hosts"] = hosts;
  if (verb != "list" && !request.contains("service")) return usage("which service?");

  const std::string path = socket_path(socket_flag, config_file);
  if (path.empty()) {
    std::cerr << "berth: the admin socket is off in " << config_file << " (admin.socket is empty)\n";
    return 2;
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    std::cerr << "berth: admin socket path too long: " << path << "\n";
    return 2;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::cerr << "berth: cannot reach berth at " << path << ": " << std::strerror(errno)
              << " (is it running? --socket, $BERTH_ADMIN_SOCKET or --configFile name another socket)\n";
    if (fd >= 0) ::close(fd);
    return 2;
  }
  const std::string line = json::serialize(request) + "\n";
  if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    std::cerr << "berth: cannot send to " << path << ": " << std::strerror(errno) << "\n";
    ::close(fd);
    return 2;
  }
  std::string buffer;
  char chunk[8192];
  while (true) {
    size_t eol;
    while ((eol = buffer.find('\n')) != std::string::npos) {
      boost::system::error_code ec;
      json::value v = json::parse(std::string_view(buffer).substr(0, eol), ec);
      buffer.erase(0, eol + 1);
      if (ec || !v.is_object()) continue;
      const auto& o = v.as_object();
      if (const auto* p = o.if_contains("progress")) {
        std::cout << text(p) << std::endl;
        continue;
      }
      const bool ok = o.contains("ok") && o.at("ok").is_bool() && o.at("ok").as_bool();
      if (const auto* s = o.if_contains("services"); s && s->is_array()) {
        if (as_json) std::cout << json::serialize(*s) << "\n";
        else print_table(s->as_array());
      }
      if (auto message = text(o.if_contains("message")); !message.empty()) (ok ? std::cout : std::cerr) << message << "\n";
      ::close(fd);
      return ok ? 0 : 1;
    }
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buffer.append(chunk, static_cast<size_t>(n));
  }
  ::close(fd);
  std::cerr << "berth: the connection to " << path << " ended before an answer (berth stopped or was replaced?)\n";
  return 1;
}

}  // namespace berth::app
