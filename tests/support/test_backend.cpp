// berth_test_backend: a small, fast HTTP/1.1 origin server for integration tests and for the
// load-benchmark "ceiling". Single file, plain C++20 + POSIX/epoll (edge-triggered, non-blocking).
//
//   berth_test_backend --listen 127.0.0.1:PORT [--listen ...] [--name NAME] [--threads N]
//
// Port 0 picks a free port. On start it prints "READY <port>" (first listener) and then
// "PORTS <p1> <p2> ..." (all listeners), flushing stdout. SIGTERM/SIGINT exit with status 0.
// SIGUSR1 makes it fail from then on: every answer is a 500 "failing NAME" (a broken deploy).
//
// Endpoints (routing looks at the path only; the query is ignored):
//   /size/N          200, N bytes of 'x' (Content-Length), streamed from a static buffer
//   /chunked/N       200, N bytes of 'x' in several chunks + trailer "X-Trailer: done"
//   /echo            200 application/json {"method","target","version","headers":[[n,v],...],"body_bytes"}
//   /sink            200, body = number of request body bytes received (body is discarded)
//   /delay/MS        200 "delayed" after MS milliseconds (timer, other connections keep going)
//   /status/CODE     CODE (200..999) with a short body (none for 204/304)
//   /close           200 with "Connection: close", then closes
//   /reset           closes at once with SO_LINGER 0 (RST), no answer
//   /echo/ANY        same as /echo (lets tests see rewritten paths)
//   /eof-body        200 without Content-Length/chunked, body "until-close", then closes
//   /early-hints     103 Early Hints (Link header), then 200 "hinted"
//   /hostname        200, body = Host header value
//   /headers-count   200, body = number of request header fields
//   /count           200, body = requests served by this process so far (this one included)
//   /set-cookie/N=V  200 with "Set-Cookie: N=V"
//   /untyped         200 with an HTML body and no Content-Type (for sniffing)
//   anything else    200, body = NAME
// Every response carries "Content-Type" and "X-Backend: NAME". Request bodies (Content-Length or
// chunked) are read and counted for every endpoint; "Expect: 100-continue" gets an interim
// "HTTP/1.1 100 Continue" before the body is read. Keep-alive and pipelining are supported;
// HTTP/1.0 closes unless the request says "Connection: keep-alive".
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <queue>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

std::string g_name = "backend";
volatile sig_atomic_t g_failing = 0;  // SIGUSR1: answer 500 to everything
std::atomic<uint64_t> g_requests{0};

constexpr size_t kXBufSize = 256 * 1024;
char g_xbuf[kXBufSize];  // filled with 'x' at start-up; source of /size bodies

constexpr size_t kInitRbuf = 16 * 1024;
constexpr size_t kMaxHead = 1024 * 1024;   // larger request heads get 431
constexpr size_t kMaxLine = 64 * 1024;     // chunk-size / trailer line limit
constexpr size_t kScratch = 256 * 1024;    // direct body reads (sink) go here
constexpr size_t kOutHighWater = 256 * 1024;
constexpr uint64_t kDrainMs = 2000;        // after a graceful close, wait this long for the peer's FIN

uint64_t now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}

bool ieq(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = char(x + 32);
    if (y >= 'A' && y <= 'Z') y = char(y + 32);
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Calls f(token) for each comma-separated, trimmed, non-empty token.
template <class F>
void for_tokens(std::string_view v, F&& f) {
  while (!v.empty()) {
    size_t c = v.find(',');
    std::string_view t = trim(v.substr(0, c));
    if (!t.empty()) f(t);
    if (c == std::string_view::npos) break;
    v.remove_prefix(c + 1);
  }
}

bool parse_u64(std::string_view s, uint64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
    v = v * 10 + uint64_t(ch - '0');
  }
  out = v;
  return true;
}

void append_u64(std::string& s, uint64_t v) {
  char b[24];
  auto r = std::to_chars(b, b + sizeof b, v);
  s.append(b, r.ptr);
}

void json_str(std::string& o, std::string_view s) {
  o.push_back('"');
  for (unsigned char ch : s) {
    switch (ch) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\r': o += "\\r"; break;
      case '\t': o += "\\t"; break;
      default:
        if (ch < 0x20 || ch == 0x7f) {
          char b[8];
          snprintf(b, sizeof b, "\\u%04x", ch);
          o += b;
        } else {
          o.push_back(char(ch));
        }
    }
  }
  o.push_back('"');
}

const char* reason(int code) {
  switch (code) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
  }
}

enum class Ep { Default, Size, Chunked, Echo, Sink, Delay, Status, Close, Reset, EofBody, Hostname, HeadersCount, Count, EarlyHints, SetCookie, Untyped };
enum class St { Head, Body, Delay, Drain };
enum class BodyMode { None, Length, Chunked };
enum class Ch { Size, Data, DataCrlf, Trailer };
enum class Proc { NeedMore, Flush, Closed };

struct Handle {
  bool listener = false;
  int fd = -1;
};

struct Conn : Handle {
  bool dead = false;
  int timers = 0;         // outstanding timer entries referencing this Conn
  bool drained = false;   // last read was short and no RDHUP was seen: skip the EAGAIN read
  bool rdhup = false;
  St st = St::Head;

  std::unique_ptr<char[]> rbuf;
  size_t rcap = 0, rpos = 0, rlen = 0, scan = 0;

  std::string out;
  size_t opos = 0;
  uint64_t stream_left = 0;     // body bytes still to generate
  bool stream_chunked = false;  // generate as chunks (else raw from g_xbuf)
  bool trailer_pending = false;
  uint64_t chunk_size = 0;
  bool close_after = false;

  // current request
  Ep ep = Ep::Default;
  uint64_t num = 0;
  bool is_head = false;
  bool keep_alive = true;
  bool http10 = false;
  BodyMode bm = BodyMode::None;
  Ch ch = Ch::Size;
  uint64_t body_left = 0;
  uint64_t body_bytes = 0;
  size_t header_count = 0;
  std::string aux;  // /echo: JSON prefix; /hostname: Host value
};

struct Timer {
  uint64_t at;
  Conn* c;
  bool operator>(const Timer& o) const { return at > o.at; }
};

class Worker {
 public:
  explicit Worker(const std::vector<int>& lfds) : scratch_(new char[kScratch]) {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) { perror("epoll_create1"); exit(1); }
    for (int fd : lfds) {
      auto* h = new Handle;
      h->listener = true;
      h->fd = fd;
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLEXCLUSIVE;
      ev.data.ptr = h;
      if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) < 0) { perror("epoll_ctl listener"); exit(1); }
    }
  }

  [[noreturn]] void run() {
    epoll_event evs[256];
    for (;;) {
      int timeout = -1;
      if (!timers_.empty()) {
        uint64_t n = now_ms();
        timeout = timers_.top().at <= n ? 0 : int(std::min<uint64_t>(timers_.top().at - n, 3600000));
      }
      int n = epoll_wait(ep_, evs, 256, timeout);
      if (n < 0) {
        if (errno == EINTR) continue;
        perror("epoll_wait");
        exit(1);
      }
      for (int i = 0; i < n; ++i) {
        auto* h = static_cast<Handle*>(evs[i].data.ptr);
        if (h->listener) {
          accept_all(h->fd);
          continue;
        }
        auto* c = static_cast<Conn*>(h);
        uint32_t e = evs[i].events;
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->drained = false;
        if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->rdhup = true;
        drive(c);
      }
      if (!timers_.empty()) run_timers();
    }
  }

 private:
  int ep_;
  std::unique_ptr<char[]> scratch_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;

  void accept_all(int lfd) {
    for (int k = 0; k < 128; ++k) {
      int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;  // EAGAIN (another worker took it), EMFILE, ...
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto* c = new Conn;
      c->fd = fd;
      c->rbuf.reset(new char[kInitRbuf]);
      c->rcap = kInitRbuf;
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
      ev.data.ptr = c;
      if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(fd);
        delete c;
      }
    }
  }

  void arm(Conn* c, uint64_t ms) {
    c->timers++;
    timers_.push(Timer{now_ms() + ms, c});
  }

  void run_timers() {
    uint64_t n = now_ms();
    while (!timers_.empty() && timers_.top().at <= n) {
      Conn* c = timers_.top().c;
      timers_.pop();
      c->timers--;
      if (c->dead) {
        if (c->timers == 0) delete c;
        continue;
      }
      if (c->st == St::Delay) {
        respond(c);
        c->st = St::Head;
        drive(c);
      } else if (c->st == St::Drain) {
        close_conn(c);
      }
    }
  }

  void close_conn(Conn* c) {
    if (c->dead) return;
    close(c->fd);
    c->fd = -1;
    c->dead = true;
    if (c->timers == 0) delete c;
  }

  void reset_conn(Conn* c) {
    linger l{1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close_conn(c);
  }

  // Writes pending output and generated body. 1 = all written, 0 = would block, -1 = closed.
  int flush(Conn* c) {
    for (;;) {
      if (c->stream_chunked && c->opos == c->out.size() && (c->stream_left > 0 || c->trailer_pending)) fill_chunks(c);
      size_t olen = c->out.size() - c->opos;
      uint64_t raw = c->stream_chunked ? 0 : c->stream_left;
      if (olen == 0 && raw == 0) {
        c->out.clear();
        c->opos = 0;
        return 1;
      }
      iovec iov[2];
      int n = 0;
      if (olen) iov[n++] = iovec{c->out.data() + c->opos, olen};
      if (raw) iov[n++] = iovec{g_xbuf, size_t(std::min<uint64_t>(raw, kXBufSize))};
      ssize_t w = writev(c->fd, iov, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        close_conn(c);
        return -1;
      }
      size_t ww = size_t(w);
      if (ww >= olen) {
        c->opos += olen;
        c->stream_left -= (ww - olen);
      } else {
        c->opos += ww;
      }
      if (c->opos == c->out.size()) {
        c->out.clear();
        c->opos = 0;
      }
    }
  }

  void fill_chunks(Conn* c) {
    c->out.clear();
    c->opos = 0;
    while (c->out.size() < 64 * 1024 && c->stream_left > 0) {
      uint64_t cs = std::min(c->chunk_size, c->stream_left);
      char b[24];
      auto r = std::to_chars(b, b + sizeof b, cs, 16);
      c->out.append(b, r.ptr);
      c->out += "\r\n";
      c->out.append(size_t(cs), 'x');
      c->out += "\r\n";
      c->stream_left -= cs;
    }
    if (c->stream_left == 0 && c->trailer_pending) {
      c->out += "0\r\nX-Trailer: done\r\n\r\n";
      c->trailer_pending = false;
    }
  }

  void graceful_close(Conn* c) {
    shutdown(c->fd, SHUT_WR);
    c->close_after = false;
    c->st = St::Drain;
    arm(c, kDrainMs);
    drain(c);
  }

  void drain(Conn* c) {
    for (;;) {
      ssize_t n = recv(c->fd, scratch_.get(), kScratch, 0);
      if (n > 0) continue;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      close_conn(c);  // EOF or error
      return;
    }
  }

  void drive(Conn* c) {
    for (;;) {
      int f = flush(c);
      if (f <= 0) return;
      if (c->close_after) {
        graceful_close(c);
        return;
      }
      if (c->st == St::Drain) {
        drain(c);
        return;
      }
      if (c->st == St::Delay) return;
      Proc p = process(c);
      if (p == Proc::Closed) return;
      if (p == Proc::Flush) continue;
      if (c->opos < c->out.size()) continue;  // e.g. 100 Continue or pipelined answers
      if (c->drained) return;
      if (!read_more(c)) return;
    }
  }

  // Returns true when bytes were read, false when the caller must wait (or the conn closed).
  bool read_more(Conn* c) {
    for (;;) {
      uint64_t seg = 0;
      if (c->st == St::Body && c->rpos == c->rlen) {
        if (c->bm == BodyMode::Length || (c->bm == BodyMode::Chunked && c->ch == Ch::Data)) seg = c->body_left;
      }
      size_t want;
      ssize_t n;
      if (seg >= 4096) {  // large body segment: read straight into scratch and count it
        want = size_t(std::min<uint64_t>(seg, kScratch));
        n = recv(c->fd, scratch_.get(), want, 0);
        if (n > 0) {
          c->body_left -= uint64_t(n);
          c->body_bytes += uint64_t(n);
        }
      } else {
        if (c->rpos == c->rlen) c->rpos = c->rlen = 0;
        if (c->rcap - c->rlen < 4096 && c->rpos > 0) {
          memmove(c->rbuf.get(), c->rbuf.get() + c->rpos, c->rlen - c->rpos);
          c->rlen -= c->rpos;
          c->rpos = 0;
        }
        if (c->rlen == c->rcap) {
          size_t ncap = c->rcap * 2;
          if (ncap > 2 * kMaxHead) {  // unreachable: the parsers bail out first
            close_conn(c);
            return false;
          }
          std::unique_ptr<char[]> nb(new char[ncap]);
          memcpy(nb.get(), c->rbuf.get(), c->rlen);
          c->rbuf = std::move(nb);
          c->rcap = ncap;
        }
        want = c->rcap - c->rlen;
        n = recv(c->fd, c->rbuf.get() + c->rlen, want, 0);
        if (n > 0) c->rlen += size_t(n);
      }
      if (n > 0) {
        if (size_t(n) < want && !c->rdhup) c->drained = true;
        return true;
      }
      if (n == 0) {
        close_conn(c);
        return false;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
      close_conn(c);
      return false;
    }
  }

  void error_response(Conn* c, int code) {
    c->keep_alive = false;
    c->close_after = true;
    c->is_head = false;
    start_response(c, code, "text/plain", int64_t(strlen(reason(code)) + 1), nullptr);
    c->out += reason(code);
    c->out += "\n";
    c->st = St::Head;
  }

  Proc process(Conn* c) {
    for (;;) {
      if (c->st == St::Head) {
        int r = parse_head(c);
        if (r == 0) return Proc::NeedMore;
        if (r < 0) {
          error_response(c, r == -2 ? 431 : r == -3 ? 501 : r == -4 ? 505 : 400);
          return Proc::Flush;
        }
        if (c->ep == Ep::Reset) {
          if (c->opos < c->out.size()) {  // best effort for earlier pipelined answers
            ssize_t w = write(c->fd, c->out.data() + c->opos, c->out.size() - c->opos);
            (void)w;
          }
          reset_conn(c);
          return Proc::Closed;
        }
        c->st = St::Body;
      }
      if (c->st == St::Body) {
        int r = consume_body(c);
        if (r == 0) return Proc::NeedMore;
        if (r < 0) {
          error_response(c, 400);
          return Proc::Flush;
        }
        finish_request(c);
        if (c->st == St::Delay) return Proc::Flush;
        if (c->close_after || c->stream_left || c->trailer_pending || c->out.size() >= kOutHighWater) return Proc::Flush;
        continue;
      }
      return Proc::Flush;
    }
  }

  // 1 = head parsed, 0 = need more, <0 = error (-1 400, -2 431, -3 501, -4 505).
  int parse_head(Conn* c) {
    char* b = c->rbuf.get();
    // Ignore empty lines before a request line (a started request never begins with CR/LF).
    while (c->rpos < c->rlen && (b[c->rpos] == '\r' || b[c->rpos] == '\n')) c->rpos++;
    if (c->rpos == c->rlen) {
      c->scan = 0;
      return 0;
    }
    size_t i = c->rpos + c->scan, end = 0;
    for (;;) {
      char* p = static_cast<char*>(memchr(b + i, '\n', c->rlen - i));
      if (!p) {
        c->scan = c->rlen - c->rpos;
        break;
      }
      size_t nl = size_t(p - b);
      if (nl + 1 < c->rlen && b[nl + 1] == '\n') { end = nl + 2; break; }
      if (nl + 2 < c->rlen && b[nl + 1] == '\r' && b[nl + 2] == '\n') { end = nl + 3; break; }
      if (nl + 1 >= c->rlen || (b[nl + 1] == '\r' && nl + 2 >= c->rlen)) {
        c->scan = nl - c->rpos;
        break;
      }
      i = nl + 1;
    }
    if (end == 0) {
      if (c->rlen - c->rpos > kMaxHead) return -2;
      return 0;
    }
    std::string_view head(b + c->rpos, end - c->rpos);
    c->rpos = end;
    c->scan = 0;
    if (head.size() > kMaxHead) return -2;

    g_requests.fetch_add(1, std::memory_order_relaxed);
    c->ep = Ep::Default;
    c->num = 0;
    c->bm = BodyMode::None;
    c->body_left = 0;
    c->body_bytes = 0;
    c->header_count = 0;
    c->aux.clear();

    size_t le = head.find('\n');
    std::string_view line = trim(head.substr(0, le));
    head.remove_prefix(le + 1);
    size_t s1 = line.find(' ');
    if (s1 == std::string_view::npos || s1 == 0) return -1;
    std::string_view method = line.substr(0, s1);
    std::string_view rest = line.substr(s1 + 1);
    size_t s2 = rest.find(' ');
    if (s2 == std::string_view::npos || s2 == 0) return -1;
    std::string_view target = rest.substr(0, s2);
    std::string_view version = trim(rest.substr(s2 + 1));
    if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.') return -1;
    if (version[5] != '1') return -4;
    c->http10 = version[7] == '0';
    c->keep_alive = !c->http10;
    c->is_head = method == "HEAD";

    std::string_view path = target.substr(0, target.find('?'));
    route(c, path);
    if (c->ep == Ep::Echo) {
      c->aux = "{\"method\":";
      json_str(c->aux, method);
      c->aux += ",\"target\":";
      json_str(c->aux, target);
      c->aux += ",\"version\":";
      json_str(c->aux, version.substr(5));
      c->aux += ",\"headers\":[";
    }

    bool have_cl = false, te_chunked = false, te_other = false, expect_continue = false;
    uint64_t cl = 0;
    while (!head.empty()) {
      le = head.find('\n');
      std::string_view l = head.substr(0, le);
      head.remove_prefix(le == std::string_view::npos ? head.size() : le + 1);
      if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
      if (l.empty()) break;
      if (l[0] == ' ' || l[0] == '\t') return -1;  // obs-fold
      size_t colon = l.find(':');
      if (colon == std::string_view::npos || colon == 0) return -1;
      std::string_view name = l.substr(0, colon);
      if (name.find_first_of(" \t") != std::string_view::npos) return -1;
      std::string_view value = trim(l.substr(colon + 1));
      c->header_count++;
      if (c->ep == Ep::Echo) {
        if (c->header_count > 1) c->aux.push_back(',');
        c->aux.push_back('[');
        json_str(c->aux, name);
        c->aux.push_back(',');
        json_str(c->aux, value);
        c->aux.push_back(']');
      }
      switch (name.size()) {
        case 4:
          if (c->ep == Ep::Hostname && ieq(name, "host")) c->aux.assign(value);
          break;
        case 6:
          if (ieq(name, "expect") && ieq(value, "100-continue")) expect_continue = true;
          break;
        case 10:
          if (ieq(name, "connection")) {
            for_tokens(value, [&](std::string_view t) {
              if (ieq(t, "close")) c->keep_alive = false;
              else if (ieq(t, "keep-alive") && c->http10) c->keep_alive = true;
            });
          }
          break;
        case 14:
          if (ieq(name, "content-length")) {
            uint64_t v;
            if (!parse_u64(value, v)) return -1;
            if (have_cl && v != cl) return -1;
            have_cl = true;
            cl = v;
          }
          break;
        case 17:
          if (ieq(name, "transfer-encoding")) {
            std::string_view last;
            for_tokens(value, [&](std::string_view t) { last = t; });
            if (ieq(last, "chunked")) te_chunked = true, te_other = false;
            else te_other = true;
          }
          break;
        default:
          break;
      }
    }
    if (c->ep == Ep::Echo) c->aux += "],\"body_bytes\":";
    if (te_other) return -3;
    if (te_chunked) {
      c->bm = BodyMode::Chunked;
      c->ch = Ch::Size;
      if (have_cl) c->keep_alive = false;  // RFC 9112 6.1: close after a message with both
    } else if (have_cl && cl > 0) {
      c->bm = BodyMode::Length;
      c->body_left = cl;
    }
    if (expect_continue && c->bm != BodyMode::None && !c->http10) c->out += "HTTP/1.1 100 Continue\r\n\r\n";
    return 1;
  }

  static void route(Conn* c, std::string_view path) {
    auto num_after = [&](std::string_view prefix, uint64_t& v) {
      return path.size() > prefix.size() && path.substr(0, prefix.size()) == prefix &&
             parse_u64(path.substr(prefix.size()), v);
    };
    uint64_t v;
    if (path.size() < 2) return;
    switch (path[1]) {
      case 's':
        if (num_after("/size/", v)) c->ep = Ep::Size, c->num = v;
        else if (num_after("/status/", v) && v >= 200 && v <= 999) c->ep = Ep::Status, c->num = v;
        else if (path == "/sink") c->ep = Ep::Sink;
        else if (path.substr(0, 12) == "/set-cookie/") c->ep = Ep::SetCookie, c->aux.assign(path.substr(12));
        break;
      case 'c':
        if (num_after("/chunked/", v)) c->ep = Ep::Chunked, c->num = v;
        else if (path == "/close") c->ep = Ep::Close;
        else if (path == "/count") c->ep = Ep::Count;
        break;
      case 'e':
        if (path == "/echo" || path.substr(0, 6) == "/echo/") c->ep = Ep::Echo;
        else if (path == "/eof-body") c->ep = Ep::EofBody;
        else if (path == "/early-hints") c->ep = Ep::EarlyHints;
        break;
      case 'd':
        if (num_after("/delay/", v)) c->ep = Ep::Delay, c->num = std::min<uint64_t>(v, 3600 * 1000);
        break;
      case 'r':
        if (path == "/reset") c->ep = Ep::Reset;
        break;
      case 'u':
        if (path == "/untyped") c->ep = Ep::Untyped;
        break;
      case 'h':
        if (path == "/hostname") c->ep = Ep::Hostname;
        else if (path == "/headers-count") c->ep = Ep::HeadersCount;
        break;
      default:
        break;
    }
  }

  // 1 = body complete, 0 = need more, -1 = malformed.
  int consume_body(Conn* c) {
    char* b = c->rbuf.get();
    for (;;) {
      if (c->bm == BodyMode::None) return 1;
      size_t avail = c->rlen - c->rpos;
      if (c->bm == BodyMode::Length) {
        size_t take = size_t(std::min<uint64_t>(avail, c->body_left));
        c->rpos += take;
        c->body_left -= take;
        c->body_bytes += take;
        return c->body_left == 0 ? 1 : 0;
      }
      switch (c->ch) {
        case Ch::Data: {
          size_t take = size_t(std::min<uint64_t>(avail, c->body_left));
          c->rpos += take;
          c->body_left -= take;
          c->body_bytes += take;
          if (c->body_left > 0) return 0;
          c->ch = Ch::DataCrlf;
          break;
        }
        case Ch::DataCrlf: {
          if (avail == 0) return 0;
          if (b[c->rpos] == '\n') {
            c->rpos += 1;
          } else if (b[c->rpos] == '\r') {
            if (avail < 2) return 0;
            if (b[c->rpos + 1] != '\n') return -1;
            c->rpos += 2;
          } else {
            return -1;
          }
          c->ch = Ch::Size;
          break;
        }
        case Ch::Size:
        case Ch::Trailer: {
          char* p = static_cast<char*>(memchr(b + c->rpos, '\n', avail));
          if (!p) return avail > kMaxLine ? -1 : 0;
          std::string_view line(b + c->rpos, size_t(p - (b + c->rpos)));
          c->rpos = size_t(p - b) + 1;
          if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
          if (c->ch == Ch::Trailer) {
            if (line.empty()) return 1;
            break;
          }
          line = trim(line.substr(0, line.find(';')));
          if (line.empty() || line.size() > 15) return -1;
          uint64_t sz = 0;
          auto r = std::from_chars(line.data(), line.data() + line.size(), sz, 16);
          if (r.ec != std::errc() || r.ptr != line.data() + line.size()) return -1;
          if (sz == 0) {
            c->ch = Ch::Trailer;
          } else {
            c->ch = Ch::Data;
            c->body_left = sz;
          }
          break;
        }
      }
    }
  }

  void finish_request(Conn* c) {
    if (c->ep == Ep::Delay && c->num > 0) {
      c->st = St::Delay;
      arm(c, c->num);
      return;
    }
    respond(c);
    c->st = St::Head;
  }

  // content_length < 0: no Content-Length header.
  void start_response(Conn* c, int code, const char* ctype, int64_t content_length, const char* extra) {
    std::string& o = c->out;
    o += "HTTP/1.1 ";
    append_u64(o, uint64_t(code));
    o.push_back(' ');
    o += reason(code);
    if (ctype) {  // nullptr: no Content-Type at all
      o += "\r\nContent-Type: ";
      o += ctype;
    }
    o += "\r\nX-Backend: ";
    o += g_name;
    if (content_length >= 0) {
      o += "\r\nContent-Length: ";
      append_u64(o, uint64_t(content_length));
    }
    if (!c->keep_alive) {
      o += "\r\nConnection: close";
      c->close_after = true;
    } else if (c->http10) {
      o += "\r\nConnection: keep-alive";
    }
    if (extra) o += extra;
    o += "\r\n\r\n";
  }

  void simple(Conn* c, int code, std::string_view body, const char* ctype = "text/plain") {
    start_response(c, code, ctype, int64_t(body.size()), nullptr);
    if (!c->is_head) c->out += body;
  }

  void simple_num(Conn* c, uint64_t v) {
    char b[24];
    auto r = std::to_chars(b, b + sizeof b, v);
    simple(c, 200, std::string_view(b, size_t(r.ptr - b)));
  }

  void respond(Conn* c) {
    if (g_failing) {
      simple(c, 500, "failing " + g_name);
      return;
    }
    switch (c->ep) {
      case Ep::Default:
        simple(c, 200, g_name);
        break;
      case Ep::Size:
        start_response(c, 200, "text/plain", int64_t(c->num), nullptr);
        if (!c->is_head) {
          if (c->num <= 4096) c->out.append(size_t(c->num), 'x');
          else c->stream_left = c->num, c->stream_chunked = false;
        }
        break;
      case Ep::Chunked:
        if (c->http10) {  // HTTP/1.0 has no chunked coding: delimit by close
          c->keep_alive = false;
          start_response(c, 200, "text/plain", -1, nullptr);
          if (!c->is_head) c->stream_left = c->num, c->stream_chunked = false;
        } else {
          start_response(c, 200, "text/plain", -1, "\r\nTransfer-Encoding: chunked\r\nTrailer: X-Trailer");
          if (!c->is_head) {
            c->stream_left = c->num;
            c->stream_chunked = true;
            c->trailer_pending = true;
            c->chunk_size = std::clamp<uint64_t>((c->num + 3) / 4, 1, 16384);
          }
        }
        break;
      case Ep::Echo: {
        append_u64(c->aux, c->body_bytes);
        c->aux += "}\n";
        simple(c, 200, c->aux, "application/json");
        break;
      }
      case Ep::Sink:
        simple_num(c, c->body_bytes);
        break;
      case Ep::Delay:
        simple(c, 200, "delayed");
        break;
      case Ep::Status: {
        int code = int(c->num);
        if (code == 204 || code == 304) {
          start_response(c, code, "text/plain", -1, nullptr);  // no body
        } else {
          std::string body = "status ";
          append_u64(body, c->num);
          body += "\n";
          simple(c, code, body);
        }
        break;
      }
      case Ep::Close:
        c->keep_alive = false;
        simple(c, 200, "closing");
        break;
      case Ep::EofBody:
        c->keep_alive = false;
        start_response(c, 200, "text/plain", -1, nullptr);
        if (!c->is_head) c->out += "until-close";
        break;
      case Ep::Hostname:
        simple(c, 200, c->aux);
        break;
      case Ep::HeadersCount:
        simple_num(c, c->header_count);
        break;
      case Ep::Count:
        simple_num(c, g_requests.load(std::memory_order_relaxed));
        break;
      case Ep::EarlyHints:
        // An interim 103 before the final answer, as a server pushing preload hints does.
        c->out += "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n";
        simple(c, 200, "hinted");
        break;
      case Ep::SetCookie: {
        std::string extra = "\r\nSet-Cookie: " + c->aux;
        start_response(c, 200, "text/plain", 3, extra.c_str());
        if (!c->is_head) c->out += "set";
        break;
      }
      case Ep::Untyped: {
        static constexpr std::string_view kPage = "<!DOCTYPE html><p>untyped</p>";
        start_response(c, 200, nullptr, int64_t(kPage.size()), nullptr);
        if (!c->is_head) c->out += kPage;
        break;
      }
      case Ep::Reset:
        break;  // handled in process()
    }
  }
};

int make_listener(const std::string& spec) {
  std::string host = "127.0.0.1", port;
  if (!spec.empty() && spec[0] == '[') {
    size_t rb = spec.find(']');
    if (rb == std::string::npos || rb + 1 >= spec.size() || spec[rb + 1] != ':') return -1;
    host = spec.substr(1, rb - 1);
    port = spec.substr(rb + 2);
  } else {
    size_t colon = spec.rfind(':');
    if (colon == std::string::npos) {
      port = spec;
    } else {
      if (colon > 0) host = spec.substr(0, colon);
      port = spec.substr(colon + 1);
    }
  }
  uint64_t p;
  if (!parse_u64(port, p) || p > 65535) return -1;
  sockaddr_storage ss{};
  socklen_t sl;
  int family;
  if (host.find(':') != std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(uint16_t(p));
    if (inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) != 1) return -1;
    sl = sizeof *a;
    family = AF_INET6;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(uint16_t(p));
    if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) return -1;
    sl = sizeof *a;
    family = AF_INET;
  }
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), sl) < 0 || listen(fd, 4096) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int bound_port(int fd) {
  sockaddr_storage ss{};
  socklen_t sl = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

void on_term(int) { _exit(0); }

[[noreturn]] void usage(int rc) {
  fprintf(rc ? stderr : stdout,
          "usage: berth_test_backend --listen HOST:PORT [--listen ...] [--name NAME] [--threads N]\n"
          "  PORT 0 picks a free port; prints 'READY <port>' (first listener) when serving.\n");
  exit(rc);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> listens;
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* flag) -> std::string {
      size_t fl = strlen(flag);
      if (a.size() > fl && a.compare(0, fl, flag) == 0 && a[fl] == '=') return a.substr(fl + 1);
      if (i + 1 >= argc) usage(2);
      return argv[++i];
    };
    if (a == "-h" || a == "--help") usage(0);
    else if (a.rfind("--listen", 0) == 0) listens.push_back(value("--listen"));
    else if (a.rfind("--name", 0) == 0) g_name = value("--name");
    else if (a.rfind("--threads", 0) == 0) threads = std::max(1, atoi(value("--threads").c_str()));
    else usage(2);
  }
  if (listens.empty()) usage(2);

  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa{};
  sa.sa_handler = on_term;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  struct sigaction fail{};
  fail.sa_handler = [](int) { g_failing = 1; };
  sigaction(SIGUSR1, &fail, nullptr);

  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  memset(g_xbuf, 'x', sizeof g_xbuf);

  std::vector<int> lfds;
  for (auto& l : listens) {
    int fd = make_listener(l);
    if (fd < 0) {
      fprintf(stderr, "berth_test_backend: cannot listen on %s: %s\n", l.c_str(), strerror(errno));
      return 1;
    }
    lfds.push_back(fd);
  }
  printf("READY %d\nPORTS", bound_port(lfds[0]));
  for (int fd : lfds) printf(" %d", bound_port(fd));
  printf("\n");
  fflush(stdout);

  std::vector<std::thread> ts;
  for (int t = 1; t < threads; ++t) ts.emplace_back([&lfds] { Worker(lfds).run(); });
  Worker(lfds).run();
}
