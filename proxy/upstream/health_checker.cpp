// Active health checks; see health_checker.h. One small client per probe on the data plane's
// streams: connect (TLS for https), send the check request (HTTP/1.1, or HTTP/2 for mode grpc and
// servers that speak it), read the status line (and Location for redirects; the whole answer for
// gRPC), close.
#include "proxy/upstream/health_checker.h"

#include <boost/asio/ip/tcp.hpp>
#include <charconv>
#include <set>

#include "base/log.h"
#include "base/text.h"
#include "proxy/coro/task.h"
#include "proxy/h2_session.h"
#include "proxy/http/h1/chunked_decoder.h"
#include "proxy/upstream/pool.h"

namespace berth::proxy::upstream {

namespace asio = boost::asio;
using asio::ip::tcp;

struct HealthChecker::Probe {
  Probe(asio::io_context& io, BufferPool& pool) : timer(io.get_executor()), deadline(io.get_executor()), buffers(pool) {}
  std::string service;
  std::string url;
  config::HealthCheckConfig config;
  tcp::endpoint address;     ///< the server's address, with healthCheck.port applied
  std::string host;          ///< Host header
  bool tls = false;          ///< https (the server's scheme, or healthCheck.scheme)
  bool h2c = false;          ///< an h2c:// server: HTTP/2 with prior knowledge
  std::shared_ptr<const tls::ClientContext> tls_context;  ///< the service's transport, when tls
  std::string tls_host;      ///< the URL's host (SNI and the verified name, unless serverName)
  std::shared_ptr<EndpointHealth> health;
  Timer timer;     ///< between probes
  Timer deadline;  ///< healthCheck.timeout of the probe in flight
  BufferPool& buffers;
  /// The probe's connection, closed by the deadline or halt(): a TCP/TLS one, or its HTTP/2 client.
  UpstreamConnection* connection = nullptr;
  std::shared_ptr<H2Client> h2;
  bool stopped = false;
  bool timed_out = false;
  bool last_up = true;
  uint64_t generation = 0;  ///< of the request in flight, for its deadline
};

namespace {

struct Outcome {
  int status = 0;        ///< 0: no usable answer
  std::string location;  ///< redirect target
  std::string problem;   ///< why there is no answer
};

// Ends the probe's I/O: shut down (the descriptor is closed when the connection object goes), so
// a late TLS write cannot land on a descriptor number reused by another connection.
void close_connection(HealthChecker::Probe& p) {
  if (p.h2) p.h2->abort();
  boost::system::error_code ignored;
  if (p.connection != nullptr) {
    p.connection->stream.socket().shutdown(Socket::shutdown_both, ignored);
    p.connection->stream.cancel();
  }
}

// gRPC's health protocol (grpc.health.v1.Health/Check, as Traefik's mode: grpc): the answer is
// healthy when the call succeeds (grpc-status 0) and says SERVING. `response` is the whole
// HTTP/1.1 rendering of the HTTP/2 answer, head included.
Outcome grpc_outcome(std::string_view response, Outcome out) {
  size_t head_end = response.find("\r\n\r\n");
  std::string_view head = response.substr(0, head_end);
  std::string_view body = head_end == std::string_view::npos ? std::string_view{} : response.substr(head_end + 4);
  std::string payload, trailers;
  if (head.find("\r\nTransfer-Encoding: chunked") != std::string_view::npos) {
    http::h1::ChunkedDecoder decoder;
    decoder.keep_trailers(&trailers);
    while (!body.empty()) {
      size_t used = 0;
      std::string_view data;
      auto st = decoder.decode(body, used, data);
      body.remove_prefix(used);
      if (st == http::h1::ChunkedDecoder::Status::kData) payload.append(data);
      else break;
    }
  } else {
    payload.assign(body);
  }
  // grpc-status: in the trailers, or in the head of a trailers-only answer.
  std::string_view status_text;
  for (std::string_view fields : {std::string_view(trailers), head}) {
    for (std::string_view rest = fields; !rest.empty() && status_text.empty();) {
      size_t eol = rest.find("\r\n");
      std::string_view line = rest.substr(0, eol);
      rest = eol == std::string_view::npos ? std::string_view{} : rest.substr(eol + 2);
      size_t colon = line.find(':');
      if (colon != std::string_view::npos && iequals(trim(line.substr(0, colon)), "grpc-status"))
        status_text = trim(line.substr(colon + 1));
    }
    if (!status_text.empty()) break;
  }
  if (out.status != 200 || status_text != "0") {
    out.problem = out.status != 200 ? "HTTP status " + std::to_string(out.status)
                                    : "gRPC status " + std::string(status_text.empty() ? "missing" : status_text);
    out.status = 0;
    return out;
  }
  // HealthCheckResponse { ServingStatus status = 1; } after the 5-byte message prefix: SERVING = 1.
  if (payload.size() < 7 || payload[5] != 0x08 || payload[6] != 0x01) {
    out.problem = "gRPC health: not SERVING";
    out.status = 0;
  }
  return out;
}

// One request on a fresh connection, bounded by the probe's deadline: HTTP/1.1, over TLS for
// https, and HTTP/2 for mode grpc, h2c:// servers and TLS servers that pick h2.
coro::Task<Outcome> request_once(HealthChecker::Probe& p, const std::string& target) {
  Outcome out;
  auto executor = p.timer.get_executor();
  auto conn = std::make_unique<UpstreamConnection>(executor);
  p.connection = conn.get();
  p.h2.reset();
  p.timed_out = false;
  p.deadline.expires_after(p.config.timeout);
  // A deadline that expired just as its request ended must not close the next request's connection.
  const uint64_t generation = ++p.generation;
  p.deadline.async_wait([&p, generation](boost::system::error_code e) {
    if (e || p.generation != generation) return;
    p.timed_out = true;
    close_connection(p);
  });
  const bool grpc = p.config.mode == "grpc";
  std::unique_ptr<UpstreamConnection> h2_stream;
  UpstreamConnection* io = conn.get();
  auto [ec] = co_await conn->stream.socket().async_connect(p.address, coro::use_task);
  if (!ec && p.tls) {
    SSL* ssl = p.tls_context ? p.tls_context->new_ssl(p.tls_host) : nullptr;
    if (ssl == nullptr) {
      ec = asio::error::no_protocol_option;
    } else {
      conn->stream.start_tls(ssl, Stream::Side::kClient);
      ec = co_await conn->stream.handshake();
      if (!ec && !p.tls_context->peer_matches(ssl)) ec = asio::error::access_denied;
    }
  }
  if (!ec) {
    const unsigned char* alpn = nullptr;
    unsigned int alpn_length = 0;
    if (conn->stream.ssl() != nullptr) SSL_get0_alpn_selected(conn->stream.ssl(), &alpn, &alpn_length);
    if (grpc || p.h2c || std::string_view(reinterpret_cast<const char*>(alpn), alpn_length) == "h2") {
      p.h2 = H2Client::start(std::move(conn), p.tls, p.buffers);
      p.connection = nullptr;
      h2_stream = p.h2->open_stream(std::chrono::milliseconds(0));
      io = h2_stream.get();
    }
  }
  std::string response;
  if (!ec && io != nullptr) {
    std::string req = (grpc ? std::string("POST") : p.config.method) + " " +
                      (grpc ? std::string("/grpc.health.v1.Health/Check") : target) + " HTTP/1.1\r\nHost: " + p.host +
                      "\r\nUser-Agent: berth-healthcheck\r\n";
    for (const auto& [name, value] : p.config.headers)
      if (!iequals(name, "Host")) req += name + ": " + value + "\r\n";
    // An empty HealthCheckRequest (all services): the 5-byte gRPC message prefix alone.
    if (grpc) req += std::string("Content-Type: application/grpc\r\nTe: trailers\r\nContent-Length: 5\r\n\r\n") +
                     std::string(5, '\0');
    else req += "Connection: close\r\n\r\n";
    auto [wec, written] = co_await io->stream.write(asio::buffer(req));
    ec = wec;
    // HTTP: the head is enough; gRPC: the answer to its end (status in the trailers).
    while (!ec && response.size() < 64 * 1024 && (grpc || response.find("\r\n\r\n") == std::string::npos)) {
      char buf[4096];
      auto [rec, n] = co_await io->stream.read_some(asio::buffer(buf));
      if (rec) {
        if (rec != asio::error::eof || response.empty()) ec = rec;
        break;
      }
      response.append(buf, n);
    }
  }
  p.deadline.cancel();
  if (h2_stream) h2_stream->stream.close();
  close_connection(p);
  p.connection = nullptr;
  p.h2.reset();
  if (ec && response.empty()) {
    out.problem = p.timed_out ? "timed out after " + format_duration(p.config.timeout) : ec.message();
    co_return out;
  }
  // "HTTP/1.1 200 OK"
  std::string_view head = std::string_view(response).substr(0, response.find("\r\n\r\n"));
  if (head.size() < 12 || !head.starts_with("HTTP/1.") ||
      std::from_chars(head.data() + 9, head.data() + 12, out.status).ec != std::errc{}) {
    out.status = 0;
    out.problem = "malformed response";
    co_return out;
  }
  if (grpc) co_return grpc_outcome(response, out);
  for (std::string_view rest = head; !rest.empty();) {
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
coro::Task<Outcome> probe_once(HealthChecker::Probe& p) {
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

coro::Task<void> run_probe(std::shared_ptr<HealthChecker::Probe> p) {
  while (!p->stopped) {
    Outcome out = co_await probe_once(*p);
    if (p->stopped) break;
    const bool up = out.status != 0 && (p->config.mode == "grpc" || healthy(p->config, out.status));
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
    co_await p->timer.async_wait(coro::use_task);
  }
}

std::string probe_key(const std::string& service, const Endpoint& e, const config::HealthCheckConfig& c) {
  std::string key = service + "\n" + e.url + "\n" + e.address.address().to_string() + "\n" + c.path + "\n" +
                    c.scheme + "\n" + c.hostname + "\n" + std::to_string(c.port) + "\n" + c.method + "\n" +
                    std::to_string(c.interval.count()) + "\n" + std::to_string(c.unhealthy_interval.count()) + "\n" +
                    std::to_string(c.timeout.count()) + "\n" + std::to_string(c.status) + "\n" +
                    (c.follow_redirects ? "1" : "0") + "\n" + c.mode;
  for (const auto& [name, value] : c.headers) key += "\n" + name + ": " + value;
  return key;
}

// Ends a probe loop: its coroutine sees `stopped` when its wait or I/O completes.
void halt(HealthChecker::Probe& p) {
  p.stopped = true;
  p.timer.cancel();
  p.deadline.cancel();
  close_connection(p);
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
      auto p = std::make_shared<Probe>(io_, buffers_);
      p->service = service.name;
      p->url = e.url;
      p->config = c;
      p->address = e.address;
      if (c.port != 0) p->address.port(static_cast<uint16_t>(c.port));
      p->host = c.hostname.empty() ? e.authority : c.hostname;
      p->health = e.health;
      p->tls = c.scheme.empty() ? e.tls : iequals(c.scheme, "https");
      p->h2c = e.h2c && !p->tls;
      p->tls_context = service.transport.tls;
      p->tls_host = c.hostname.empty() ? e.tls_host : c.hostname;
      p->last_up = e.health->active_up.load(std::memory_order_relaxed);
      coro::spawn(run_probe(p));
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
