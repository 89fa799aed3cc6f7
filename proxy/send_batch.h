// SendBatch: a worker's plain-socket writes of one turn of its event loop, sent together by one
// io_uring_enter(2) when the turn's handlers have run, instead of one sendmsg(2) each as they come.
//
// Why: a proxy and the servers behind it often share the CPUs (one Docker host). A sendmsg(2) to a
// server wakes it, and the scheduler lets the woken server preempt berth as that call returns: berth
// then forwards one request per context switch, and each side pays a switch per request. Sent in
// one call, the turn's requests wake the server once; it answers them all before berth runs again.
// On this machine's wrk rig (berth and the test backend on one CPU) that took the requests per
// switch from 2 to over 30 and the CPU per request down for both (bench/RESULTS.md).
//
// A write waits in the batch only until the end of the turn; what the socket does not take then (a
// full socket buffer) the Stream writes the usual way, waiting for writability. Where the kernel
// refuses io_uring (Docker 25's default seccomp profile does, as does kernel.io_uring_disabled), or
// with `ioUring: false`, there is no batch and every write is a sendmsg(2) of its own, as before.
// Thread: worker (each worker thread has its own, made by init_thread()).
#pragma once

#include <liburing.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <climits>
#include <coroutine>
#include <cstddef>

#include "proxy/net.h"

namespace berth::proxy {

/// One write waiting in a SendBatch; it lives in the waiting coroutine's frame.
struct SendBatchEntry {
  static constexpr size_t kMaxBuffers = 4;
  static constexpr int kPending = INT_MIN;

  int fd = -1;          ///< -1 once sent on its own (send_now): the batch leaves it out
  bool queued = false;  ///< in the batch, not sent yet
  msghdr msg{};
  iovec iov[kMaxBuffers]{};
  int result = kPending;  ///< bytes sent, or -errno
  std::coroutine_handle<> waiter;
  std::coroutine_handle<> root;  ///< destroyed if the batch goes away with the write unsent
  SendBatchEntry* next = nullptr;
};

class SendBatch {
 public:
  using Entry = SendBatchEntry;
  static constexpr int kPending = Entry::kPending;

  /// `co_await SendBatch::Send{batch, entry}` queues `entry` (fd and iov set) and yields when the
  /// batch was sent; entry.result says how it went.
  struct Send {
    SendBatch* batch;
    Entry* entry;
    bool await_ready() const noexcept { return false; }
    template <typename P>
    void await_suspend(std::coroutine_handle<P> h) {
      entry->waiter = h;
      entry->root = h.promise().root;
      batch->add(entry);
    }
    void await_resume() const noexcept {}
  };

  /// The calling thread's batch, or null (none was made on this thread, or io_uring is refused).
  static SendBatch* current() noexcept;
  /// Makes the calling thread's batch, for the io_context `executor` runs on this thread. False
  /// when the kernel refuses io_uring (logged once): writes then go one sendmsg(2) each.
  static bool init_thread(Executor executor);
  /// Ends the calling thread's batch; writes still queued end with their coroutines.
  static void end_thread();

  /// Sends `entry` at once if it still waits (its socket is about to close, be cancelled or leave
  /// the reactor): what the socket takes goes out before the close, as a write Asio made at once
  /// would have, and the batch never sends to the descriptor, which may be another socket's by then.
  static void send_now(Entry* entry) noexcept;

  /// Makes the next submit fail, as a kernel out of memory would (tests only).
  void break_ring_for_testing();

  SendBatch(const SendBatch&) = delete;
  SendBatch& operator=(const SendBatch&) = delete;

 private:
  struct Flush;  // the handler add() posts

  explicit SendBatch(Executor executor) : executor_(executor) {}
  ~SendBatch();
  void add(Entry* entry);
  void flush();
  /// sendmsg(2) of `entry` now, without waiting; sets its result.
  static void send_direct(Entry* entry) noexcept;

  Executor executor_;
  io_uring ring_{};
  Entry* head_ = nullptr;
  Entry* tail_ = nullptr;
  bool flush_posted_ = false;
  bool ring_ready_ = false;
  bool broken_ = false;  ///< a submit failed: the ring is not used again
  int saved_ring_fd_ = -1;  ///< break_ring_for_testing()
};

}  // namespace berth::proxy
