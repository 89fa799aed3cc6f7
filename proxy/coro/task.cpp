// FramePool: per-thread free lists for coroutine frames; see task.h.
#include "proxy/coro/task.h"

#include <algorithm>
#include <new>

namespace berth::proxy::coro {
namespace {

constexpr std::size_t kGranule = 64;      // fine classes: an idle connection's frames are most of its memory
constexpr std::size_t kClasses = 256;     // up to 16 KiB
constexpr std::size_t kMaxPerClass = 128;  // covers the exchanges in flight; a burst beyond goes back to malloc

struct FreeNode {
  FreeNode* next;
};

struct ThreadLists {
  FreeNode* head[kClasses] = {};
  std::size_t count[kClasses] = {};
  std::size_t low_water[kClasses] = {};
  std::size_t system = 0;
  ~ThreadLists() {
    for (std::size_t c = 0; c < kClasses; ++c)
      while (FreeNode* n = head[c]) {
        head[c] = n->next;
        ::operator delete(n);
      }
  }
};

thread_local ThreadLists t_lists;

}  // namespace

void* FramePool::allocate(std::size_t size) {
  std::size_t cls = (size + kGranule - 1) / kGranule;
  if (cls >= kClasses) {
    ++t_lists.system;
    return ::operator new(size);
  }
  if (FreeNode* n = t_lists.head[cls]) {
    t_lists.head[cls] = n->next;
    if (--t_lists.count[cls] < t_lists.low_water[cls]) t_lists.low_water[cls] = t_lists.count[cls];
    return n;
  }
  t_lists.low_water[cls] = 0;
  ++t_lists.system;
  return ::operator new(cls * kGranule);
}

void FramePool::deallocate(void* p, std::size_t size) noexcept {
  std::size_t cls = (size + kGranule - 1) / kGranule;
  if (cls >= kClasses || t_lists.count[cls] >= kMaxPerClass) {
    ::operator delete(p);
    return;
  }
  auto* n = static_cast<FreeNode*>(p);
  n->next = t_lists.head[cls];
  t_lists.head[cls] = n;
  ++t_lists.count[cls];
}

std::size_t FramePool::system_allocations() { return t_lists.system; }

void FramePool::trim() {
  for (std::size_t c = 0; c < kClasses; ++c) {
    for (std::size_t n = std::min(t_lists.low_water[c], t_lists.count[c]); n > 0; --n) {
      FreeNode* node = t_lists.head[c];
      t_lists.head[c] = node->next;
      --t_lists.count[c];
      ::operator delete(node);
    }
    t_lists.low_water[c] = t_lists.count[c];
  }
}

}  // namespace berth::proxy::coro
