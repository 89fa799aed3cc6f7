// Unit tests for the text helpers: Go-style durations, lists, integers and case folding.
#include "base/text.h"

#include <gtest/gtest.h>

namespace berth {
namespace {

using namespace std::chrono_literals;

TEST(ParseDuration, ReadsCompoundGoDurations) {
  EXPECT_EQ(parse_duration("1m30s"), Duration(90s));
  EXPECT_EQ(parse_duration("1h2m3s"), Duration(1h + 2min + 3s));
  EXPECT_EQ(parse_duration("2h"), Duration(2h));
}

TEST(ParseDuration, ReadsSubSecondUnits) {
  EXPECT_EQ(parse_duration("250ms"), Duration(250ms));
  EXPECT_EQ(parse_duration("1500us"), Duration(2ms));  // rounded to the nearest millisecond
  EXPECT_EQ(parse_duration("1500µs"), Duration(2ms));
  EXPECT_EQ(parse_duration("2000000ns"), Duration(2ms));
  EXPECT_EQ(parse_duration("1s500ms"), Duration(1500ms));
}

TEST(ParseDuration, ReadsFractions) {
  EXPECT_EQ(parse_duration("1.5s"), Duration(1500ms));
  EXPECT_EQ(parse_duration("0.5h"), Duration(30min));
}

TEST(ParseDuration, ReadsABareNumberAsSeconds) {
  EXPECT_EQ(parse_duration("10"), Duration(10s));
  EXPECT_EQ(parse_duration("0"), Duration(0s));
  EXPECT_EQ(parse_duration(" 10 "), Duration(10s));
}

TEST(ParseDuration, RejectsMalformedInput) {
  for (std::string_view bad : {"", " ", "s", "10x", "1m30", "ms", "1..5s", "-1s", "1 s", "1S", "1,5s", "abc", "10s!"}) {
    EXPECT_FALSE(parse_duration(bad).has_value()) << "\"" << bad << "\"";
  }
}

TEST(ParseDuration, RejectsBareSecondsThatOverflow) {
  // uint64 max seconds must not wrap into a negative timeout; absurd values are refused.
  auto d = parse_duration("18446744073709551615");
  EXPECT_FALSE(d.has_value()) << "got " << d->count() << "ms";
  EXPECT_FALSE(parse_duration("9223372036854775807").has_value());
  EXPECT_FALSE(parse_duration("100000000000h").has_value());
}

TEST(FormatDuration, WritesTheShortestGoForm) {
  EXPECT_EQ(format_duration(0ms), "0s");
  EXPECT_EQ(format_duration(90s), "1m30s");
  EXPECT_EQ(format_duration(250ms), "250ms");
  EXPECT_EQ(format_duration(1500ms), "1500ms");
  EXPECT_EQ(format_duration(1h), "1h");
  EXPECT_EQ(format_duration(1h + 1s), "1h1s");
  EXPECT_EQ(format_duration(10s), "10s");
}

TEST(FormatDuration, RoundTripsThroughParseDuration) {
  for (Duration d : {Duration(0ms), Duration(1ms), Duration(250ms), Duration(1500ms), Duration(10s), Duration(90s),
                     Duration(1h), Duration(25h + 1min + 1s), Duration(3601001ms)}) {
    auto back = parse_duration(format_duration(d));
    ASSERT_TRUE(back.has_value()) << format_duration(d);
    EXPECT_EQ(*back, d) << format_duration(d);
  }
}

TEST(SplitList, TrimsPartsAndDropsEmptyOnes) {
  EXPECT_EQ(split_list("a, b ,,c ,"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(split_list(""), std::vector<std::string>{});
  EXPECT_EQ(split_list(" , ,"), std::vector<std::string>{});
  EXPECT_EQ(split_list("one"), std::vector<std::string>{"one"});
  EXPECT_EQ(split_list("a;b; c", ';'), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(split_list("\ta\t,b"), (std::vector<std::string>{"a", "b"}));
}

TEST(ParseUint, RequiresTheWholeText) {
  EXPECT_EQ(parse_uint("42"), 42u);
  EXPECT_EQ(parse_uint("0"), 0u);
  EXPECT_FALSE(parse_uint("").has_value());
  EXPECT_FALSE(parse_uint("42x").has_value());
  EXPECT_FALSE(parse_uint(" 42").has_value());
  EXPECT_FALSE(parse_uint("-1").has_value());
  EXPECT_FALSE(parse_uint("18446744073709551616").has_value());
}

TEST(Text, FoldsCaseAndTrims) {
  EXPECT_TRUE(iequals("Content-Length", "content-LENGTH"));
  EXPECT_FALSE(iequals("a", "ab"));
  EXPECT_EQ(to_lower("MiXeD-1"), "mixed-1");
  EXPECT_EQ(trim(" \t x y \t"), "x y");
  EXPECT_EQ(parse_bool("TRUE"), true);
  EXPECT_EQ(parse_bool("false"), false);
  EXPECT_FALSE(parse_bool("yes").has_value());
}

}  // namespace
}  // namespace berth
