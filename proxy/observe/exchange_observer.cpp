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
    if (h.id == HeaderId::kOther && iequals(h.value, "text/event-stream") && iequals(h.name, "Accept"))
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

}  // namespace

void DownstreamConnection::begin_exchange() {
  auto& log = ex_->log;
  log.snapshot.reset();
  log.internal = false;
  log.internal_router = {};
  log.start_ns = observe::steady_ns();
  log.start_unix_ns = worker_.info().access_log != nullptr ? unix_ns() : 0;
  log.read_mark = static_cast<int64_t>(stream_.bytes_read()) - static_cast<int64_t>(in_.size());
  log.written_mark = stream_.bytes_written();
  log.response_head = 0;
  log.route = nullptr;
  log.service = nullptr;
  log.endpoint = nullptr;
  log.tries = 0;
  log.origin_status = 0;
  log.origin_start_ns = 0;
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
  r.method = req.method;
  r.target = req.target;
  r.http_version = stream_.is_h2() ? "HTTP/2.0" : req.version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
  r.tls = stream_.is_tls();
  r.host = req.host;
  r.request_headers = &req.headers;
  if (trusted_ && access != nullptr)
    for (const auto& h : req.headers)
      if (h.id == http::HeaderId::kXForwardedFor) {
        r.forwarded_for = h.value;
        break;
      }
  const int64_t consumed = static_cast<int64_t>(stream_.bytes_read()) - static_cast<int64_t>(in_.size()) - log.read_mark;
  r.request_bytes = consumed > static_cast<int64_t>(head_size) ? static_cast<uint64_t>(consumed) - head_size : 0;
  if (SSL* ssl = stream_.ssl() != nullptr ? stream_.ssl() : parent_ssl_) {
    r.tls_version = tls_version_label(SSL_version(ssl));
    if (const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl)) {
      r.tls_cipher = SSL_CIPHER_standard_name(cipher);
      r.tls_cipher_id = SSL_CIPHER_get_protocol_id(cipher);
    }
  }
  r.protocol = request_protocol(req.headers);
  if (log.route == nullptr) r.router = log.internal_router;
  if (log.route != nullptr) {
    r.router = log.route->name;
    r.router_metric = log.route->metric_id;
    if (log.route->service < router::kFirstInternalService && log.snapshot) {  // not noop/api/... @internal
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
  r.status = ex_->edits.final_status;
  r.code = r.status;
  if (log.origin_status != 0) {
    r.origin_status = log.origin_status;
    r.origin_duration_ns = now - log.origin_start_ns;
    r.origin_headers = &ex_->response.headers;
    if (r.protocol == observe::Protocol::kGrpc || r.protocol == observe::Protocol::kGrpcWeb) {
      // gRPC's own status, when the server put it in the head (a trailers-only answer); else OK
      // for a 200 (the trailers of a streamed answer are not read here).
      std::string_view grpc = header(ex_->response.headers, "grpc-status");
      int code = r.status == 200 ? 0 : 2;
      if (!grpc.empty()) std::from_chars(grpc.data(), grpc.data() + grpc.size(), code);
      r.code = code;
    }
  }
  const uint64_t written = stream_.bytes_written() - log.written_mark;
  r.response_bytes = written > log.response_head ? written - log.response_head : 0;
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
