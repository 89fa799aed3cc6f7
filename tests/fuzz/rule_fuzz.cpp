// libFuzzer target: the router rule parser and matcher compiler (rules come from labels, so from
// anyone who can start a container). Must never crash or recurse without bound.
#include <cstdint>
#include <string_view>

#include "config/rule.h"
#include "proxy/router/matcher.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto ast = berth::config::parse_rule(text);
  if (ast) {
    auto m = berth::proxy::router::Matcher::compile(**ast);
    if (m) {
      std::vector<std::string> hosts;
      (*m)->required_hosts(hosts);
      (void)(*m)->matches({"a.example.com", "/api/x", "GET"});
    }
  }
  return 0;
}
