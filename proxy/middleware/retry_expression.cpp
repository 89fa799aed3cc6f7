// The retry expression parser and evaluator; see retry_expression.h. Recursive descent:
//   or := and ('||' and)*   and := unary ('&&' unary)*   unary := '!' unary | '(' or ')' | term
//   term := 'IsNetworkError()' | ('Attempts()' | 'ResponseCode()') op integer
#include "proxy/middleware/retry_expression.h"

#include <cctype>
#include <charconv>
#include <string>

namespace berth::proxy::middleware {
namespace {

using Node = RetryExpression::Node;
constexpr int kMaxDepth = 32;

Node node(Node::Kind kind) {
  Node n;
  n.kind = kind;
  return n;
}

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  Result<Node> parse() {
    Node n;
    if (!parse_or(n, 0)) return error();
    skip_space();
    if (pos_ != text_.size()) {
      fail("expected && or || or the end");
      return error();
    }
    return n;
  }

 private:
  bool parse_or(Node& out, int depth) { return parse_list(out, depth, "||", Node::Kind::kOr, &Parser::parse_and); }
  bool parse_and(Node& out, int depth) { return parse_list(out, depth, "&&", Node::Kind::kAnd, &Parser::parse_unary); }

  // operand (sep operand)*, kept flat.
  bool parse_list(Node& out, int depth, std::string_view sep, Node::Kind kind, bool (Parser::*operand)(Node&, int)) {
    Node first;
    if (!(this->*operand)(first, depth)) return false;
    skip_space();
    if (!take(sep)) {
      out = std::move(first);
      return true;
    }
    out = node(kind);
    out.operands.push_back(std::move(first));
    do {
      Node next;
      if (!(this->*operand)(next, depth)) return false;
      out.operands.push_back(std::move(next));
      skip_space();
    } while (take(sep));
    return true;
  }

  bool parse_unary(Node& out, int depth) {
    if (depth > kMaxDepth) return fail("expression nested too deeply");
    skip_space();
    if (take("!")) {
      out = node(Node::Kind::kNot);
      out.operands.emplace_back();
      return parse_unary(out.operands.back(), depth + 1);
    }
    if (take("(")) {
      if (!parse_or(out, depth + 1)) return false;
      skip_space();
      return take(")") || fail("expected )");
    }
    if (take_call("IsNetworkError")) {
      out = node(Node::Kind::kIsNetworkError);
      return true;
    }
    out = node(Node::Kind::kCompare);
    if (take_call("Attempts")) out.function = Node::Function::kAttempts;
    else if (take_call("ResponseCode")) out.function = Node::Function::kResponseCode;
    else return fail("expected IsNetworkError(), Attempts(), ResponseCode(), ! or (");
    skip_space();
    if (take("==")) out.op = Node::Op::kEq;
    else if (take("!=")) out.op = Node::Op::kNe;
    else if (take("<=")) out.op = Node::Op::kLe;
    else if (take(">=")) out.op = Node::Op::kGe;
    else if (take("<")) out.op = Node::Op::kLt;
    else if (take(">")) out.op = Node::Op::kGt;
    else return fail("expected a comparison (==, !=, <, <=, >, >=)");
    skip_space();
    auto [end, ec] = std::from_chars(text_.data() + pos_, text_.data() + text_.size(), out.value);
    if (ec != std::errc()) return fail("expected an integer");
    pos_ = static_cast<size_t>(end - text_.data());
    return true;
  }

  bool take_call(std::string_view name) {
    skip_space();
    size_t save = pos_;
    if (!take(name)) return false;
    skip_space();
    if (!take("(")) return (pos_ = save, false);
    skip_space();
    if (!take(")")) return (pos_ = save, false);
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
  bool fail(std::string message) {
    if (message_.empty()) {
      message_ = std::move(message);
      column_ = pos_ + 1;
    }
    return false;
  }
  Error error() const { return Error{"column " + std::to_string(column_), message_}; }

  std::string_view text_;
  size_t pos_ = 0;
  std::string message_;
  size_t column_ = 0;
};

bool evaluate(const Node& n, int attempts, int status, bool network_error) {
  switch (n.kind) {
    case Node::Kind::kOr:
      for (const auto& o : n.operands)
        if (evaluate(o, attempts, status, network_error)) return true;
      return false;
    case Node::Kind::kAnd:
      for (const auto& o : n.operands)
        if (!evaluate(o, attempts, status, network_error)) return false;
      return true;
    case Node::Kind::kNot:
      return !evaluate(n.operands[0], attempts, status, network_error);
    case Node::Kind::kIsNetworkError:
      return network_error;
    case Node::Kind::kCompare: {
      const int64_t v = n.function == Node::Function::kAttempts ? attempts : status;
      switch (n.op) {
        case Node::Op::kEq: return v == n.value;
        case Node::Op::kNe: return v != n.value;
        case Node::Op::kLt: return v < n.value;
        case Node::Op::kLe: return v <= n.value;
        case Node::Op::kGt: return v > n.value;
        case Node::Op::kGe: return v >= n.value;
      }
    }
  }
  return false;
}

}  // namespace

Result<RetryExpression> RetryExpression::parse(std::string_view text) {
  auto root = Parser(text).parse();
  if (!root) return root.error();
  RetryExpression e;
  e.root_ = std::move(*root);
  return e;
}

bool RetryExpression::should_retry(int attempts, int status, bool network_error) const {
  return evaluate(root_, attempts, status, network_error);
}

}  // namespace berth::proxy::middleware
