// buffering.retryExpression: Traefik's (oxy's) small language that decides, after each try of a
// buffered request, whether to send it again: `IsNetworkError() && Attempts() < 2`,
// `ResponseCode() == 502 || ResponseCode() == 503`, with &&, ||, !, parentheses and comparisons.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace berth::proxy::middleware {

class RetryExpression {
 public:
  /// Parses once per snapshot; errors name the column and what was expected. Thread: control.
  static Result<RetryExpression> parse(std::string_view text);

  /// Whether to try again after try number `attempts` (1 for the first) that ended with `status`
  /// (0 when no answer came) or a network error. Allocates nothing. Thread: any.
  bool should_retry(int attempts, int status, bool network_error) const;

  struct Node {
    enum class Kind : uint8_t { kOr, kAnd, kNot, kIsNetworkError, kCompare } kind = Kind::kCompare;
    enum class Function : uint8_t { kAttempts, kResponseCode } function{};
    enum class Op : uint8_t { kEq, kNe, kLt, kLe, kGt, kGe } op{};
    int64_t value = 0;
    std::vector<Node> operands;
  };

 private:
  Node root_;
};

}  // namespace berth::proxy::middleware
