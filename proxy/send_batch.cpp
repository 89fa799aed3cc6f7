#include "proxy/send_batch.h"

#include <sys/socket.h>

#include <boost/asio/post.hpp>
#include <algorithm>
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
  if (saved_ring_fd_ >= 0) ring_.enter_ring_fd = saved_ring_fd_;
  if (ring_ready_) io_uring_queue_exit(&ring_);
}

void SendBatch::send_direct(Entry* entry) noexcept {
  const ssize_t n = ::sendmsg(entry->fd, &entry->msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  entry->result = n >= 0 ? static_cast<int>(n) : -errno;
}

void SendBatch::send_now(Entry* entry) noexcept {
  if (!entry->queued || entry->fd < 0) return;
  send_direct(entry);
  entry->fd = -1;
}

void SendBatch::break_ring_for_testing() {
  saved_ring_fd_ = std::exchange(ring_.enter_ring_fd, -1);  // io_uring_enter(2) fails with EBADF
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
    Entry* chunk = e;
    unsigned prepared = 0;
    for (; e != nullptr && prepared < kRingEntries; e = e->next) {
      e->queued = false;
      if (e->fd < 0) continue;  // sent on its own (send_now)
      if (broken_) {
        send_direct(e);
        continue;
      }
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr) {  // not seen: every chunk is submitted whole before the next one
        send_direct(e);
        continue;
      }
      // MSG_DONTWAIT: a socket that is full fails with EAGAIN at once (the Stream then waits for it
      // the usual way) rather than io_uring waiting for it in the background.
      // One piece (a request without a body in hand, most answers' heads) goes as a send: the
      // kernel then has no msghdr and iovec to copy in.
      if (e->msg.msg_iovlen == 1)
        io_uring_prep_send(sqe, e->fd, e->iov[0].iov_base, e->iov[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
      else
        io_uring_prep_sendmsg(sqe, e->fd, &e->msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      io_uring_sqe_set_data(sqe, e);
      ++prepared;
    }
    if (prepared == 0) continue;
    int rc;
    do rc = io_uring_submit_and_wait(&ring_, prepared);
    while (rc == -EINTR);
    const unsigned taken = rc < 0 ? 0 : std::min(static_cast<unsigned>(rc), prepared);
    if (taken != prepared) {
      // The kernel took the first `taken` sends, in order, and left the others in the ring. The
      // ring is not used again (a later submit would send those twice): they, and every write
      // from now on, go by sendmsg(2).
      LOG_WARN("io_uring submit: ", rc < 0 ? std::strerror(-rc) : "not all sends taken",
               "; each write is a sendmsg(2) of its own from now on");
      broken_ = true;
      unsigned i = 0;
      for (Entry* x = chunk; x != e; x = x->next)
        if (x->fd >= 0 && i++ >= taken) send_direct(x);
    }
    for (unsigned seen = 0; seen < taken;) {
      io_uring_cqe* cqe = nullptr;
      const int w = io_uring_wait_cqe(&ring_, &cqe);
      if (w == -EINTR) continue;
      if (w < 0) {  // the sends were made or not: the writes fail (below) rather than risk twice
        LOG_ERROR("io_uring wait: ", std::strerror(-w), "; each write is a sendmsg(2) of its own from now on");
        broken_ = true;
        break;
      }
      static_cast<Entry*>(io_uring_cqe_get_data(cqe))->result = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      ++seen;
    }
  }
  for (Entry* e = list; e != nullptr; e = e->next)
    if (e->result == kPending) e->result = -EIO;
  for (Entry* e = list; e != nullptr;) {
    Entry* next = e->next;
    e->waiter.resume();
    e = next;
  }
}

}  // namespace berth::proxy
