// DeadlineWheel implementation; see deadline_wheel.h.
#include "proxy/deadline_wheel.h"

#include <time.h>

namespace berth::proxy {

int64_t DeadlineWheel::now_ms() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

void DeadlineWheel::arm_after(Entry& e, std::chrono::milliseconds timeout) {
  int64_t now = now_ms();
  int64_t due = (now + timeout.count()) / kTick.count() + 1;  // +1 tick: never early
  if (e.armed()) {
    if (e.due_tick == due) return;
    disarm(e);
  }
  e.due_tick = due;
  Entry& head = buckets_[due % kBuckets].head;
  e.prev = head.prev;
  e.next = &head;
  head.prev->next = &e;
  head.prev = &e;
  ++armed_;
  if (processed_tick_ < 0) processed_tick_ = now / kTick.count() - 1;
  if (!ticking_) schedule();
}

void DeadlineWheel::disarm(Entry& e) {
  if (!e.armed()) return;
  e.prev->next = e.next;
  e.next->prev = e.prev;
  e.prev = e.next = nullptr;
  --armed_;
}

void DeadlineWheel::stop() {
  stopped_ = true;
  timer_.cancel();
}

void DeadlineWheel::schedule() {
  if (stopped_) return;
  ticking_ = true;
  timer_.expires_after(kTick);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    ticking_ = false;
    if (!ec) on_tick();
  });
}

void DeadlineWheel::on_tick() {
  int64_t now = now_ms() / kTick.count();
  // Process every bucket passed since the last tick (all of them at most once).
  int64_t from = std::max(processed_tick_ + 1, now - kBuckets + 1);
  for (int64_t t = from; t <= now; ++t) {
    Entry& head = buckets_[t % kBuckets].head;
    Entry* e = head.next;
    while (e != &head) {
      Entry* next = e->next;
      if (e->due_tick <= now) {
        disarm(*e);
        e->fire(e->owner);
      }
      e = next;
    }
  }
  processed_tick_ = now;
  if (armed_ > 0) schedule();
}

}  // namespace berth::proxy
