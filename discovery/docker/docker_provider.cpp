// Docker provider; see docker_provider.h. Two coroutines: run() (list, then the event stream, then
// backoff and again) and process_events() (one event at a time, so inspections never race).
#include "discovery/docker/docker_provider.h"

#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <ctime>
#include <fstream>

#include "base/log.h"

namespace berth::discovery::docker {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

constexpr Duration kDefaultApiTimeout = 30s;
constexpr Duration kFirstBackoff = 100ms;
constexpr Duration kMaxBackoff = 10s;
constexpr std::string_view kNewestApi = "1.47";  // the newest Engine API whose JSON berth was checked against
constexpr std::string_view kAllowNonRunningTraefik =
    R"(/containers/json?all=1&filters=%7B%22label%22%3A%5B%22traefik.docker.allownonrunning%3Dtrue%22%5D%7D)";
constexpr std::string_view kAllowNonRunningBerth =
    R"(/containers/json?all=1&filters=%7B%22label%22%3A%5B%22berth.docker.allownonrunning%3Dtrue%22%5D%7D)";

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

// A signal as dockerd reports it ("15") or as images name it ("SIGTERM", "TERM", "SIGRTMIN+3"),
// as a number; 0 if unknown.
int signal_number(std::string_view s) {
  if (auto n = parse_uint(s)) return static_cast<int>(*n);
  if (s.size() > 3 && iequals(s.substr(0, 3), "SIG")) s.remove_prefix(3);
  static constexpr std::pair<std::string_view, int> kNames[] = {
      {"HUP", 1}, {"INT", 2}, {"QUIT", 3}, {"KILL", 9}, {"USR1", 10}, {"USR2", 12}, {"TERM", 15},
      {"CONT", 18}, {"STOP", 19}, {"WINCH", 28}, {"PWR", 30}, {"RTMIN", 34}};
  for (const auto& [name, n] : kNames)
    if (iequals(s, name)) return n;
  if (s.size() > 6 && iequals(s.substr(0, 6), "RTMIN+"))
    if (auto n = parse_uint(s.substr(6))) return 34 + static_cast<int>(*n);
  return 0;
}

// A kill event starts a stop when it carries the container's stop signal (its image's STOPSIGNAL,
// SIGTERM by default: what `docker stop` sends first) or SIGKILL. Other signals (HUP to reload,
// QUIT for a thread dump) leave it in rotation.
bool stops(std::string_view event_signal, const Container& c) {
  if (event_signal.empty()) return true;
  const int sent = signal_number(event_signal);
  const int stop = c.stop_signal.empty() ? 15 : signal_number(c.stop_signal);
  return sent == 9 || sent == stop;
}

// The id of the container berth runs in, if any: dockerd bind-mounts /etc/hostname (and resolv.conf,
// hosts) from /var/lib/docker/containers/<64 hex>/, which /proc/self/mountinfo shows whatever the
// cgroup version or a compose `hostname:`; else the host name, which docker sets to the id's first 12.
std::string own_container_id() {
  std::ifstream mounts("/proc/self/mountinfo");
  for (std::string line; std::getline(mounts, line);) {
    const size_t at = line.find("/containers/");
    if (at == std::string::npos) continue;
    const std::string_view id = std::string_view(line).substr(at + 12, 64);
    if (id.size() == 64 && id.find_first_not_of("0123456789abcdef") == std::string_view::npos) return std::string(id);
  }
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return host;
}

// State.StartedAt ("2026-11-27T17:06:51.123456789Z", RFC 3339 in UTC) as Unix nanoseconds; 0 if
// it does not parse (then no event is judged older than the run).
int64_t started_nanos(std::string_view text) {
  std::tm tm{};
  const std::string head(text.substr(0, 19));
  if (text.size() < 20 || strptime(head.c_str(), "%Y-%m-%dT%H:%M:%S", &tm) == nullptr) return 0;
  int64_t nanos = static_cast<int64_t>(timegm(&tm)) * 1'000'000'000;
  if (text[19] == '.') {
    int64_t scale = 100'000'000;
    for (size_t i = 20; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) && scale > 0; ++i, scale /= 10)
      nanos += (text[i] - '0') * scale;
  }
  return nanos;
}

// "1.41" < "1.45": API versions compared by their numbers.
bool older_api(std::string_view a, std::string_view b) {
  auto parts = [](std::string_view v) {
    const size_t dot = v.find('.');
    return std::pair(parse_uint(v.substr(0, dot)).value_or(0),
                     dot == std::string_view::npos ? 0 : parse_uint(v.substr(dot + 1)).value_or(0));
  };
  return parts(a) < parts(b);
}

}  // namespace

DockerProvider::DockerProvider(asio::io_context& io, ProviderSettings settings)
    : io_(io),
      settings_(std::move(settings)),
      client_(io, *parse_engine_endpoint(settings_.config.endpoint), "/v1.41", settings_.config.username,
              settings_.config.password),
      wake_(io),
      backoff_(io),
      stream_end_(io) {
  self_hint_ = own_container_id();
}

DockerProvider::~DockerProvider() {
  *alive_ = false;
  client_.cancel_stream();
  wake_.cancel();
  backoff_.cancel();
  stream_end_.cancel();
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
    // The event stream opens before the listing and asks for events from a second earlier, so
    // nothing between the two is missed; events wait until the listing is done.
    auto negotiated = co_await negotiate_version();
    if (!*alive) co_return;
    Result<bool> listed = negotiated ? Result<bool>(true) : Result<bool>(negotiated.error());
    const auto opened = std::chrono::steady_clock::now();
    if (negotiated) {
      events_.clear();
      stopping_.clear();
      listing_ = true;
      if (settings_.config.watch) {
        streaming_ = true;
        stream_result_.reset();
        asio::co_spawn(io_, follow_events(++stream_generation_), asio::detached);
      }
      listed = co_await resync();
      if (!*alive) co_return;
      listing_ = false;
      wake_.cancel();
    }
    if (listed) {
      if (failing) LOG_INFO("docker provider: connected to ", endpoint, " again");
      failing = false;
      publish(nullptr);
      if (!settings_.config.watch) co_return;
      while (streaming_ && *alive) {
        stream_end_.expires_at(asio::steady_timer::time_point::max());
        boost::system::error_code ec;
        co_await stream_end_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      if (!*alive) co_return;
      if (stream_result_ && !*stream_result_)
        LOG_ERROR("docker provider: event stream lost: ", stream_result_->error().to_string(),
                  " (keeping the last configuration; reconnecting)");
      else
        LOG_WARN("docker provider: ", endpoint, " ended the event stream (keeping the last configuration; reconnecting)");
      // A stream that lasted is a normal end (dockerd restarting): reconnect soon. One that ends at
      // once (a socket proxy refusing /events) backs off like a failure.
      if (std::chrono::steady_clock::now() - opened > std::chrono::seconds(30)) delay = kFirstBackoff;
    } else {
      client_.cancel_stream();
      if (!failing) {
        failing = true;
        LOG_ERROR("docker provider: ", listed.error().to_string(),
                  " (keeping the last configuration; retrying with backoff up to ", format_duration(kMaxBackoff), ")");
      }
    }
    backoff_.expires_after(delay);
    boost::system::error_code ec;
    co_await backoff_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    delay = std::min(delay * 2, kMaxBackoff);
  }
}

asio::awaitable<void> DockerProvider::follow_events(uint64_t generation) {
  auto alive = alive_;
  const auto since = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch()).count() - 1;
  auto streamed = co_await client_.stream_lines(
      "/events?since=" + std::to_string(since) + "&filters=" + url_encode(kEventFilter),
      [this, generation](std::string_view line) { on_line(line, generation); });
  if (!*alive || generation != stream_generation_) co_return;
  stream_result_ = std::move(streamed);
  streaming_ = false;
  stream_end_.cancel();
}

asio::awaitable<Result<bool>> DockerProvider::negotiate_version() {
  client_.set_api_prefix("");
  auto version = co_await client_.get("/version", api_timeout());
  std::string api = "1.41";  // the version before /version said (dockerd 20.10)
  if (!version) co_return version.error();
  if (version->status == 200) {
    boost::system::error_code ec;
    auto v = boost::json::parse(version->body, ec);
    if (const auto* a = !ec && v.is_object() ? v.as_object().if_contains("ApiVersion") : nullptr; a && a->is_string())
      api = std::string(a->as_string());
  }
  if (older_api(kNewestApi, api)) api = kNewestApi;
  client_.set_api_prefix("/v" + api);
  co_return true;
}

asio::awaitable<Result<bool>> DockerProvider::resync() {
  auto alive = alive_;
  std::vector<std::string> ids;
  // Running containers, and stopped ones whose labels keep their routes.
  for (std::string_view query : {std::string_view("/containers/json"), kAllowNonRunningTraefik, kAllowNonRunningBerth}) {
    auto list = co_await client_.get(std::string(query), api_timeout());
    if (!*alive) co_return true;
    if (!list) co_return list.error();
    if (list->status != 200)
      co_return Error{client_.endpoint().text, "listing containers: HTTP " + std::to_string(list->status) + " " + list->body};
    auto listed = parse_container_list(list->body);
    if (!listed) co_return listed.error();
    for (auto& id : *listed)
      if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(std::move(id));
  }
  std::map<std::string, Container> fresh;
  for (const auto& id : ids) {
    auto inspected = co_await client_.get("/containers/" + id + "/json", api_timeout());
    if (!*alive) co_return true;
    if (inspected && inspected->status == 404) continue;  // gone since the listing
    Result<Container> c = inspected ? (inspected->status == 200 ? parse_container_inspect(inspected->body)
                                                                : Result<Container>(Error{id, "HTTP " + std::to_string(inspected->status)}))
                                    : Result<Container>(inspected.error());
    if (!c) {
      LOG_WARN("docker provider: container ", id.substr(0, 12), " left out: cannot inspect it: ", c.error().to_string());
      continue;
    }
    fresh.emplace(id, std::move(*c));
  }
  containers_ = std::move(fresh);
  co_return true;
}

void DockerProvider::on_line(std::string_view line, uint64_t generation) {
  if (generation != stream_generation_) return;
  auto event = parse_container_event(line);
  if (!event) return;
  events_.push_back(std::move(*event));
  wake_.cancel();
}

void DockerProvider::recheck_later(const std::string& id, Duration after) {
  auto timer = std::make_shared<asio::steady_timer>(io_, after);
  timer->async_wait([this, timer, id, alive = alive_, generation = stream_generation_](boost::system::error_code ec) {
    if (ec || !*alive || generation != stream_generation_ || !stopping_.count(id)) return;
    ContainerEvent recheck;
    recheck.id = id;
    recheck.action = "recheck";
    events_.push_back(std::move(recheck));
    wake_.cancel();
  });
}

asio::awaitable<void> DockerProvider::process_events() {
  auto alive = alive_;
  bool dirty = false;
  ContainerEvent last;
  while (*alive) {
    if (events_.empty() || listing_) {
      if (dirty && !listing_) publish(&last);
      dirty = false;
      wake_.expires_at(asio::steady_timer::time_point::max());
      boost::system::error_code ec;
      co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    ContainerEvent ev = std::move(events_.front());
    events_.pop_front();
    events_handled_.fetch_add(1, std::memory_order_relaxed);
    auto known = containers_.find(ev.id);
    if (ev.action == "kill") {
      // The container is going: no new requests from now on; the exchanges in flight finish. A kill
      // from before the run berth knows (replayed after a listing) is about an earlier run.
      if (known != containers_.end() && stops(ev.signal, known->second) &&
          (ev.time_nano == 0 || ev.time_nano >= started_nanos(known->second.started_at)) &&
          stopping_.emplace(ev.id, known->second.started_at).second) {
        dirty = true;
        recheck_later(ev.id, std::chrono::seconds(known->second.stop_timeout) + 5s);
      }
    } else if (ev.action == "stop") {
      continue;  // sent after the container died: its die event said everything
    } else if (ev.action == "destroy") {
      dirty |= containers_.erase(ev.id) + stopping_.erase(ev.id) > 0;
    } else {
      if (ev.action == "recheck" && !stopping_.count(ev.id)) continue;
      auto inspected = co_await client_.get("/containers/" + ev.id + "/json", api_timeout());
      if (!*alive) co_return;
      if (inspected && inspected->status == 404) {
        dirty |= containers_.erase(ev.id) + stopping_.erase(ev.id) > 0;
      } else if (auto c = inspected && inspected->status == 200 ? parse_container_inspect(inspected->body)
                                                                 : Result<Container>(Error{ev.id, "cannot inspect"})) {
        auto mark = stopping_.find(ev.id);
        if (mark != stopping_.end() && (c->status != "running" || c->started_at != mark->second)) {
          stopping_.erase(mark);  // dead, or a new run
        } else if (mark != stopping_.end() && ev.action == "recheck") {
          LOG_WARN("docker provider: container ", c->name, " still runs ", c->stop_timeout + 5,
                   " s after its stop signal: back in rotation");
          stopping_.erase(mark);
        }
        containers_.insert_or_assign(ev.id, std::move(*c));
        dirty = true;
      } else {
        LOG_WARN("docker provider: cannot inspect container ", ev.id.substr(0, 12), " after its ", ev.action, " event: ",
                 inspected ? c.error().to_string() : inspected.error().to_string());
        if (ev.action == "die" && known != containers_.end()) {  // dead either way
          containers_.erase(known);
          stopping_.erase(ev.id);
          dirty = true;
        }
        continue;
      }
    }
    last = std::move(ev);
  }
}

void DockerProvider::publish(const ContainerEvent* cause) {
  std::string self_id;
  if (self_hint_.size() >= 12)
    for (const auto& [id, c] : containers_)
      if (id.starts_with(self_hint_)) self_id = id;
  std::set<std::string> stopping;
  for (const auto& [id, started] : stopping_) stopping.insert(id);
  on_change_(build_config(containers_, stopping, self_id, settings_));
  if (cause == nullptr || cause->time_nano <= 0) return;
  const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  auto it = containers_.find(cause->id);
  LOG_INFO("docker provider: container ", it == containers_.end() ? cause->id.substr(0, 12) : it->second.name, " ",
           cause->action, cause->detail.empty() ? "" : ": ", cause->detail,
           cause->signal.empty() ? "" : " (signal ", cause->signal, cause->signal.empty() ? "" : ")", "; routes updated ",
           (now - cause->time_nano) / 1000 / 1000.0, " ms after the event");
}

Result<config::DynamicConfig> DockerProvider::load_once(asio::io_context& io, const ProviderSettings& settings) {
  DockerProvider provider(io, settings);
  Result<config::DynamicConfig> out = Error{settings.config.endpoint, "the Docker daemon did not answer"};
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto negotiated = co_await provider.negotiate_version();
        if (!negotiated) {
          out = negotiated.error();
          co_return;
        }
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
