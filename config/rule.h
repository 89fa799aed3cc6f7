// Parser for Traefik v3 router rules ("Host(`a.com`) && (PathPrefix(`/api`) || !Method(`POST`))").
// Produces a syntax tree; proxy/router/matcher compiles it once per snapshot.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace berth::config {

struct RuleNode {
  enum class Kind { kAnd, kOr, kNot, kMatcher };
  Kind kind = Kind::kMatcher;
  std::string matcher;                 ///< kMatcher: "Host", "PathPrefix", ... as written
  std::vector<std::string> args;       ///< kMatcher: unquoted arguments
  size_t column = 0;                   ///< 1-based column of the node's start in the rule
  std::unique_ptr<RuleNode> left;      ///< kAnd/kOr: left operand; kNot: operand
  std::unique_ptr<RuleNode> right;     ///< kAnd/kOr: right operand
};

/// Parses a rule with Go operator precedence (! over && over ||), parentheses, and back-quoted or
/// double-quoted (Go-escaped) string literals. Errors say the column and what was expected.
/// Thread: any.
Result<std::unique_ptr<RuleNode>> parse_rule(std::string_view rule);

/// The domains of every Host() matcher in `rule`, wherever it stands (Traefik's ParseDomains: they
/// choose a TLS router's options by SNI, and later which certificates ACME asks for), lower-cased,
/// sorted, without duplicates. Thread: any.
std::vector<std::string> rule_domains(const RuleNode& rule);

}  // namespace berth::config
