// The control plane: owns the workers and providers, turns config changes into snapshots, and
// runs the lifecycle (start, reload, graceful stop). Thread: control (the main thread).
#pragma once

#include <memory>
#include <vector>

#include "config/static_config.h"

namespace berth::app {

/// Runs berth until SIGTERM/SIGINT (or until a successor took over); returns the process exit
/// code. `takeover`: take the listening sockets of the berth serving these entry points (hot upgrade).
int run_server(const config::StaticConfig& static_config, bool takeover = false);

/// Validates static and dynamic config; prints every problem with its place. Returns 0 when clean.
int check_config(const config::StaticConfig& static_config);

}  // namespace berth::app
