// Constraints: the rule parser's tree, its matchers checked and regexes compiled once.
#include "discovery/docker/constraints.h"

#include <re2/re2.h>

#include "config/rule.h"

namespace berth::discovery::docker {

struct Constraints::Node {
  config::RuleNode::Kind kind = config::RuleNode::Kind::kMatcher;
  std::string key, value;          ///< Label / LabelRegex arguments
  std::unique_ptr<RE2> regex;      ///< LabelRegex
  std::unique_ptr<Node> left, right;
};

namespace {

using Node = Constraints::Node;

Result<std::unique_ptr<Node>> compile_node(const config::RuleNode& in) {
  auto out = std::make_unique<Node>();
  out->kind = in.kind;
  if (in.kind != config::RuleNode::Kind::kMatcher) {
    auto left = compile_node(*in.left);
    if (!left) return left;
    out->left = std::move(*left);
    if (in.right) {
      auto right = compile_node(*in.right);
      if (!right) return right;
      out->right = std::move(*right);
    }
    return out;
  }
  const std::string where = "constraints: column " + std::to_string(in.column);
  const bool regex = in.matcher == "LabelRegex";
  if (in.matcher != "Label" && !regex)
    return Error{"", where + ": unknown matcher " + in.matcher + " (expected Label or LabelRegex)"};
  if (in.args.size() != 2) return Error{"", where + ": " + in.matcher + " takes 2 arguments (key, value)"};
  out->key = in.args[0];
  out->value = in.args[1];
  if (regex) {
    RE2::Options options;
    options.set_log_errors(false);
    out->regex = std::make_unique<RE2>(out->value, options);
    if (!out->regex->ok()) return Error{"", where + ": bad regex \"" + out->value + "\": " + out->regex->error()};
  }
  return out;
}

bool evaluate(const Node& n, const std::map<std::string, std::string>& labels) {
  using Kind = config::RuleNode::Kind;
  switch (n.kind) {
    case Kind::kAnd:
      return evaluate(*n.left, labels) && evaluate(*n.right, labels);
    case Kind::kOr:
      return evaluate(*n.left, labels) || evaluate(*n.right, labels);
    case Kind::kNot:
      return !evaluate(*n.left, labels);
    case Kind::kMatcher:
      break;
  }
  auto it = labels.find(n.key);
  if (it == labels.end()) return false;
  return n.regex ? RE2::PartialMatch(it->second, *n.regex) : it->second == n.value;
}

}  // namespace

Result<Constraints> Constraints::compile(std::string_view expression) {
  Constraints c;
  if (expression.find_first_not_of(" \t") == std::string_view::npos) return c;
  auto tree = config::parse_rule(expression);
  if (!tree) return Error{"", "constraints: " + tree.error().to_string()};
  auto root = compile_node(**tree);
  if (!root) return root.error();
  c.root_ = std::shared_ptr<const Node>(std::move(*root));
  return c;
}

bool Constraints::matches(const std::map<std::string, std::string>& labels) const {
  return !root_ || evaluate(*root_, labels);
}

}  // namespace berth::discovery::docker
