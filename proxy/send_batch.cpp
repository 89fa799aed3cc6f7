#include "proxy/send_batch.h"

#include <sys/socket.h>

#include <boost/asio/post.hpp>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <utility>

#include "base/log.h"
#include "proxy/block_pool.h"

namespace berth::proxy {
namespace {

constexpr unsigned kRingEntries = 256;  // a flush of more sends goes a ring's worth per call

thread_local SendBatch* t_batch = nullptr;

}  // namespace

// The flush as an Asio handler: allocated from BlockPool like every operation of the data plane.
struct SendBatch::Flush {
  using allocator_type = PoolAllocator<void>;
  allocator_type get_allocator() const noexcept { return {}; }
  SendBatch* batch;
  void operator()() const { batch->flush(); }
};

SendBatch* SendBatch::current() noexcept { return t_batch != nullptr && !t_batch->broken_ ? t_batch : nullptr; }

bool SendBatch::init_thread(Executor executor) {
  if (t_batch != nullptr) return true;
  auto* batch = new SendBatch(executor);
  // One thread submits and reaps, and sends complete as they are submitted: no task work to run.
  int rc = io_uring_queue_init(kRingEntries, &batch->ring_, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN);
  if (rc == -EINVAL) rc = io_uring_queue_init(kRingEntries, &batch->ring_, 0);  // a kernel before 6.0
  if (rc < 0) {
    static std::atomic<bool> logged{false};
    if (!logged.exchange(true))
      LOG_INFO("io_uring is not available (", std::strerror(-rc), "): each write is a sendmsg(2) of its own");
    delete batch;  // the ring was never made
    return false;
  }
  batch->ring_ready_ = true;
  t_batch = batch;
  return true;
}

void SendBatch::end_thread() { delete std::exchange(t_batch, nullptr); }

SendBatch::~SendBatch() {
  for (Entry* e = head_; e != nullptr;) {
    Entry* next = e->next;
    e->root.destroy();  // its frame holds the entry
    e = next;
  }
  if (ring_ready_) io_uring_queue_exit(&ring_);
}

void SendBatch::send_now(Entry* entry) noexcept {
  if (!entry->queued || entry->fd < 0) return;
  const ssize_t n = ::sendmsg(entry->fd, &entry->msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  entry->result = n >= 0 ? static_cast<int>(n) : -errno;
  entry->fd = -1;
}

void SendBatch::add(Entry* entry) {
  entry->queued = true;
  entry->next = nullptr;
  if (tail_ != nullptr)
    tail_->next = entry;
  else
    head_ = entry;
  tail_ = entry;
  if (!std::exchange(flush_posted_, true))
    boost::asio::post(executor_, Flush{this});
}

void SendBatch::flush() {
  flush_posted_ = false;
  Entry* list = std::exchange(head_, nullptr);
  tail_ = nullptr;
  for (Entry* e = list; e != nullptr;) {
    unsigned submitted = 0;
    for (; e != nullptr && submitted < kRingEntries; e = e->next) {
      e->queued = false;
      if (e->fd < 0) continue;  // sent on its own (send_now)
      if (broken_) {
        e->result = -EIO;
        continue;
      }
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      // MSG_DONTWAIT: a socket that is full fails with EAGAIN at once (the Stream then waits for it
      // the usual way) rather than io_uring waiting for it in the background.
      io_uring_prep_sendmsg(sqe, e->fd, &e->msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      io_uring_sqe_set_data(sqe, e);
      ++submitted;
    }
    if (submitted == 0) continue;
    int rc;
    do rc = io_uring_submit_and_wait(&ring_, submitted);
    while (rc == -EINTR);
    unsigned expected = rc < 0 ? 0 : static_cast<unsigned>(rc);
    if (expected != submitted) {
      // Not seen here in practice. The ring is not used again, so the sends it did not take can
      // never go out later; their writes fail (below) and those connections close.
      LOG_ERROR("io_uring submit: ", rc < 0 ? std::strerror(-rc) : "not all sends taken", "; writes go one by one now");
      broken_ = true;
    }
    for (unsigned seen = 0; seen < expected;) {
      io_uring_cqe* cqe = nullptr;
      int w = io_uring_wait_cqe(&ring_, &cqe);
      if (w == -EINTR) continue;
      if (w < 0) {
        broken_ = true;
        break;
      }
      static_cast<Entry*>(io_uring_cqe_get_data(cqe))->result = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      ++seen;
    }
  }
  if (broken_) {
    for (Entry* e = list; e != nullptr; e = e->next)
      if (e->result == kPending) e->result = -EIO;
  }
  for (Entry* e = list; e != nullptr;) {
    Entry* next = e->next;
    e->waiter.resume();
    e = next;
  }
}

}  // namespace berth::proxy
