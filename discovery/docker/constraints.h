// providers.docker.constraints: which containers the provider considers, by their labels. Traefik's
// expression language: Label(`key`, `value`), LabelRegex(`key`, `regex`), !, &&, || and parentheses
// (parsed by config/rule.h, so the same quoting and precedence as router rules). Regexes are RE2,
// matched anywhere in the value as Go's MatchString does. Thread: any (immutable once compiled).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"

namespace berth::discovery::docker {

class Constraints {
 public:
  struct Node;

  /// Compiles `expression`; empty keeps every container. Errors name the column or the regex.
  static Result<Constraints> compile(std::string_view expression);

  /// Whether a container with `labels` is kept.
  bool matches(const std::map<std::string, std::string>& labels) const;

 private:
  std::shared_ptr<const Node> root_;  ///< null: no constraints
};

}  // namespace berth::discovery::docker
