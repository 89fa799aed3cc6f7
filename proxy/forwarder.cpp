// The request flow, in one place: route -> pick -> pool -> relay. Start reading here.
// Everything below runs on the worker thread that owns the connection.
#include <boost/asio/write.hpp>
#include <arpa/inet.h>

#include <cctype>
#include <charconv>

#include "base/log.h"
#include "base/text.h"
#include "proxy/downstream_connection.h"
#include "proxy/http/content_sniffer.h"
#include "proxy/http/h1/chunked_decoder.h"
#include "proxy/local_reply.h"
#include "proxy/middleware/cors.h"
#include "proxy/middleware/retry_expression.h"
#include "proxy/middleware/traffic.h"
#include "proxy/mirror.h"
#include "proxy/observe/exchange_record.h"
#include "proxy/upstream/health.h"
#include "proxy/upstream/http_fetch.h"

namespace berth::proxy {

using namespace std::string_view_literals;  // appending a literal must not call strlen

namespace asio = boost::asio;
using asio::ip::tcp;
using http::HeaderId;
namespace {

// Splits a request target into path and (for absolute-form targets) authority.
std::string_view target_path(std::string_view target, std::string_view& authority) {
  if (!target.empty() && target[0] != '/') {
    size_t scheme_end = target.find("://");
    if (scheme_end != std::string_view::npos) {
      auto rest = target.substr(scheme_end + 3);
      size_t slash = rest.find_first_of("/?");
      authority = rest.substr(0, slash);
      target = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
    }
  }
  size_t q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

std::string_view target_query(std::string_view target) {
  size_t q = target.find('?');
  return q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
}

std::string_view origin_form(std::string_view target) {
  if (target.empty() || target[0] == '/') return target;
  size_t scheme_end = target.find("://");
  if (scheme_end == std::string_view::npos) return target;  // "*" (OPTIONS) or authority-form
  auto rest = target.substr(scheme_end + 3);
  size_t slash = rest.find_first_of("/?");
  return slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
}

inline void append_header(std::string& out, std::string_view name, std::string_view value) {
  out.append(name).append(": "sv).append(value).append("\r\n"sv);
}

bool has_header(const std::vector<http::Header>& headers, HeaderId id) {
  for (const auto& h : headers)
    if (h.id == id) return true;
  return false;
}

// The payload of the first chunk of a chunked body (as much of it as `raw` holds).
std::string_view first_chunk(std::string_view raw) {
  size_t eol = raw.find("\r\n");
  if (eol == std::string_view::npos) return {};
  uint64_t size = 0;
  for (char c : raw.substr(0, eol)) {
    int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (digit < 0 || size > (uint64_t(1) << 40)) break;  // ';' starts an extension
    size = size * 16 + static_cast<uint64_t>(digit);
  }
  return raw.substr(eol + 2, static_cast<size_t>(std::min<uint64_t>(size, raw.size() - eol - 2)));
}

// True if a Connection header (there may be several) names `header` as hop-by-hop.
bool named_by_connection(const std::vector<http::Header>& headers, std::string_view header) {
  for (const auto& h : headers)
    if (h.id == HeaderId::kConnection && http::lists_token(h.value, header)) return true;
  return false;
}

}  // namespace

constexpr std::string_view kAcmeChallengePrefix = "/.well-known/acme-challenge/";

coro::Task<bool> DownstreamConnection::serve_exchange(size_t head_size) {
  // Hold this snapshot for the whole exchange: a reload mid-request changes nothing for it.
  const std::shared_ptr<const Snapshot>& snap = (ex_->log.snapshot = worker_.snapshot());
  auto& req = ex_->request;
  std::string_view authority = req.host;
  std::string_view path = target_path(req.target, authority);
  std::string_view query = target_query(req.target);
  router::RequestView view{router::strip_port(authority), path, req.method, query, &req.headers, &peer_};
  const EntryPointRoutes* ep = &snap->entry_points[ep_index_];

  // Ping wins over user routers, as Traefik's internal ping router has the highest priority.
  if (ep->serves_ping && path == "/ping" && (req.method == "GET" || req.method == "HEAD")) {
    in_.consume(head_size);
    ex_->log.internal = true;
    ex_->log.internal_router = "ping@internal";
    bool terminating = worker_.terminating();
    co_return co_await reply_local(terminating ? worker_.info().ping_terminating_status : 200,
                                   terminating ? local_reply::kServiceUnavailable : local_reply::kPingOk,
                                   local_reply::kTextPlain, false);
  }
  if (ep->serves_metrics && path == "/metrics" && (req.method == "GET" || req.method == "HEAD")) {
    in_.consume(head_size);
    ex_->log.internal = true;
    ex_->log.internal_router = "prometheus@internal";
    co_return co_await reply_metrics(*snap);
  }
  // ACME HTTP-01 validations, before any router (a catch-all router must not swallow them).
  if (!ep->acme_http01.empty() && path.starts_with(kAcmeChallengePrefix)) {
    auto answer = ep->acme_http01.find(path.substr(kAcmeChallengePrefix.size()));
    if (answer != ep->acme_http01.end()) {
      in_.consume(head_size);
      co_return co_await reply_local(200, answer->second, local_reply::kTextPlain, false);
    }
  }
  const bool tls = stream_.is_tls();
  const router::Route* route = (tls ? ep->tls_routes : ep->routes).match(view);
  // A service under `berth deploy`: stopped (the maintenance page), or paused (held, then routed
  // again with the snapshot of that moment: a deploy may have switched it meanwhile).
  while (route && route->service < router::kFirstInternalService && snap->services[route->service].gate) {
    const Service& target = snap->services[route->service];
    if (!target.maintenance_page.empty()) {
      in_.consume(head_size);
      co_return co_await reply_local(503, target.maintenance_page, local_reply::kTextHtml, false);
    }
    if (!target.gate->paused.load(std::memory_order_relaxed)) break;
    if (!co_await wait_while_paused(*target.gate)) {
      in_.consume(head_size);
      co_return co_await reply_local(504, local_reply::kGatewayTimeout, local_reply::kTextPlain, false);
    }
    ex_->log.snapshot = worker_.snapshot();  // `snap` refers to it
    ep = &snap->entry_points[ep_index_];
    route = (tls ? ep->tls_routes : ep->routes).match(view);
  }
  ex_->log.route = route;
  // What a deploy's drain looks for (drains_into): set from here to the end of the exchange.
  struct Routed {
    ExchangeState& ex;
    ~Routed() { ex.routed_service = nullptr; }
  } routed{*ex_};
  if (route && route->service < router::kFirstInternalService) {
    ex_->routed_service = &snap->services[route->service];
    ex_->routed_generation = snap->generation;
  }
  // Domain fronting: a Host whose routers want other TLS options than the SNI got (Traefik's
  // snicheck) is not served on this connection.
  if (route && tls && !iequals(view.host, server_name()) &&
      ep->tls_options_for(view.host, true) != ep->tls_options_for(server_name(), false)) {
    in_.consume(head_size);
    co_return co_await reply_local(421, local_reply::kMisdirected, local_reply::kTextPlain, false);
  }
  if (!route) {
    in_.consume(head_size);
    if (ep->serves_dashboard && path == "/")
      co_return co_await reply_local(200, snap->dashboard_html, local_reply::kTextHtml, false);
    co_return co_await reply_local(404, local_reply::kNotFound, local_reply::kTextPlain, false);
  }
  ex_->edits.clear();
  ex_->body_done = false;
  // inFlightReq slots and the circuit breaker's record: however the exchange ends.
  struct EndOfExchange {
    middleware::Edits& edits;
    ~EndOfExchange() {
      middleware::release_in_flight(edits);
      middleware::record_outcome(edits);
    }
  } end_of_exchange{ex_->edits};
  if (!route->middlewares.empty()) {
    middleware::Context ctx{req,        peer_, path, query, trusted_, ex_->edits, worker_.context().get_executor(),
                            static_cast<uint32_t>(worker_.index()), tls,
                            tls_session()};
    for (const middleware::Middleware* m : route->middlewares) {
      if (m->is_async() ? co_await m->on_request_async(ctx) : m->on_request(ctx)) continue;
      // The middleware answered (redirect, 401, 429, ...), with the response headers set so far.
      in_.consume(head_size);
      const auto& e = ex_->edits;
      if (e.error_pages && e.error_pages->matches(e.status))
        co_return co_await reply_error_page(*snap, e.status, false);
      co_return co_await reply_local(e.status, e.reply_body.data() ? e.reply_body : local_reply::reason_phrase(e.status),
                                     e.reply_content_type.empty() ? local_reply::kTextPlain : e.reply_content_type,
                                     false, e.location, &e.response);
    }
  }
  if (route->service == router::kNoService) {
    in_.consume(head_size);
    co_return co_await reply_local(404, local_reply::kNotFound, local_reply::kTextPlain, false);
  }
  if (route->service >= router::kFirstInternalService) {  // api@internal, dashboard@internal, ping@internal...
    in_.consume(head_size);
    ex_->log.internal = route->name.ends_with("@internal");  // berth's own routers are not observed
    co_return co_await serve_internal(*snap, route->service, ex_->edits.path_set ? ex_->edits.path : path, query);
  }
  const int64_t now_ms = upstream::steady_now_ms();
  const balancer::Pick pick = worker_.picker().pick(*snap, route->service, req.headers, ex_->edits, now_ms);
  if (pick.endpoint < 0) {  // no server of the service is up (or has a weight)
    in_.consume(head_size);
    co_return co_await reply_status(*snap, 503, local_reply::kServiceUnavailable, false);
  }
  if (pick.mirroring != balancer::Pick::kNoMirroring) send_mirrors(*snap, pick.mirroring, head_size, now_ms);
  bool keep_alive = co_await forward(*snap, snap->services[pick.service], static_cast<size_t>(pick.endpoint), now_ms);
  if (pump_ && pump_->running) {
    // The response is over while the client still sends its body: that body is not wanted. The
    // pump may be reading the client or waiting for the server's window: both are cancelled.
    stream_.cancel();
    if (auto to = pump_->to.lock()) to->cancel();
    arm(Phase::kReadRequest, settings_.read_timeout);
    while (pump_->running) co_await pump_->done.async_wait(coro::use_task);
    disarm();
    keep_alive = false;
  }
  co_return keep_alive;
}

coro::Task<bool> DownstreamConnection::wait_while_paused(const upstream::ServiceGate& gate) {
  // `berth pause`: held, looking again every 10 ms (pauses are rare and short; a resume is seen
  // within 10 ms), until resumed or max-pause has passed.
  const auto end = Timer::clock_type::now() + std::chrono::milliseconds(gate.max_pause_ms.load(std::memory_order_relaxed));
  Timer wait(worker_.context().get_executor());
  while (gate.paused.load(std::memory_order_relaxed)) {
    if (Timer::clock_type::now() >= end || closing_) co_return false;
    wait.expires_after(std::chrono::milliseconds(10));
    co_await wait.async_wait(coro::use_task);
  }
  co_return true;
}

coro::Task<bool> DownstreamConnection::reply_status(const Snapshot& snap, int status, std::string_view body,
                                                   bool close, std::string_view location,
                                                   const middleware::HeaderEdits* headers) {
  if (ex_->edits.error_pages && ex_->edits.error_pages->matches(status))
    co_return co_await reply_error_page(snap, status, close);
  co_return co_await reply_local(status, body, local_reply::kTextPlain, close, location, headers);
}

// The errors middleware's query with {status}, {originalStatus} and {url} (query-escaped) filled in.
static std::string error_page_target(std::string_view query, int status, std::string_view uri) {
  std::string out;
  const std::string code = std::to_string(status);
  for (size_t i = 0; i < query.size();) {
    if (query.substr(i).starts_with("{status}")) {
      out += code;
      i += 8;
    } else if (query.substr(i).starts_with("{originalStatus}")) {
      out += code;
      i += 16;
    } else if (query.substr(i).starts_with("{url}")) {
      static constexpr char kHex[] = "0123456789ABCDEF";
      for (unsigned char c : uri) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') out += static_cast<char>(c);
        else out.append({'%', kHex[c >> 4], kHex[c & 15]});
      }
      i += 5;
    } else {
      out += query[i++];
    }
  }
  return out;
}

coro::Task<bool> DownstreamConnection::reply_error_page(const Snapshot& snap, int status, bool close) {
  auto& e = ex_->edits;
  const middleware::ErrorPages& pages = *e.error_pages;
  e.error_pages = nullptr;  // a failing page is not looked up again
  static thread_local middleware::Edits scratch;  // the page's own pick never sets the client's cookies
  static const std::vector<http::Header> kNoHeaders;
  scratch.clear();
  balancer::Pick pick = worker_.picker().pick(snap, pages.service, kNoHeaders, scratch, upstream::steady_now_ms());
  if (pick.endpoint >= 0) {
    const Endpoint& target = snap.services[pick.service].endpoints[pick.endpoint];
    std::string request = "GET " + error_page_target(pages.query, status, e.page_uri) + " HTTP/1.1\r\nHost: " +
                          (e.page_host.empty() ? target.authority : e.page_host) + "\r\nConnection: close\r\n\r\n";
    upstream::FetchLimits limits;
    limits.timeout = std::max(snap.services[pick.service].transport.dial_timeout, std::chrono::milliseconds(10'000));
    auto page = co_await upstream::fetch(worker_.context().get_executor(), target.address, request, limits);
    if (page) {
      const upstream::FetchResponse& got = e.fetched.emplace_back(std::move(*page));
      std::string_view type = got.header("Content-Type");
      co_return co_await reply_local(status, got.body, type.empty() ? local_reply::kTextPlain : type, close, {},
                                     &e.response);
    }
    LOG_WARN("errors middleware: page for ", status, " from ", target.url, ": ", page.error().message);
  }
  co_return co_await reply_local(status, local_reply::reason_phrase(status), local_reply::kTextPlain, close, {},
                                 &e.response);
}

void DownstreamConnection::send_mirrors(const Snapshot& snap, uint32_t mirroring, size_t head_size, int64_t now_ms) {
  const Service& m = snap.services[mirroring];
  const auto& req = ex_->request;
  // The body goes along only if it is already buffered whole (no waiting for the client) and fits
  // maxBodySize; a body that does not is not mirrored at all, as in Traefik.
  std::string_view body;
  if (req.framing.chunked || req.framing.content_length > 0) {
    if (!m.mirror_body) {
      body = {};
    } else {
      std::string_view buffered = in_.view().substr(head_size);
      size_t length = 0;
      if (req.framing.chunked) {
        http::h1::ChunkedFramer framer;
        if (framer.consume(buffered, length) != http::h1::ChunkedFramer::Status::kDone) return;
      } else {
        length = static_cast<size_t>(req.framing.content_length);
        if (buffered.size() < length) return;
      }
      if (m.max_body_size >= 0 && static_cast<int64_t>(length) > m.max_body_size) return;
      body = buffered.substr(0, length);
    }
  }
  static thread_local middleware::Edits scratch;  // mirrors never set the client's cookies
  worker_.picker().for_each_due_mirror(snap, mirroring, [&](size_t child) {
    scratch.clear();
    balancer::Pick pick = worker_.picker().pick(snap, m.children[child], req.headers, scratch, now_ms);
    if (pick.endpoint < 0) return;
    const Service& lb = snap.services[pick.service];
    const Endpoint& target = lb.endpoints[pick.endpoint];
    const bool with_body = !body.empty();
    build_upstream_head(lb, target, with_body ? HeadFor::kMirror : HeadFor::kMirrorWithoutBody);
    std::string request = ex_->out;
    request.append(body);
    if (mirrors_in_flight() >= kMaxMirrorsInFlight) return;  // a stuck mirror must not eat the fds
    coro::spawn(send_mirror(worker_, target.address, std::move(request),
                            std::max(lb.transport.dial_timeout, std::chrono::milliseconds(30'000))));
  });
}

namespace {

// The server an exchange is on, for as long as it lives: the connection's `current` (what a
// deploy's drain waits for and evicts) and, when `counted`, the server's in-flight count (p2c).
class InFlight {
 public:
  InFlight(const upstream::EndpointHealth*& current, bool counted) : current_(current), counted_(counted) {}
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;
  ~InFlight() { set(nullptr); }
  void set(upstream::EndpointHealth* h) {
    if (h_ && counted_) h_->in_flight.fetch_sub(1, std::memory_order_relaxed);
    h_ = h;
    current_ = h;
    if (h_ && counted_) h_->in_flight.fetch_add(1, std::memory_order_relaxed);
  }

 private:
  const upstream::EndpointHealth*& current_;
  bool counted_;
  upstream::EndpointHealth* h_ = nullptr;
};

}  // namespace

coro::Task<bool> DownstreamConnection::forward(const Snapshot& snap, const Service& service, size_t first,
                                               int64_t now_ms) {
  auto& req = ex_->request;
  const auto& transport = service.transport;
  const size_t head_size = req.head_size;
  const bool is_head = req.is_head();
  const bool client_keep_alive = req.keep_alive();
  const bool client_http10 = req.version_minor == 0;
  const BodyMode request_mode = req.framing.chunked ? BodyMode::kChunked
                                : req.framing.content_length > 0 ? BodyMode::kLength
                                                                 : BodyMode::kNone;
  const uint64_t request_length = req.framing.content_length > 0 ? uint64_t(req.framing.content_length) : 0;
  const bool idempotent = req.method == "GET" || req.method == "HEAD" || req.method == "OPTIONS" ||
                          req.method == "TRACE";
  const bool wants_upgrade = !requested_upgrade().empty();  // read now: the head's views may not last
  bool sent_continue = false;

  // The request head is rewritten once; retries resend the same bytes.
  const size_t n = service.endpoints.size();
  const Endpoint* endpoint = &service.endpoints[first];
  ex_->log.service = &service;
  build_upstream_head(service, *endpoint);
  // The views into the head stay valid until the next read into in_, which only the body relay does
  // (after which no retry rebuilds the head).
  in_.consume(head_size);

  // buffering: the whole body is read before any backend sees it (and then replays on retries).
  const middleware::BufferingPolicy* buffering = ex_->edits.buffering;
  const bool body_stored = buffering && request_mode != BodyMode::kNone;
  struct TrimBody {  // a pooled exchange state must not keep a big upload's memory
    std::string& body;
    ~TrimBody() {
      if (body.capacity() > 64 * 1024) std::string().swap(body);
    }
  } trim_body{ex_->body};
  bool drop_connection = false;  // bytes pipelined after a stored chunked body were not kept
  if (body_stored) {
    if (req.expect_continue) {
      static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
      auto [ec, w] = co_await stream_.write(asio::buffer(k100));
      if (ec) co_return false;
      sent_continue = true;
    }
    int st = co_await store_request_body(request_mode, request_length, buffering->max_request_body_bytes,
                                         drop_connection);
    if (st < 0) co_return false;
    ex_->body_done = st == 0;
    if (st > 0)
      co_return co_await reply_local(st, local_reply::reason_phrase(st), local_reply::kTextPlain, true);
  }

  int failure = 502;
  bool body_consumed = false;  // body bytes left the client buffer: no retry possible any more
  size_t response_head = 0;
  InFlight in_flight(ex_->upstream_health, service.p2c);
  // A live failure counts against the server when passive health checks are on.
  auto failed = [&](const Endpoint& e) {
    if (service.passive && e.health->record_failure(upstream::steady_now_ms(), service.failure_window_ms,
                                                     service.max_failed_attempts))
      LOG_WARN("server ", e.url, " of service ", service.name, " leaves rotation for ",
               service.failure_window_ms, " ms after ", service.max_failed_attempts, " failed attempt(s)");
  };
  // Each endpoint gets one dial; a pooled connection that turns out stale gets replaced by a fresh
  // one to the same endpoint (only where replaying cannot run the request twice).
  // Without a retry middleware each server gets one try; with one, `attempts` tries go round the
  // servers, spaced by an exponential backoff from initialInterval.
  const middleware::RetryPolicy* retry = ex_->edits.retry;
  size_t max_attempts = std::max(n, retry ? static_cast<size_t>(retry->attempts) : size_t{0});
  size_t attempt = 0;
  int tries = 0;
  // buffering.retryExpression may ask for more tries of a request whose body it holds (or that has
  // none), after an answer or a network error; at most kMaxExpressionTries in all.
  constexpr int kMaxExpressionTries = 10;
  const middleware::RetryExpression* expression = buffering ? buffering->retry_expression : nullptr;
  // As oxy: a network failure has the status berth answers (502/504), and IsNetworkError() holds
  // for any 502 or 504. A retry may have to skip unhealthy servers to find one: room for a full turn.
  auto expression_retries = [&](int status, bool network_error) {
    network_error = network_error || status == 502 || status == 504;
    if (!expression || tries >= kMaxExpressionTries || !expression->should_retry(tries, status, network_error))
      return false;
    max_attempts = std::max(max_attempts, attempt + 1 + n);
    return true;
  };
  bool fresh_retry = false;
  while (attempt < max_attempts) {
    if (closing_) {  // the client is gone (an HTTP/2 stream it reset): no more tries
      close_upstream();
      co_return false;
    }
    const Endpoint& target = service.endpoints[(first + attempt) % n];
    if (attempt > 0 && !balancer::ServicePicker::is_eligible(target, now_ms)) {
      ++attempt;  // retries go round the other servers, but never to a drained or unhealthy one
      continue;
    }
    if (retry && tries > 0 && !fresh_retry) {
      Timer backoff(worker_.context().get_executor());
      // Doubling from initialInterval, but never past 10 s (or initialInterval, if longer).
      const auto step = retry->initial_interval * (1 << std::min(tries - 1, 16));
      backoff.expires_after(std::max(retry->initial_interval, std::min<std::chrono::milliseconds>(step, std::chrono::seconds(10))));
      co_await backoff.async_wait(coro::use_task);
    }
    if (!fresh_retry) ++tries;
    ex_->log.endpoint = &target;
    ex_->log.tries = static_cast<uint32_t>(tries);
    ex_->log.origin_start_ns = observe::steady_ns();
    if (&target != endpoint) {
      endpoint = &target;
      if (!service.pass_host_header) build_upstream_head(service, *endpoint);
    }
    in_flight.set(target.health.get());
    up_ = nullptr;
    if (!fresh_retry && (target.h2c || target.tls)) {
      // A server already spoken to over HTTP/2: a new stream on that connection.
      auto h2 = worker_.h2_clients().find(target.pool_key);
      if (h2 != worker_.h2_clients().end())
        for (auto& client : h2->second)
          if (client->usable() && (up_ = client->open_stream(std::chrono::milliseconds(0)))) break;
    }
    if (!up_ && !fresh_retry) up_ = worker_.upstreams().acquire(target.pool_key, transport.idle_conn_timeout);
    fresh_retry = false;
    const bool reused = up_ != nullptr;
    if (!up_) {
      up_ = std::make_unique<upstream::UpstreamConnection>(worker_.context().get_executor());
      arm(Phase::kDial, transport.dial_timeout);
      expired_ = Phase::kNone;
      auto [ec] = co_await up_->stream.socket().async_connect(target.address, coro::use_task);
      if (ec) {
        failure = expired_ == Phase::kDial ? 504 : 502;
        LOG_DEBUG("dial ", target.url, " for ", service.name, " failed: ", ec.message());
        failed(target);
        close_upstream();
        expression_retries(failure, true);
        ++attempt;  // nothing was sent: try the next server
        continue;
      }
      boost::system::error_code ignored;
      up_->stream.socket().set_option(tcp::no_delay(true), ignored);
      if (target.tls) {
        // https:// server: the handshake counts against dialTimeout, as Go's TLS dial does.
        SSL* ssl = transport.tls ? transport.tls->new_ssl(target.tls_host) : nullptr;
        bool ok = ssl != nullptr;
        if (ok) {
          up_->stream.start_tls(ssl, Stream::Side::kClient);
          auto handshake_failed = co_await up_->stream.handshake();
          ok = !handshake_failed && transport.tls->peer_matches(ssl);
          if (!ok && handshake_failed)
            LOG_DEBUG("TLS handshake with ", target.url, " for ", service.name, " failed: ", handshake_failed.message(),
                      " (", X509_verify_cert_error_string(SSL_get_verify_result(ssl)), ")");
        }
        if (!ok) {
          failure = expired_ == Phase::kDial ? 504 : 502;
          failed(target);
          close_upstream();
          expression_retries(failure, true);
          ++attempt;
          continue;
        }
      }
      const unsigned char* alpn = nullptr;
      unsigned int alpn_length = 0;
      if (up_->stream.ssl() != nullptr) SSL_get0_alpn_selected(up_->stream.ssl(), &alpn, &alpn_length);
      if (target.h2c || std::string_view(reinterpret_cast<const char*>(alpn), alpn_length) == "h2"sv) {
        // HTTP/2 to this server: the connection becomes the worker's for it, and this exchange
        // (and the next ones) get streams on it.
        auto client = H2Client::start(std::move(up_), target.tls, worker_.buffers(), transport.read_idle_timeout,
                                      transport.ping_timeout);
        worker_.h2_clients()[target.pool_key].push_back(client);
        up_ = client->open_stream(std::chrono::milliseconds(0));
      }
    }
    up_->buffer.attach(worker_.buffers());

    if (req.expect_continue && !sent_continue && request_mode != BodyMode::kNone) {
      // berth answers the client's Expect itself once a backend is connected (as nginx does).
      static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
      auto [ec, w] = co_await stream_.write(asio::buffer(k100));
      if (ec) co_return false;
      sent_continue = true;
    }

    // Send the head plus whatever body the client buffer already holds, in one write. Those body
    // bytes stay in the buffer until a response arrives, so a retry can resend them.
    size_t buffered = 0;
    bool body_complete = request_mode == BodyMode::kNone || body_stored;
    http::h1::ChunkedFramer framer;
    if (body_stored) {
      // sent below from ex_->body
    } else if (request_mode == BodyMode::kLength) {
      buffered = static_cast<size_t>(std::min<uint64_t>(request_length, in_.size()));
      body_complete = buffered == request_length;
    } else if (request_mode == BodyMode::kChunked) {
      auto st = framer.consume(in_.view(), buffered);
      if (st == http::h1::ChunkedFramer::Status::kError) {
        close_upstream();
        co_return co_await reply_local(400, local_reply::kBadRequest, local_reply::kTextPlain, true);
      }
      body_complete = st == http::h1::ChunkedFramer::Status::kDone;
      ex_->log.request_framing = framer.framing();
    }
    arm(Phase::kAwaitResponse, transport.response_header_timeout);
    expired_ = Phase::kNone;
    std::array<asio::const_buffer, 2> head_and_body{
        asio::buffer(ex_->out), body_stored ? asio::buffer(ex_->body) : asio::buffer(in_.data(), buffered)};
    auto [wec, written] = co_await up_->stream.write(head_and_body);
    if (wec) {
      close_upstream();
      if (reused) {
        fresh_retry = true;  // the backend had closed it; nothing was processed
        continue;
      }
      failure = expired_ == Phase::kAwaitResponse ? 504 : 502;
      failed(target);
      if ((retry && idempotent) || expression_retries(failure, true)) {
        ++attempt;
        continue;
      }
      break;
    }
    if (!body_complete && up_->stream.is_h2()) {
      // HTTP/2 to the server: the body streams on while the response comes back, as gRPC's
      // bidirectional streams need (the server may answer each message before the next).
      body_consumed = true;
      in_.consume(buffered);
      if (!pump_) pump_ = std::make_unique<BodyPump>(worker_.context().get_executor());
      pump_->done.expires_at(Timer::time_point::max());
      pump_->running = true;
      pump_->to = up_->stream.h2_stream();
      coro::spawn(pump_request_body(shared_from_this(), up_->stream.h2_stream(), request_mode,
                                    request_mode == BodyMode::kLength ? request_length - buffered : 0, framer));
    } else if (!body_complete) {
      // A body larger than the buffer streams through; from here a failure cannot be retried.
      body_consumed = true;
      in_.consume(buffered);
      arm(Phase::kReadRequest, settings_.read_timeout);
      bool client_failed = false;
      bool ok = co_await relay_body(stream_, in_, up_->stream, request_mode,
                                    request_mode == BodyMode::kLength ? request_length - buffered : 0,
                                    client_failed, &framer);
      ex_->log.request_framing = framer.framing();
      if (!ok) {
        close_upstream();
        if (client_failed) co_return false;  // the client went away or sent a broken body
        failed(target);
        break;
      }
      arm(Phase::kAwaitResponse, transport.response_header_timeout);
    }

    // Read the response head, relaying 1xx interim responses.
    int rc;
    while (true) {
      rc = co_await read_response_head(*up_, response_head);
      if (rc != 0) break;
      int status = ex_->response.status;
      if (status >= 200 || status == 101) break;
      if (status != 100 || !sent_continue) {
        auto [ec, w] = co_await stream_.write(asio::buffer(up_->buffer.data(), response_head));
        if (ec) {
          close_upstream();
          co_return false;
        }
      }
      up_->buffer.consume(response_head);
    }
    // A switch of protocols only answers a client that asked for one.
    if (rc == 0 && ex_->response.status == 101 &&
        (!wants_upgrade || !has_header(ex_->response.headers, HeaderId::kUpgrade)))
      rc = 502;
    if (rc == 0 && !body_consumed && expression_retries(ex_->response.status, false)) {
      close_upstream();  // the answer is dropped; the stored body goes again
      ++attempt;
      continue;
    }
    if (rc == 0) {
      if (!body_consumed) in_.consume(buffered);
      // Another server answered for the one the client was pinned to: pin it to this one.
      if (attempt > 0 && !service.sticky.name.empty())
        ex_->edits.set_server_cookie(service.sticky.set_cookies[(first + attempt) % n]);
      break;
    }
    // An HTTP/2 server that refused the stream did not process the request: it may go again,
    // whatever its method (a GOAWAY racing the request, a server at its stream limit).
    const bool refused = rc < 0 && up_->stream.is_h2() && up_->stream.h2_stream()->refused();
    close_upstream();
    if (rc < 0 && reused && !body_consumed && (idempotent || refused)) {
      fresh_retry = true;
      continue;
    }
    failure = rc < 0 ? 502 : rc;
    failed(target);
    if ((retry && rc < 0 && !body_consumed && (idempotent || refused)) ||
        (!body_consumed && expression_retries(failure, true))) {
      ++attempt;  // the connection failed before any answer: a retry cannot run the request twice
      continue;
    }
    break;
  }

  if (!up_) {
    ex_->edits.network_error = true;  // for the circuit breaker: no backend answer at all
    // No backend answered. The client's body (if unread) must be skipped or the connection closed.
    co_return co_await reply_status(snap, failure,
                                    failure == 504 ? local_reply::kGatewayTimeout : local_reply::kBadGateway,
                                    body_consumed || drop_connection);
  }

  // ---- relay the response ----
  ex_->body_done = true;
  auto& resp = ex_->response;
  ex_->edits.final_status = resp.status;
  observe_origin_head();
  if (resp.status == 101) {
    // WebSocket (or another Upgrade): the answer goes back with its Upgrade, then bytes flow both ways.
    std::string_view upgrade;
    for (const auto& h : resp.headers)
      if (h.id == HeaderId::kUpgrade) upgrade = h.value;
    build_downstream_head(false);
    ex_->out.resize(ex_->out.size() - 2);  // reopen the head for the hop-by-hop pair
    ex_->out.append("Connection: Upgrade\r\nUpgrade: "sv).append(upgrade).append("\r\n\r\n"sv);
    ex_->log.response_head = ex_->out.size();
    ex_->log.upgraded = true;
    up_->buffer.consume(response_head);
    arm(Phase::kWriteResponse, settings_.write_timeout);
    auto [ec, w] = co_await stream_.write(asio::buffer(ex_->out));
    if (!ec) co_await tunnel();
    close_upstream();
    co_return false;
  }
  if (ex_->edits.error_pages && ex_->edits.error_pages->matches(resp.status)) {
    // errors: the backend's answer is dropped for the page, sent with the backend's status.
    const int status = resp.status;
    close_upstream();
    co_return co_await reply_error_page(snap, status, !client_keep_alive || drop_connection);
  }
  BodyMode response_mode;
  if (is_head || resp.status == 204 || resp.status == 304 || resp.status < 200) response_mode = BodyMode::kNone;
  else if (resp.framing.chunked) response_mode = BodyMode::kChunked;
  else if (resp.framing.content_length >= 0) response_mode = resp.framing.content_length ? BodyMode::kLength : BodyMode::kNone;
  else response_mode = BodyMode::kUntilClose;
  const bool upstream_reusable = response_mode != BodyMode::kUntilClose && !resp.framing.connection_close &&
                                 resp.version_minor >= 1 && !client_http10;
  const bool close_client = !client_keep_alive || response_mode == BodyMode::kUntilClose || drop_connection ||
                            worker_.draining(ep_index_);
  uint64_t response_length = resp.framing.content_length > 0 ? uint64_t(resp.framing.content_length) : 0;
  // buffering.maxResponseBodyBytes: a response over the limit is replaced by a 500 before any of it
  // goes out, which needs bodies of unknown length read whole first.
  bool response_stored = false;
  if (buffering && buffering->max_response_body_bytes > 0 && response_mode != BodyMode::kNone) {
    const int64_t max = buffering->max_response_body_bytes;
    bool fits = response_mode == BodyMode::kLength ? response_length <= uint64_t(max)
                                                     : co_await store_response_body(response_head, response_mode, max);
    if (!fits) {
      close_upstream();
      co_return co_await reply_local(500, local_reply::reason_phrase(500), local_reply::kTextPlain, close_client);
    }
    response_stored = response_mode != BodyMode::kLength;
  }
  if (ex_->edits.sniff_content_type && response_mode != BodyMode::kNone && !has_header(resp.headers, HeaderId::kContentType))
    co_await sniff_content_type(response_head, response_mode, transport.response_header_timeout, response_stored);
  const bool compressing = !response_stored && should_compress(response_mode, response_length);
  // An HTTP/1.0 client gets a compressed body delimited by the connection's close (no chunking).
  const bool close_after = close_client || (compressing && client_http10);
  // An HTTP/2 client's stream takes a head relayed as it came as fields (submit_h2_response_head()).
  const bool h2_fields = stream_.is_h2() && !compressing && !response_stored;
  if (!h2_fields) {
    build_downstream_head(close_after, compressing, compressing && !client_http10);
  } else if (!submit_h2_response_head()) {
    close_upstream();
    co_return false;
  }
  up_->buffer.consume(response_head);

  arm(Phase::kWriteResponse, settings_.write_timeout);
  if (compressing) {
    auto [ec, w] = co_await stream_.write(asio::buffer(ex_->out));
    bool upstream_failed = false;
    bool ok = !ec && co_await relay_compressed(response_mode, response_length, !client_http10, upstream_failed);
    disarm();
    if (ok && upstream_reusable && up_->buffer.empty())
      worker_.upstreams().release(endpoint->pool_key, std::move(up_), transport.max_idle_conns_per_host,
                                  worker_.buffers());
    else
      close_upstream();
    co_return ok && !close_after;
  }
  if (response_stored) {
    std::array<asio::const_buffer, 2> whole{asio::buffer(ex_->out), asio::buffer(ex_->body)};
    auto [ec, w] = co_await stream_.write(whole, close_client);
    disarm();
    close_upstream();  // read to its end (or its close): not worth keeping
    co_return !ec && !close_client;
  }
  size_t first_body = 0;
  if (response_mode == BodyMode::kLength)
    first_body = static_cast<size_t>(std::min<uint64_t>(response_length, up_->buffer.size()));
  std::array<asio::const_buffer, 2> out{asio::buffer(ex_->out.data(), h2_fields ? 0 : ex_->out.size()),
                                        asio::buffer(up_->buffer.data(), first_body)};
  const bool whole =
      response_mode == BodyMode::kNone || (response_mode == BodyMode::kLength && first_body == response_length);
  auto [ec, w] = co_await stream_.write(out, whole && close_after);
  if (ec) {
    close_upstream();
    co_return false;
  }
  up_->buffer.consume(first_body);
  bool upstream_failed = false;
  http::h1::ChunkedFramer framer;  // a chunked body is relayed as it came: its framing is not body
  const uint64_t body_start = stream_.bytes_written();
  bool ok = co_await relay_body(up_->stream, up_->buffer, stream_, response_mode, response_length - first_body,
                                upstream_failed, &framer);
  if (response_mode == BodyMode::kChunked) {
    const uint64_t sent = stream_.bytes_written() - body_start;
    ex_->log.response_framing = sent > framer.payload() ? sent - framer.payload() : 0;  // less: a failed write
  }
  disarm();
  if (!ok) {
    close_upstream();
    co_return false;
  }
  if (upstream_reusable && up_->buffer.empty()) {
    worker_.upstreams().release(endpoint->pool_key, std::move(up_), transport.max_idle_conns_per_host,
                                worker_.buffers());
  } else {
    close_upstream();
  }
  co_return !close_client;
}

bool DownstreamConnection::should_compress(BodyMode mode, uint64_t length) const {
  const auto* policy = ex_->edits.compress;
  const auto& resp = ex_->response;
  if (!policy || mode == BodyMode::kNone || resp.status < 200 || resp.status == 206) return false;
  if (mode == BodyMode::kLength && static_cast<int64_t>(length) < policy->min_bytes) return false;
  std::string_view type;
  for (const auto& h : resp.headers) {
    if (h.id == HeaderId::kContentEncoding) return false;  // already encoded: never twice
    if (h.id == HeaderId::kContentType) type = h.value;
    if (iequals(h.name, "Cache-Control") && h.value.find("no-transform") != std::string_view::npos) return false;
  }
  for (uint8_t i = 0; i < ex_->edits.added_count && type.empty(); ++i)
    if (ex_->edits.added[i].first == "Content-Type") type = ex_->edits.added[i].second;  // sniffed
  return http::compressible(type, policy->filter);
}

coro::Task<bool> DownstreamConnection::relay_compressed(BodyMode mode, uint64_t length, bool chunked_out,
                                                        bool& upstream_failed) {
  // Upstream bytes (de-chunked) go through the worker's compressor into a pooled block, which goes
  // out as one chunk per write. Before waiting on the upstream, what was compressed so far is
  // flushed, so a slow stream still reaches the client as it comes.
  upstream_failed = false;
  struct Lent {
    Worker& worker;
    std::unique_ptr<http::Compressor> z;
    ~Lent() { worker.give_compressor(std::move(z)); }
  } lent{worker_, worker_.take_compressor()};
  http::Compressor& z = *lent.z;
  if (!z.reset(ex_->edits.encoding)) co_return false;
  struct Output {
    BufferPool& pool;
    Block block;
    ~Output() { pool.give(std::move(block)); }
  } output{worker_.buffers(), worker_.buffers().take()};
  // [16 bytes for the chunk size line][data][2 bytes for CRLF]
  constexpr size_t kHeadRoom = 16;
  const std::span<char> out(output.block.get() + kHeadRoom, kBlockSize - kHeadRoom - 2);
  auto send = [&](size_t n) {
    char* data = out.data();
    if (!chunked_out) return asio::buffer(data, n);
    char size_line[kHeadRoom];
    auto r = std::to_chars(size_line, size_line + sizeof size_line - 2, n, 16);
    *r.ptr++ = '\r';
    *r.ptr++ = '\n';
    size_t line = static_cast<size_t>(r.ptr - size_line);
    std::memcpy(data - line, size_line, line);
    data[n] = '\r';
    data[n + 1] = '\n';
    ex_->log.response_framing += line + 2;
    return asio::buffer(data - line, line + n + 2);
  };
  IoBuffer& in = up_->buffer;
  http::h1::ChunkedDecoder decoder;
  uint64_t left = length;
  bool input_done = mode == BodyMode::kLength && left == 0;
  using Op = Result<http::Compressor::Progress> (http::Compressor::*)(std::string_view, std::span<char>);
  // Runs one compressor operation over `slice` to completion, sending what it produces.
  auto drive = [&](Op op, std::string_view slice) -> coro::Task<bool> {
    while (true) {
      auto p = (z.*op)(slice, out);
      if (!p) co_return false;
      if (p->written > 0) {
        auto [ec, w] = co_await stream_.write(send(p->written));
        if (ec) co_return false;
      }
      slice.remove_prefix(p->consumed);
      if (!p->more) co_return true;
    }
  };
  while (!input_done) {
    if (!in.empty()) {
      std::string_view slice;
      size_t raw = 0;
      if (mode == BodyMode::kChunked) {
        auto st = decoder.decode(in.view(), raw, slice);
        if (st == http::h1::ChunkedDecoder::Status::kError) {
          upstream_failed = true;
          co_return false;
        }
        input_done = st == http::h1::ChunkedDecoder::Status::kDone;
      } else {
        raw = mode == BodyMode::kLength ? static_cast<size_t>(std::min<uint64_t>(left, in.size())) : in.size();
        slice = std::string_view(in.data(), raw);
        left -= mode == BodyMode::kLength ? raw : 0;
        input_done = mode == BodyMode::kLength && left == 0;
      }
      if (!slice.empty() && !co_await drive(&http::Compressor::write, slice)) co_return false;
      in.consume(raw);
      if (input_done || !in.empty()) continue;
    }
    if (!co_await drive(&http::Compressor::flush, {})) co_return false;
    auto [ec, n] = co_await up_->stream.read_some(asio::buffer(in.write_ptr(), in.write_space()));
    if (ec) {
      if (mode == BodyMode::kUntilClose && ec == asio::error::eof) break;
      upstream_failed = true;
      co_return false;
    }
    in.commit(n);
  }
  if (!co_await drive(&http::Compressor::finish, {})) co_return false;
  if (chunked_out) {
    static constexpr std::string_view kLast = "0\r\n\r\n";
    ex_->log.response_framing += kLast.size();
    auto [ec, w] = co_await stream_.write(asio::buffer(kLast));
    if (ec) co_return false;
  }
  co_return true;
}

// Feeds `data` (the next raw bytes of a chunked body) to `decoder`: adds the payload bytes to
// `payload` and returns the raw bytes that belong to the body (-1: malformed); sets `done` at its end.
static int64_t feed_chunked(http::h1::ChunkedDecoder& decoder, std::string_view data, uint64_t& payload,
                            bool& done) {
  size_t used = 0;
  while (true) {
    size_t consumed = 0;
    std::string_view piece;
    auto st = decoder.decode(data.substr(used), consumed, piece);
    used += consumed;
    if (st == http::h1::ChunkedDecoder::Status::kError) return -1;
    if (st == http::h1::ChunkedDecoder::Status::kData) payload += piece.size();
    if (st == http::h1::ChunkedDecoder::Status::kDone) done = true;
    if (st == http::h1::ChunkedDecoder::Status::kNeedMore || done) break;
  }
  return static_cast<int64_t>(used);
}

coro::Task<int> DownstreamConnection::store_request_body(BodyMode mode, uint64_t length, int64_t max,
                                                         bool& pipelined) {
  // The limit counts payload bytes (chunk framing aside); the stored bytes keep their framing.
  std::string& body = ex_->body;
  body.clear();
  http::h1::ChunkedDecoder decoder;
  uint64_t payload = 0;
  bool done = false;
  // `stored`: body bytes kept before `data` (the read buffer may already be sized past them).
  auto belongs = [&](std::string_view data, size_t stored) -> int64_t {
    if (mode == BodyMode::kChunked) return feed_chunked(decoder, data, payload, done);
    size_t take = static_cast<size_t>(std::min<uint64_t>(length - stored, data.size()));
    payload += take;
    done = stored + take == length;
    return static_cast<int64_t>(take);
  };
  auto over = [&] { return max > 0 && payload > static_cast<uint64_t>(max); };
  if (!in_.empty()) {  // what came with the head
    int64_t take = belongs(in_.view(), 0);
    if (take < 0) co_return 400;
    body.append(in_.data(), static_cast<size_t>(take));
    in_.consume(static_cast<size_t>(take));
  }
  arm(Phase::kReadRequest, settings_.read_timeout);
  while (!done && !over()) {
    // Read straight into the body: in_ stays untouched, so the request head's views stay valid.
    const size_t old = body.size();
    const size_t want = mode == BodyMode::kLength ? static_cast<size_t>(std::min<uint64_t>(length - old, 64 * 1024))
                                                  : 64 * 1024;
    body.resize(old + want);
    auto [ec, n] = co_await stream_.read_some(asio::buffer(body.data() + old, want));
    if (ec) co_return -1;
    int64_t take = belongs(std::string_view(body.data() + old, n), old);
    if (take < 0) co_return 400;
    pipelined |= static_cast<size_t>(take) < n;
    body.resize(old + static_cast<size_t>(take));
  }
  disarm();
  ex_->log.request_framing = body.size() - payload;  // the stored bytes keep their chunk framing
  co_return over() ? 413 : 0;
}

coro::Task<bool> DownstreamConnection::store_response_body(size_t response_head, BodyMode mode, int64_t max) {
  std::string& body = ex_->body;
  body.assign(up_->buffer.view().substr(response_head));
  up_->buffer.consume(up_->buffer.size() - response_head);  // the head's views stay where they are
  http::h1::ChunkedDecoder decoder;
  uint64_t payload = 0;
  bool done = false;
  size_t scanned = 0;  // raw bytes of `body` already fed to the decoder
  while (true) {
    if (mode == BodyMode::kChunked) {
      int64_t take = feed_chunked(decoder, std::string_view(body).substr(scanned), payload, done);
      if (take < 0) co_return false;
      scanned += static_cast<size_t>(take);
      if (done) body.resize(scanned);
    } else {
      payload = body.size();
    }
    if (payload > static_cast<uint64_t>(max)) co_return false;
    if (done) co_return true;
    const size_t old = body.size();
    body.resize(old + 64 * 1024);
    auto [ec, n] = co_await up_->stream.read_some(asio::buffer(body.data() + old, 64 * 1024));
    body.resize(old + n);
    if (ec) {
      if (mode != BodyMode::kUntilClose || ec != asio::error::eof) co_return false;
      co_return body.size() <= static_cast<uint64_t>(max);
    }
  }
}

coro::Task<void> DownstreamConnection::sniff_content_type(size_t response_head, BodyMode mode,
                                                          std::chrono::milliseconds timeout, bool stored) {
  // The first body bytes decide, as Go's DetectContentType does. If none came with the head, wait
  // for some, reading behind the head so that the head's views stay valid. A body the buffering
  // middleware read whole is in ex_->body.
  if (!stored && up_->buffer.size() == response_head && up_->buffer.tail_space() > 0) {
    arm(Phase::kAwaitResponse, timeout);
    auto [ec, got] = co_await up_->stream.read_some(asio::buffer(up_->buffer.write_ptr(), up_->buffer.tail_space()));
    if (!ec) up_->buffer.commit(got);
  }
  std::string_view body = stored ? std::string_view(ex_->body) : up_->buffer.view().substr(response_head);
  if (mode == BodyMode::kChunked) body = first_chunk(body);
  if (mode == BodyMode::kLength) body = body.substr(0, static_cast<size_t>(ex_->response.framing.content_length));
  ex_->edits.add_header("Content-Type", http::detect_content_type(body));
}

void DownstreamConnection::build_upstream_head(const Service& service, const Endpoint& endpoint, HeadFor purpose) {
  const auto& req = ex_->request;
  std::string& out = ex_->out;
  out.clear();
  const auto& edits = ex_->edits;
  out.append(req.method).append(" "sv);
  if (edits.path_set) {
    out.append(edits.path);
    std::string_view query = target_query(req.target);
    if (!query.empty()) out.append("?"sv).append(query);
  } else {
    out.append(origin_form(req.target));
  }
  out.append(req.version_minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");

  bool has_connection = false;
  std::string_view prior_xff;
  uint32_t present = 0;  // which forwarded headers a trusted peer already set
  auto bit = [](HeaderId id) { return 1u << (static_cast<unsigned>(id) - static_cast<unsigned>(HeaderId::kXForwardedFor)); };
  for (const auto& h : req.headers) has_connection |= h.id == HeaderId::kConnection;
  const bool drop_body = purpose == HeadFor::kMirrorWithoutBody;
  bool te_trailers = false;  // Go's ReverseProxy keeps "Te: trailers" (gRPC needs it)
  for (const auto& h : req.headers) {
    if (h.id == HeaderId::kTe && http::lists_token(h.value, "trailers")) te_trailers = true;
    if (http::is_hop_by_hop(h.id) || h.id == HeaderId::kExpect) continue;
    if (drop_body && (h.id == HeaderId::kContentLength || h.id == HeaderId::kTransferEncoding)) continue;
    if (!edits.request.empty() && middleware::edits_header(edits.request, h.name)) continue;
    if (h.id == HeaderId::kOther && has_connection && named_by_connection(req.headers, h.name)) continue;
    if (http::is_forwarded_family(h.id)) {
      if (!trusted_) continue;
      present |= bit(h.id);
      if (h.id == HeaderId::kXForwardedFor) {
        prior_xff = h.value;  // appended to below, as Go's ReverseProxy does
        continue;
      }
    }
    if (h.id == HeaderId::kHost) {
      append_header(out, "Host", service.pass_host_header ? h.value : std::string_view(endpoint.authority));
      continue;
    }
    append_header(out, h.name, h.value);
  }
  char peer_text[INET6_ADDRSTRLEN];
  std::string_view peer = render_ip(peer_, peer_text);
  out.append("X-Forwarded-For: "sv);
  if (!prior_xff.empty()) out.append(prior_xff).append(", "sv);
  out.append(peer).append("\r\n"sv);
  std::string_view host = req.host;
  if (!(present & bit(HeaderId::kXForwardedHost)) && !host.empty()) append_header(out, "X-Forwarded-Host", host);
  if (!(present & bit(HeaderId::kXForwardedPort))) {
    std::string_view port = router::port_of(host);
    append_header(out, "X-Forwarded-Port", !port.empty() ? port : stream_.is_tls() ? "443"sv : "80"sv);
  }
  if (!(present & bit(HeaderId::kXForwardedProto)))
    append_header(out, "X-Forwarded-Proto", stream_.is_tls() ? "https"sv : "http"sv);
  if (!(present & bit(HeaderId::kXForwardedServer))) append_header(out, "X-Forwarded-Server", worker_.info().hostname);
  if (!(present & bit(HeaderId::kXRealIp))) append_header(out, "X-Real-Ip", peer);
  if (req.version_minor == 0 && req.host.empty()) append_header(out, "Host", endpoint.authority);
  if (te_trailers) out.append("Te: trailers\r\n"sv);
  if (purpose == HeadFor::kExchange) {
    std::string_view upgrade = requested_upgrade();
    if (!upgrade.empty()) out.append("Connection: Upgrade\r\nUpgrade: "sv).append(upgrade).append("\r\n"sv);
  }
  local_reply::append_header_edits(out, edits.request);
  if (purpose != HeadFor::kExchange) out.append("Connection: close\r\n"sv);
  out.append("\r\n"sv);
}

std::string_view DownstreamConnection::requested_upgrade() const {
  const auto& req = ex_->request;
  if (!req.has_upgrade || !named_by_connection(req.headers, "upgrade")) return {};
  for (const auto& h : req.headers)
    if (h.id == HeaderId::kUpgrade) return h.value;
  return {};
}

coro::Task<void> DownstreamConnection::pump_request_body(std::shared_ptr<DownstreamConnection> self,
                                                         std::shared_ptr<H2Stream> upstream, BodyMode mode,
                                                         uint64_t left, http::h1::ChunkedFramer framer) {
  // Holds the upstream stream itself: the exchange may drop up_ (a failed response) before the
  // client's body has ended; writes on a dropped stream just fail.
  Stream to(worker_.context().get_executor(), std::move(upstream), false);
  bool client_failed = false;
  bool ok = co_await relay_body(stream_, in_, to, mode, left, client_failed, &framer);
  ex_->log.request_framing = framer.framing();  // the exchange waits for the pump before it is recorded
  // A broken client body fails the response side as well; a server that stopped taking the body
  // may still be answering (or have answered), which the response side finds out by itself.
  if (!ok && client_failed) to.cancel();
  pump_->running = false;
  pump_->done.cancel();
}

coro::Task<void> DownstreamConnection::tunnel() {
  // Both directions re-arm one idle deadline; when it fires, both sockets are cancelled and both
  // loops end. The client -> upstream pump runs in its own coroutine (HP-5) and is waited for,
  // since it uses this connection's sockets and buffer.
  Timer done(worker_.context().get_executor());
  done.expires_at(Timer::time_point::max());
  bool running = true;
  const auto lifetime = settings_.websocket_max_lifetime;
  const Timer::time_point end = lifetime.count() > 0 ? Timer::clock_type::now() + lifetime : Timer::time_point::max();
  coro::spawn(pump_upstream(shared_from_this(), &done, &running, end));
  arm_tunnel(end);
  IoBuffer& buffer = up_->buffer;
  while (true) {
    if (!buffer.empty()) {
      auto [ec, w] = co_await stream_.write(asio::buffer(buffer.data(), buffer.size()));
      if (ec) break;
      buffer.consume(buffer.size());
    }
    auto [ec, n] = co_await up_->stream.read_some(asio::buffer(buffer.write_ptr(), buffer.write_space()));
    if (ec) break;
    buffer.commit(n);
    arm_tunnel(end);
  }
  // One side is done: so is the other. Shutting both sockets down both ways makes any operation
  // the pump starts from now on fail at once (a cancel would miss one already completing).
  boost::system::error_code ignored;
  stream_.socket().shutdown(Socket::shutdown_both, ignored);
  up_->stream.socket().shutdown(Socket::shutdown_both, ignored);
  stream_.socket().cancel(ignored);
  up_->stream.cancel();
  while (running) co_await done.async_wait(coro::use_task);
  disarm();
}

void DownstreamConnection::arm_tunnel(Timer::time_point end) {
  auto timeout = settings_.idle_timeout;
  if (end != Timer::time_point::max()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Timer::clock_type::now());
    timeout = timeout.count() > 0 ? std::min(timeout, left) : left;
    if (timeout.count() <= 0) timeout = std::chrono::milliseconds(1);
  }
  arm(Phase::kTunnel, timeout);
}

coro::Task<void> DownstreamConnection::pump_upstream(std::shared_ptr<DownstreamConnection> self, Timer* done,
                                                     bool* running, Timer::time_point end) {
  while (true) {
    if (!in_.empty()) {
      auto [ec, w] = co_await up_->stream.write(asio::buffer(in_.data(), in_.size()));
      if (ec) break;
      in_.consume(in_.size());
    }
    if (!in_.has_block()) in_.attach(worker_.buffers());
    auto [ec, n] = co_await stream_.read_some(asio::buffer(in_.write_ptr(), in_.write_space()));
    if (ec) break;
    in_.commit(n);
    arm_tunnel(end);
  }
  boost::system::error_code ignored;
  up_->stream.socket().shutdown(Socket::shutdown_both, ignored);
  stream_.socket().shutdown(Socket::shutdown_both, ignored);
  up_->stream.cancel();
  stream_.socket().cancel(ignored);
  *running = false;
  done->cancel();
}

template <class Emit>
void DownstreamConnection::emit_response_fields(bool compressed, bool chunked, Emit&& emit) {
  const auto& resp = ex_->response;
  bool has_connection = false;
  for (const auto& h : resp.headers) has_connection |= h.id == HeaderId::kConnection;
  const auto& edits = ex_->edits.response;
  // headers.addVaryHeader (CORS): Traefik's merge of the backend's first Vary value with Origin.
  std::string_view vary;
  if (ex_->edits.cors) {
    std::string_view upstream_vary;
    for (const auto& h : resp.headers)
      if (iequals(h.name, "Vary")) {
        upstream_vary = h.value;
        break;
      }
    vary = ex_->edits.cors->vary(upstream_vary, ex_->edits.vary);
  }
  for (const auto& h : resp.headers) {
    if (http::is_hop_by_hop(h.id)) continue;
    if (compressed && (h.id == HeaderId::kContentLength || h.id == HeaderId::kTransferEncoding)) continue;
    if (!edits.empty() && middleware::edits_header(edits, h.name)) continue;
    if (!vary.empty() && iequals(h.name, "Vary")) continue;
    if (h.id == HeaderId::kOther && has_connection && named_by_connection(resp.headers, h.name)) continue;
    emit(h.name, h.value);
  }
  local_reply::for_each_header_edit(edits, emit);
  if (!vary.empty()) emit("Vary"sv, vary);
  if (compressed) {
    emit("Content-Encoding"sv, http::encoding_name(ex_->edits.encoding));
    emit("Vary"sv, "Accept-Encoding"sv);  // a second Vary line adds to the backend's
    if (chunked) emit("Transfer-Encoding"sv, "chunked"sv);
  }
  for (uint8_t i = 0; i < ex_->edits.added_count; ++i) emit(ex_->edits.added[i].first, ex_->edits.added[i].second);
}

void DownstreamConnection::build_downstream_head(bool close, bool compressed, bool chunked) {
  const auto& resp = ex_->response;
  std::string& out = ex_->out;
  out.clear();
  char num[8];
  auto r = std::to_chars(num, num + sizeof num, resp.status);
  out.append("HTTP/1.1 "sv).append(num, r.ptr).append(" "sv).append(resp.reason).append("\r\n"sv);
  emit_response_fields(compressed, chunked,
                       [&out](std::string_view name, std::string_view value) { append_header(out, name, value); });
  if (close) out.append("Connection: close\r\n"sv);
  out.append("\r\n"sv);
  ex_->log.response_head = out.size();
}

bool DownstreamConnection::submit_h2_response_head() {
  // The same fields build_downstream_head() renders, handed to the stream as they are: nothing to
  // render as HTTP/1.1 and parse again. Nothing of the head counts as written body bytes.
  H2Stream& h2 = *stream_.h2_stream();
  h2.begin_response();
  emit_response_fields(false, false,
                       [&h2](std::string_view name, std::string_view value) { h2.add_response_field(name, value); });
  ex_->log.response_head = 0;
  return h2.submit_response(ex_->response.status, ex_->response.framing);
}

}  // namespace berth::proxy
