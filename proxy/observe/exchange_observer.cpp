// The end of an exchange as the metrics and the access log see it: DownstreamConnection's
// begin_exchange() / finish_exchange() around serve_exchange(), and the /metrics answer.
#include <openssl/ssl.h>

#include <atomic>
#include <charconv>
#include <chrono>

#include "base/text.h"
#include "proxy/downstream_connection.h"
#include "proxy/local_reply.h"
#include "proxy/observe/access_log.h"
#include "proxy/observe/metrics.h"

namespace berth::proxy {
namespace {

using http::HeaderId;

bool istarts_with(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && iequals(text.substr(0, prefix.size()), prefix);
}

std::string_view header(const std::vector<http::Header>& headers, std::string_view name) {
  for (const auto& h : headers)
    if (iequals(h.name, name)) return h.value;
  return {};
}

// Traefik's getRequestProtocol: WebSocket upgrades, SSE by Accept, gRPC(-Web) by Content-Type.
observe::Protocol request_protocol(const std::vector<http::Header>& headers) {
  for (const auto& h : headers) {
    if (h.id == HeaderId::kUpgrade && iequals(h.value, "websocket")) return observe::Protocol::kWebSocket;
    if (h.id == HeaderId::kOther && iequals(h.name, "Accept") && http::lists_token(h.value, "text/event-stream"))
      return observe::Protocol::kSse;
    if (h.id == HeaderId::kContentType) {
      if (istarts_with(h.value, "application/grpc-web")) return observe::Protocol::kGrpcWeb;
      if (istarts_with(h.value, "application/grpc")) return observe::Protocol::kGrpc;
    }
  }
  return observe::Protocol::kHttp;
}

std::string_view tls_version_label(int version) {
  switch (version) {
    case TLS1_3_VERSION: return "1.3";
    case TLS1_2_VERSION: return "1.2";
    case TLS1_1_VERSION: return "1.1";
    case TLS1_VERSION: return "1.0";
    default: return "unknown";
  }
}

int64_t unix_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::atomic<uint64_t> g_request_count{0};

// Rebases a view into the request head onto its copy (views elsewhere, such as static strings, stay).
std::string_view rebase(std::string_view v, std::string_view from, const std::string& to) {
  if (v.data() < from.data() || v.data() + v.size() > from.data() + from.size()) return v;
  return std::string_view(to.data() + (v.data() - from.data()), v.size());
}

std::string_view internal_service_name(uint32_t marker) {
  switch (marker) {
    case router::kApiService: return "api@internal";
    case router::kDashboardService: return "dashboard@internal";
    case router::kPingService: return "ping@internal";
    case router::kPrometheusService: return "prometheus@internal";
    default: return {};  // kNoService: a route that only redirects
  }
}

}  // namespace

void DownstreamConnection::begin_exchange(size_t head_size) {
  auto& log = ex_->log;
  const auto& req = ex_->request;
  log.method_label = observe::metric_method(req.method);
  log.protocol = request_protocol(req.headers);
  log.grpc_status = -1;
  log.upgraded = false;
  ex_->edits.user.clear();  // basicAuth sets it for this exchange; never the one before
  if (worker_.info().access_log != nullptr) {
    // The body relay reads over the head in the buffer: the log line needs its own copy.
    const std::string_view head = in_.view().substr(0, head_size);
    log.request_copy.assign(head);
    log.method = rebase(req.method, head, log.request_copy);
    log.target = rebase(req.target, head, log.request_copy);
    log.host = rebase(req.host, head, log.request_copy);
    log.forwarded_for = {};
    log.request_headers.clear();
    for (const auto& h : req.headers) {
      log.request_headers.push_back({rebase(h.name, head, log.request_copy), rebase(h.value, head, log.request_copy), h.id});
      if (trusted_ && h.id == HeaderId::kXForwardedFor && log.forwarded_for.empty())
        log.forwarded_for = log.request_headers.back().value;
    }
  }
  log.snapshot.reset();
  log.internal = false;
  log.internal_router = {};
  log.start_ns = observe::steady_ns();
  log.start_unix_ns = worker_.info().access_log != nullptr ? unix_ns() : 0;
  log.read_mark = static_cast<int64_t>(stream_.bytes_read()) - static_cast<int64_t>(in_.size());
  log.written_mark = stream_.bytes_written();
  log.response_head = 0;
  log.response_framing = 0;
  log.request_framing = 0;
  log.route = nullptr;
  log.service = nullptr;
  log.endpoint = nullptr;
  log.tries = 0;
  log.origin_status = 0;
  log.origin_start_ns = 0;
}

void DownstreamConnection::observe_origin_head() {
  auto& log = ex_->log;
  const auto& resp = ex_->response;
  log.origin_status = resp.status;
  if (log.protocol == observe::Protocol::kGrpc || log.protocol == observe::Protocol::kGrpcWeb) {
    std::string_view grpc = header(resp.headers, "grpc-status");
    int code = -1;
    if (!grpc.empty() && std::from_chars(grpc.data(), grpc.data() + grpc.size(), code).ec == std::errc() &&
        code >= 0 && code <= 16)
      log.grpc_status = code;
    else if (!grpc.empty())
      log.grpc_status = 2;  // Unknown, as Traefik maps what it cannot read
  }
  if (worker_.info().access_log == nullptr) return;
  // The head lives in the server connection's buffer, which goes back to the pool before the line
  // is written: copy names and values (capacity reserved first, so the views stay valid).
  size_t total = 0;
  for (const auto& h : resp.headers) total += h.name.size() + h.value.size();
  log.origin_copy.clear();
  log.origin_copy.reserve(total);
  log.origin_headers.clear();
  for (const auto& h : resp.headers) {
    const size_t at = log.origin_copy.size();
    log.origin_copy.append(h.name).append(h.value);
    log.origin_headers.push_back({std::string_view(log.origin_copy).substr(at, h.name.size()),
                                  std::string_view(log.origin_copy).substr(at + h.name.size(), h.value.size()), h.id});
  }
}

void DownstreamConnection::finish_exchange(size_t head_size) {
  if (!ex_) return;
  auto& log = ex_->log;
  // berth's own answers are not counted (Traefik's metrics.addInternals is false); the access log
  // keeps them when its addInternals says so.
  observe::Metrics* metrics = log.internal ? nullptr : worker_.info().metrics;
  observe::AccessLog* access = worker_.info().access_log;
  if (metrics == nullptr && access == nullptr) {
    log.snapshot.reset();
    return;
  }
  const auto& req = ex_->request;
  const int64_t now = observe::steady_ns();
  observe::ExchangeRecord r;
  r.entry_point = static_cast<uint32_t>(ep_index_);
  r.entry_point_name = settings_.name;
  r.start_unix_ns = log.start_unix_ns;
  r.duration_ns = now - log.start_ns;
  r.client = peer_;
  r.client_port = peer_port_;
  r.method = access != nullptr ? log.method : log.method_label;
  r.target = log.target;
  r.http_version = stream_.is_h2() ? "HTTP/2.0" : req.version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
  r.tls = stream_.is_tls();
  r.host = log.host;
  r.request_headers = &log.request_headers;
  r.forwarded_for = log.forwarded_for;
  const int64_t consumed = static_cast<int64_t>(stream_.bytes_read()) - static_cast<int64_t>(in_.size()) - log.read_mark;
  // Traefik counts the body as read, without the chunked framing around it.
  const int64_t not_request_body = static_cast<int64_t>(head_size + log.request_framing);
  r.request_bytes = consumed > not_request_body ? static_cast<uint64_t>(consumed - not_request_body) : 0;
  if (SSL* ssl = tls_session()) {
    r.tls_version = tls_version_label(SSL_version(ssl));
    if (const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl)) {
      r.tls_cipher = SSL_CIPHER_standard_name(cipher);
      r.tls_cipher_id = SSL_CIPHER_get_protocol_id(cipher);
    }
  }
  r.protocol = log.protocol;
  if (log.route == nullptr) r.router = log.internal_router;
  if (log.route != nullptr) {
    r.router = log.route->name;
    r.router_metric = log.route->metric_id;
    if (log.route->service >= router::kFirstInternalService) {
      r.router_service = internal_service_name(log.route->service);
    } else if (log.snapshot) {
      const Service& s = log.snapshot->services[log.route->service];
      r.router_service = s.name;
      r.router_service_metric = s.metric_id;
    }
  }
  if (log.service != nullptr) {
    r.service = log.service->name;
    r.service_metric = log.service->metric_id;
  }
  if (log.endpoint != nullptr) r.service_url = log.endpoint->url;
  r.retry_attempts = log.tries > 1 ? log.tries - 1 : 0;
  // No answer went out (the client left first): Traefik's 499.
  r.status = ex_->edits.final_status != 0 ? ex_->edits.final_status : 499;
  r.code = r.status;
  if (log.origin_status != 0) {
    r.origin_status = log.origin_status;
    r.origin_duration_ns = now - log.origin_start_ns;
    r.origin_headers = &log.origin_headers;
    // gRPC's own status, when the server put it in the head (a trailers-only answer); else OK
    // for a 200 (the trailers of a streamed answer are not read here).
    if (r.protocol == observe::Protocol::kGrpc || r.protocol == observe::Protocol::kGrpcWeb)
      r.code = log.grpc_status >= 0 ? log.grpc_status : r.status == 200 ? 0 : 2;
  }
  const uint64_t written = stream_.bytes_written() - log.written_mark;
  // Traefik counts the body as written to the client, without the chunked framing below it.
  const uint64_t not_body = log.response_head + log.response_framing;
  r.response_bytes = written > not_body ? written - not_body : 0;
  if (const auto& h2 = stream_.h2_stream()) {
    // An HTTP/2 stream is one exchange, and its sizes are its DATA: the bodies without the
    // chunked framing they cross the exchange in.
    r.request_bytes = h2->data_in();
    r.response_bytes = h2->data_out();
  }
  if (log.upgraded) r.request_bytes = r.response_bytes = 0;  // a tunnel's bytes are not the exchange's (Traefik: 0)
  r.origin_bytes = log.origin_status != 0 ? r.response_bytes : 0;
  if (!ex_->edits.user.empty() && r.status != 401) r.username = ex_->edits.user;
  if (metrics != nullptr) metrics->worker(worker_.index()).record(r);
  if (access != nullptr) {
    r.request_count = g_request_count.fetch_add(1, std::memory_order_relaxed) + 1;
    access->record(worker_.index(), r);
  }
  log.snapshot.reset();
}

coro::Task<bool> DownstreamConnection::reply_metrics(const Snapshot& snap) {
  observe::Metrics* metrics = worker_.info().metrics;
  std::string text = metrics != nullptr ? metrics->scrape(snap) : std::string();
  co_return co_await reply_local(200, text, "text/plain; version=0.0.4; charset=utf-8", false);
}

}  // namespace berth::proxy
