// Task<T>: the data plane's coroutine type. Frames come from a per-thread size-class pool (HP-1), and
// `use_task` turns any Asio async operation into an awaitable without allocating a coroutine frame
// for the operation itself (Asio's use_awaitable does, and frames over 1 KiB miss its cache).
#pragma once

#include <boost/asio/async_result.hpp>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <optional>
#include <tuple>
#include <utility>

#include "proxy/block_pool.h"

namespace berth::proxy::coro {

struct PromiseBase {
  std::coroutine_handle<> continuation;  ///< who awaits this task
  std::coroutine_handle<> root;          ///< the detached task at the bottom of the await chain
  bool detached = false;

  static void* operator new(std::size_t size) { return BlockPool::allocate(size); }
  static void operator delete(void* p, std::size_t size) noexcept { BlockPool::deallocate(p, size); }
  void unhandled_exception() noexcept { std::terminate(); }  // the data plane reports errors by value

  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    template <typename P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      PromiseBase& p = h.promise();
      if (p.detached) {
        h.destroy();
        return std::noop_coroutine();
      }
      return p.continuation ? p.continuation : std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  std::suspend_always initial_suspend() noexcept { return {}; }
  FinalAwaiter final_suspend() noexcept { return {}; }
};

template <typename T>
class Task;

namespace detail {
template <typename T>
struct Promise : PromiseBase {
  std::optional<T> value;
  Task<T> get_return_object();
  template <typename U>
  void return_value(U&& v) {
    value.emplace(std::forward<U>(v));
  }
};
template <>
struct Promise<void> : PromiseBase {
  Task<void> get_return_object();
  void return_void() noexcept {}
};
}  // namespace detail

/// A lazily started coroutine; awaiting it runs it to completion and yields its value.
template <typename T = void>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::Promise<T>;
  using Handle = std::coroutine_handle<promise_type>;

  explicit Task(Handle h) : h_(h) {}
  Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Task& operator=(Task&&) = delete;
  ~Task() {
    if (h_) h_.destroy();
  }

  bool await_ready() const noexcept { return false; }
  template <typename P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> awaiting) noexcept {
    h_.promise().continuation = awaiting;
    h_.promise().root = awaiting.promise().root;
    return h_;
  }
  T await_resume() {
    if constexpr (!std::is_void_v<T>) return std::move(*h_.promise().value);
  }

  /// Starts a top-level task that owns itself and frees its frame when it ends. Thread: the
  /// thread that will run its I/O (it runs until its first suspension right here).
  friend void spawn(Task<void> task);

 private:
  Handle h_;
};

namespace detail {
template <typename T>
Task<T> Promise<T>::get_return_object() {
  return Task<T>(std::coroutine_handle<Promise<T>>::from_promise(*this));
}
inline Task<void> Promise<void>::get_return_object() {
  return Task<void>(std::coroutine_handle<Promise<void>>::from_promise(*this));
}
}  // namespace detail

inline void spawn(Task<void> task) {
  auto h = std::exchange(task.h_, {});
  h.promise().detached = true;
  h.promise().root = h;
  h.resume();
}

/// Completion token: `auto [ec, n] = co_await socket.async_read_some(buf, use_task);`
struct UseTask {};
inline constexpr UseTask use_task{};

namespace detail {

template <typename Initiation, typename InitArgs, typename... Results>
class OpAwaiter {
 public:
  OpAwaiter(Initiation init, InitArgs args) : init_(std::move(init)), args_(std::move(args)) {}

  bool await_ready() const noexcept { return false; }
  template <typename P>
  void await_suspend(std::coroutine_handle<P> h) {
    resume_ = h;
    root_ = h.promise().root;
    std::apply([this](auto&&... a) { std::move(init_)(Handler{this}, std::move(a)...); }, std::move(args_));
  }
  std::tuple<Results...> await_resume() { return std::move(*results_); }

 private:
  // The completion handler Asio stores in its operation. If Asio destroys it without calling it
  // (the io_context is going away), the whole task chain is destroyed so nothing leaks. Asio makes
  // the operation with the handler's allocator: BlockPool, deep enough for every operation in
  // flight (Asio's own per-thread cache keeps only BOOST_ASIO_RECYCLING_ALLOCATOR_CACHE_SIZE).
  struct Handler {
    using allocator_type = PoolAllocator<void>;
    OpAwaiter* self;
    explicit Handler(OpAwaiter* s) : self(s) {}
    allocator_type get_allocator() const noexcept { return {}; }
    Handler(Handler&& o) noexcept : self(std::exchange(o.self, nullptr)) {}
    Handler& operator=(Handler&&) = delete;
    ~Handler() {
      if (self) self->root_.destroy();
    }
    template <typename... Args>
    void operator()(Args&&... args) {
      OpAwaiter* s = std::exchange(self, nullptr);
      s->results_.emplace(std::forward<Args>(args)...);
      s->resume_.resume();
    }
  };

  Initiation init_;
  InitArgs args_;
  std::coroutine_handle<> resume_;
  std::coroutine_handle<> root_;
  std::optional<std::tuple<Results...>> results_;
};

}  // namespace detail
}  // namespace berth::proxy::coro

template <typename... Args>
struct boost::asio::async_result<berth::proxy::coro::UseTask, void(Args...)> {
  template <typename Initiation, typename... InitArgs>
  static auto initiate(Initiation&& init, berth::proxy::coro::UseTask, InitArgs&&... args) {
    return berth::proxy::coro::detail::OpAwaiter<std::decay_t<Initiation>, std::tuple<std::decay_t<InitArgs>...>,
                                                 std::decay_t<Args>...>(
        std::forward<Initiation>(init), std::tuple<std::decay_t<InitArgs>...>(std::forward<InitArgs>(args)...));
  }
};
