// Writing a file so that a crash leaves either the old or the new content, never a mix (the ACME
// storage, the deploy state). Thread: any.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace berth {

/// Writes `text` to `path` (a symlink: where it points) with mode 0600: a temp file beside it
/// (`<path>.tmp.<pid>`, so two processes never share one), fsync, rename, fsync of the directory. A bind-mounted file that cannot be renamed over is
/// rewritten in place, its complete copy kept beside it until then. Errors name `path` and say
/// `what` it is ("the ACME storage"); the previous file is kept.
Result<bool> write_file_atomically(const std::string& path, const std::string& text, std::string_view what);

}  // namespace berth
