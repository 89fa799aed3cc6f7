// BlockPool: per-thread free lists of small heap blocks, so objects made and freed for every
// exchange or stream (coroutine frames, HTTP/2 streams and their strings, nghttp2's own objects)
// come back from a list instead of from malloc in steady state (HP-1). Thread: any (each thread
// has its own lists; a block may be freed on another thread than the one that took it).
#pragma once

#include <cstddef>
#include <string>

namespace berth::proxy {

class BlockPool {
 public:
  /// A block of at least `size` bytes (64-byte classes up to 16 KiB; larger ones come from malloc).
  static void* allocate(std::size_t size);
  /// Gives back a block of allocate(size); it is kept for reuse unless its class already holds
  /// about 1 MiB (or 1024 blocks, whichever is more) on a thread that keeps deep lists, 64 KiB (or
  /// 16 blocks) on others.
  static void deallocate(void* p, std::size_t size) noexcept;
  /// The bytes a block of allocate(size) holds: its class's size, or `size` beyond the classes.
  /// A block may be resized in place to any size of the same block_size.
  static std::size_t block_size(std::size_t size);
  /// Blocks taken from the system allocator so far on this thread (for tests and benchmarks).
  static std::size_t system_allocations();
  /// The calling thread keeps deep lists from now on: enough for every stream of a busy worker.
  /// Such a thread must call trim() periodically (a worker's sweep, once a second).
  static void keep_deep_lists();
  /// Frees this thread's cached blocks that stayed unused since the last call; returns their bytes.
  static std::size_t trim();

  /// malloc, realloc and free for C libraries whose free and realloc do not pass the size
  /// (nghttp2): each block carries its size in a header of max_align_t's alignment. They return
  /// NULL when out of memory, never throw, and realloc in place within a class.
  static void* malloc_sized(std::size_t size) noexcept;
  static void* realloc_sized(void* p, std::size_t size) noexcept;
  static void free_sized(void* p) noexcept;
};

/// A standard allocator over BlockPool, for containers and std::allocate_shared.
template <class T>
struct PoolAllocator {
  using value_type = T;
  PoolAllocator() noexcept = default;
  template <class U>
  PoolAllocator(const PoolAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(BlockPool::allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { BlockPool::deallocate(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const PoolAllocator<U>&) const noexcept { return true; }
};

/// A string whose buffer comes from BlockPool: for per-stream text (rendered heads, bodies in
/// transit) that would otherwise be a malloc and a free for every stream.
using PooledString = std::basic_string<char, std::char_traits<char>, PoolAllocator<char>>;

}  // namespace berth::proxy
