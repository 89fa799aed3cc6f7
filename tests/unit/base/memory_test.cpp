// release_free_memory() on the allocator the tests link: glibc's malloc, or AddressSanitizer's in
// the CI build, where glibc's malloc_trim once crashed a worker's sweep.
#include "base/memory.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace berth {
namespace {

TEST(Memory, ReleasingFreePagesKeepsLiveDataAndTheHeapUsable) {
  std::vector<std::unique_ptr<std::string>> blocks;
  for (int i = 0; i < 2000; ++i) blocks.push_back(std::make_unique<std::string>(4096, static_cast<char>('a' + i % 26)));
  for (size_t i = 0; i < blocks.size(); i += 2) blocks[i].reset();  // free pages to give back
  release_free_memory();
  for (size_t i = 1; i < blocks.size(); i += 2) EXPECT_EQ((*blocks[i])[4095], static_cast<char>('a' + i % 26));
  auto again = std::make_unique<std::string>(1 << 20, 'z');
  EXPECT_EQ(again->back(), 'z');
  EXPECT_TRUE(std::string(allocator_name()) == "glibc" || std::string(allocator_name()) == "jemalloc");
}

}  // namespace
}  // namespace berth
