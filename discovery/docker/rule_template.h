// providers.docker.defaultRule: the Go text/template subset Traefik users write, compiled once at start
// and evaluated per container. Supported: text, {{ }} actions with {{- -}} trimming, pipelines
// (`.Name | lower`), parentheses, string literals ("..." and `...`), the fields .Name, .ContainerName and
// .Labels (with .Labels.key and `index .Labels "key"`), and the functions normalize, lower, upper, trim,
// trimPrefix, trimSuffix, replace, default and index (Traefik's normalize plus the sprig ones rules use).
// Anything else is a clear error at start, never at request time. Thread: any (immutable once compiled).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace berth::discovery::docker {

/// What a template sees of a container.
struct TemplateData {
  std::string name;            ///< .Name: the normalized service name ("web-shop")
  std::string container_name;  ///< .ContainerName: without the leading '/'
  const std::map<std::string, std::string>* labels = nullptr;  ///< .Labels
};

class RuleTemplate {
 public:
  struct Node;  ///< a compiled action (private to rule_template.cpp)

  /// Compiles `text`; a syntax error or an unknown function names its column.
  static Result<RuleTemplate> compile(std::string_view text);

  /// Renders the template for one container; a failing `index` or a non-string result is an Error.
  Result<std::string> render(const TemplateData& data) const;

 private:
  struct Part {
    std::string text;              ///< literal text (when `action` is null)
    std::shared_ptr<const Node> action;
  };
  std::vector<Part> parts_;
};

/// Traefik's provider.Normalize: every run of characters that are not letters or digits becomes one
/// '-', without one at either end ("/my_app.1" -> "my-app-1"). Bytes >= 0x80 count as letters.
std::string normalize_name(std::string_view name);

}  // namespace berth::discovery::docker
