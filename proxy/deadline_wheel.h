// DeadlineWheel: every connection deadline of one worker (read, idle, dial, response-header, write
// timeouts) in one hashed timer wheel driven by one timer, so a connection carries a 40-byte entry
// instead of its own timer and pending timer operation (HP-6). Thread: worker.
#pragma once

#include <chrono>
#include <cstdint>

#include "proxy/net.h"

namespace berth::proxy {

class DeadlineWheel {
 public:
  static constexpr std::chrono::milliseconds kTick{10};

  /// Embedded in its owner. `fire(owner)` runs on the worker thread when the deadline passes; it
  /// must not destroy the owner synchronously.
  struct Entry {
    Entry* prev = nullptr;
    Entry* next = nullptr;
    int64_t due_tick = 0;
    void* owner = nullptr;
    void (*fire)(void* owner) = nullptr;
    bool armed() const { return prev != nullptr; }
  };

  explicit DeadlineWheel(boost::asio::io_context& io) : timer_(io.get_executor()) {}

  /// (Re)arms `e` to fire `timeout` from now (rounded up to the next tick; never early).
  void arm_after(Entry& e, std::chrono::milliseconds timeout);
  void disarm(Entry& e);
  /// Stops ticking for good (worker shutdown).
  void stop();

 private:
  static constexpr int64_t kBuckets = 512;  // ~5 s of ticks; later deadlines wait for their round

  /// Milliseconds of CLOCK_MONOTONIC_COARSE: ticks are 10 ms, so a clock read that costs a few ns
  /// and lags by at most a jiffy is precise enough (arming happens several times per request).
  static int64_t now_ms();
  void schedule();
  void on_tick();

  struct Bucket {
    Entry head;  ///< sentinel of a circular list
    Bucket() { head.prev = head.next = &head; }
  };
  Bucket buckets_[kBuckets];
  Timer timer_;
  int64_t processed_tick_ = -1;  ///< every bucket up to this tick has been processed
  size_t armed_ = 0;
  bool ticking_ = false;
  bool stopped_ = false;
};

}  // namespace berth::proxy
