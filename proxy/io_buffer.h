// Byte buffers for the data plane: fixed-size blocks recycled through a per-worker pool, so that
// steady-state exchanges never touch malloc (HP-1) and idle connections hold no block (HP-6).
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

namespace berth::proxy {

inline constexpr size_t kBlockSize = 32 * 1024;  // a 16 KiB response plus its head fits one read

/// Blocks are mapped pages of their own rather than malloc memory: after a burst they go straight
/// back to the system instead of fragmenting the heap, so RSS follows the load down again.
struct BlockDeleter {
  void operator()(char* p) const noexcept { ::munmap(p, kBlockSize); }
};
using Block = std::unique_ptr<char[], BlockDeleter>;

/// A free list of kBlockSize blocks. Thread: worker (one pool per worker).
class BufferPool {
 public:
  Block take() {
    if (free_.empty()) {
      low_water_ = 0;
      void* p = ::mmap(nullptr, kBlockSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      return Block(static_cast<char*>(p));
    }
    auto block = std::move(free_.back());
    free_.pop_back();
    if (free_.size() < low_water_) low_water_ = free_.size();
    return block;
  }
  void give(Block block) {
    if (free_.size() < kMaxFree) free_.push_back(std::move(block));
  }
  /// Unmaps the blocks that stayed unused since the last call (the low-water mark), so a quiet
  /// worker holds none. Called about once a second.
  void trim() {
    for (size_t n = std::min(low_water_, free_.size()); n > 0; --n) free_.pop_back();
    low_water_ = free_.size();
  }

 private:
  // Enough for every stream of a busy HTTP/2 worker (two blocks each: 64 connections x 10 streams
  // already need 1280) to recycle blocks instead of mapping new ones; trim() gives back what a
  // second did not use, so the cap only bounds the memory a burst leaves until then.
  static constexpr size_t kMaxFree = 8192;
  std::vector<Block> free_;
  size_t low_water_ = 0;
};

/// A readable region [begin, end) inside a block; grows past one block only for oversized heads.
/// Thread: owner's.
class IoBuffer {
 public:
  bool has_block() const { return data_ != nullptr; }
  void attach(BufferPool& pool) {
    if (data_) return;
    block_ = pool.take();
    data_ = block_.get();
    cap_ = kBlockSize;
  }
  /// Returns the block to the pool; only allowed when empty.
  void release(BufferPool& pool) {
    if (!data_ || size() != 0) return;
    big_.reset();
    if (block_) pool.give(std::move(block_));
    data_ = nullptr;
    cap_ = begin_ = end_ = 0;
  }

  const char* data() const { return data_ + begin_; }
  size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  std::string_view view() const { return {data_ + begin_, end_ - begin_}; }

  /// Space to read into; compacts first when the readable bytes are not at the start.
  char* write_ptr() { return data_ + end_; }
  size_t write_space() {
    if (begin_ > 0 && (end_ == cap_ || begin_ == end_)) compact();
    return cap_ - end_;
  }
  /// Space after the readable bytes, without compacting (views into the buffer stay valid).
  size_t tail_space() const { return cap_ - end_; }
  void commit(size_t n) { end_ += static_cast<uint32_t>(n); }
  void consume(size_t n) {
    begin_ += static_cast<uint32_t>(n);
    if (begin_ == end_) begin_ = end_ = 0;
  }
  /// Doubles the capacity (up to `limit`); returns false at the limit. Used for heads over 16 KiB.
  bool grow(size_t limit) {
    if (cap_ >= limit) return false;
    size_t cap = std::min({limit, size_t{cap_} * 2, size_t{UINT32_MAX}});
    std::unique_ptr<char[]> bigger(new char[cap]);
    std::memcpy(bigger.get(), data_ + begin_, size());
    end_ -= begin_;
    begin_ = 0;
    big_ = std::move(bigger);
    data_ = big_.get();
    cap_ = static_cast<uint32_t>(cap);
    return true;
  }

 private:
  void compact() {
    std::memmove(data_, data_ + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }

  Block block_;                    ///< the pooled block (kept while big_ is in use, to give back later)
  std::unique_ptr<char[]> big_;    ///< an oversized buffer for a large head
  char* data_ = nullptr;
  uint32_t cap_ = 0, begin_ = 0, end_ = 0;  // 32 bits: heads are limited far below 4 GiB
};

}  // namespace berth::proxy
