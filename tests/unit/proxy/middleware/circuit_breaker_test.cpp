// Unit tests for circuit_breaker.h: the expression language (shapes, numbers, errors with columns,
// malformed input), the rolling metrics, and the breaker's state machine under an injected clock.
#include "proxy/middleware/circuit_breaker.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace berth::proxy::middleware {
namespace {

using namespace std::chrono_literals;
using State = CircuitBreaker::State;

::testing::AssertionResult contains(const std::string& text, std::string_view part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

// The canonical rendering, or "error: column N: message".
std::string shape(std::string_view text) {
  auto e = BreakerExpression::parse(text);
  if (!e) return "error: " + e.error().to_string();
  return e->to_string();
}

BreakerExpression expr(std::string_view text) {
  auto e = BreakerExpression::parse(text);
  EXPECT_TRUE(e.ok()) << text << ": " << (e ? "" : e.error().to_string());
  return e ? *e : *BreakerExpression::parse("NetworkErrorRatio() > 2");
}

// ---- parsing

TEST(BreakerExpression, ParsesEachFunction) {
  EXPECT_EQ(shape("NetworkErrorRatio() > 0.5"), "NetworkErrorRatio() > 0.5");
  EXPECT_EQ(shape("ResponseCodeRatio(500, 600, 0, 600) > 0.25"), "ResponseCodeRatio(500, 600, 0, 600) > 0.25");
  EXPECT_EQ(shape("LatencyAtQuantileMS(50.0) > 100"), "LatencyAtQuantileMS(50) > 100");
}

TEST(BreakerExpression, AcceptsEveryComparison) {
  for (std::string op : {"<", "<=", ">", ">=", "==", "!="}) {
    EXPECT_EQ(shape("NetworkErrorRatio()" + op + "1"), "NetworkErrorRatio() " + op + " 1");
  }
}

TEST(BreakerExpression, AndBindsTighterThanOr) {
  EXPECT_EQ(shape("NetworkErrorRatio() > 0.5 || NetworkErrorRatio() < 0.1 && LatencyAtQuantileMS(99) > 20"),
            "(NetworkErrorRatio() > 0.5 || (NetworkErrorRatio() < 0.1 && LatencyAtQuantileMS(99) > 20))");
  EXPECT_EQ(shape("NetworkErrorRatio() > 1 && NetworkErrorRatio() > 2 || NetworkErrorRatio() > 3 && NetworkErrorRatio() > 4"),
            "((NetworkErrorRatio() > 1 && NetworkErrorRatio() > 2) || (NetworkErrorRatio() > 3 && NetworkErrorRatio() > 4))");
}

TEST(BreakerExpression, ChainsOfOneOperatorStayFlat) {
  EXPECT_EQ(shape("NetworkErrorRatio() > 1 || NetworkErrorRatio() > 2 || NetworkErrorRatio() > 3"),
            "(NetworkErrorRatio() > 1 || NetworkErrorRatio() > 2 || NetworkErrorRatio() > 3)");
}

TEST(BreakerExpression, ParenthesesGroup) {
  EXPECT_EQ(shape("(NetworkErrorRatio() > 0.5 || NetworkErrorRatio() < 0.1) && LatencyAtQuantileMS(99) > 20"),
            "((NetworkErrorRatio() > 0.5 || NetworkErrorRatio() < 0.1) && LatencyAtQuantileMS(99) > 20)");
  EXPECT_EQ(shape("((NetworkErrorRatio() > 0.5))"), "NetworkErrorRatio() > 0.5");
}

TEST(BreakerExpression, ToleratesAnyWhitespaceOrNone) {
  std::string want = "(NetworkErrorRatio() > 0.5 && ResponseCodeRatio(500, 600, 0, 600) >= 0.3)";
  EXPECT_EQ(shape("NetworkErrorRatio()>0.5&&ResponseCodeRatio(500,600,0,600)>=0.3"), want);
  EXPECT_EQ(shape(" \t( NetworkErrorRatio ( ) >\n0.5 )\r\n&&  ResponseCodeRatio( 500 ,600 , 0,600 )  >=  0.3  "),
            want);
}

TEST(BreakerExpression, ReadsGoDecimalNumbers) {
  EXPECT_EQ(shape("NetworkErrorRatio() > .5"), "NetworkErrorRatio() > 0.5");
  EXPECT_EQ(shape("NetworkErrorRatio() > 5."), "NetworkErrorRatio() > 5");
  EXPECT_EQ(shape("NetworkErrorRatio() > 50"), "NetworkErrorRatio() > 50");
  EXPECT_EQ(shape("NetworkErrorRatio() > 1e2"), "NetworkErrorRatio() > 100");
  EXPECT_EQ(shape("NetworkErrorRatio() > 2.5E-1"), "NetworkErrorRatio() > 0.25");
  EXPECT_EQ(shape("LatencyAtQuantileMS(99.9) > 1e+3"), "LatencyAtQuantileMS(99.9) > 1000");
  EXPECT_EQ(shape("ResponseCodeRatio(5e2, 6e2, 0, 6e2) > 0"), "ResponseCodeRatio(500, 600, 0, 600) > 0");
}

TEST(BreakerExpression, CollectsTheStatusCodesItNames) {
  auto e = expr("ResponseCodeRatio(500, 600, 0, 600) > 0.5 || ResponseCodeRatio(429, 430, 200, 300) > 1");
  EXPECT_EQ(e.code_bounds(), (std::vector<int>{0, 200, 300, 429, 430, 500, 600}));
  EXPECT_TRUE(expr("NetworkErrorRatio() > 0.5").code_bounds().empty());
}

// ---- errors

TEST(BreakerExpression, ErrorsSayTheColumnAndWhatWasExpected) {
  struct Case {
    std::string_view text;
    std::string_view where;
    std::string_view message;
  };
  const Case cases[] = {
      {"", "column 1", "unexpected end of expression, expected a function"},
      {"   ", "column 4", "unexpected end of expression"},
      {"> 0.5", "column 1", "expected a function such as NetworkErrorRatio()"},
      {"NetworkErrorRate() > 0.5", "column 1", "unknown function \"NetworkErrorRate\""},
      {"networkErrorRatio() > 0.5", "column 1", "unknown function"},
      {"NetworkErrorRatio > 0.5", "column 19", "expected \"(\" after NetworkErrorRatio"},
      {"NetworkErrorRatio(", "column 19", "NetworkErrorRatio takes no arguments"},
      {"NetworkErrorRatio(1) > 0.5", "column 19", "NetworkErrorRatio takes no arguments"},
      {"NetworkErrorRatio()", "column 20", "expected a comparison (<, <=, >, >=, ==, !=) after NetworkErrorRatio(...)"},
      {"NetworkErrorRatio() = 0.5", "column 21", "expected a comparison"},
      {"NetworkErrorRatio() =< 0.5", "column 21", "expected a comparison"},
      {"NetworkErrorRatio() >", "column 22", "unexpected end of expression, expected a number"},
      {"NetworkErrorRatio() > x", "column 23", "expected a number"},
      {"NetworkErrorRatio() > -0.5", "column 23", "expected a number"},
      {"NetworkErrorRatio() > 1e999", "column 23", "number out of range"},
      {"NetworkErrorRatio() > 0.5 &", "column 27", "expected \"&&\", \"||\" or the end of the expression"},
      {"NetworkErrorRatio() > 0.5 and LatencyAtQuantileMS(50) > 1", "column 27", "expected \"&&\", \"||\" or the end"},
      {"NetworkErrorRatio() > 0.5x", "column 26", "expected \"&&\", \"||\" or the end"},
      {"NetworkErrorRatio() > 0.5 &&", "column 29", "unexpected end of expression, expected a function"},
      {"NetworkErrorRatio() > 0.5 || || NetworkErrorRatio() > 1", "column 30", "expected a function"},
      {"(NetworkErrorRatio() > 0.5", "column 27", "expected \"&&\", \"||\" or \")\""},
      {"NetworkErrorRatio() > 0.5)", "column 26", "expected \"&&\", \"||\" or the end"},
      {"()", "column 2", "expected a function"},
      {"ResponseCodeRatio(500, 600) > 0.5", "column 27", "ResponseCodeRatio takes 4 arguments (from, to, dividedByFrom, dividedByTo)"},
      {"ResponseCodeRatio(500, 600, 0, 600, 1) > 0.5", "column 37", "ResponseCodeRatio takes 4 arguments"},
      {"ResponseCodeRatio(500 600, 0, 600) > 0.5", "column 23", "expected \",\" or \")\" in the arguments of ResponseCodeRatio"},
      {"ResponseCodeRatio(500.5, 600, 0, 600) > 0.5", "column 19", "argument 1 of ResponseCodeRatio must be a status code"},
      {"ResponseCodeRatio(500, 1001, 0, 600) > 0.5", "column 24", "argument 2 of ResponseCodeRatio must be a status code"},
      {"ResponseCodeRatio(`500`, 600, 0, 600) > 0.5", "column 19", "expected a number"},
      {"LatencyAtQuantileMS() > 100", "column 21", "LatencyAtQuantileMS takes 1 argument (a percentile such as 50.0)"},
      {"LatencyAtQuantileMS(150) > 100", "column 21", "the quantile must be a percentile between 0 and 100"},
      {"LatencyAtQuantileMS(50.0 > 100", "column 26", "expected \",\" or \")\""},
      {"0.5 < NetworkErrorRatio()", "column 1", "expected a function such as NetworkErrorRatio() (the number goes right"},
      {"!(NetworkErrorRatio() > 0.5)", "column 1", "expected a function"},
  };
  for (const auto& c : cases) {
    auto r = BreakerExpression::parse(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.error().where, c.where) << c.text << " -> " << r.error().message;
    EXPECT_TRUE(contains(r.error().message, c.message)) << c.text;
  }
}

TEST(BreakerExpression, RejectsDeepNestingInsteadOfRecursing) {
  std::string deep(100'000, '(');
  auto r = BreakerExpression::parse(deep + "NetworkErrorRatio() > 1");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message, "nests deeper than 32 levels"));
  std::string ok = std::string(31, '(') + "NetworkErrorRatio() > 1" + std::string(31, ')');
  EXPECT_TRUE(BreakerExpression::parse(ok).ok());
}

TEST(BreakerExpression, LongChainsParseAndEvaluateWithoutDeepRecursion) {
  std::string text = "NetworkErrorRatio() > 2";
  for (int i = 0; i < 20'000; ++i) text += i % 2 ? " || NetworkErrorRatio() > 2" : " && NetworkErrorRatio() < 3";
  auto e = BreakerExpression::parse(text);
  ASSERT_TRUE(e.ok());
  BreakerMetrics m;
  EXPECT_FALSE(e->evaluate(m, 0));
}

TEST(BreakerExpression, NeverCrashesOnMalformedInput) {
  const std::vector<std::string> seeds = {
      "NetworkErrorRatio() > 0.5",
      "ResponseCodeRatio(500, 600, 0, 600) > 0.25 || LatencyAtQuantileMS(50.0) > 100",
      "(NetworkErrorRatio() >= .5 && (LatencyAtQuantileMS(99.9) != 1e3))",
  };
  const std::vector<std::string> fixed = {
      "(", ")", "((", "))", "&&", "||", "&& ||", "NetworkErrorRatio", "NetworkErrorRatio(", "NetworkErrorRatio()>",
      "NetworkErrorRatio()>>1", "NetworkErrorRatio()<>1", "NetworkErrorRatio()>1e", "NetworkErrorRatio()>1e+",
      "NetworkErrorRatio()>1.2.3", "NetworkErrorRatio()>.", "NetworkErrorRatio()>..5", "ResponseCodeRatio(,,,)>1",
      "ResponseCodeRatio(1,2,3,)>1", "ResponseCodeRatio(1e400,2,3,4)>1", "ResponseCodeRatio(-1,2,3,4)>1",
      "LatencyAtQuantileMS(nan)>1", "LatencyAtQuantileMS(inf)>1", "LatencyAtQuantileMS(1e-400)>1",
      std::string("NetworkErrorRatio()\0> 1", 23), "\xff\xfe", "NetworkErrorRatio() > 0.5 &&& NetworkErrorRatio() > 1",
      "NetworkErrorRatio() > 0.5 ||| NetworkErrorRatio() > 1", std::string(5000, ')'), std::string(5000, '&'),
  };
  for (const auto& s : fixed) {
    auto r = BreakerExpression::parse(s);
    if (!r) {
      EXPECT_FALSE(r.error().message.empty()) << s;
    }
  }
  // Random truncations and byte flips of valid expressions.
  std::mt19937 rng(42);
  const std::string alphabet = "()<>=!&|., eE+-0123456789NetworkErrorRatioLatencyAtQuantileMS\t\"`'";
  BreakerMetrics m({0, 200, 500, 600});
  for (int i = 0; i < 20'000; ++i) {
    std::string s = seeds[rng() % seeds.size()];
    int edits = 1 + int(rng() % 4);
    for (int k = 0; k < edits && !s.empty(); ++k) {
      size_t at = rng() % s.size();
      switch (rng() % 4) {
        case 0: s[at] = alphabet[rng() % alphabet.size()]; break;
        case 1: s.erase(at, 1 + rng() % 3); break;
        case 2: s.insert(at, 1, alphabet[rng() % alphabet.size()]); break;
        case 3: s.resize(at); break;
      }
    }
    auto r = BreakerExpression::parse(s);
    if (r) {
      (void)r->evaluate(m, 0);
      EXPECT_EQ(shape(r->to_string()), r->to_string()) << s;  // the rendering parses back to itself
    } else {
      EXPECT_EQ(r.error().where.rfind("column ", 0), 0u) << s;
    }
  }
}

// ---- metrics

TEST(BreakerMetrics, ReadsZeroWhenEmpty) {
  BreakerMetrics m({0, 500, 600});
  EXPECT_EQ(m.total(0), 0u);
  EXPECT_EQ(m.network_error_ratio(0), 0);
  EXPECT_EQ(m.response_code_ratio(0, 500, 600, 0, 600), 0);
  EXPECT_EQ(m.latency_at_quantile_us(0, 50), 0);
}

TEST(BreakerMetrics, NetworkErrorRatioCountsFlaggedExchanges) {
  BreakerMetrics m;
  m.record(0, 200, false, 1000);
  m.record(1, 502, true, 1000);
  m.record(2, 502, false, 1000);  // the backend's own 502 is not a network error
  m.record(3, 504, true, 1000);
  EXPECT_EQ(m.total(3), 4u);
  EXPECT_DOUBLE_EQ(m.network_error_ratio(3), 0.5);
}

TEST(BreakerMetrics, ResponseCodeRatioDividesHalfOpenRanges) {
  BreakerMetrics m({0, 200, 300, 500, 600});
  for (int s : {200, 204, 299, 300, 404, 500, 503, 599, 600}) m.record(0, s, false, 0);
  EXPECT_EQ(m.code_count(0, 200, 300), 3u);
  EXPECT_EQ(m.code_count(0, 500, 600), 3u);
  EXPECT_EQ(m.code_count(0, 0, 600), 8u);
  EXPECT_EQ(m.code_count(0, 600, 500), 0u);
  EXPECT_DOUBLE_EQ(m.response_code_ratio(0, 500, 600, 0, 600), 3.0 / 8);
  EXPECT_DOUBLE_EQ(m.response_code_ratio(0, 500, 600, 200, 300), 1.0);
  EXPECT_EQ(m.response_code_ratio(0, 500, 600, 600, 500), 0);  // empty divisor
}

TEST(BreakerMetrics, CountersForgetAfterTenSecondSlots) {
  BreakerMetrics m({0, 600});
  m.record(500, 502, true, 0);      // slot 0
  m.record(9'500, 200, false, 0);   // slot 9
  EXPECT_EQ(m.total(9'999), 2u);
  EXPECT_DOUBLE_EQ(m.network_error_ratio(9'999), 0.5);
  EXPECT_EQ(m.total(10'000), 1u);   // slot 0 left the window
  EXPECT_EQ(m.network_error_ratio(10'000), 0);
  EXPECT_EQ(m.code_count(10'000, 0, 600), 1u);
  m.record(10'200, 200, false, 0);  // reuses slot 0's storage
  EXPECT_EQ(m.total(10'200), 2u);
  EXPECT_EQ(m.total(40'000), 0u);   // a long silence forgets everything
}

TEST(BreakerMetrics, LatencyWindowCoversFiftyToSixtySeconds) {
  BreakerMetrics m;
  m.record(9'999, 200, false, 300'000);
  m.record(10'000, 200, false, 100'000);
  EXPECT_NEAR(m.latency_at_quantile_us(59'999, 100), 300'000, 300'000 * 0.032);
  EXPECT_NEAR(m.latency_at_quantile_us(60'000, 100), 100'000, 100'000 * 0.032);
  EXPECT_EQ(m.latency_at_quantile_us(70'000, 100), 0);
}

TEST(BreakerMetrics, LatencyQuantilesFollowHdrHistogramRounding) {
  BreakerMetrics m;
  for (int i = 1; i <= 100; ++i) m.record(0, 200, false, i * 10'000);  // 10 ms .. 1000 ms
  auto ms = [&](double q) { return double(m.latency_at_quantile_us(0, q)) / 1000; };
  EXPECT_NEAR(ms(50), 500, 500 * 0.032);
  EXPECT_NEAR(ms(99), 990, 990 * 0.032);
  EXPECT_NEAR(ms(100), 1000, 1000 * 0.032);
  EXPECT_NEAR(ms(0), 10, 10 * 0.032);      // at least one exchange: the minimum
  EXPECT_NEAR(ms(250), 1000, 1000 * 0.032);  // clamped to 100
  EXPECT_NEAR(ms(-1), 10, 10 * 0.032);
}

TEST(BreakerMetrics, LatencyPrecisionIsAsDocumented) {
  for (int64_t us = 0; us < BreakerMetrics::kMaxLatencyUs; us = us * 21 / 20 + 7) {
    BreakerMetrics m;
    m.record(0, 200, false, us);
    int64_t got = m.latency_at_quantile_us(0, 50);
    EXPECT_LE(std::abs(double(got - us)), double(us) * 0.032 + 32) << us;
  }
  BreakerMetrics m;
  m.record(0, 200, false, 3'600'000'000);  // an hour
  m.record(0, 200, false, -5);             // a clock glitch counts as 0
  EXPECT_EQ(m.latency_at_quantile_us(0, 100), BreakerMetrics::kMaxLatencyUs);
  EXPECT_LT(m.latency_at_quantile_us(0, 50), 64);
}

TEST(BreakerMetrics, ResetForgetsEverything) {
  BreakerMetrics m({0, 600});
  m.record(0, 502, true, 5'000);
  m.reset();
  EXPECT_EQ(m.total(0), 0u);
  EXPECT_EQ(m.code_count(0, 0, 600), 0u);
  EXPECT_EQ(m.latency_at_quantile_us(0, 50), 0);
  m.record(1, 200, false, 5'000);
  EXPECT_EQ(m.total(1), 1u);
  EXPECT_EQ(m.network_error_ratio(1), 0);
}

// ---- evaluation

TEST(BreakerExpression, EvaluatesAgainstRecordedMetrics) {
  auto e = expr("NetworkErrorRatio() > 0.3 || ResponseCodeRatio(500, 600, 0, 600) > 0.5 && LatencyAtQuantileMS(50) >= 200");
  BreakerMetrics m(e.code_bounds());
  for (int i = 0; i < 8; ++i) m.record(0, 200, false, 10'000);
  m.record(0, 502, true, 1'000);
  m.record(0, 502, true, 1'000);
  EXPECT_FALSE(e.evaluate(m, 0));  // 0.2 network errors, 0.2 5xx
  m.record(0, 504, true, 1'000);
  m.record(0, 504, true, 1'000);
  EXPECT_TRUE(e.evaluate(m, 0));  // 4/12 network errors
  BreakerMetrics slow(e.code_bounds());
  for (int i = 0; i < 6; ++i) slow.record(0, 500, false, 300'000);
  for (int i = 0; i < 4; ++i) slow.record(0, 200, false, 1'000);
  EXPECT_TRUE(e.evaluate(slow, 0));  // 0.6 5xx and a median of ~300 ms
  BreakerMetrics fast(e.code_bounds());
  for (int i = 0; i < 6; ++i) fast.record(0, 500, false, 1'000);
  for (int i = 0; i < 4; ++i) fast.record(0, 200, false, 1'000);
  EXPECT_FALSE(e.evaluate(fast, 0));  // 5xx but fast: && needs both
}

TEST(BreakerExpression, LatencyIsComparedInWholeMilliseconds) {
  BreakerMetrics m;
  m.record(0, 200, false, 100'500);  // 100.5 ms (bucket midpoint 100.35 ms) reads as 100
  EXPECT_TRUE(expr("LatencyAtQuantileMS(50) == 100").evaluate(m, 0));
  EXPECT_FALSE(expr("LatencyAtQuantileMS(50) > 100").evaluate(m, 0));
  EXPECT_TRUE(expr("LatencyAtQuantileMS(50.0) > 99.5").evaluate(m, 0));
}

TEST(BreakerExpression, EmptyMetricsReadAsZero) {
  BreakerMetrics m({0, 500, 600});
  EXPECT_TRUE(expr("NetworkErrorRatio() == 0 && ResponseCodeRatio(500, 600, 0, 600) <= 0 && LatencyAtQuantileMS(99) < 1")
                  .evaluate(m, 0));
}

// ---- the state machine

CircuitBreakerOptions options(Duration check = 100ms, Duration fallback = 10s, Duration recovery = 10s) {
  CircuitBreakerOptions o;
  o.check_period = check;
  o.fallback_duration = fallback;
  o.recovery_duration = recovery;
  return o;
}

TEST(CircuitBreaker, DefaultsAreTraefiks) {
  CircuitBreakerOptions o;
  EXPECT_EQ(o.check_period, 100ms);
  EXPECT_EQ(o.fallback_duration, 10s);
  EXPECT_EQ(o.recovery_duration, 10s);
  EXPECT_EQ(o.response_code, 503);
  CircuitBreakerOptions teapot;
  teapot.response_code = 418;
  EXPECT_EQ(CircuitBreaker(expr("NetworkErrorRatio() > 0.5"), teapot).response_code(), 418);
}

TEST(CircuitBreaker, StandbyLetsEverythingThroughWhileHealthy) {
  CircuitBreaker cb(expr("NetworkErrorRatio() > 0.5"), options());
  for (int64_t t = 0; t < 30'000; t += 10) {
    ASSERT_TRUE(cb.allow(t));
    cb.record(t, t % 30 == 10 ? 502 : 200, t % 30 == 10, 2'000);  // a third are network errors
  }
  EXPECT_EQ(cb.state(), State::kStandby);
  EXPECT_EQ(to_string(cb.state()), "standby");
}

TEST(CircuitBreaker, TripsOnTheFirstCheckThatHolds) {
  CircuitBreaker cb(expr("NetworkErrorRatio() > 0.5"), options());
  ASSERT_TRUE(cb.allow(1'000));
  cb.record(1'000, 502, true, 1'000);  // like oxy: the first exchange is checked at once
  EXPECT_EQ(cb.state(), State::kTripped);
  EXPECT_EQ(to_string(cb.state()), "tripped");
  EXPECT_EQ(cb.metrics().total(1'000), 0u);  // tripping forgets the metrics
  EXPECT_FALSE(cb.allow(1'001));
}

TEST(CircuitBreaker, ChecksAtMostOncePerCheckPeriod) {
  CircuitBreaker cb(expr("NetworkErrorRatio() > 0.5"), options(100ms));
  cb.record(0, 200, false, 1'000);  // checked: healthy; next check at 100
  for (int64_t t = 10; t < 100; t += 10) {
    cb.record(t, 502, true, 1'000);
    ASSERT_EQ(cb.state(), State::kStandby) << t;  // 9/10 errors, but not checked yet
  }
  cb.record(100, 502, true, 1'000);
  EXPECT_EQ(cb.state(), State::kTripped);
}

TEST(CircuitBreaker, StaysTrippedForFallbackDuration) {
  CircuitBreaker cb(expr("ResponseCodeRatio(500, 600, 0, 600) > 0.5"), options(100ms, 5s, 10s));
  cb.record(0, 500, false, 1'000);
  ASSERT_EQ(cb.state(), State::kTripped);
  for (int64_t t = 0; t < 5'000; t += 7) ASSERT_FALSE(cb.allow(t)) << t;
  // Exchanges let through before the trip may still finish: they count but cannot re-trip.
  cb.record(200, 500, false, 1'000);
  EXPECT_EQ(cb.state(), State::kTripped);
  EXPECT_FALSE(cb.allow(5'000));  // recovery starts with a share of 0
  EXPECT_EQ(cb.state(), State::kRecovering);
  EXPECT_EQ(to_string(cb.state()), "recovering");
}

TEST(CircuitBreaker, RecoveringLetsALinearlyGrowingShareThrough) {
  CircuitBreaker cb(expr("NetworkErrorRatio() > 0.5"), options(100ms, 10s, 10s));
  cb.record(0, 502, true, 1'000);
  ASSERT_EQ(cb.state(), State::kTripped);
  // One request every 10 ms from the end of the fallback: 100 per second of recovery.
  std::vector<int> passed(10, 0);
  int total = 0;
  for (int64_t t = 10'000; t < 20'000; t += 10) {
    if (cb.allow(t)) {
      ++passed[size_t((t - 10'000) / 1'000)];
      ++total;
      cb.record(t, 200, false, 1'000);
    }
    ASSERT_EQ(cb.state(), State::kRecovering) << t;
  }
  // Second k of recovery passes ~(k + 0.5) * 10% of its requests.
  for (size_t k = 0; k < passed.size(); ++k) EXPECT_NEAR(passed[k], 10 * k + 5, 6) << "second " << k;
  EXPECT_NEAR(total, 500, 5);  // by the end as many were passed as answered locally
  EXPECT_TRUE(cb.allow(20'000));
  EXPECT_EQ(cb.state(), State::kStandby);
  for (int64_t t = 20'000; t < 21'000; t += 10) EXPECT_TRUE(cb.allow(t));
}

TEST(CircuitBreaker, TripsAgainWhenTheExpressionHoldsWhileRecovering) {
  CircuitBreaker cb(expr("NetworkErrorRatio() > 0.5"), options(100ms, 10s, 10s));
  cb.record(0, 502, true, 1'000);
  int64_t t = 10'000;
  while (!cb.allow(t)) t += 10;  // the first request let through
  EXPECT_EQ(cb.state(), State::kRecovering);
  EXPECT_GT(t, 10'000);
  cb.record(t, 504, true, 1'000);  // still failing
  EXPECT_EQ(cb.state(), State::kTripped);
  EXPECT_FALSE(cb.allow(t + 9'999));
  EXPECT_FALSE(cb.allow(t + 10'000));  // a fresh recovery, starting at 0 again
  EXPECT_EQ(cb.state(), State::kRecovering);
}

TEST(CircuitBreaker, ReturnsToStandbyKeepingWhatRecoveryMeasured) {
  CircuitBreaker cb(expr("NetworkErrorRatio() > 0.5"), options(100ms, 1s, 2s));
  cb.record(0, 502, true, 1'000);
  for (int64_t t = 1'000; t < 3'000; t += 10) {
    if (cb.allow(t)) cb.record(t, 200, false, 1'000);
  }
  EXPECT_EQ(cb.state(), State::kRecovering);
  EXPECT_TRUE(cb.allow(3'000));
  EXPECT_EQ(cb.state(), State::kStandby);
  EXPECT_GT(cb.metrics().total(3'000), 0u);
  // Back in Standby the expression is watched again, over metrics that include recovery's successes:
  // one failure does not trip it as it would on fresh metrics.
  cb.record(3'000, 502, true, 1'000);
  EXPECT_EQ(cb.state(), State::kStandby);
  int64_t t = 3'010;
  for (; cb.state() == State::kStandby && t < 6'000; t += 10) cb.record(t, 502, true, 1'000);
  EXPECT_EQ(cb.state(), State::kTripped);
  EXPECT_GT(t, 4'000);
}

TEST(CircuitBreaker, ZeroDurationsSkipTheirStates) {
  CircuitBreaker cb(expr("NetworkErrorRatio() > 0.5"), options(0ms, 0s, 0s));
  cb.record(5, 502, true, 1'000);
  EXPECT_EQ(cb.state(), State::kTripped);
  EXPECT_TRUE(cb.allow(5));  // no fallback, no recovery: straight back to Standby
  EXPECT_EQ(cb.state(), State::kStandby);
  cb.record(5, 502, true, 1'000);  // a zero checkPeriod checks every exchange
  EXPECT_EQ(cb.state(), State::kTripped);
}

TEST(CircuitBreaker, TripsOnLatency) {
  CircuitBreaker cb(expr("LatencyAtQuantileMS(50.0) > 100"), options());
  cb.record(0, 200, false, 20'000);
  for (int64_t t = 100; t <= 1'000; t += 100) cb.record(t, 200, false, 20'000);
  EXPECT_EQ(cb.state(), State::kStandby);
  for (int64_t t = 1'100; t <= 3'000 && cb.state() == State::kStandby; t += 100) cb.record(t, 200, false, 250'000);
  EXPECT_EQ(cb.state(), State::kTripped);
}

}  // namespace
}  // namespace berth::proxy::middleware
