// The circuitBreaker middleware's expression parser, rolling metrics and state machine; see
// circuit_breaker.h.
#include "proxy/middleware/circuit_breaker.h"

#include <algorithm>
#include <bit>
#include <cctype>
#include <charconv>
#include <cmath>

namespace berth::proxy::middleware {
namespace {

// ---- latency histogram layout: linear 64 us buckets below 2^10 us, then 16 per power of two.

constexpr int kSubBits = 4;
constexpr int kLinearBits = 10;
constexpr uint64_t kSubMask = (uint64_t{1} << kSubBits) - 1;
constexpr size_t kOverflowBucket = BreakerMetrics::kLatencyBuckets - 1;

size_t latency_bucket(uint64_t us) {
  if (us >= uint64_t(BreakerMetrics::kMaxLatencyUs)) return kOverflowBucket;
  if (us < (uint64_t{1} << kLinearBits)) return us >> (kLinearBits - kSubBits);
  int e = std::bit_width(us) - 1;
  return size_t(e - kLinearBits + 1) * (kSubMask + 1) + ((us >> (e - kSubBits)) & kSubMask);
}

int64_t bucket_midpoint_us(size_t i) {
  if (i >= kOverflowBucket) return BreakerMetrics::kMaxLatencyUs;
  constexpr size_t kSub = kSubMask + 1;
  if (i < kSub) return int64_t((i << (kLinearBits - kSubBits)) + (uint64_t{1} << (kLinearBits - kSubBits - 1)));
  int e = int(i / kSub) + kLinearBits - 1;
  int64_t width = int64_t{1} << (e - kSubBits);
  return int64_t(kSub + i % kSub) * width + width / 2;
}

int64_t epoch_of(int64_t now_ms, int64_t slot_ms) { return std::max<int64_t>(now_ms, 0) / slot_ms; }
bool is_live(int64_t slot_epoch, int64_t now_epoch, size_t slots) {
  return slot_epoch >= 0 && slot_epoch <= now_epoch && slot_epoch > now_epoch - int64_t(slots);
}

// ---- expression parser

using Node = BreakerExpression::Node;

struct FunctionSpec {
  std::string_view name;
  BreakerExpression::Function function;
  size_t arity;
  std::string_view arguments;  // for messages and rendering
};
// Indexed by BreakerExpression::Function.
constexpr std::array<FunctionSpec, 3> kFunctions{{
    {"NetworkErrorRatio", BreakerExpression::Function::kNetworkErrorRatio, 0, "no arguments"},
    {"ResponseCodeRatio", BreakerExpression::Function::kResponseCodeRatio, 4,
     "4 arguments (from, to, dividedByFrom, dividedByTo)"},
    {"LatencyAtQuantileMS", BreakerExpression::Function::kLatencyAtQuantileMs, 1,
     "1 argument (a percentile such as 50.0)"},
}};

struct ComparisonSpec {
  std::string_view token;
  BreakerExpression::Comparison comparison;
};
// Two-character operators first, so "<=" is not read as "<".
constexpr std::array<ComparisonSpec, 6> kComparisons{{
    {"<=", BreakerExpression::Comparison::kLessEqual},
    {">=", BreakerExpression::Comparison::kGreaterEqual},
    {"==", BreakerExpression::Comparison::kEqual},
    {"!=", BreakerExpression::Comparison::kNotEqual},
    {"<", BreakerExpression::Comparison::kLess},
    {">", BreakerExpression::Comparison::kGreater},
}};

class ExpressionParser {
 public:
  explicit ExpressionParser(std::string_view text) : text_(text) {}

  Result<Node> parse() {
    Node root;
    if (!parse_chain(root, Node::Kind::kOr)) return fail_;
    skip_space();
    if (pos_ < text_.size()) {
      set_error("expected \"&&\", \"||\" or the end of the expression");
      return fail_;
    }
    return root;
  }

 private:
  // or := and ("||" and)* ; and := primary ("&&" primary)*. A chain of one is its operand.
  bool parse_chain(Node& out, Node::Kind kind) {
    std::string_view op = kind == Node::Kind::kOr ? "||" : "&&";
    Node first;
    if (!parse_operand(first, kind)) return false;
    skip_space();
    if (text_.substr(pos_, 2) != op) {
      out = std::move(first);
      return true;
    }
    out.kind = kind;
    out.column = first.column;
    out.operands.push_back(std::move(first));
    while (skip_space(), take(op)) {
      Node next;
      if (!parse_operand(next, kind)) return false;
      out.operands.push_back(std::move(next));
    }
    return true;
  }

  bool parse_operand(Node& out, Node::Kind chain) {
    return chain == Node::Kind::kOr ? parse_chain(out, Node::Kind::kAnd) : parse_primary(out);
  }

  bool parse_primary(Node& out) {
    // Expressions may come from container labels: bound the recursion (here and in evaluate()).
    struct DepthGuard {
      int& d;
      explicit DepthGuard(int& depth) : d(++depth) {}
      ~DepthGuard() { --d; }
    } guard(depth_);
    if (depth_ > kMaxDepth) return set_error("expression nests deeper than " + std::to_string(kMaxDepth) + " levels");
    skip_space();
    size_t col = pos_ + 1;
    if (take("(")) {
      if (!parse_chain(out, Node::Kind::kOr)) return false;
      skip_space();
      if (!take(")")) return set_error("expected \"&&\", \"||\" or \")\"");
      out.column = col;
      return true;
    }
    return parse_comparison(out);
  }

  // Function(args) op number
  bool parse_comparison(Node& out) {
    size_t start = pos_;
    auto is_name = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
    if (pos_ >= text_.size()) return set_error("unexpected end of expression, expected a function such as NetworkErrorRatio()");
    if (std::isdigit(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '.') {
      return set_error("expected a function such as NetworkErrorRatio() (the number goes right of the comparison)");
    }
    while (pos_ < text_.size() && is_name(text_[pos_])) ++pos_;
    std::string_view name = text_.substr(start, pos_ - start);
    if (name.empty()) return set_error("expected a function such as NetworkErrorRatio() or \"(\"");
    const FunctionSpec* spec = nullptr;
    for (const auto& f : kFunctions) {
      if (f.name == name) spec = &f;
    }
    if (!spec) {
      pos_ = start;
      return set_error("unknown function \"" + std::string(name) +
                       "\", expected NetworkErrorRatio, ResponseCodeRatio or LatencyAtQuantileMS");
    }
    out.kind = Node::Kind::kCompare;
    out.function = spec->function;
    out.column = start + 1;
    skip_space();
    if (!take("(")) return set_error("expected \"(\" after " + std::string(name));
    size_t count = 0;
    skip_space();
    if (!take(")")) {
      while (true) {
        skip_space();
        if (count == spec->arity) return set_error(std::string(name) + " takes " + std::string(spec->arguments));
        if (!parse_argument(*spec, count, out.args[count])) return false;
        ++count;
        skip_space();
        if (take(")")) break;
        if (!take(",")) return set_error("expected \",\" or \")\" in the arguments of " + std::string(name));
      }
    }
    if (count != spec->arity) {
      --pos_;  // point at the ")"
      return set_error(std::string(name) + " takes " + std::string(spec->arguments));
    }
    skip_space();
    const ComparisonSpec* cmp = nullptr;
    for (const auto& c : kComparisons) {
      if (!cmp && text_.substr(pos_, c.token.size()) == c.token) cmp = &c;
    }
    if (!cmp) return set_error("expected a comparison (<, <=, >, >=, ==, !=) after " + std::string(name) + "(...)");
    pos_ += cmp->token.size();
    out.comparison = cmp->comparison;
    skip_space();
    return parse_number(out.value);
  }

  bool parse_argument(const FunctionSpec& spec, size_t index, double& out) {
    size_t at = pos_;
    if (!parse_number(out)) return false;
    if (spec.function == BreakerExpression::Function::kLatencyAtQuantileMs && !(out >= 0 && out <= 100)) {
      pos_ = at;
      return set_error("the quantile must be a percentile between 0 and 100");
    }
    if (spec.function == BreakerExpression::Function::kResponseCodeRatio &&
        (out != std::floor(out) || out > 1000)) {
      pos_ = at;
      return set_error("argument " + std::to_string(index + 1) + " of ResponseCodeRatio must be a status code (an integer from 0 to 1000)");
    }
    return true;
  }

  // digits [. digits] [e [+-] digits], or . digits [...]: Go's decimal literals, without '_' or hex.
  bool parse_number(double& out) {
    size_t i = pos_;
    auto digits = [&] {
      size_t s = i;
      while (i < text_.size() && std::isdigit(static_cast<unsigned char>(text_[i]))) ++i;
      return i - s;
    };
    size_t n = digits();
    if (i < text_.size() && text_[i] == '.') {
      ++i;
      n += digits();
    }
    if (n == 0) {
      return set_error(pos_ >= text_.size() ? "unexpected end of expression, expected a number" : "expected a number");
    }
    if (i < text_.size() && (text_[i] == 'e' || text_[i] == 'E')) {
      size_t mark = i++;
      if (i < text_.size() && (text_[i] == '+' || text_[i] == '-')) ++i;
      if (digits() == 0) i = mark;  // "1e" is the number 1 followed by junk the caller reports
    }
    auto [end, ec] = std::from_chars(text_.data() + pos_, text_.data() + i, out);
    if (ec != std::errc() || end != text_.data() + i || !std::isfinite(out)) return set_error("number out of range");
    pos_ = i;
    return true;
  }

  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool take(std::string_view token) {
    if (text_.substr(pos_, token.size()) != token) return false;
    pos_ += token.size();
    return true;
  }
  bool set_error(std::string message) {
    if (!failed_) {
      failed_ = true;
      fail_ = Error{"column " + std::to_string(pos_ + 1), std::move(message)};
    }
    return false;
  }

  static constexpr int kMaxDepth = 32;
  std::string_view text_;
  size_t pos_ = 0;
  int depth_ = 0;
  bool failed_ = false;
  Error fail_;
};

void collect_codes(const Node& n, std::vector<int>& out) {
  if (n.kind == Node::Kind::kCompare && n.function == BreakerExpression::Function::kResponseCodeRatio) {
    for (double a : n.args) out.push_back(int(a));
  }
  for (const auto& o : n.operands) collect_codes(o, out);
}

double measure(const Node& n, const BreakerMetrics& m, int64_t now_ms) {
  switch (n.function) {
    case BreakerExpression::Function::kNetworkErrorRatio:
      return m.network_error_ratio(now_ms);
    case BreakerExpression::Function::kResponseCodeRatio:
      return m.response_code_ratio(now_ms, int(n.args[0]), int(n.args[1]), int(n.args[2]), int(n.args[3]));
    case BreakerExpression::Function::kLatencyAtQuantileMs:
      return double(m.latency_at_quantile_us(now_ms, n.args[0]) / 1000);
  }
  return 0;
}

bool holds(const Node& n, const BreakerMetrics& m, int64_t now_ms) {
  switch (n.kind) {
    case Node::Kind::kOr:
      return std::any_of(n.operands.begin(), n.operands.end(), [&](const Node& o) { return holds(o, m, now_ms); });
    case Node::Kind::kAnd:
      return std::all_of(n.operands.begin(), n.operands.end(), [&](const Node& o) { return holds(o, m, now_ms); });
    case Node::Kind::kCompare:
      break;
  }
  double v = measure(n, m, now_ms);
  switch (n.comparison) {
    case BreakerExpression::Comparison::kLess: return v < n.value;
    case BreakerExpression::Comparison::kLessEqual: return v <= n.value;
    case BreakerExpression::Comparison::kGreater: return v > n.value;
    case BreakerExpression::Comparison::kGreaterEqual: return v >= n.value;
    case BreakerExpression::Comparison::kEqual: return v == n.value;
    case BreakerExpression::Comparison::kNotEqual: return v != n.value;
  }
  return false;
}

void append_number(std::string& out, double v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, ec == std::errc() ? end : buf);
}

void render(const Node& n, std::string& out) {
  if (n.kind != Node::Kind::kCompare) {
    out += '(';
    for (size_t i = 0; i < n.operands.size(); ++i) {
      if (i) out += n.kind == Node::Kind::kOr ? " || " : " && ";
      render(n.operands[i], out);
    }
    out += ')';
    return;
  }
  const auto& spec = kFunctions[size_t(n.function)];
  out.append(spec.name) += '(';
  for (size_t i = 0; i < spec.arity; ++i) {
    if (i) out += ", ";
    append_number(out, n.args[i]);
  }
  out.append(") ");
  for (const auto& c : kComparisons) {
    if (c.comparison == n.comparison) out.append(c.token);
  }
  out += ' ';
  append_number(out, n.value);
}

}  // namespace

// ---- BreakerMetrics

BreakerMetrics::BreakerMetrics(std::vector<int> code_bounds) : code_bounds_(std::move(code_bounds)) {
  std::sort(code_bounds_.begin(), code_bounds_.end());
  code_bounds_.erase(std::unique(code_bounds_.begin(), code_bounds_.end()), code_bounds_.end());
  code_counts_.assign(kCounterSlots * (code_bounds_.size() + 1), 0);
}

// Class k holds the codes in [bound k-1, bound k): the number of bounds <= status.
size_t BreakerMetrics::code_class(int status) const {
  return size_t(std::upper_bound(code_bounds_.begin(), code_bounds_.end(), status) - code_bounds_.begin());
}

void BreakerMetrics::record(int64_t now_ms, int status, bool network_error, int64_t latency_us) {
  size_t classes = code_bounds_.size() + 1;
  int64_t epoch = epoch_of(now_ms, kCounterSlotMs);
  size_t s = size_t(epoch % int64_t(kCounterSlots));
  CounterSlot& c = counters_[s];
  uint32_t* codes = code_counts_.data() + s * classes;
  if (c.epoch != epoch) {
    c = CounterSlot{epoch};
    std::fill(codes, codes + classes, 0);
  }
  ++c.total;
  c.network_errors += network_error ? 1 : 0;
  ++codes[code_class(status)];

  epoch = epoch_of(now_ms, kLatencySlotMs);
  LatencySlot& l = latency_[size_t(epoch % int64_t(kLatencySlots))];
  if (l.epoch != epoch) {
    l.epoch = epoch;
    l.total = 0;
    l.counts.fill(0);
  }
  ++l.total;
  ++l.counts[latency_bucket(uint64_t(std::max<int64_t>(latency_us, 0)))];
}

void BreakerMetrics::reset() {
  // Slots are cleared when next written; forgetting their epoch is enough.
  for (auto& c : counters_) c.epoch = -1;
  for (auto& l : latency_) l.epoch = -1;
}

uint64_t BreakerMetrics::total(int64_t now_ms) const {
  int64_t now = epoch_of(now_ms, kCounterSlotMs);
  uint64_t sum = 0;
  for (const auto& c : counters_) sum += is_live(c.epoch, now, kCounterSlots) ? c.total : 0;
  return sum;
}

double BreakerMetrics::network_error_ratio(int64_t now_ms) const {
  int64_t now = epoch_of(now_ms, kCounterSlotMs);
  uint64_t total = 0, errors = 0;
  for (const auto& c : counters_) {
    if (!is_live(c.epoch, now, kCounterSlots)) continue;
    total += c.total;
    errors += c.network_errors;
  }
  return total == 0 ? 0 : double(errors) / double(total);
}

uint64_t BreakerMetrics::code_count(int64_t now_ms, int from, int to) const {
  if (from >= to) return 0;
  size_t classes = code_bounds_.size() + 1;
  size_t first = code_class(from), last = code_class(to - 1);
  int64_t now = epoch_of(now_ms, kCounterSlotMs);
  uint64_t sum = 0;
  for (size_t s = 0; s < kCounterSlots; ++s) {
    if (!is_live(counters_[s].epoch, now, kCounterSlots)) continue;
    const uint32_t* codes = code_counts_.data() + s * classes;
    for (size_t k = first; k <= last; ++k) sum += codes[k];
  }
  return sum;
}

double BreakerMetrics::response_code_ratio(int64_t now_ms, int from, int to, int divided_by_from,
                                           int divided_by_to) const {
  uint64_t divisor = code_count(now_ms, divided_by_from, divided_by_to);
  return divisor == 0 ? 0 : double(code_count(now_ms, from, to)) / double(divisor);
}

int64_t BreakerMetrics::latency_at_quantile_us(int64_t now_ms, double quantile) const {
  int64_t now = epoch_of(now_ms, kLatencySlotMs);
  uint64_t total = 0;
  for (const auto& l : latency_) total += is_live(l.epoch, now, kLatencySlots) ? l.total : 0;
  if (total == 0) return 0;
  // HdrHistogram: the first value whose cumulative count reaches round(q% of total), at least 1.
  double q = std::clamp(std::isnan(quantile) ? 0.0 : quantile, 0.0, 100.0);
  uint64_t target = std::max<uint64_t>(1, uint64_t(q / 100 * double(total) + 0.5));
  uint64_t seen = 0;
  for (size_t i = 0; i < kLatencyBuckets; ++i) {
    for (const auto& l : latency_) seen += is_live(l.epoch, now, kLatencySlots) ? l.counts[i] : 0;
    if (seen >= target) return bucket_midpoint_us(i);
  }
  return kMaxLatencyUs;
}

// ---- BreakerExpression

Result<BreakerExpression> BreakerExpression::parse(std::string_view text) {
  ExpressionParser parser(text);
  auto root = parser.parse();
  if (!root) return root.error();
  BreakerExpression e;
  e.root_ = std::move(*root);
  collect_codes(e.root_, e.code_bounds_);
  std::sort(e.code_bounds_.begin(), e.code_bounds_.end());
  e.code_bounds_.erase(std::unique(e.code_bounds_.begin(), e.code_bounds_.end()), e.code_bounds_.end());
  return e;
}

bool BreakerExpression::evaluate(const BreakerMetrics& metrics, int64_t now_ms) const {
  return holds(root_, metrics, now_ms);
}

std::string BreakerExpression::to_string() const {
  std::string out;
  render(root_, out);
  return out;
}

// ---- CircuitBreaker

CircuitBreaker::CircuitBreaker(BreakerExpression expression, CircuitBreakerOptions options)
    : expression_(std::move(expression)), options_(options), metrics_(expression_.code_bounds()) {}

bool CircuitBreaker::allow(int64_t now_ms) {
  switch (state_) {
    case State::kStandby:
      return true;
    case State::kTripped:
      if (now_ms < until_ms_) return false;
      state_ = State::kRecovering;
      recovery_start_ms_ = now_ms;
      until_ms_ = now_ms + options_.recovery_duration.count();
      allowed_ = denied_ = 0;
      [[fallthrough]];
    case State::kRecovering:
      break;
  }
  if (now_ms >= until_ms_) {
    state_ = State::kStandby;
    return true;
  }
  // oxy's ratio controller: pass this request if the share passed so far, counting it, stays
  // below the target. The target reaches 0.5 at the end: by then as many were passed as denied,
  // which under steady traffic means the share passed at each moment grew linearly from 0 to 1.
  double target = 0.5 * double(now_ms - recovery_start_ms_) / double(options_.recovery_duration.count());
  if (double(allowed_ + 1) / double(allowed_ + denied_ + 1) < target) {
    ++allowed_;
    return true;
  }
  ++denied_;
  return false;
}

void CircuitBreaker::record(int64_t now_ms, int status, bool network_error, int64_t latency_us) {
  metrics_.record(now_ms, status, network_error, latency_us);
  if (now_ms < next_check_ms_) return;
  next_check_ms_ = now_ms + options_.check_period.count();
  // An exchange let through before the trip may finish while Tripped: it counts, but cannot re-trip.
  if (state_ == State::kTripped || !expression_.evaluate(metrics_, now_ms)) return;
  state_ = State::kTripped;
  until_ms_ = now_ms + options_.fallback_duration.count();
  metrics_.reset();
}

std::string_view to_string(CircuitBreaker::State state) {
  switch (state) {
    case CircuitBreaker::State::kStandby: return "standby";
    case CircuitBreaker::State::kTripped: return "tripped";
    case CircuitBreaker::State::kRecovering: return "recovering";
  }
  return "unknown";
}

}  // namespace berth::proxy::middleware
