#include "proxy/block_pool.h"

#include <sanitizer/asan_interface.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>

namespace berth::proxy {
namespace {

constexpr std::size_t kGranule = 64;  // fine classes: an idle connection's frames are most of its memory
constexpr std::size_t kClasses = 256;  // up to 16 KiB
// A worker's lists are deep enough for every stream of a busy worker (h2load -c64 -m10 keeps 640
// in flight, each with an exchange's frames); its sweep calls trim() each second, which gives back
// whatever the last second did not use. Other threads (the control plane, the blocking pool) never
// trim, so they keep shallow lists: a burst there is not cached for good.
constexpr std::size_t kMaxBytesPerClass = 1 << 20;
constexpr std::size_t kMinPerClass = 1024;
constexpr std::size_t kUntrimmedBytesPerClass = 64 << 10;
constexpr std::size_t kUntrimmedMinPerClass = 16;

constexpr std::size_t class_of(std::size_t size) { return std::max<std::size_t>(1, (size + kGranule - 1) / kGranule); }
constexpr std::size_t max_per_class(std::size_t cls, bool deep) {
  return deep ? std::max(kMinPerClass, kMaxBytesPerClass / (cls * kGranule))
                 : std::max(kUntrimmedMinPerClass, kUntrimmedBytesPerClass / (cls * kGranule));
}

struct FreeNode {
  FreeNode* next;
};

// Under AddressSanitizer a cached block is poisoned, so a use after free is still reported (only
// the reuse of a block hides one); the macros do nothing in other builds.
FreeNode* pop(FreeNode*& head, std::size_t bytes) {
  FreeNode* n = head;
  ASAN_UNPOISON_MEMORY_REGION(n, bytes);
  head = n->next;
  // The next block of this class is often out of the cache by the time it is asked for (hundreds
  // of streams free theirs between two uses): fetched now, its first line is there by then.
  __builtin_prefetch(head, 1);
  return n;
}

// Set when this thread's lists are destroyed (at its exit): a block given back later (a job
// destroyed with the blocking pool at process exit, another thread_local's destructor) goes
// straight to the system.
thread_local bool t_lists_gone = false;

struct ThreadLists {
  FreeNode* head[kClasses] = {};
  std::size_t count[kClasses] = {};
  std::size_t low_water[kClasses] = {};
  std::size_t system = 0;
  bool deep = false;  ///< keep_deep_lists() was called on this thread (a worker)
  ~ThreadLists() {
    t_lists_gone = true;
    for (std::size_t c = 0; c < kClasses; ++c)
      while (head[c] != nullptr) ::operator delete(pop(head[c], c * kGranule));
  }
};

thread_local ThreadLists t_lists;

}  // namespace

void* BlockPool::allocate(std::size_t size) {
  std::size_t cls = class_of(size);
  if (cls >= kClasses) {
    ++t_lists.system;
    return ::operator new(size);
  }
  if (t_lists.head[cls] != nullptr) {
    FreeNode* n = pop(t_lists.head[cls], cls * kGranule);
    if (--t_lists.count[cls] < t_lists.low_water[cls]) t_lists.low_water[cls] = t_lists.count[cls];
    return n;
  }
  if (t_lists_gone) return ::operator new(cls * kGranule);
  t_lists.low_water[cls] = 0;
  ++t_lists.system;
  return ::operator new(cls * kGranule);
}

void BlockPool::deallocate(void* p, std::size_t size) noexcept {
  std::size_t cls = class_of(size);
  if (cls >= kClasses || t_lists_gone || t_lists.count[cls] >= max_per_class(cls, t_lists.deep)) {
    ::operator delete(p);
    return;
  }
  auto* n = static_cast<FreeNode*>(p);
  n->next = t_lists.head[cls];
  t_lists.head[cls] = n;
  ++t_lists.count[cls];
  ASAN_POISON_MEMORY_REGION(n, cls * kGranule);
}

std::size_t BlockPool::block_size(std::size_t size) {
  std::size_t cls = class_of(size);
  return cls >= kClasses ? size : cls * kGranule;
}

std::size_t BlockPool::system_allocations() { return t_lists.system; }

void BlockPool::keep_deep_lists() { t_lists.deep = true; }

std::size_t BlockPool::trim() {
  std::size_t freed = 0;
  for (std::size_t c = 0; c < kClasses; ++c) {
    for (std::size_t n = std::min(t_lists.low_water[c], t_lists.count[c]); n > 0; --n) {
      ::operator delete(pop(t_lists.head[c], c * kGranule));
      --t_lists.count[c];
      freed += c * kGranule;
    }
    t_lists.low_water[c] = t_lists.count[c];
  }
  return freed;
}

// The size header of malloc_sized's blocks: max_align_t's alignment, so the payload stays aligned.
namespace {
constexpr std::size_t kHeader = alignof(std::max_align_t);
static_assert(kHeader >= sizeof(std::size_t));

std::size_t sized_size(void* p) {
  std::size_t size;
  std::memcpy(&size, static_cast<unsigned char*>(p) - kHeader, sizeof size);
  return size;
}
}  // namespace

void* BlockPool::malloc_sized(std::size_t size) noexcept {
  if (size > SIZE_MAX - kHeader) return nullptr;
  try {
    auto* block = static_cast<unsigned char*>(allocate(size + kHeader));
    std::memcpy(block, &size, sizeof size);
    return block + kHeader;
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

void BlockPool::free_sized(void* p) noexcept {
  if (p != nullptr) deallocate(static_cast<unsigned char*>(p) - kHeader, sized_size(p) + kHeader);
}

void* BlockPool::realloc_sized(void* p, std::size_t size) noexcept {
  if (p == nullptr) return malloc_sized(size);
  std::size_t old = sized_size(p);
  if (size <= SIZE_MAX - kHeader && block_size(size + kHeader) == block_size(old + kHeader)) {
    std::memcpy(static_cast<unsigned char*>(p) - kHeader, &size, sizeof size);
    return p;
  }
  void* q = malloc_sized(size);
  if (q == nullptr) return nullptr;  // p stays valid, as realloc's contract says
  std::memcpy(q, p, std::min(old, size));
  free_sized(p);
  return q;
}

}  // namespace berth::proxy
