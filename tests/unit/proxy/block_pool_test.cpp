// Unit tests for BlockPool and the nghttp2 allocator over it: blocks come back from the thread's
// lists, trim() gives back what a second did not use, and nghttp2 runs real requests over the pool.
#include "proxy/block_pool.h"

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>
#include <sanitizer/asan_interface.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "proxy/nghttp2_mem.h"

namespace berth::proxy {
namespace {

TEST(BlockPool, AFreedBlockIsHandedOutAgainWithoutTheSystemAllocator) {
  void* a = BlockPool::allocate(200);
  BlockPool::deallocate(a, 200);
  size_t before = BlockPool::system_allocations();
  void* b = BlockPool::allocate(250);  // same 256-byte class
  EXPECT_EQ(b, a);
  EXPECT_EQ(BlockPool::system_allocations(), before);
  BlockPool::deallocate(b, 250);
}

TEST(BlockPool, CachedBlocksArePoisonedUnderAddressSanitizer) {
#if defined(__SANITIZE_ADDRESS__)
  auto* p = static_cast<char*>(BlockPool::allocate(300));
  EXPECT_FALSE(__asan_address_is_poisoned(p + 299));
  BlockPool::deallocate(p, 300);
  EXPECT_TRUE(__asan_address_is_poisoned(p));  // a use after free is still reported
  EXPECT_TRUE(__asan_address_is_poisoned(p + 299));
  auto* q = static_cast<char*>(BlockPool::allocate(300));
  ASSERT_EQ(q, p);
  EXPECT_FALSE(__asan_address_is_poisoned(q));
  EXPECT_FALSE(__asan_address_is_poisoned(q + 319));
  BlockPool::deallocate(q, 300);
#else
  GTEST_SKIP() << "not an AddressSanitizer build";
#endif
}

TEST(BlockPool, TrimGivesBackBlocksUnusedSinceTheLastTrim) {
  // A thread of its own, so the lists start empty.
  std::thread([] {
    std::vector<void*> blocks;
    for (int i = 0; i < 10; ++i) blocks.push_back(BlockPool::allocate(1000));
    for (void* p : blocks) BlockPool::deallocate(p, 1000);
    BlockPool::trim();  // the burst's blocks were all in use at some point since they were made: kept
    size_t before = BlockPool::system_allocations();
    void* p = BlockPool::allocate(1000);
    EXPECT_EQ(BlockPool::system_allocations(), before);
    BlockPool::deallocate(p, 1000);
    BlockPool::trim();  // 9 stayed unused for a whole period: freed
    BlockPool::trim();  // and the last one, unused since the trim before
    for (int i = 0; i < 2; ++i) blocks[i] = BlockPool::allocate(1000);
    EXPECT_EQ(BlockPool::system_allocations(), before + 2);
    for (int i = 0; i < 2; ++i) BlockPool::deallocate(blocks[i], 1000);
  }).join();
}

TEST(BlockPool, OnlyAThreadThatAsksForDeepListsKeepsAWholeBurst) {
  std::thread([] {
    // A control-plane thread: 64 KiB of 1 KiB blocks are kept, the rest of a burst goes back.
    std::vector<void*> blocks(100);
    for (void*& p : blocks) p = BlockPool::allocate(1000);
    for (void* p : blocks) BlockPool::deallocate(p, 1000);
    size_t before = BlockPool::system_allocations();
    for (void*& p : blocks) p = BlockPool::allocate(1000);
    EXPECT_EQ(BlockPool::system_allocations(), before + 36);
    // A worker keeps the whole burst until a trim finds it unused.
    BlockPool::keep_deep_lists();
    for (void* p : blocks) BlockPool::deallocate(p, 1000);
    before = BlockPool::system_allocations();
    for (void*& p : blocks) p = BlockPool::allocate(1000);
    EXPECT_EQ(BlockPool::system_allocations(), before);
    for (void* p : blocks) BlockPool::deallocate(p, 1000);
    EXPECT_EQ(BlockPool::trim(), 0u);  // all of them were in use during this period
    EXPECT_EQ(BlockPool::trim(), 100u * 1024);  // unused for a whole period: all given back
  }).join();
}

TEST(BlockPool, LargeBlocksComeFromTheSystemAllocator) {
  size_t before = BlockPool::system_allocations();
  void* p = BlockPool::allocate(64 * 1024);
  std::memset(p, 1, 64 * 1024);
  BlockPool::deallocate(p, 64 * 1024);
  p = BlockPool::allocate(64 * 1024);
  EXPECT_EQ(BlockPool::system_allocations(), before + 2);
  BlockPool::deallocate(p, 64 * 1024);
}

TEST(BlockPool, ASizedBlockComesBackFromTheLists) {
  // The size header goes with the block: a block of one of the largest classes still comes back.
  void* p = BlockPool::malloc_sized(16000);
  BlockPool::free_sized(p);
  size_t before = BlockPool::system_allocations();
  void* q = BlockPool::malloc_sized(16000);
  EXPECT_EQ(q, p);
  EXPECT_EQ(BlockPool::system_allocations(), before);
  BlockPool::free_sized(q);
}

// A block given back after the thread's lists were destroyed (by another thread_local's
// destructor, or at process exit) goes to the system allocator: under the sanitizer build a block
// left in the dead lists would be reported as a leak.
TEST(BlockPool, ABlockFreedAfterTheThreadsListsAreGoneIsNotLost) {
  struct FreesLate {
    void* block = nullptr;
    ~FreesLate() { BlockPool::free_sized(block); }
  };
  std::thread([] {
    thread_local FreesLate late;  // constructed before the lists, so destroyed after them
    late.block = BlockPool::malloc_sized(100);
    void* other = BlockPool::malloc_sized(100);
    BlockPool::free_sized(other);  // the lists hold a block too, freed with them
  }).join();
}

TEST(BlockPool, PooledStringGrowsAndKeepsItsText) {
  PooledString s = "abc";
  for (int i = 0; i < 1000; ++i) s.append("0123456789");
  EXPECT_EQ(s.size(), 10003u);
  EXPECT_EQ(s.substr(0, 5), "abc01");
  EXPECT_EQ(std::string_view(s).substr(9995), "23456789");
}

TEST(BlockPool, Nghttp2ReallocKeepsTheBytesAcrossClassesAndCallocZeroes) {
  nghttp2_mem* mem = pooled_nghttp2_mem();
  auto* p = static_cast<char*>(mem->malloc(10, mem->mem_user_data));
  std::memcpy(p, "0123456789", 10);
  p = static_cast<char*>(mem->realloc(p, 40, mem->mem_user_data));  // same class
  EXPECT_EQ(std::string_view(p, 10), "0123456789");
  p = static_cast<char*>(mem->realloc(p, 5000, mem->mem_user_data));  // a bigger class
  EXPECT_EQ(std::string_view(p, 10), "0123456789");
  p = static_cast<char*>(mem->realloc(p, 100000, mem->mem_user_data));  // beyond the classes
  EXPECT_EQ(std::string_view(p, 10), "0123456789");
  p = static_cast<char*>(mem->realloc(p, 4, mem->mem_user_data));
  EXPECT_EQ(std::string_view(p, 4), "0123");
  mem->free(p, mem->mem_user_data);
  mem->free(nullptr, mem->mem_user_data);
  auto* z = static_cast<unsigned char*>(mem->calloc(30, 7, mem->mem_user_data));
  for (int i = 0; i < 210; ++i) ASSERT_EQ(z[i], 0) << i;
  mem->free(z, mem->mem_user_data);
  EXPECT_EQ(mem->calloc(SIZE_MAX / 2, 4, mem->mem_user_data), nullptr);
}

// A client and a server session, both on the pool's allocator, exchange a request and a response
// in memory: the HPACK tables, streams and frames nghttp2 allocates all live in the pool.
struct Peer {
  nghttp2_session* session = nullptr;
  std::vector<std::pair<std::string, std::string>> headers;
  bool closed = false;
};

int on_header(nghttp2_session*, const nghttp2_frame*, const uint8_t* name, size_t namelen, const uint8_t* value,
              size_t valuelen, uint8_t, void* user) {
  static_cast<Peer*>(user)->headers.emplace_back(std::string(reinterpret_cast<const char*>(name), namelen),
                                                 std::string(reinterpret_cast<const char*>(value), valuelen));
  return 0;
}

int on_close(nghttp2_session*, int32_t, uint32_t, void* user) {
  static_cast<Peer*>(user)->closed = true;
  return 0;
}

void pump(Peer& from, Peer& to) {
  const uint8_t* data;
  for (ssize_t n; (n = nghttp2_session_mem_send(from.session, &data)) > 0;)
    ASSERT_EQ(nghttp2_session_mem_recv(to.session, data, static_cast<size_t>(n)), n);
}

nghttp2_nv nv(const char* name, const char* value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name)), reinterpret_cast<uint8_t*>(const_cast<char*>(value)),
          std::strlen(name), std::strlen(value), NGHTTP2_NV_FLAG_NONE};
}

TEST(BlockPool, Nghttp2SessionsRunOnThePoolAllocator) {
  nghttp2_session_callbacks* callbacks;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_close);
  Peer client, server;
  nghttp2_mem* mem = pooled_nghttp2_mem();
  ASSERT_EQ(nghttp2_session_client_new3(&client.session, callbacks, &client, nullptr, mem), 0);
  ASSERT_EQ(nghttp2_session_server_new3(&server.session, callbacks, &server, nullptr, mem), 0);
  nghttp2_session_callbacks_del(callbacks);
  nghttp2_submit_settings(client.session, NGHTTP2_FLAG_NONE, nullptr, 0);
  nghttp2_submit_settings(server.session, NGHTTP2_FLAG_NONE, nullptr, 0);
  for (int round = 0; round < 50; ++round) {
    std::string path = "/items/" + std::to_string(round) + std::string(static_cast<size_t>(round) * 20, 'x');
    nghttp2_nv request[] = {nv(":method", "GET"), nv(":scheme", "http"), nv(":authority", "a.test"),
                            nv(":path", path.c_str()), nv("user-agent", "block-pool-test")};
    int32_t id = nghttp2_submit_request(client.session, nullptr, request, 5, nullptr, nullptr);
    ASSERT_GT(id, 0);
    server.headers.clear();
    pump(client, server);
    ASSERT_EQ(server.headers.size(), 5u);
    EXPECT_EQ(server.headers[3], (std::pair<std::string, std::string>{":path", path}));
    nghttp2_nv response[] = {nv(":status", "204"), nv("server", "berth")};
    ASSERT_EQ(nghttp2_submit_response(server.session, id, response, 2, nullptr), 0);
    client.headers.clear();
    client.closed = false;
    pump(server, client);
    pump(client, server);
    EXPECT_EQ(client.headers.front(), (std::pair<std::string, std::string>{":status", "204"}));
    EXPECT_TRUE(client.closed);
  }
  nghttp2_session_del(client.session);
  nghttp2_session_del(server.session);
}

}  // namespace
}  // namespace berth::proxy
