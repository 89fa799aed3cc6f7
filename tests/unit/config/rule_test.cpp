// Unit tests for the Traefik rule parser: precedence, grouping, string literals and error positions.
#include "config/rule.h"

#include <gtest/gtest.h>

#include <string>

namespace berth::config {
namespace {

// Matches when `text` contains `part`; prints both on failure.
::testing::AssertionResult contains(const std::string& text, std::string_view part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

// Renders a tree as a fully parenthesised string so tests can state the expected shape in one line.
std::string render(const RuleNode& n) {
  switch (n.kind) {
    case RuleNode::Kind::kAnd:
      return std::string("(").append(render(*n.left)).append(" && ").append(render(*n.right)).append(")");
    case RuleNode::Kind::kOr:
      return std::string("(").append(render(*n.left)).append(" || ").append(render(*n.right)).append(")");
    case RuleNode::Kind::kNot:
      return std::string("!").append(render(*n.left));
    case RuleNode::Kind::kMatcher: {
      std::string out = n.matcher + "(";
      for (size_t i = 0; i < n.args.size(); ++i) out += (i ? "," : "") + n.args[i];
      return out + ")";
    }
  }
  return "?";
}

std::string shape(std::string_view rule) {
  auto r = parse_rule(rule);
  if (!r) return std::string("error: ").append(r.error().to_string());
  return render(**r);
}

Error error_of(std::string_view rule) {
  auto r = parse_rule(rule);
  EXPECT_FALSE(r.ok()) << "rule parsed: " << rule;
  return r ? Error{} : r.error();
}

// ---- structure -------------------------------------------------------------------------------

TEST(RuleParser, ParsesASingleMatcher) {
  auto r = parse_rule("Host(`example.com`)");
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ((*r)->kind, RuleNode::Kind::kMatcher);
  EXPECT_EQ((*r)->matcher, "Host");
  ASSERT_EQ((*r)->args.size(), 1u);
  EXPECT_EQ((*r)->args[0], "example.com");
  EXPECT_EQ((*r)->column, 1u);
}

TEST(RuleParser, ParsesSeveralArgumentsAndNone) {
  EXPECT_EQ(shape("Host(`a.com`, `b.com`)"), "Host(a.com,b.com)");
  EXPECT_EQ(shape("Foo()"), "Foo()");
  EXPECT_EQ(shape("  Host ( `a` ,\t`b` )  "), "Host(a,b)");
}

TEST(RuleParser, BindsAndTighterThanOr) {
  EXPECT_EQ(shape("Host(`a`) || Host(`b`) && Path(`/`)"), "(Host(a) || (Host(b) && Path(/)))");
  EXPECT_EQ(shape("Host(`a`) && Host(`b`) || Path(`/`)"), "((Host(a) && Host(b)) || Path(/))");
}

TEST(RuleParser, BindsNotTighterThanAnd) {
  EXPECT_EQ(shape("!Host(`a`) && Path(`/`)"), "(!Host(a) && Path(/))");
  EXPECT_EQ(shape("Path(`/`) || !Host(`a`) && Method(`GET`)"), "(Path(/) || (!Host(a) && Method(GET)))");
  EXPECT_EQ(shape("!!Host(`a`)"), "!!Host(a)");
}

TEST(RuleParser, AssociatesOperatorsToTheLeft) {
  EXPECT_EQ(shape("A(`1`) && B(`2`) && C(`3`)"), "((A(1) && B(2)) && C(3))");
  EXPECT_EQ(shape("A(`1`) || B(`2`) || C(`3`)"), "((A(1) || B(2)) || C(3))");
}

TEST(RuleParser, GroupsWithParentheses) {
  EXPECT_EQ(shape("(Host(`a`) || Host(`b`)) && Path(`/`)"), "((Host(a) || Host(b)) && Path(/))");
  EXPECT_EQ(shape("!(Host(`a`) || Host(`b`))"), "!(Host(a) || Host(b))");
  EXPECT_EQ(shape("((((Host(`a`)))))"), "Host(a)");
  EXPECT_EQ(shape("Host(`a`)&&(Path(`/x`)||Path(`/y`))"), "(Host(a) && (Path(/x) || Path(/y)))");
}

TEST(RuleParser, AcceptsNewlinesAndTabsBetweenTokens) {
  EXPECT_EQ(shape("Host(`a`)\n  &&\tPathPrefix(`/api`)"), "(Host(a) && PathPrefix(/api))");
}

TEST(RuleParser, RecordsMatcherAndNotColumns) {
  auto r = parse_rule("Host(`a`) && !Path(`/`)");
  ASSERT_TRUE(r.ok());
  const RuleNode& root = **r;
  ASSERT_EQ(root.kind, RuleNode::Kind::kAnd);
  EXPECT_EQ(root.left->column, 1u);
  ASSERT_EQ(root.right->kind, RuleNode::Kind::kNot);
  EXPECT_EQ(root.right->column, 14u);
  EXPECT_EQ(root.right->left->column, 15u);
}

// ---- string literals -------------------------------------------------------------------------

TEST(RuleParser, TakesBackQuotedValuesVerbatim) {
  auto r = parse_rule(R"(Path(`/a\d"b\n`))");
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ((*r)->args[0], R"(/a\d"b\n)");
}

TEST(RuleParser, UnescapesDoubleQuotedValues) {
  auto r = parse_rule(R"(Header("X-A", "q\"uo\\te\n\t\r"))");
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  ASSERT_EQ((*r)->args.size(), 2u);
  EXPECT_EQ((*r)->args[0], "X-A");
  EXPECT_EQ((*r)->args[1], "q\"uo\\te\n\t\r");
}

TEST(RuleParser, KeepsRegexEscapesInDoubleQuotes) {
  auto r = parse_rule(R"(PathRegexp("^/a\d+\.json$"))");
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ((*r)->args[0], R"(^/a\d+\.json$)");
}

TEST(RuleParser, KeepsOperatorsAndParenthesesInsideStrings) {
  EXPECT_EQ(shape("Path(`/a&&b||(c)`) && Host(\"x)y\")"), "(Path(/a&&b||(c)) && Host(x)y))");
}

TEST(RuleParser, AcceptsEmptyStrings) {
  auto r = parse_rule("Host(``)");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ((*r)->args.size(), 1u);
  EXPECT_EQ((*r)->args[0], "");
}

TEST(RuleParser, RejectsSingleQuotesWithAMessage) {
  Error e = error_of("Host('example.com')");
  EXPECT_EQ(e.where, "column 6");
  EXPECT_TRUE(contains(e.message, "single quotes"));
  EXPECT_TRUE(contains(e.message, "back quotes"));
}

TEST(RuleParser, RejectsUnterminatedStrings) {
  Error e = error_of("Host(`example.com)");
  EXPECT_EQ(e.where, "column 6");  // where the string opened
  EXPECT_TRUE(contains(e.message, "unterminated"));
  e = error_of("Host(`a`) && Path(\"/x\\\")");  // the escaped quote does not close it
  EXPECT_EQ(e.where, "column 19");
  EXPECT_TRUE(contains(e.message, "unterminated"));
}

TEST(RuleParser, RejectsUnquotedValues) {
  Error e = error_of("Host(example.com)");
  EXPECT_EQ(e.where, "column 6");
  EXPECT_TRUE(contains(e.message, "back quotes"));
}

// ---- errors and their columns ----------------------------------------------------------------

TEST(RuleParser, ReportsTheColumnOfAMissingClosingParenthesis) {
  Error e = error_of("(Host(`a`) || Host(`b`)");
  EXPECT_EQ(e.where, "column 24");
  EXPECT_TRUE(contains(e.message, "expected \")\""));
  e = error_of("(Host(`a`) Path(`/`)");
  EXPECT_EQ(e.where, "column 12");
  EXPECT_TRUE(contains(e.message, "expected \")\""));
}

TEST(RuleParser, ReportsAMissingArgumentSeparator) {
  Error e = error_of("Host(`a` `b`)");
  EXPECT_EQ(e.where, "column 10");
  EXPECT_TRUE(contains(e.message, "\",\" or \")\""));
  EXPECT_TRUE(contains(e.message, "Host"));
}

TEST(RuleParser, ReportsAMissingOpeningParenthesis) {
  Error e = error_of("Host `a`");
  EXPECT_EQ(e.where, "column 6");
  EXPECT_TRUE(contains(e.message, "expected \"(\" after Host"));
}

TEST(RuleParser, ReportsAMissingOperand) {
  Error e = error_of("Host(`a`) &&");
  EXPECT_EQ(e.where, "column 13");
  EXPECT_TRUE(contains(e.message, "unexpected end of rule"));
  e = error_of("Host(`a`) || && Path(`/`)");
  EXPECT_EQ(e.where, "column 14");
  EXPECT_TRUE(contains(e.message, "expected a matcher"));
  e = error_of("(Host(`a`) && )");
  EXPECT_EQ(e.where, "column 15");
}

TEST(RuleParser, RejectsAnEmptyRule) {
  Error e = error_of("");
  EXPECT_EQ(e.where, "column 1");
  EXPECT_TRUE(contains(e.message, "unexpected end of rule"));
  e = error_of("   ");
  EXPECT_EQ(e.where, "column 4");
}

TEST(RuleParser, RejectsTrailingGarbage) {
  Error e = error_of("Host(`a`) foo");
  EXPECT_EQ(e.where, "column 11");
  EXPECT_TRUE(contains(e.message, "\"&&\", \"||\" or the end of the rule"));
  e = error_of("Host(`a`))");
  EXPECT_EQ(e.where, "column 10");
  e = error_of("Host(`a`) & Path(`/`)");  // a single & is not an operator
  EXPECT_EQ(e.where, "column 11");
  e = error_of("Host(`a`) and Path(`/`)");
  EXPECT_EQ(e.where, "column 11");
}

// Rules can come from container labels: 100,000 nested "(" (or "!") must be an error, not a stack
// overflow. Runs in a child process so a crash would fail only this test.
TEST(RuleParserDeathTest, RejectsRulesNestedTooDeeplyWithoutCrashing) {
  constexpr size_t kDepth = 100'000;
  std::string parens = std::string(kDepth, '(') + "Host(`a`)" + std::string(kDepth, ')');
  EXPECT_EXIT(std::exit(parse_rule(parens).ok() ? 1 : 0), ::testing::ExitedWithCode(0), "");
  std::string nots = std::string(kDepth, '!') + "Host(`a`)";
  EXPECT_EXIT(std::exit(parse_rule(nots).ok() ? 1 : 0), ::testing::ExitedWithCode(0), "");
}

TEST(RuleParser, AcceptsModerateNesting) {
  std::string rule = std::string(60, '(') + "Host(`a`)" + std::string(60, ')');
  EXPECT_EQ(shape(rule), "Host(a)");
}

TEST(RuleParser, FormatsErrorsWithTheColumnFirst) {
  Error e = error_of("Host(`a`) foo");
  EXPECT_EQ(e.to_string().rfind("column 11: ", 0), 0u) << e.to_string();
}

}  // namespace
}  // namespace berth::config
