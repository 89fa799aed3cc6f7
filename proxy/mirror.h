// Mirroring services: a copy of an exchange's request goes to each mirror that is due, and the
// mirror's answer is read and dropped. Fire and forget: the client's exchange never waits for it.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <string>

#include "proxy/coro/task.h"

namespace berth::proxy {

class Worker;

/// Mirror requests in flight on this thread, and the most a worker keeps at once (beyond: skipped).
size_t mirrors_in_flight();
inline constexpr size_t kMaxMirrorsInFlight = 256;

/// Sends `request` (head and body, "Connection: close") to `address` and reads the answer until the
/// server closes, all within `timeout`. Thread: worker (spawned detached).
coro::Task<void> send_mirror(Worker& worker, boost::asio::ip::tcp::endpoint address, std::string request,
                             std::chrono::milliseconds timeout);

}  // namespace berth::proxy
