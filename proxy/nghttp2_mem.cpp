#include "proxy/nghttp2_mem.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>

#include "proxy/block_pool.h"

namespace berth::proxy {
namespace {

// nghttp2's blocks: the size in a header of max_align_t's alignment, so the payload stays aligned.
constexpr std::size_t kHeader = alignof(std::max_align_t);
static_assert(kHeader >= sizeof(std::size_t));

// nghttp2 is C: a failed allocation must come back as NULL (it answers NGHTTP2_ERR_NOMEM), never as
// an exception unwinding through its frames.
void* ng_malloc(std::size_t size, void*) noexcept {
  if (size > SIZE_MAX - kHeader) return nullptr;
  try {
    auto* block = static_cast<unsigned char*>(BlockPool::allocate(size + kHeader));
    std::memcpy(block, &size, sizeof size);
    return block + kHeader;
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

std::size_t ng_size(void* p) {
  std::size_t size;
  std::memcpy(&size, static_cast<unsigned char*>(p) - kHeader, sizeof size);
  return size;
}

void ng_free(void* p, void*) {
  if (p != nullptr) BlockPool::deallocate(static_cast<unsigned char*>(p) - kHeader, ng_size(p) + kHeader);
}

void* ng_calloc(std::size_t n, std::size_t size, void* user) {
  if (size != 0 && n > (SIZE_MAX - kHeader) / size) return nullptr;
  void* p = ng_malloc(n * size, user);
  if (p != nullptr) std::memset(p, 0, n * size);
  return p;
}

void* ng_realloc(void* p, std::size_t size, void* user) {
  if (p == nullptr) return ng_malloc(size, user);
  std::size_t old = ng_size(p);
  if (size <= SIZE_MAX - kHeader && BlockPool::block_size(size + kHeader) == BlockPool::block_size(old + kHeader)) {
    std::memcpy(static_cast<unsigned char*>(p) - kHeader, &size, sizeof size);
    return p;
  }
  void* q = ng_malloc(size, user);
  if (q == nullptr) return nullptr;  // p stays valid, as realloc's contract says
  std::memcpy(q, p, std::min(old, size));
  ng_free(p, user);
  return q;
}

nghttp2_mem g_nghttp2_mem{nullptr, ng_malloc, ng_free, ng_calloc, ng_realloc};

}  // namespace

nghttp2_mem* pooled_nghttp2_mem() { return &g_nghttp2_mem; }

}  // namespace berth::proxy
