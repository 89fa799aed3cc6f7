// berth's own services, Traefik's `@internal` ones: the API, the dashboard, ping and the metrics,
// served by serve_exchange() for a route to them once its middlewares ran (so a router naming
// api@internal can sit behind basicAuth). None of this runs for proxied traffic.
#include <array>
#include <string>

#include "base/text.h"
#include "proxy/downstream_connection.h"
#include "proxy/local_reply.h"
#include "proxy/observe/api.h"
#include "proxy/observe/dashboard_assets.h"
#include "proxy/observe/metrics.h"

namespace berth::proxy {
namespace {

constexpr std::string_view kJson = "application/json";
// The dashboard loads nothing but its own files and the API beside them.
constexpr std::string_view kDashboardPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

}  // namespace

coro::Task<bool> DownstreamConnection::serve_internal(const Snapshot& snap, uint32_t service, std::string_view path,
                                                      std::string_view query) {
  using local_reply::HeaderPair;
  const auto& req = ex_->request;
  // The route's middlewares' response headers go along (a later header of the same name wins).
  std::vector<HeaderPair> headers;
  auto reply = [&](int status, std::string_view body, std::string_view type,
                   std::string_view location = {}) -> coro::Task<bool> {
    headers.insert(headers.end(), ex_->edits.response.begin(), ex_->edits.response.end());
    return reply_local(status, body, type, false, location, &headers);
  };
  if (service == router::kPrometheusService) co_return co_await reply_metrics(snap);
  if (req.method != "GET" && req.method != "HEAD") {
    headers.emplace_back("Allow", "GET, HEAD");
    co_return co_await reply(405, "405 method not allowed\n", local_reply::kTextPlain);
  }
  if (service == router::kPingService) {
    const bool terminating = worker_.terminating();
    co_return co_await reply(terminating ? worker_.info().ping_terminating_status : 200,
                             terminating ? local_reply::kServiceUnavailable : local_reply::kPingOk,
                             local_reply::kTextPlain);
  }
  const observe::ApiDocuments* api = snap.api.get();
  if (api && service == router::kApiService && (path == "/api" || path.starts_with("/api/"))) {
    observe::ApiReply answer = api->answer(snap, path, query, [this] {
      const observe::Metrics* metrics = worker_.info().metrics;
      return metrics ? metrics->router_totals() : std::unordered_map<std::string, observe::RequestTotals>();
    });
    headers.emplace_back("Cache-Control", "no-store");
    if (!answer.next_page.empty()) headers.emplace_back("X-Next-Page", answer.next_page);
    co_return co_await reply(answer.status, answer.body, answer.json ? kJson : local_reply::kTextPlain);
  }
  if (api && api->dashboard()) {
    // Relative redirects keep working behind a router that strips a prefix.
    if (path == "/") co_return co_await reply(302, "", local_reply::kTextPlain, "dashboard/");
    if (path == "/dashboard") co_return co_await reply(302, "", local_reply::kTextPlain, "dashboard/");
    if (path.starts_with("/dashboard/")) {
      std::string_view name = path.substr(11);
      if (name.empty()) name = "index.html";
      if (const observe::DashboardAsset* asset = observe::find_dashboard_asset(name)) {
        // Revalidated on each load: a new berth build serves its own files at once.
        headers.emplace_back("Cache-Control", "no-cache");
        headers.emplace_back("ETag", asset->etag);
        if (asset->content_type.starts_with("text/html")) {
          headers.emplace_back("Content-Security-Policy", kDashboardPolicy);
          headers.emplace_back("Referrer-Policy", "no-referrer");
          headers.emplace_back("X-Frame-Options", "DENY");
        }
        bool fresh = false;
        for (const auto& h : req.headers)
          fresh |= iequals(h.name, "If-None-Match") && h.value.find(asset->etag) != std::string_view::npos;
        if (fresh) co_return co_await reply(304, "", asset->content_type);
        co_return co_await reply(200, asset->bytes, asset->content_type);
      }
    }
  }
  co_return co_await reply(404, local_reply::kNotFound, local_reply::kTextPlain);
}

}  // namespace berth::proxy
