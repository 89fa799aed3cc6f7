#include "base/memory.h"

#include <malloc.h>

#include <cstddef>

// jemalloc's control interface, resolved at run time: present when the binary links jemalloc,
// null otherwise, so the libraries need no jemalloc headers and the tests run on either allocator.
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen) __attribute__((weak));

namespace berth {

void release_free_memory() {
  if (mallctl != nullptr) {
    // "arena.<MALLCTL_ARENAS_ALL>.purge": every arena gives back all its unused dirty pages.
    mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);
    return;
  }
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer replaces malloc but not malloc_trim: glibc's would walk an arena that was
  // never set up and crash (it did, in CI, when a burst left enough blocks to trim).
#else
  ::malloc_trim(0);
#endif
}

const char* allocator_name() { return mallctl != nullptr ? "jemalloc" : "glibc"; }

}  // namespace berth
