// Docker provider; see docker_provider.h. Two coroutines: run() (list, then the event stream, then
// backoff and again) and process_events() (one event at a time, so inspections never race).
#include "discovery/docker/docker_provider.h"

#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>

#include "base/log.h"

namespace berth::discovery::docker {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

constexpr Duration kDefaultApiTimeout = 30s;
constexpr Duration kFirstBackoff = 100ms;
constexpr Duration kMaxBackoff = 10s;

// The container events that can change routing. exec_* (every health probe) are not asked for.
constexpr std::string_view kEventFilter =
    R"({"type":["container"],"event":["start","die","kill","stop","destroy","pause","unpause","health_status","rename"]})";

std::string url_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

// A kill event is the start of a stop when its signal ends processes: TERM, INT, QUIT or KILL (by
// number, as dockerd reports it, or by name). HUP, USR1 and the like are reloads, not stops.
bool stops(std::string_view signal) {
  for (std::string_view s : {"15", "2", "3", "9", "SIGTERM", "SIGINT", "SIGQUIT", "SIGKILL", "TERM", "INT", "QUIT", "KILL"})
    if (iequals(signal, s)) return true;
  return signal.empty();
}

}  // namespace

DockerProvider::DockerProvider(asio::io_context& io, ProviderSettings settings)
    : io_(io),
      settings_(std::move(settings)),
      client_(io, *parse_engine_endpoint(settings_.config.endpoint), "/v1.41", settings_.config.username,
              settings_.config.password),
      wake_(io),
      backoff_(io) {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  hostname_ = host;
}

DockerProvider::~DockerProvider() {
  *alive_ = false;
  client_.cancel_stream();
  wake_.cancel();
  backoff_.cancel();
}

Duration DockerProvider::api_timeout() const {
  return settings_.config.http_client_timeout.count() > 0 ? settings_.config.http_client_timeout : kDefaultApiTimeout;
}

void DockerProvider::start(OnChange on_change) {
  on_change_ = std::move(on_change);
  asio::co_spawn(io_, run(), asio::detached);
  if (settings_.config.watch) asio::co_spawn(io_, process_events(), asio::detached);
}

asio::awaitable<void> DockerProvider::run() {
  auto alive = alive_;
  const std::string& endpoint = client_.endpoint().text;
  Duration delay = kFirstBackoff;
  bool failing = false;
  while (*alive) {
    // Events from a second before the listing are replayed: nothing between the two is missed.
    const auto since = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count() - 1;
    auto listed = co_await resync();
    if (!*alive) co_return;
    if (listed) {
      if (failing) LOG_INFO("docker provider: connected to ", endpoint, " again");
      failing = false;
      delay = kFirstBackoff;
      publish(nullptr);
      if (!settings_.config.watch) co_return;
      auto streamed = co_await client_.stream_lines(
          "/events?since=" + std::to_string(since) + "&filters=" + url_encode(kEventFilter),
          [this](std::string_view line) { on_line(line); });
      if (!*alive) co_return;
      if (!streamed)
        LOG_ERROR("docker provider: event stream lost: ", streamed.error().to_string(),
                  " (keeping the last configuration; reconnecting)");
      else
        LOG_WARN("docker provider: ", endpoint, " ended the event stream (keeping the last configuration; reconnecting)");
    } else if (!failing) {
      failing = true;
      LOG_ERROR("docker provider: ", listed.error().to_string(),
                " (keeping the last configuration; retrying with backoff up to ", format_duration(kMaxBackoff), ")");
    }
    backoff_.expires_after(delay);
    boost::system::error_code ec;
    co_await backoff_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    delay = std::min(delay * 2, kMaxBackoff);
  }
}

asio::awaitable<Result<bool>> DockerProvider::resync() {
  auto alive = alive_;
  auto list = co_await client_.get("/containers/json", api_timeout());
  if (!list) co_return list.error();
  if (list->status != 200)
    co_return Error{client_.endpoint().text, "listing containers: HTTP " + std::to_string(list->status) + " " + list->body};
  auto ids = parse_container_list(list->body);
  if (!ids) co_return ids.error();
  std::map<std::string, Container> fresh;
  for (const auto& id : *ids) {
    auto inspected = co_await client_.get("/containers/" + id + "/json", api_timeout());
    if (!*alive) co_return true;
    if (!inspected) co_return inspected.error();
    if (inspected->status == 404) continue;  // gone since the listing
    auto c = parse_container_inspect(inspected->body);
    if (!c) {
      LOG_WARN("docker provider: container ", id, ": ", c.error().to_string());
      continue;
    }
    fresh.emplace(id, std::move(*c));
  }
  containers_ = std::move(fresh);
  std::erase_if(stopping_, [&](const std::string& id) { return !containers_.count(id); });
  co_return true;
}

void DockerProvider::on_line(std::string_view line) {
  auto event = parse_container_event(line);
  if (!event) return;
  events_.push_back(std::move(*event));
  wake_.cancel();
}

asio::awaitable<void> DockerProvider::process_events() {
  auto alive = alive_;
  bool dirty = false;
  ContainerEvent last;
  while (*alive) {
    if (events_.empty()) {
      if (dirty) publish(&last);
      dirty = false;
      wake_.expires_at(asio::steady_timer::time_point::max());
      boost::system::error_code ec;
      co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    ContainerEvent ev = std::move(events_.front());
    events_.pop_front();
    const bool known = containers_.count(ev.id) != 0;
    if (ev.action == "kill" || ev.action == "stop") {
      // The container is going: no new requests from now on; the exchanges in flight finish.
      if (known && stops(ev.signal) && stopping_.insert(ev.id).second) dirty = true;
    } else if (ev.action == "destroy") {
      dirty |= containers_.erase(ev.id) + stopping_.erase(ev.id) > 0;
    } else {
      if (ev.action == "start" || ev.action == "die") stopping_.erase(ev.id);
      auto inspected = co_await client_.get("/containers/" + ev.id + "/json", api_timeout());
      if (!*alive) co_return;
      if (!inspected) {
        LOG_WARN("docker provider: cannot inspect container ", ev.id, " after its ", ev.action, " event: ",
                 inspected.error().to_string());
        continue;
      }
      if (inspected->status == 404) {
        dirty |= containers_.erase(ev.id) > 0;
      } else if (auto c = parse_container_inspect(inspected->body)) {
        containers_.insert_or_assign(ev.id, std::move(*c));
        dirty = true;
      } else {
        LOG_WARN("docker provider: container ", ev.id, ": ", c.error().to_string());
      }
    }
    last = std::move(ev);
  }
}

void DockerProvider::publish(const ContainerEvent* cause) {
  std::string self_id;
  if (hostname_.size() >= 12)
    for (const auto& [id, c] : containers_)
      if (id.starts_with(hostname_)) self_id = id;
  on_change_(build_config(containers_, stopping_, self_id, settings_));
  if (cause == nullptr || cause->time_nano <= 0) return;
  const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  auto it = containers_.find(cause->id);
  LOG_INFO("docker provider: container ", it == containers_.end() ? cause->id.substr(0, 12) : it->second.name, " ",
           cause->action, cause->detail.empty() ? "" : ": ", cause->detail, "; routes updated ",
           (now - cause->time_nano) / 1000 / 1000.0, " ms after the event");
}

Result<config::DynamicConfig> DockerProvider::load_once(asio::io_context& io, const ProviderSettings& settings) {
  DockerProvider provider(io, settings);
  Result<config::DynamicConfig> out = Error{settings.config.endpoint, "the Docker daemon did not answer"};
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto listed = co_await provider.resync();
        if (listed) out = build_config(provider.containers_, {}, {}, provider.settings_);
        else out = listed.error();
      },
      asio::detached);
  io.run();
  io.restart();
  return out;
}

}  // namespace berth::discovery::docker
