// The authentication middlewares: basicAuth and digestAuth (users inline or from htpasswd /
// htdigest files, read when the snapshot is built). forwardAuth lives in the request flow, as it
// talks to an upstream.
#pragma once

#include <memory>

#include "base/result.h"
#include "config/dynamic_config.h"
#include "proxy/middleware/middleware.h"

namespace berth::proxy::middleware {

/// Thread: control (reads usersFile).
Result<std::unique_ptr<Middleware>> compile_basic_auth(const config::MiddlewareConfig& config);
Result<std::unique_ptr<Middleware>> compile_digest_auth(const config::MiddlewareConfig& config);

/// The first value of request header `id`, or empty. Thread: any.
std::string_view find_header(const http::h1::RequestHead& request, http::HeaderId id);

}  // namespace berth::proxy::middleware
