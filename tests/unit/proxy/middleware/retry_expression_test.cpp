// Unit tests for buffering.retryExpression: the forms Traefik documents, precedence, negation, and
// errors with their column.
#include "proxy/middleware/retry_expression.h"

#include <gtest/gtest.h>

namespace berth::proxy::middleware {
namespace {

RetryExpression parse_ok(std::string_view text) {
  auto e = RetryExpression::parse(text);
  EXPECT_TRUE(e.ok()) << text << ": " << (e.ok() ? "" : e.error().to_string());
  return e.ok() ? std::move(*e) : *RetryExpression::parse("Attempts() < 0");
}

TEST(RetryExpression, TraefikDocumentedExampleRetriesNetworkErrorsOnce) {
  auto e = parse_ok("IsNetworkError() && Attempts() < 2");
  EXPECT_TRUE(e.should_retry(1, 0, true));
  EXPECT_FALSE(e.should_retry(2, 0, true));
  EXPECT_FALSE(e.should_retry(1, 502, false));
}

TEST(RetryExpression, ResponseCodesAndAndBindsTighterThanOr) {
  auto e = parse_ok("ResponseCode() == 503 || ResponseCode() >= 500 && Attempts() <= 1");
  EXPECT_TRUE(e.should_retry(5, 503, false));   // the first alternative alone
  EXPECT_TRUE(e.should_retry(1, 502, false));
  EXPECT_FALSE(e.should_retry(2, 502, false));
  EXPECT_FALSE(e.should_retry(1, 404, false));
}

TEST(RetryExpression, NegationAndParentheses) {
  auto e = parse_ok(" !( ResponseCode()<500 )&&(Attempts()!=3) ");
  EXPECT_TRUE(e.should_retry(1, 500, false));
  EXPECT_FALSE(e.should_retry(3, 500, false));
  EXPECT_FALSE(e.should_retry(1, 200, false));
}

TEST(RetryExpression, ErrorsSayTheColumnAndWhatWasExpected) {
  struct Case {
    std::string_view text, where, message;
  } cases[] = {
      {"", "column 1", "expected IsNetworkError()"},
      {"Attempts() <", "column 13", "expected an integer"},
      {"Attempts() 2", "column 12", "expected a comparison"},
      {"(IsNetworkError()", "column 18", "expected )"},
      {"IsNetworkError() Attempts()", "column 18", "expected && or ||"},
      {"Retries() < 2", "column 1", "expected IsNetworkError()"},
  };
  for (const auto& c : cases) {
    auto e = RetryExpression::parse(c.text);
    ASSERT_FALSE(e.ok()) << c.text;
    EXPECT_EQ(e.error().where, c.where) << c.text;
    EXPECT_NE(e.error().message.find(c.message), std::string::npos) << c.text << ": " << e.error().message;
  }
  EXPECT_FALSE(RetryExpression::parse(std::string(100, '(') + "IsNetworkError()" + std::string(100, ')')).ok());
}

}  // namespace
}  // namespace berth::proxy::middleware
