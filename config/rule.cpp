// Recursive-descent parser for router rules; see rule.h.
#include "config/rule.h"

#include <algorithm>
#include <cctype>

#include "base/text.h"

namespace berth::config {
namespace {

class RuleParser {
 public:
  explicit RuleParser(std::string_view text) : text_(text) {}

  Result<std::unique_ptr<RuleNode>> parse() {
    auto node = parse_or();
    if (!node) return fail_;
    skip_space();
    if (pos_ < text_.size()) return error("expected \"&&\", \"||\" or the end of the rule");
    return node;
  }

 private:
  std::unique_ptr<RuleNode> parse_or() {
    auto left = parse_and();
    while (left) {
      skip_space();
      if (!take("||")) break;
      size_t col = pos_ + 1;
      auto right = parse_and();
      if (!right) return nullptr;
      left = binary(RuleNode::Kind::kOr, std::move(left), std::move(right), col);
    }
    return left;
  }

  std::unique_ptr<RuleNode> parse_and() {
    auto left = parse_unary();
    while (left) {
      skip_space();
      if (!take("&&")) break;
      size_t col = pos_ + 1;
      auto right = parse_unary();
      if (!right) return nullptr;
      left = binary(RuleNode::Kind::kAnd, std::move(left), std::move(right), col);
    }
    return left;
  }

  std::unique_ptr<RuleNode> parse_unary() {
    // Rules may come from container labels: bound the recursion instead of trusting the input.
    struct DepthGuard {
      int& d;
      explicit DepthGuard(int& depth) : d(++depth) {}
      ~DepthGuard() { --d; }
    } guard(depth_);
    if (depth_ > kMaxDepth) return set_error("rule nests deeper than " + std::to_string(kMaxDepth) + " levels");
    skip_space();
    size_t col = pos_ + 1;
    if (take("!")) {
      auto operand = parse_unary();
      if (!operand) return nullptr;
      auto node = std::make_unique<RuleNode>();
      node->kind = RuleNode::Kind::kNot;
      node->column = col;
      node->left = std::move(operand);
      return node;
    }
    if (take("(")) {
      auto inner = parse_or();
      if (!inner) return nullptr;
      skip_space();
      if (!take(")")) return set_error("expected \")\"");
      return inner;
    }
    return parse_matcher();
  }

  std::unique_ptr<RuleNode> parse_matcher() {
    skip_space();
    size_t start = pos_;
    while (pos_ < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_')) ++pos_;
    if (start == pos_) return set_error(pos_ >= text_.size() ? "unexpected end of rule, expected a matcher such as Host(`example.com`)"
                                                             : "expected a matcher such as Host(`example.com`)");
    auto node = std::make_unique<RuleNode>();
    node->matcher = std::string(text_.substr(start, pos_ - start));
    node->column = start + 1;
    skip_space();
    if (!take("(")) return set_error("expected \"(\" after " + node->matcher);
    skip_space();
    if (take(")")) return node;
    while (true) {
      skip_space();
      std::string arg;
      if (!parse_string(arg)) return nullptr;
      node->args.push_back(std::move(arg));
      skip_space();
      if (take(")")) return node;
      if (!take(",")) return set_error("expected \",\" or \")\" in the arguments of " + node->matcher);
    }
  }

  bool parse_string(std::string& out) {
    if (pos_ >= text_.size()) return set_error("unexpected end of rule, expected a quoted value"), false;
    char quote = text_[pos_];
    if (quote == '\'') return set_error("single quotes are not allowed, use back quotes (`) or double quotes"), false;
    if (quote != '`' && quote != '"') return set_error("expected a value in back quotes (`) or double quotes"), false;
    size_t open = pos_++;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      char c = text_[pos_++];
      if (quote == '"' && c == '\\') {
        if (pos_ >= text_.size()) break;
        char e = text_[pos_++];
        switch (e) {
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          case 'r': out += '\r'; break;
          case '\\': out += '\\'; break;
          case '"': out += '"'; break;
          default: out += '\\'; out += e; break;  // keep regex escapes such as \d intact
        }
      } else {
        out += c;
      }
    }
    if (pos_ >= text_.size()) {
      pos_ = open;
      return set_error("unterminated quoted value"), false;
    }
    ++pos_;
    return true;
  }

  static std::unique_ptr<RuleNode> binary(RuleNode::Kind kind, std::unique_ptr<RuleNode> l,
                                          std::unique_ptr<RuleNode> r, size_t col) {
    auto node = std::make_unique<RuleNode>();
    node->kind = kind;
    node->column = col;
    node->left = std::move(l);
    node->right = std::move(r);
    return node;
  }

  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool take(std::string_view token) {
    if (text_.substr(pos_, token.size()) != token) return false;
    pos_ += token.size();
    return true;
  }
  std::unique_ptr<RuleNode> set_error(std::string message) {
    if (!failed_) {
      failed_ = true;
      fail_ = Error{"column " + std::to_string(pos_ + 1), std::move(message)};
    }
    return nullptr;
  }
  Result<std::unique_ptr<RuleNode>> error(std::string message) {
    set_error(std::move(message));
    return fail_;
  }

  static constexpr int kMaxDepth = 64;
  std::string_view text_;
  size_t pos_ = 0;
  int depth_ = 0;
  bool failed_ = false;
  Error fail_;
};

}  // namespace

Result<std::unique_ptr<RuleNode>> parse_rule(std::string_view rule) {
  RuleParser parser(rule);
  return parser.parse();
}

std::vector<std::string> rule_domains(const RuleNode& rule) {
  std::vector<std::string> out;
  auto walk = [&](const RuleNode& n, auto& self) -> void {
    if (n.kind == RuleNode::Kind::kMatcher) {
      if (iequals(n.matcher, "Host"))
        for (const auto& a : n.args) out.push_back(to_lower(a));
      return;
    }
    if (n.left) self(*n.left, self);
    if (n.right) self(*n.right, self);
  };
  walk(rule, walk);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace berth::config
