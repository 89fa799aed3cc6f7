// Unit tests for the elements the decoder drops: each is named (qualified) with its problems, for
// the API to list it as disabled; merging keeps them.
#include <gtest/gtest.h>

#include "config/dynamic_config.h"

namespace berth::config {
namespace {

TEST(DynamicConfigDropped, NamesEachDroppedElementWithItsProblems) {
  auto dyn = decode_dynamic_yaml(R"yaml(http:
  routers:
    good: {rule: "Path(`/`)", service: s}
    bad: {rule: "Path(`/`)", service: s, prority: 3}
  services:
    s: {loadBalancer: {servers: [{url: "http://127.0.0.1:1"}]}}
    broken: {loadBalancer: {servers: [{url: "ftp://x"}]}}
  middlewares:
    two: {addPrefix: {prefix: /a}, stripPrefix: {prefixes: [/b]}}
)yaml",
                                 "d.yml", "file");
  ASSERT_TRUE(dyn.ok());
  EXPECT_TRUE(dyn->routers.contains("good@file"));
  ASSERT_EQ(dyn->dropped_routers.size(), 1u);
  ASSERT_EQ(dyn->dropped_routers.at("bad@file").size(), 1u);
  EXPECT_EQ(dyn->dropped_routers.at("bad@file")[0].where, "d.yml:4:42");
  EXPECT_NE(dyn->dropped_routers.at("bad@file")[0].message.find("prority"), std::string::npos);
  ASSERT_EQ(dyn->dropped_services.size(), 1u);
  EXPECT_NE(dyn->dropped_services.at("broken@file")[0].message.find("ftp://x"), std::string::npos);
  ASSERT_EQ(dyn->dropped_middlewares.size(), 1u);
  EXPECT_TRUE(dyn->dropped_middlewares.contains("two@file"));

  DynamicConfig merged;
  merge_dynamic(merged, DynamicConfig(*dyn));
  EXPECT_EQ(merged.dropped_routers.at("bad@file").size(), 1u);
  EXPECT_EQ(merged.dropped_services.size(), 1u);
}

}  // namespace
}  // namespace berth::config
