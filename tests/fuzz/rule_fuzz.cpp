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
      static const std::vector<berth::proxy::http::Header> headers = {
          {"X-Env", "canary", berth::proxy::http::HeaderId::kOther}};
      static const auto client = boost::asio::ip::make_address("192.0.2.1");
      (void)(*m)->matches({"a.example.com", "/api/x", "GET", "a=1&b=%20x", &headers, &client});
    }
  }
  return 0;
}
