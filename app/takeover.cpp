// Hot upgrade: listening sockets handed over a unix socket (see takeover.h).
#include "app/takeover.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace berth::app {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;

namespace {

constexpr size_t kMaxDescriptors = 253;  // SCM_MAX_FD
constexpr std::string_view kReady = "ready\n";

std::string errno_text(int e) { return std::strerror(e); }

int connect_unix(const std::string& path, int& error) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = errno;
    return -1;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    ::close(fd);
    error = ENAMETOOLONG;
    return -1;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    error = errno;
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

std::string takeover_socket_path(const config::StaticConfig& sc) {
  std::vector<std::string> addresses;
  for (const auto& ep : sc.entry_points) addresses.push_back(ep.host + ":" + std::to_string(ep.port));
  std::sort(addresses.begin(), addresses.end());
  uint64_t hash = 1469598103934665603ull;  // FNV-1a
  for (const auto& a : addresses)
    for (char c : a + ",") hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  char name[96];
  std::snprintf(name, sizeof name, "/tmp/berth-%u-%016llx.sock", static_cast<unsigned>(::geteuid()),
                static_cast<unsigned long long>(hash));
  return name;
}

// ---- starting the successor ----

namespace {
std::vector<std::string> g_command_line;
}

void set_command_line(int argc, char** argv) { g_command_line.assign(argv, argv + argc); }

Result<bool> spawn_successor() {
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return Error{"SIGUSR2", "cannot find this binary: " + errno_text(errno)};
  self[n] = '\0';
  std::string binary(self);
  // A binary replaced on disk (a package upgrade) shows as "path (deleted)": run the new file.
  if (binary.ends_with(" (deleted)")) binary.resize(binary.size() - 10);
  std::vector<std::string> args = g_command_line;
  if (args.empty()) args.push_back(binary);
  if (std::find(args.begin(), args.end(), "--takeover") == args.end()) args.push_back("--takeover");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // Double fork: the successor is not this process's child, so it is never left a zombie here and
  // lives on when this one exits. Only async-signal-safe calls between fork and exec.
  pid_t child = ::fork();
  if (child < 0) return Error{"SIGUSR2", "fork: " + errno_text(errno)};
  if (child == 0) {
    ::setsid();
    if (::fork() == 0) {
      // Nothing of this process's descriptors but stdin, stdout and stderr: not its client
      // connections (which would stay open as long as the successor lives), nor its listeners
      // (the successor asks for them, and knows which entry point each one is).
      ::close_range(3, ~0U, 0);
      ::execv(binary.c_str(), argv.data());
      ::_exit(127);
    }
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  LOG_INFO("hot upgrade: started ", binary, " --takeover");
  return true;
}

// ---- the successor ----

TakeoverClient::~TakeoverClient() {
  if (fd_ >= 0) ::close(fd_);
}

Result<TakeoverClient::Handover> TakeoverClient::receive(const std::string& path) {
  int error = 0;
  fd_ = connect_unix(path, error);
  if (fd_ < 0) return Error{path, "no running berth to take over from: " + errno_text(error)};
  timeval timeout{10, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  char names[16384];
  iovec iov{names, sizeof names};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxDescriptors)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
  if (n <= 0) return Error{path, "the running berth sent no listeners: " + (n < 0 ? errno_text(errno) : "it closed")};
  std::vector<int> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const int* data = reinterpret_cast<const int*>(CMSG_DATA(c));
    fds.insert(fds.end(), data, data + count);
  }
  // One name per descriptor, an empty line, then "service\turl" per server found down.
  Handover out;
  std::string_view text(names, static_cast<size_t>(n));
  size_t i = 0;
  bool servers = false;
  while (!text.empty()) {
    size_t end = text.find('\n');
    if (end == std::string_view::npos) break;
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end + 1);
    if (line.empty()) {
      servers = true;
    } else if (!servers) {
      if (i < fds.size()) out.listeners[std::string(line)].push_back(fds[i++]);
    } else if (size_t tab = line.find('\t'); tab != std::string_view::npos) {
      out.down.emplace_back(std::string(line.substr(0, tab)), std::string(line.substr(tab + 1)));
    }
  }
  for (; i < fds.size(); ++i) ::close(fds[i]);  // unnamed: not ours to keep
  if ((msg.msg_flags & MSG_CTRUNC) != 0) return Error{path, "too many listeners to take over"};
  return out;
}

void TakeoverClient::ready() {
  if (fd_ < 0) return;
  (void)!::send(fd_, kReady.data(), kReady.size(), MSG_NOSIGNAL);
  ::close(fd_);
  fd_ = -1;
}

// ---- the running berth ----

TakeoverServer::TakeoverServer(asio::io_context& io, std::string path)
    : io_(io), path_(std::move(path)), acceptor_(io) {}

TakeoverServer::~TakeoverServer() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  // After a handover the path belongs to the successor; otherwise it goes with this process.
  if (bound_ && !handed_over_) ::unlink(path_.c_str());
}

Result<bool> TakeoverServer::start(Hooks hooks, bool replace) {
  hooks_ = std::move(hooks);
  // A berth answering there already serves these entry points (a successor replaces it first,
  // then calls this): leave its socket alone. A file nobody answers on is a dead berth's.
  int error = 0;
  if (int probe = replace ? -1 : connect_unix(path_, error); probe >= 0) {
    ::close(probe);
    return Error{path_, "another berth already serves these entry points (start with --takeover to replace it)"};
  }
  ::unlink(path_.c_str());
  boost::system::error_code ec;
  const mode_t old_mask = ::umask(0077);  // 0600 from the start: only this user may take the sockets
  acceptor_.open(local(), ec);
  if (!ec) acceptor_.bind(local::endpoint(path_), ec);
  ::umask(old_mask);
  if (!ec) acceptor_.listen(4, ec);
  if (ec) return Error{path_, "cannot listen for a successor: " + ec.message()};
  bound_ = true;
  accept();
  return true;
}

void TakeoverServer::accept() {
  auto peer = std::make_shared<local::socket>(io_);
  acceptor_.async_accept(*peer, [this, peer](boost::system::error_code ec) {
    if (ec == asio::error::operation_aborted) return;
    if (ec) {
      LOG_WARN("hot upgrade: accept on ", path_, ": ", ec.message());
      return;
    }
    // Only the same user gets the sockets (the file's mode says so too).
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(peer->native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != ::geteuid()) {
      LOG_WARN("hot upgrade: refused a connection from uid ", cred.uid);
      accept();
      return;
    }
    hooks_.handing(true);
    std::string names;
    std::vector<int> fds;
    for (const auto& [name, fd] : hooks_.listeners()) {
      if (fds.size() == kMaxDescriptors) break;
      names.append(name).append("\n");
      fds.push_back(fd);
    }
    names.append("\n");
    for (const auto& [service, url] : hooks_.down())
      if (names.size() + service.size() + url.size() < 16000) names.append(service).append("\t").append(url).append("\n");
    iovec iov{names.data(), names.size()};
    std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    if (::sendmsg(peer->native_handle(), &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(names.size())) {
      LOG_WARN("hot upgrade: sending the listeners failed: ", errno_text(errno));
      hooks_.handing(false);
      accept();
      return;
    }
    LOG_INFO("hot upgrade: ", fds.size(), " listening sockets handed to process ", cred.pid,
             "; waiting for it to serve");
    wait_ready(peer);
  });
}

void TakeoverServer::wait_ready(std::shared_ptr<local::socket> peer, std::shared_ptr<std::string> buffer) {
  if (!buffer) buffer = std::make_shared<std::string>();
  peer->async_wait(local::socket::wait_read, [this, peer, buffer](boost::system::error_code ec) {
    char data[16];
    ssize_t n = ec ? -1 : ::recv(peer->native_handle(), data, sizeof data, MSG_DONTWAIT);
    if (n < 0 && !ec && (errno == EAGAIN || errno == EINTR)) return wait_ready(peer, buffer);
    if (n > 0) buffer->append(data, static_cast<size_t>(n));
    if (buffer->starts_with(kReady)) {
      handed_over_ = true;
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      hooks_.on_ready();
      return;
    }
    if (n > 0 && buffer->size() < kReady.size()) return wait_ready(peer, buffer);
    // It died (or spoke nonsense) before serving: this process goes on serving and waits again.
    LOG_WARN("hot upgrade: the new process went away before it served; still serving here");
    hooks_.handing(false);
    accept();
  });
}

}  // namespace berth::app
