// forwardAuth: every request is first shown to an authentication server (its headers, as a GET);
// a 2xx answer lets it through, with chosen headers of the answer copied onto it; any other answer
// goes back to the client as it is. The one middleware that waits on the network.
#pragma once

#include <memory>

#include "base/result.h"
#include "config/dynamic_config.h"
#include "proxy/middleware/middleware.h"

namespace berth::proxy::middleware {

/// Resolves the address (http:// only for now). Thread: control.
Result<std::unique_ptr<Middleware>> compile_forward_auth(const config::MiddlewareConfig& config);

}  // namespace berth::proxy::middleware
