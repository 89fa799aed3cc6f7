// Worker thread lifecycle, listeners and per-worker pools; see worker.h.
#include "proxy/worker.h"

#include "proxy/h2_session.h"

#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>

#include "base/log.h"
#include "base/memory.h"
#include "proxy/coro/task.h"
#include "proxy/downstream_connection.h"
#include "proxy/observe/metrics.h"
#include "proxy/send_batch.h"

namespace berth::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {
// The block pool's trim gives back a few blocks most seconds under steady load; the heap is purged
// (release_free_memory) only after a burst's worth, since a purge faults its pages in again later.
constexpr size_t kBlocksWorthReleasing = size_t{1} << 20;
}  // namespace

Worker::Worker(int index, std::shared_ptr<const ProcessInfo> info)
    : index_(index),
      info_(std::move(info)),
      open_(new std::atomic<size_t>[info_->entry_points.size()]()),
      drained_(new std::atomic<bool>[info_->entry_points.size()]()),
      draining_(info_->entry_points.size(), 0) {}

Worker::~Worker() { stop(); }

Result<bool> Worker::listen(const std::vector<config::EntryPointConfig>& entry_points,
                            const std::vector<std::vector<int>>& inherited) {
  for (size_t i = 0; i < entry_points.size(); ++i) {
    const auto& ep = entry_points[i];
    boost::system::error_code ec;
    if (i < inherited.size() && !inherited[i].empty()) {
      // A predecessor's sockets (hot upgrade): accept from them; their queued connections come along.
      for (int fd : inherited[i]) {
        sockaddr_storage local{};
        socklen_t len = sizeof local;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len);
        auto acceptor = std::make_unique<tcp::acceptor>(io_);
        acceptor->assign(local.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
        if (ec)
          return Error{"entryPoints." + ep.name + ".address", "cannot take over a listening socket: " + ec.message()};
        acceptors_.push_back({i, std::move(acceptor)});
      }
      continue;
    }
    asio::ip::address addr;
    if (ep.host.empty()) {
      addr = asio::ip::address_v6::any();  // dual-stack, as Go listens on ":port"
    } else {
      std::string host = ep.host;
      if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
      addr = asio::ip::make_address(host, ec);
      if (ec) return Error{"entryPoints." + ep.name + ".address", "\"" + ep.host + "\" is not an IP address"};
    }
    auto acceptor = std::make_unique<tcp::acceptor>(io_);
    tcp::endpoint endpoint(addr, ep.port);
    acceptor->open(endpoint.protocol(), ec);
    if (!ec && addr.is_v6()) acceptor->set_option(asio::ip::v6_only(false), ec);
    if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) {
      int one = 1;
      if (::setsockopt(acceptor->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        ec.assign(errno, boost::system::system_category());
    }
    if (!ec) acceptor->bind(endpoint, ec);
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return Error{"entryPoints." + ep.name + ".address", "cannot listen on \"" + ep.address + "\": " + ec.message()};
    acceptors_.push_back({i, std::move(acceptor)});
  }
  return true;
}

std::vector<std::pair<size_t, int>> Worker::listeners() const {
  std::vector<std::pair<size_t, int>> out;
  for (const auto& l : acceptors_)
    if (l.acceptor->is_open()) out.emplace_back(l.ep, l.acceptor->native_handle());
  return out;
}

void Worker::start() {
  for (size_t i = 0; i < acceptors_.size(); ++i) accept_loop(i);
  schedule_sweep();
  thread_ = std::thread([this] {
    BlockPool::keep_deep_lists();  // the sweep trims them each second
    if (info_->io_uring) SendBatch::init_thread(io_.get_executor());
    try {
      io_.run();
    } catch (const std::exception& e) {
      LOG_ERROR("worker ", index_, " stopped: ", e.what());
    }
    SendBatch::end_thread();
  });
}

void Worker::accept_loop(size_t slot) {
  auto& acceptor = *acceptors_[slot].acceptor;
  const size_t ep_index = acceptors_[slot].ep;
  acceptor.async_accept(io_, [this, slot, ep_index](boost::system::error_code ec, Socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      // Accepted as the drain began: still served (with Connection: close), never dropped unanswered.
      std::make_shared<DownstreamConnection>(*this, ep_index, std::move(socket))->start();
      if (!draining_[ep_index]) accept_loop(slot);
      return;
    }
    if (draining_[ep_index]) return;
    // Out of descriptors or memory: retrying at once would spin. Pause this listener briefly.
    LOG_WARN("accept on entry point ", info_->entry_points[ep_index].name, ": ", ec.message());
    auto pause = std::make_shared<Timer>(io_.get_executor(), std::chrono::milliseconds(100));
    pause->async_wait([this, slot, ep_index, pause](boost::system::error_code) {
      if (!draining_[ep_index]) accept_loop(slot);
    });
  });
}

void Worker::schedule_sweep() {
  sweep_timer_.expires_after(std::chrono::seconds(1));
  sweep_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    if (snapshot_) {
      upstreams_.sweep(snapshot_->longest_idle_conn_timeout);
      idle_upstreams_.store(upstreams_.idle_count(), std::memory_order_relaxed);
      // HTTP/2 connections to servers: closed when idle as long as pooled ones, forgotten once unusable.
      auto now = std::chrono::steady_clock::now();
      for (auto it = h2_clients_.begin(); it != h2_clients_.end();) {
        std::erase_if(it->second, [&](const std::shared_ptr<H2Client>& c) {
          if (c->idle() && now - c->idle_since() > snapshot_->longest_idle_conn_timeout) c->shutdown();
          return c->idle() && !c->usable();
        });
        if (it->second.empty()) it = h2_clients_.erase(it);
        else ++it;
      }
    }
    // Pools shrink to what the last second needed, so a worker that went quiet after a burst gives
    // its memory back (mapped blocks at once; heap memory through release_free_memory()).
    buffers_.trim();
    const bool blocks_freed = BlockPool::trim() >= kBlocksWorthReleasing;
    size_t idle_compressors = std::min(compressors_low_water_, free_compressors_.size());
    free_compressors_.resize(free_compressors_.size() - idle_compressors);
    compressors_low_water_ = free_compressors_.size();
    size_t unused = std::min(states_low_water_, free_states_.size());
    free_states_.resize(free_states_.size() - unused);
    states_low_water_ = free_states_.size();
    if (unused > 0 || idle_compressors > 0 || blocks_freed || std::exchange(states_overflowed_, false))
      release_free_memory();
    schedule_sweep();
  });
}

void Worker::publish(std::shared_ptr<const Snapshot> snapshot) {
  asio::post(io_, [this, snapshot = std::move(snapshot)]() mutable {
    // Balancer state is per worker and per snapshot; rebuilding it here keeps picks lock-free.
    picker_.reset(*snapshot);
    snapshot_ = std::move(snapshot);
    live_generation_.store(snapshot_->generation, std::memory_order_release);
    if (info_->metrics != nullptr) info_->metrics->worker(static_cast<size_t>(index_)).record_swap();
  });
}

void Worker::begin_terminating() { terminating_.store(true, std::memory_order_relaxed); }

void Worker::drain(size_t ep) {
  asio::post(io_, [this, ep] {
    draining_[ep] = 1;
    boost::system::error_code ec;
    for (auto& l : acceptors_)
      if (l.ep == ep) l.acceptor->close(ec);
    for (auto* c = connections_; c; c = c->next_) c->wake_if_idle(ep);
    // Accepts that completed before the close still have their handlers queued; they run (and
    // count their connections) before this one says the entry point is drained.
    asio::post(io_, [this, ep] { drained_[ep].store(true, std::memory_order_release); });
  });
}

void Worker::evict(std::shared_ptr<const DrainTarget> gone) {
  asio::post(io_, [this, gone = std::move(gone)] {
    for (auto* c = connections_; c;) {
      auto* next = c->next_;  // abort() may unlink it
      c->evict(*gone);
      c = next;
    }
  });
}

void Worker::count_on(std::shared_ptr<const DrainTarget> target, std::function<void(size_t)> done) {
  asio::post(io_, [this, target = std::move(target), done = std::move(done)] {
    size_t n = 0;
    for (auto* c = connections_; c; c = c->next_) n += c->drains_into(*target) ? 1 : 0;
    done(n);
  });
}

void Worker::stop() {
  if (!thread_.joinable()) return;
  io_.stop();
  thread_.join();
  // Connections still open after the grace period: abort them and let their coroutines unwind here,
  // while the pools they return memory to are still alive.
  io_.restart();
  boost::system::error_code ec;
  for (auto& l : acceptors_) l.acceptor->close(ec);
  sweep_timer_.cancel();
  for (auto* c = connections_; c; c = c->next_) c->abort();
  for (auto& [_, clients] : h2_clients_)
    for (auto& client : clients) client->abort();
  h2_clients_.clear();
  for (int i = 0; i < 1000 && connections_; ++i) io_.run_for(std::chrono::milliseconds(10));
  deadlines_.stop();
  parks_.stop();
  io_.poll();
}

std::unique_ptr<ExchangeState> Worker::take_exchange_state() {
  if (free_states_.empty()) {
    states_low_water_ = 0;
    return std::make_unique<ExchangeState>();
  }
  auto s = std::move(free_states_.back());
  free_states_.pop_back();
  states_low_water_ = std::min(states_low_water_, free_states_.size());
  return s;
}

void Worker::give_exchange_state(std::unique_ptr<ExchangeState> state) {
  state->log.snapshot.reset();  // an exchange that ended early (an exception, an abort) held it
  if (free_states_.size() < kMaxFreeStates) free_states_.push_back(std::move(state));
  else states_overflowed_ = true;
}

std::unique_ptr<http::Compressor> Worker::take_compressor() {
  if (free_compressors_.empty()) {
    compressors_low_water_ = 0;
    return std::make_unique<http::Compressor>();
  }
  auto c = std::move(free_compressors_.back());
  free_compressors_.pop_back();
  compressors_low_water_ = std::min(compressors_low_water_, free_compressors_.size());
  return c;
}

void Worker::give_compressor(std::unique_ptr<http::Compressor> c) {
  if (free_compressors_.size() < 16) free_compressors_.push_back(std::move(c));
}

void Worker::track(DownstreamConnection* c, size_t ep, bool counted) {
  c->next_ = connections_;
  if (connections_) connections_->prev_ = c;
  connections_ = c;
  if (counted) open_[ep].fetch_add(1, std::memory_order_relaxed);
}

void Worker::untrack(DownstreamConnection* c, size_t ep, bool counted) {
  if (c->prev_) c->prev_->next_ = c->next_;
  else connections_ = c->next_;
  if (c->next_) c->next_->prev_ = c->prev_;
  c->prev_ = c->next_ = nullptr;
  if (counted) open_[ep].fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace berth::proxy
