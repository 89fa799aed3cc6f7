// libFuzzer target: the circuitBreaker expression parser and evaluator (expressions come from labels,
// so from anyone who can start a container). Must never crash or recurse without bound.
#include <cstdint>
#include <string_view>

#include "proxy/middleware/circuit_breaker.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto expression = berth::proxy::middleware::BreakerExpression::parse(text);
  if (expression) {
    berth::proxy::middleware::CircuitBreaker breaker(*expression);
    for (int64_t t = 0; t < 300; t += 50) {
      if (breaker.allow(t)) breaker.record(t, t % 100 ? 200 : 502, t % 100 == 0, t * 1000);
    }
    // The canonical rendering must parse again.
    if (!berth::proxy::middleware::BreakerExpression::parse(expression->to_string())) __builtin_trap();
  }
  return 0;
}
