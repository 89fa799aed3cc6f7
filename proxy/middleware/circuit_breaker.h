// The circuitBreaker middleware (Traefik v3, vulcand/oxy cbreaker semantics): the trip expression,
// the rolling exchange metrics it reads, and the Standby -> Tripped -> Recovering state machine.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/text.h"

namespace berth::proxy::middleware {

/// The exchanges one breaker saw recently, in fixed rolling windows aligned on the clock (oxy's
/// memmetrics shape): counters (total, network errors, status codes) over 10 slots of 1 s, so the
/// last 9-10 s; the latency histogram over 6 slots of 10 s, so the last 50-60 s. Status codes are
/// counted per class between `code_bounds` (the codes the expression's ResponseCodeRatio calls
/// name), so a range count is exact when both ends are bounds. Latency precision: below 1.024 ms,
/// 64 us buckets; above, 16 buckets per power of two (bucket width <= 6.25% of the value); a
/// quantile reports its bucket's midpoint, within 3.2% (+32 us) of a latency that was recorded;
/// latencies of 67.1 s or more report 67.1 s. Everything is allocated at construction: recording
/// allocates nothing. Times are non-negative milliseconds on a steady clock.
/// Thread: one thread at a time (the owning worker); not synchronised.
class BreakerMetrics {
 public:
  static constexpr size_t kCounterSlots = 10;
  static constexpr int64_t kCounterSlotMs = 1000;
  static constexpr size_t kLatencySlots = 6;
  static constexpr int64_t kLatencySlotMs = 10'000;
  static constexpr int64_t kMaxLatencyUs = int64_t{1} << 26;        ///< ~67.1 s
  static constexpr size_t kLatencyBuckets = (26 - 10 + 1) * 16 + 1;  ///< the last one: >= kMaxLatencyUs

  /// `code_bounds`: status codes that start or end a range the caller will ask about (any order).
  explicit BreakerMetrics(std::vector<int> code_bounds = {});

  /// Counts one finished exchange. `network_error`: berth got no response from the backend
  /// (connect failure, reset, timeout: the 502/504 it answered itself).
  void record(int64_t now_ms, int status, bool network_error, int64_t latency_us);
  /// Forgets every exchange.
  void reset();

  /// Exchanges in the counter window.
  uint64_t total(int64_t now_ms) const;
  /// Network errors / total in the counter window; 0 when nothing was recorded.
  double network_error_ratio(int64_t now_ms) const;
  /// Exchanges with a status in [from, to), in the counter window (see the class comment).
  uint64_t code_count(int64_t now_ms, int from, int to) const;
  /// code_count(from, to) / code_count(divided_by_from, divided_by_to); 0 when the divisor is 0.
  double response_code_ratio(int64_t now_ms, int from, int to, int divided_by_from, int divided_by_to) const;
  /// The latency at percentile `quantile` (0-100, clamped; HdrHistogram's rounding) in the latency
  /// window, in microseconds; 0 when nothing was recorded.
  int64_t latency_at_quantile_us(int64_t now_ms, double quantile) const;

 private:
  struct CounterSlot {
    int64_t epoch = -1;  ///< now_ms / kCounterSlotMs when the slot was last written; -1: empty
    uint32_t total = 0;
    uint32_t network_errors = 0;
  };
  struct LatencySlot {
    int64_t epoch = -1;
    uint32_t total = 0;
    std::array<uint32_t, kLatencyBuckets> counts{};
  };
  size_t code_class(int status) const;

  std::vector<int> code_bounds_;        ///< sorted, unique
  std::vector<uint32_t> code_counts_;   ///< kCounterSlots rows of code_bounds_.size() + 1 classes
  std::array<CounterSlot, kCounterSlots> counters_{};
  std::array<LatencySlot, kLatencySlots> latency_{};
};

/// A parsed circuitBreaker `expression`: comparisons of NetworkErrorRatio(),
/// ResponseCodeRatio(from, to, dividedByFrom, dividedByTo) and LatencyAtQuantileMS(quantile) with a
/// number, joined by && and || (&& binds tighter) and grouped by parentheses. Unlike oxy, any
/// number compares with any function (oxy rejects `NetworkErrorRatio() > 1` and
/// `LatencyAtQuantileMS(50.0) > 100.0` for their int/float mix); the function must be on the left.
class BreakerExpression {
 public:
  enum class Function : uint8_t { kNetworkErrorRatio, kResponseCodeRatio, kLatencyAtQuantileMs };
  enum class Comparison : uint8_t { kLess, kLessEqual, kGreater, kGreaterEqual, kEqual, kNotEqual };

  struct Node {
    enum class Kind : uint8_t { kOr, kAnd, kCompare };
    Kind kind = Kind::kCompare;
    std::vector<Node> operands;       ///< kOr/kAnd: two or more, in written order
    Function function{};              ///< kCompare
    std::array<double, 4> args{};     ///< kCompare: the function's arguments
    Comparison comparison{};          ///< kCompare
    double value = 0;                 ///< kCompare: the right-hand number
    size_t column = 0;                ///< 1-based column where the node starts
  };

  /// Parses an expression. Numbers are decimal (0.5, .5, 50, 1e2). The quantile must be within
  /// 0-100; status codes must be integers within 0-1000; nesting is bounded. Errors have
  /// `where` = "column N" and say what was expected; no input crashes. Thread: any (control).
  static Result<BreakerExpression> parse(std::string_view text);

  /// True if the expression holds on `metrics` now. LatencyAtQuantileMS is truncated to whole
  /// milliseconds, as oxy does. Allocates nothing. Thread: any (reads only `metrics`).
  bool evaluate(const BreakerMetrics& metrics, int64_t now_ms) const;

  const Node& root() const { return root_; }
  /// Every status code the ResponseCodeRatio calls name, sorted and unique (for BreakerMetrics).
  const std::vector<int>& code_bounds() const { return code_bounds_; }
  /// A canonical rendering: groups of two or more operands in parentheses, numbers in shortest form.
  std::string to_string() const;

 private:
  Node root_;
  std::vector<int> code_bounds_;
};

/// The circuitBreaker options (Traefik's defaults).
struct CircuitBreakerOptions {
  Duration check_period = std::chrono::milliseconds(100);
  Duration fallback_duration = std::chrono::seconds(10);
  Duration recovery_duration = std::chrono::seconds(10);
  int response_code = 503;
};

/// One circuit breaker as oxy runs it. Standby: everything passes; each recorded exchange may
/// evaluate the expression (at most once per checkPeriod); when it holds, the breaker trips and
/// forgets its metrics. Tripped: allow() is false until fallbackDuration has passed. Recovering
/// (for recoveryDuration): allow() lets a request through while the share let through since
/// recovery began stays below 0.5 * elapsed / recoveryDuration, so the instantaneous share grows
/// linearly from 0 to 1; recorded exchanges still evaluate the expression and may trip it again.
/// After recoveryDuration, Standby, keeping the metrics gathered while recovering (as oxy does).
/// State changes happen inside allow() and record(), driven by the clock values passed in, so the
/// breaker is deterministic under a test clock.
///
/// Threading: berth keeps one breaker per (router, worker), each touched only by its worker's event
/// loop and never synchronised. A worker's breaker sees that worker's share of the traffic, so
/// with N workers each decides on ~1/N of the exchanges (one worker may trip while another does
/// not). Traefik likewise gives each router its own instance, and a new snapshot starts fresh.
/// Thread: the owning worker.
class CircuitBreaker {
 public:
  enum class State : uint8_t { kStandby, kTripped, kRecovering };

  explicit CircuitBreaker(BreakerExpression expression, CircuitBreakerOptions options = {});

  /// True if the request may go upstream; false: answer response_code() locally and do not call
  /// record() for it. Moves Tripped -> Recovering -> Standby as time passes.
  bool allow(int64_t now_ms);
  /// Records an exchange that allow() let through, once its response status is known (the status
  /// berth sends downstream, 502/504 included when berth generated it), then checks the expression
  /// if checkPeriod has passed since the last check.
  void record(int64_t now_ms, int status, bool network_error, int64_t latency_us);

  /// The state as of the last allow() or record().
  State state() const { return state_; }
  int response_code() const { return options_.response_code; }
  const BreakerMetrics& metrics() const { return metrics_; }
  const BreakerExpression& expression() const { return expression_; }

 private:
  BreakerExpression expression_;
  CircuitBreakerOptions options_;
  BreakerMetrics metrics_;
  State state_ = State::kStandby;
  int64_t until_ms_ = 0;                    ///< Tripped/Recovering: when the state ends
  int64_t next_check_ms_ = INT64_MIN;       ///< the first record() checks at once, as oxy does
  int64_t recovery_start_ms_ = 0;
  uint64_t allowed_ = 0, denied_ = 0;       ///< Recovering: requests let through / answered locally
};

/// "standby", "tripped" or "recovering" (oxy's names), for logs and the API.
std::string_view to_string(CircuitBreaker::State state);

}  // namespace berth::proxy::middleware
