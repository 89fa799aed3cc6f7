// Work that would stall a worker's event loop (a bcrypt password check costs ~50-100 ms) runs on a
// small process-wide thread pool; the coroutine hops there and back, so the worker keeps serving
// other connections meanwhile.
#pragma once

#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cstddef>
#include <type_traits>

#include "proxy/coro/task.h"
#include "proxy/net.h"

namespace berth::proxy::coro {

/// The blocking pool (2 threads, created on first use). Thread: any.
boost::asio::thread_pool& blocking_pool();
/// Jobs queued or running on the blocking pool, for callers that shed load. Thread: any.
std::atomic<size_t>& blocking_backlog();

/// Runs `f()` on the blocking pool and resumes the caller on `home` (its worker) with the result.
/// `f` must not touch worker state. Thread: worker.
template <typename F>
Task<std::invoke_result_t<F&>> run_blocking(Executor home, F f) {
  blocking_backlog().fetch_add(1, std::memory_order_relaxed);
  co_await boost::asio::post(blocking_pool().get_executor(), use_task);
  auto result = f();
  blocking_backlog().fetch_sub(1, std::memory_order_relaxed);
  co_await boost::asio::post(home, use_task);
  co_return result;
}

}  // namespace berth::proxy::coro
