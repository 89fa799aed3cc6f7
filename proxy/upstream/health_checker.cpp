// Active health checks; see health_checker.h. One small HTTP/1.1 client per probe: connect, send
// the check request, read the status line (and Location for redirects), close.
#include "proxy/upstream/health_checker.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <set>

#include "base/log.h"
#include "base/text.h"

namespace berth::proxy::upstream {

namespace asio = boost::asio;
using asio::ip::tcp;

struct HealthChecker::Probe {
  Probe(asio::io_context& io) : timer(io), deadline(io), socket(io) {}
  std::string service;
  std::string url;
  config::HealthCheckConfig config;
  tcp::endpoint address;     ///< the server's address, with healthCheck.port applied
  std::string host;          ///< Host header
  std::shared_ptr<EndpointHealth> health;
  asio::steady_timer timer;     ///< between probes
  asio::steady_timer deadline;  ///< healthCheck.timeout of the probe in flight
  tcp::socket socket;
  bool stopped = false;
  bool timed_out = false;
  bool last_up = true;
};

namespace {

struct Outcome {
  int status = 0;        ///< 0: no HTTP answer
  std::string location;  ///< redirect target
  std::string problem;   ///< why there is no answer
};

// One request on a fresh connection, bounded by the probe's deadline.
asio::awaitable<Outcome> request_once(HealthChecker::Probe& p, const std::string& target) {
  Outcome out;
  boost::system::error_code ec;
  p.socket = tcp::socket(p.socket.get_executor());
  p.timed_out = false;
  p.deadline.expires_after(p.config.timeout);
  p.deadline.async_wait([&p](boost::system::error_code e) {
    if (e) return;
    p.timed_out = true;
    boost::system::error_code ignored;
    p.socket.close(ignored);
  });
  auto token = asio::redirect_error(asio::use_awaitable, ec);
  co_await p.socket.async_connect(p.address, token);
  if (!ec) {
    std::string req = p.config.method + " " + target + " HTTP/1.1\r\nHost: " + p.host +
                      "\r\nUser-Agent: berth-healthcheck\r\nConnection: close\r\n";
    for (const auto& [name, value] : p.config.headers)
      if (!iequals(name, "Host")) req += name + ": " + value + "\r\n";
    req += "\r\n";
    co_await asio::async_write(p.socket, asio::buffer(req), token);
  }
  std::string head;
  if (!ec) co_await asio::async_read_until(p.socket, asio::dynamic_buffer(head, 64 * 1024), "\r\n\r\n", token);
  p.deadline.cancel();
  boost::system::error_code ignored;
  p.socket.close(ignored);
  if (ec) {
    out.problem = p.timed_out ? "timed out after " + format_duration(p.config.timeout) : ec.message();
    co_return out;
  }
  // "HTTP/1.1 200 OK"
  if (head.size() < 12 || !head.starts_with("HTTP/1.") ||
      std::from_chars(head.data() + 9, head.data() + 12, out.status).ec != std::errc{}) {
    out.status = 0;
    out.problem = "malformed response";
    co_return out;
  }
  std::string_view rest = std::string_view(head).substr(0, head.find("\r\n\r\n"));
  while (!rest.empty()) {
    size_t eol = rest.find('\n');
    std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view{} : rest.substr(eol + 1);
    size_t colon = line.find(':');
    if (colon != std::string_view::npos && iequals(trim(line.substr(0, colon)), "Location"))
      out.location = std::string(trim(line.substr(colon + 1)));
  }
  co_return out;
}

// Runs the check, following same-server redirects as Go's client would (at most 10).
asio::awaitable<Outcome> probe_once(HealthChecker::Probe& p) {
  std::string target = p.config.path;
  Outcome out;
  for (int hops = 0; hops <= 10; ++hops) {
    out = co_await request_once(p, target);
    const bool redirect = out.status == 301 || out.status == 302 || out.status == 303 || out.status == 307 ||
                          out.status == 308;
    if (!redirect || !p.config.follow_redirects || out.location.empty()) break;
    // Only a path on the same server is followed: a check never talks to another host.
    if (out.location[0] != '/' || out.location.starts_with("//")) break;
    target = out.location;
  }
  co_return out;
}

bool healthy(const config::HealthCheckConfig& c, int status) {
  if (c.status != 0) return status == c.status;
  return status >= 200 && status < 400;
}

asio::awaitable<void> run_probe(std::shared_ptr<HealthChecker::Probe> p) {
  while (!p->stopped) {
    Outcome out = co_await probe_once(*p);
    if (p->stopped) break;
    const bool up = out.status != 0 && healthy(p->config, out.status);
    p->health->active_up.store(up, std::memory_order_relaxed);
    if (up != p->last_up) {
      if (up)
        LOG_INFO("health check: server ", p->url, " of service ", p->service, " is healthy again (status ",
                 out.status, "); back in rotation");
      else
        LOG_WARN("health check: server ", p->url, " of service ", p->service, " is unhealthy (",
                 out.status ? "status " + std::to_string(out.status) : out.problem, "); removed from rotation");
      p->last_up = up;
    }
    auto wait = up || p->config.unhealthy_interval.count() == 0 ? p->config.interval : p->config.unhealthy_interval;
    p->timer.expires_after(wait);
    boost::system::error_code ec;
    co_await p->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

std::string probe_key(const std::string& service, const Endpoint& e, const config::HealthCheckConfig& c) {
  std::string key = service + "\n" + e.url + "\n" + e.address.address().to_string() + "\n" + c.path + "\n" +
                    c.scheme + "\n" + c.hostname + "\n" + std::to_string(c.port) + "\n" + c.method + "\n" +
                    std::to_string(c.interval.count()) + "\n" + std::to_string(c.unhealthy_interval.count()) + "\n" +
                    std::to_string(c.timeout.count()) + "\n" + std::to_string(c.status) + "\n" +
                    (c.follow_redirects ? "1" : "0");
  for (const auto& [name, value] : c.headers) key += "\n" + name + ": " + value;
  return key;
}

// Ends a probe loop: its coroutine sees `stopped` when its wait or I/O completes.
void halt(HealthChecker::Probe& p) {
  p.stopped = true;
  p.timer.cancel();
  p.deadline.cancel();
  boost::system::error_code ignored;
  p.socket.close(ignored);
}

}  // namespace

HealthChecker::~HealthChecker() { stop(); }

void HealthChecker::stop() {
  for (auto& [key, p] : probes_) halt(*p);
  probes_.clear();
}

void HealthChecker::update(const Snapshot& snapshot) {
  std::map<std::string, std::shared_ptr<Probe>> next;
  for (const auto& service : snapshot.services) {
    if (!service.health_check) continue;
    const auto& c = *service.health_check;
    for (const auto& e : service.endpoints) {
      std::string key = probe_key(service.name, e, c);
      if (next.contains(key)) continue;  // the same server listed twice: one probe
      if (auto it = probes_.find(key); it != probes_.end()) {
        next.emplace(key, std::move(it->second));
        probes_.erase(it);
        continue;
      }
      auto p = std::make_shared<Probe>(io_);
      p->service = service.name;
      p->url = e.url;
      p->config = c;
      p->address = e.address;
      if (c.port != 0) p->address.port(static_cast<uint16_t>(c.port));
      p->host = c.hostname.empty() ? e.authority : c.hostname;
      p->health = e.health;
      p->last_up = e.health->active_up.load(std::memory_order_relaxed);
      asio::co_spawn(io_, run_probe(p), [p](std::exception_ptr ex) {
        if (ex) LOG_ERROR("health check of ", p->url, " stopped on an internal error");
      });
      next.emplace(std::move(key), std::move(p));
    }
  }
  // Whatever is left is no longer wanted; a server still served without a check is back in rotation.
  std::set<const EndpointHealth*> checked;
  for (const auto& [key, p] : next) checked.insert(p->health.get());
  for (auto& [key, p] : probes_) {
    halt(*p);
    if (!checked.count(p->health.get())) p->health->active_up.store(true, std::memory_order_relaxed);
  }
  probes_ = std::move(next);
}

}  // namespace berth::proxy::upstream
