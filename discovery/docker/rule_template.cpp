// The defaultRule template: a small compiler (text -> parts, actions -> call trees) and evaluator.
#include "discovery/docker/rule_template.h"

#include <cctype>

#include "base/text.h"

namespace berth::discovery::docker {

struct RuleTemplate::Node {
  enum class Kind { kLiteral, kField, kCall };
  Kind kind = Kind::kLiteral;
  std::string text;                  ///< kLiteral: the string; kCall: the function
  std::vector<std::string> field;    ///< kField: ".Labels.x" -> {"Labels", "x"}
  std::vector<std::shared_ptr<const Node>> args;  ///< kCall
};

namespace {

using Node = RuleTemplate::Node;
using NodePtr = std::shared_ptr<const Node>;

struct Function {
  std::string_view name;
  size_t arity;
};
constexpr Function kFunctions[] = {{"normalize", 1}, {"lower", 1},      {"upper", 1},   {"trim", 1},
                                   {"trimPrefix", 2}, {"trimSuffix", 2}, {"replace", 3}, {"default", 2},
                                   {"index", 2}};

const Function* find_function(std::string_view name) {
  for (const auto& f : kFunctions)
    if (f.name == name) return &f;
  return nullptr;
}

// A value while evaluating: a string, or the labels map.
struct Value {
  std::string text;
  const std::map<std::string, std::string>* map = nullptr;
};

// Recursive-descent parser of one action's text (between "{{" and "}}").
class ActionParser {
 public:
  ActionParser(std::string_view text, size_t column) : s_(text), base_(column) {}

  Result<NodePtr> parse() {
    auto node = pipeline();
    if (!node) return node;
    skip_space();
    if (pos_ != s_.size()) return fail("unexpected \"" + std::string(s_.substr(pos_, 1)) + "\"");
    return node;
  }

 private:
  Error fail(std::string message) const {
    return Error{"", "defaultRule: column " + std::to_string(base_ + pos_) + ": " + std::move(message)};
  }
  void skip_space() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool at_end_of_command() {
    skip_space();
    return pos_ == s_.size() || s_[pos_] == '|' || s_[pos_] == ')';
  }

  Result<NodePtr> pipeline() {
    auto first = command(nullptr);
    if (!first) return first;
    NodePtr node = *first;
    while (true) {
      skip_space();
      if (pos_ == s_.size() || s_[pos_] != '|') return node;
      ++pos_;
      auto next = command(node);
      if (!next) return next;
      node = *next;
    }
  }

  // operand+ ; `piped` (the value of the previous command) becomes the last argument.
  Result<NodePtr> command(NodePtr piped) {
    skip_space();
    const size_t start = pos_;
    std::vector<NodePtr> operands;
    std::string function;
    if (pos_ < s_.size() && std::isalpha(static_cast<unsigned char>(s_[pos_]))) {
      while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_')) ++pos_;
      function = std::string(s_.substr(start, pos_ - start));
    }
    while (!at_end_of_command()) {
      auto op = operand();
      if (!op) return op;
      operands.push_back(*op);
    }
    if (function.empty()) {
      if (operands.empty()) return fail("missing value");
      if (piped) return fail("only a function can take a piped value");
      if (operands.size() > 1) return fail("a value cannot take arguments");
      return operands[0];
    }
    const Function* f = find_function(function);
    if (f == nullptr) {
      pos_ = start;
      return fail("unknown function \"" + function +
                  "\" (berth knows normalize, lower, upper, trim, trimPrefix, trimSuffix, replace, default, index)");
    }
    if (piped) operands.push_back(piped);
    if (operands.size() != f->arity) {
      pos_ = start;
      return fail(function + " takes " + std::to_string(f->arity) + " argument(s), not " +
                  std::to_string(operands.size()));
    }
    auto node = std::make_shared<Node>();
    node->kind = Node::Kind::kCall;
    node->text = std::move(function);
    node->args = std::move(operands);
    return NodePtr(std::move(node));
  }

  Result<NodePtr> operand() {
    skip_space();
    const char c = s_[pos_];
    if (c == '(') {
      ++pos_;
      auto inner = pipeline();
      if (!inner) return inner;
      skip_space();
      if (pos_ == s_.size() || s_[pos_] != ')') return fail("missing \")\"");
      ++pos_;
      return inner;
    }
    if (c == '"' || c == '`') return literal(c);
    if (c == '.') return field();
    if (std::isalpha(static_cast<unsigned char>(c))) return fail("a function must come first in a command; use ( )");
    return fail("unexpected \"" + std::string(1, c) + "\"");
  }

  Result<NodePtr> literal(char quote) {
    ++pos_;
    std::string out;
    while (pos_ < s_.size() && s_[pos_] != quote) {
      char ch = s_[pos_++];
      if (quote == '"' && ch == '\\' && pos_ < s_.size()) {
        const char e = s_[pos_++];
        ch = e == 'n' ? '\n' : e == 't' ? '\t' : e;
      }
      out += ch;
    }
    if (pos_ == s_.size()) return fail("unterminated string");
    ++pos_;
    auto node = std::make_shared<Node>();
    node->text = std::move(out);
    return NodePtr(std::move(node));
  }

  Result<NodePtr> field() {
    auto node = std::make_shared<Node>();
    node->kind = Node::Kind::kField;
    while (pos_ < s_.size() && s_[pos_] == '.') {
      const size_t start = ++pos_;
      while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_')) ++pos_;
      if (pos_ == start) return fail("missing field name after \".\"");
      node->field.emplace_back(s_.substr(start, pos_ - start));
    }
    const std::string& top = node->field[0];
    if (top != "Name" && top != "ContainerName" && top != "Labels")
      return fail("unknown field ." + top + " (berth knows .Name, .ContainerName and .Labels)");
    if (top != "Labels" && node->field.size() > 1) return fail("." + top + " has no fields");
    if (node->field.size() > 2) return fail(".Labels.<key> takes one key; use index .Labels \"a.b\"");
    return NodePtr(std::move(node));
  }

  std::string_view s_;
  size_t base_;
  size_t pos_ = 0;
};

Result<Value> evaluate(const Node& node, const TemplateData& data) {
  switch (node.kind) {
    case Node::Kind::kLiteral:
      return Value{node.text};
    case Node::Kind::kField: {
      const std::string& top = node.field[0];
      if (top == "Name") return Value{data.name};
      if (top == "ContainerName") return Value{data.container_name};
      static const std::map<std::string, std::string> kNone;
      const auto* labels = data.labels ? data.labels : &kNone;
      if (node.field.size() == 1) return Value{{}, labels};
      auto it = labels->find(node.field[1]);
      return Value{it == labels->end() ? std::string() : it->second};
    }
    case Node::Kind::kCall:
      break;
  }
  std::vector<Value> args;
  for (const auto& a : node.args) {
    auto v = evaluate(*a, data);
    if (!v) return v;
    args.push_back(std::move(*v));
  }
  const std::string& f = node.text;
  if (f == "index") {
    if (!args[0].map) return Error{"", "defaultRule: index needs a map (.Labels) as its first argument"};
    auto it = args[0].map->find(args[1].text);
    return Value{it == args[0].map->end() ? std::string() : it->second};
  }
  for (const auto& a : args)
    if (a.map) return Error{"", "defaultRule: " + f + " needs strings, not .Labels"};
  if (f == "normalize") return Value{normalize_name(args[0].text)};
  if (f == "lower") return Value{to_lower(args[0].text)};
  if (f == "upper") {
    std::string s = args[0].text;
    for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return Value{s};
  }
  if (f == "trim") return Value{std::string(trim(args[0].text))};
  if (f == "trimPrefix") {
    std::string_view s = args[1].text;
    if (s.starts_with(args[0].text)) s.remove_prefix(args[0].text.size());
    return Value{std::string(s)};
  }
  if (f == "trimSuffix") {
    std::string_view s = args[1].text;
    if (s.ends_with(args[0].text)) s.remove_suffix(args[0].text.size());
    return Value{std::string(s)};
  }
  if (f == "replace") {
    const std::string& from = args[0].text;
    std::string s = args[2].text, out;
    if (from.empty()) return Value{s};
    size_t pos = 0;
    for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size())
      out.append(s, pos, hit - pos).append(args[1].text);
    return Value{out.append(s, pos)};
  }
  // default
  return Value{args[1].text.empty() ? args[0].text : args[1].text};
}

}  // namespace

Result<RuleTemplate> RuleTemplate::compile(std::string_view text) {
  RuleTemplate t;
  size_t pos = 0;
  bool trim_next = false;
  while (pos <= text.size()) {
    const size_t open = text.find("{{", pos);
    std::string literal(text.substr(pos, open == std::string_view::npos ? std::string_view::npos : open - pos));
    if (trim_next) {
      size_t i = 0;
      while (i < literal.size() && std::isspace(static_cast<unsigned char>(literal[i]))) ++i;
      literal.erase(0, i);
    }
    if (open == std::string_view::npos) {
      if (!literal.empty()) t.parts_.push_back({std::move(literal), nullptr});
      break;
    }
    size_t body = open + 2;
    if (body < text.size() && text[body] == '-' && body + 1 < text.size() && text[body + 1] == ' ') {
      while (!literal.empty() && std::isspace(static_cast<unsigned char>(literal.back()))) literal.pop_back();
      ++body;
    }
    if (!literal.empty()) t.parts_.push_back({std::move(literal), nullptr});
    const size_t close = text.find("}}", body);
    if (close == std::string_view::npos)
      return Error{"", "defaultRule: column " + std::to_string(open + 1) + ": \"{{\" without \"}}\""};
    size_t end = close;
    trim_next = end > body && text[end - 1] == '-' && end - 1 > body && text[end - 2] == ' ';
    if (trim_next) --end;
    auto action = ActionParser(text.substr(body, end - body), body + 1).parse();
    if (!action) return action.error();
    t.parts_.push_back({{}, *action});
    pos = close + 2;
  }
  return t;
}

Result<std::string> RuleTemplate::render(const TemplateData& data) const {
  std::string out;
  for (const auto& part : parts_) {
    if (!part.action) {
      out += part.text;
      continue;
    }
    auto v = evaluate(*part.action, data);
    if (!v) return v.error();
    if (v->map) return Error{"", "defaultRule: .Labels is a map, not text; use index .Labels \"key\""};
    out += v->text;
  }
  return out;
}

std::string normalize_name(std::string_view name) {
  std::string out;
  bool pending_dash = false;
  for (const char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || u >= 0x80) {
      if (pending_dash && !out.empty()) out += '-';
      pending_dash = false;
      out += c;
    } else {
      pending_dash = true;
    }
  }
  return out;
}

}  // namespace berth::discovery::docker
