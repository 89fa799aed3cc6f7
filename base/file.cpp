// See file.h.
#include "base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace berth {
namespace {

std::string errno_text() { return std::strerror(errno); }

// Writes all of `text` to `fd` and syncs it; false with errno set on failure.
bool write_all(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return ::fsync(fd) == 0;
}

}  // namespace

Result<bool> write_file_atomically(const std::string& given_path, const std::string& text, std::string_view what) {
  std::error_code canonical_error;
  const auto resolved = std::filesystem::canonical(given_path, canonical_error);
  const std::string path = canonical_error ? given_path : resolved.string();
  const std::string w(what);
  // A name of this process's own: two writers (an old and a new berth in a hot upgrade) never mix.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Error{path, "cannot write " + w + " (" + tmp + "): " + errno_text()};
  if (::fchmod(fd, 0600) != 0 || !write_all(fd, text)) {
    const std::string why = errno_text();
    ::close(fd);
    ::unlink(tmp.c_str());
    return Error{path, "cannot write " + w + ": " + why + " (the previous file is kept)"};
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    if (errno != EBUSY && errno != EXDEV) {
      const std::string why = errno_text();
      ::unlink(tmp.c_str());
      return Error{path, "cannot replace " + w + ": " + why + " (the previous file is kept)"};
    }
    // A file bind-mounted into a container cannot be renamed over: it is rewritten in place. The
    // complete copy stays beside it until then, so a crash midway loses nothing.
    const int in_place = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (in_place < 0 || !write_all(in_place, text)) {
      const std::string why = errno_text();
      if (in_place >= 0) ::close(in_place);
      return Error{path, "cannot rewrite " + w + " in place: " + why + "; its new content is in " + tmp};
    }
    ::close(in_place);
    ::unlink(tmp.c_str());
    return true;
  }
  const std::string dir = std::filesystem::path(path).parent_path().string();
  if (const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

}  // namespace berth
