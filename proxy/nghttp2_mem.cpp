#include "proxy/nghttp2_mem.h"

#include <cstdint>
#include <cstring>

#include "proxy/block_pool.h"

namespace berth::proxy {
namespace {

// nghttp2 is C: a failed allocation must come back as NULL (it answers NGHTTP2_ERR_NOMEM), never as
// an exception unwinding through its frames; the *_sized functions promise that.
void* ng_malloc(std::size_t size, void*) { return BlockPool::malloc_sized(size); }
void ng_free(void* p, void*) { BlockPool::free_sized(p); }
void* ng_realloc(void* p, std::size_t size, void*) { return BlockPool::realloc_sized(p, size); }

void* ng_calloc(std::size_t n, std::size_t size, void*) {
  if (size != 0 && n > SIZE_MAX / size) return nullptr;
  void* p = BlockPool::malloc_sized(n * size);
  if (p != nullptr) std::memset(p, 0, n * size);
  return p;
}

nghttp2_mem g_nghttp2_mem{nullptr, ng_malloc, ng_free, ng_calloc, ng_realloc};

}  // namespace

nghttp2_mem* pooled_nghttp2_mem() { return &g_nghttp2_mem; }

}  // namespace berth::proxy
