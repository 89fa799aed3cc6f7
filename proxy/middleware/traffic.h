// Traffic-shaping middlewares: rateLimit (a token bucket per source, as GCRA in one atomic word)
// and inFlightReq (a concurrency cap per source). Their tables are shared by all workers and
// updated with atomics only (HP-2); a source is the client IP (ipStrategy), a request header or
// the Host.
#pragma once

#include <memory>

#include "base/result.h"
#include "config/dynamic_config.h"
#include "proxy/middleware/middleware.h"

namespace berth::proxy::middleware {

/// Thread: control.
Result<std::unique_ptr<Middleware>> compile_rate_limit(const config::MiddlewareConfig& config);
Result<std::unique_ptr<Middleware>> compile_in_flight_req(const config::MiddlewareConfig& config);

/// Gives back the inFlightReq slots an exchange holds. Thread: worker, when the exchange ends.
void release_in_flight(Edits& edits);

}  // namespace berth::proxy::middleware
