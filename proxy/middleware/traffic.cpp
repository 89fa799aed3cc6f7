// rateLimit and inFlightReq; see traffic.h.
#include "proxy/middleware/traffic.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <charconv>

#include "base/text.h"
#include "proxy/middleware/auth.h"

namespace berth::proxy::middleware {
namespace {

using namespace std::string_view_literals;

// Sources are hashed into a fixed table: memory stays bounded whatever the number of clients. Two
// sources sharing a slot share a limit (inFlightReq) or evict each other (rateLimit, tagged).
constexpr size_t kSlots = 4096;

// FNV-1a: the table index and (rateLimit) a tag from the other bits.
uint64_t hash_key(std::string_view key) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
  return h;
}

// sourceCriterion: the key a request is counted under.
class SourceKey {
 public:
  explicit SourceKey(const config::MiddlewareConfig& c, std::vector<IpNet> excluded)
      : strategy_{c.ip_depth, std::move(excluded)}, header_(c.source_header), host_(c.source_host) {}

  uint64_t of(const Context& ctx) const {
    if (host_) return hash_key(ctx.request.host);
    if (!header_.empty()) {
      for (const auto& h : ctx.request.headers)
        if (iequals(h.name, header_)) return hash_key(h.value);
      return hash_key({});
    }
    boost::asio::ip::address ip;
    if (!strategy_.client_ip(ctx, ip)) return hash_key({});
    if (ip.is_v4()) {
      auto b = ip.to_v4().to_bytes();
      return hash_key({reinterpret_cast<const char*>(b.data()), b.size()});
    }
    auto b = ip.to_v6().to_bytes();
    return hash_key({reinterpret_cast<const char*>(b.data()), b.size()});
  }

 private:
  IpStrategy strategy_;
  std::string header_;
  bool host_;
};

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// GCRA: a slot holds the source's theoretical arrival time (TAT, µs since `base_`, 48 bits) and a
// 16-bit tag of the source. A request is allowed if max(TAT, now) + T - now <= burst * T, where
// T = period / average; it then moves TAT forward by T. Same decisions as a token bucket of
// `burst` tokens refilled at average/period, in one compare-and-swap.
class RateLimit final : public Middleware {
 public:
  RateLimit(const config::MiddlewareConfig& c, std::vector<IpNet> excluded)
      : source_(c, std::move(excluded)),
        interval_us_(std::max<int64_t>(1, c.period.count() * 1000 / std::max<int64_t>(1, c.average))),
        tolerance_us_(interval_us_ * c.burst),
        unlimited_(c.average == 0),
        base_us_(now_us() - 1),
        slots_(new std::atomic<uint64_t>[kSlots]) {
    for (size_t i = 0; i < kSlots; ++i) slots_[i].store(0, std::memory_order_relaxed);
  }

  bool on_request(Context& ctx) const override {
    if (unlimited_) return true;
    const uint64_t h = source_.of(ctx);
    const uint64_t tag = (h >> 48) | 1;  // never 0: 0 marks an empty slot
    std::atomic<uint64_t>& slot = slots_[h & (kSlots - 1)];
    const int64_t now = now_us() - base_us_;
    uint64_t old = slot.load(std::memory_order_relaxed);
    while (true) {
      int64_t tat = (old >> 48) == tag ? static_cast<int64_t>(old & kTatMask) : 0;
      int64_t next = std::max(tat, now) + interval_us_;
      if (next - now > tolerance_us_) return reject(ctx, next - now - tolerance_us_);
      uint64_t word = (tag << 48) | (static_cast<uint64_t>(next) & kTatMask);
      if (slot.compare_exchange_weak(old, word, std::memory_order_relaxed)) return true;
    }
  }

 private:
  static constexpr uint64_t kTatMask = (uint64_t(1) << 48) - 1;

  bool reject(Context& ctx, int64_t wait_us) const {
    // Retry-After in whole seconds, rounded up (at least 1), rendered into the exchange's scratch.
    int64_t seconds = std::max<int64_t>(1, (wait_us + 999'999) / 1'000'000);
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, seconds);
    ctx.edits.challenge.assign(buf, r.ptr);
    ctx.edits.response.emplace_back("Retry-After"sv, ctx.edits.challenge);
    ctx.edits.status = 429;
    ctx.edits.reply_body = "Too Many Requests\n"sv;
    return false;
  }

  SourceKey source_;
  int64_t interval_us_;
  int64_t tolerance_us_;
  bool unlimited_;
  int64_t base_us_;
  std::unique_ptr<std::atomic<uint64_t>[]> slots_;
};

class InFlightReq final : public Middleware {
 public:
  InFlightReq(const config::MiddlewareConfig& c, std::vector<IpNet> excluded)
      : source_(c, std::move(excluded)), amount_(static_cast<int32_t>(c.amount)),
        slots_(new std::atomic<int32_t>[kSlots]) {
    for (size_t i = 0; i < kSlots; ++i) slots_[i].store(0, std::memory_order_relaxed);
  }

  bool on_request(Context& ctx) const override {
    auto& e = ctx.edits;
    std::atomic<int32_t>& slot = slots_[source_.of(ctx) & (kSlots - 1)];
    if (e.in_flight_count == e.in_flight.size() || slot.fetch_add(1, std::memory_order_relaxed) >= amount_) {
      if (e.in_flight_count < e.in_flight.size()) slot.fetch_sub(1, std::memory_order_relaxed);
      e.status = 429;
      e.reply_body = "Too Many Requests\n"sv;
      return false;
    }
    e.in_flight[e.in_flight_count++] = &slot;
    return true;
  }

 private:
  SourceKey source_;
  int32_t amount_;
  std::unique_ptr<std::atomic<int32_t>[]> slots_;
};

}  // namespace

void release_in_flight(Edits& edits) {
  for (uint8_t i = 0; i < edits.in_flight_count; ++i) edits.in_flight[i]->fetch_sub(1, std::memory_order_relaxed);
  edits.in_flight_count = 0;
}

Result<std::unique_ptr<Middleware>> compile_rate_limit(const config::MiddlewareConfig& c) {
  auto excluded = parse_nets(c, c.excluded_ips, "excludedIPs");
  if (!excluded) return excluded.error();
  return std::unique_ptr<Middleware>(new RateLimit(c, std::move(*excluded)));
}

Result<std::unique_ptr<Middleware>> compile_in_flight_req(const config::MiddlewareConfig& c) {
  auto excluded = parse_nets(c, c.excluded_ips, "excludedIPs");
  if (!excluded) return excluded.error();
  return std::unique_ptr<Middleware>(new InFlightReq(c, std::move(*excluded)));
}

}  // namespace berth::proxy::middleware
