// The client side of the admin socket: `berth deploy|rollback|rollout|pause|resume|stop|list`.
// Thread: main.
#pragma once

#include <string>
#include <vector>

namespace berth::app {

/// True for the verbs run_admin_command() takes.
bool is_admin_command(const std::string& verb);

/// Sends `verb` with its flags (`args`) to the running berth and prints its progress and answer.
/// Returns the exit code: 0 done, 1 refused or failed, 2 bad usage or berth not reachable.
int run_admin_command(const std::string& verb, const std::vector<std::string>& args);

/// The admin commands' part of `berth help`.
extern const char* const kAdminUsage;

}  // namespace berth::app
