// hsload: TLS handshake-rate load client for bench/tls/run.sh. One thread, epoll, non-blocking.
//
//   hsload [-c CONNS] [-d SECONDS] [-r] [-s SNI] HOST PORT PATH
//
// Keeps CONNS connections in flight; each one connects, does a TLS 1.3 handshake (ALPN
// http/1.1), sends ONE "GET PATH HTTP/1.1" with "Connection: close", reads the whole response
// (Content-Length), waits for the server to close (so TIME_WAIT stays on the server side and
// the client's ephemeral ports are not exhausted) and starts over on a new TCP connection.
//   default: no session is ever offered -> every handshake is a full one (certificate +
//            CertificateVerify signature + key exchange).
//   -r:      each slot offers the session (TLS 1.3 ticket) it got on its previous connection ->
//            resumed handshakes (PSK + (EC)DHE, no certificate); the first connection of a slot,
//            or one after a refused ticket, is full.
// Whether a handshake was resumed is what the server decided (SSL_session_reused), so the
// counts below are the truth, not the intent.
//
// Prints one line at the end:
//   RESULT rps=<completed connections/s> requests=<n> full=<n> resumed=<n> errors=<n>
//          non2xx=<n> p50_us=<connect..response complete> p99_us=<..> proto=<TLS version>
//          group=<key-exchange group of the last handshake> secs=<elapsed>
// errors = connect/handshake/read/write failures and truncated responses.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum State { CONNECTING, HANDSHAKE, WRITING, READING, DRAINING };

struct Slot {
  int fd;
  SSL *ssl;
  SSL_SESSION *sess;  // -r: the session to offer next
  enum State st;
  uint64_t t0;        // connect start, ns
  char buf[8192];
  size_t got;         // bytes in buf (head) / body bytes
  long body_left;     // -1 until the head is parsed
  size_t wrote;
  int status;
  int done;           // response complete (counted)
};

static SSL_CTX *ctx;
static int ep;
static struct sockaddr_in addr;
static const char *sni = "bench.test";
static char req[1024];
static size_t req_len;
static int resume_mode;
static uint64_t n_full, n_resumed, n_errors, n_non2xx, n_done;
static uint64_t *lat;
static size_t lat_n, lat_cap;
static char last_group[64] = "-", last_proto[32] = "-";
static int verbose_errors = 5;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void set_events(struct Slot *s, uint32_t ev) {
  struct epoll_event e = {.events = ev, .data.ptr = s};
  epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &e);
}

static void slot_close(struct Slot *s) {
  if (s->ssl) {
    SSL_free(s->ssl);
    s->ssl = NULL;
  }
  if (s->fd >= 0) {
    close(s->fd);  // also removes it from the epoll set
    s->fd = -1;
  }
}

static void slot_error(struct Slot *s, const char *what) {
  if (!s->done) {
    n_errors++;
    if (verbose_errors > 0) {
      verbose_errors--;
      unsigned long e = ERR_peek_last_error();
      fprintf(stderr, "hsload: %s failed (state %d, errno %d, %s)\n", what, s->st, errno,
              e ? ERR_error_string(e, NULL) : "-");
    }
  }
  ERR_clear_error();
  slot_close(s);
}

static int slot_start(struct Slot *s) {
  memset(s->buf, 0, 16);
  s->got = 0;
  s->body_left = -1;
  s->wrote = 0;
  s->status = 0;
  s->done = 0;
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) return -1;
  int one = 1;
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  s->t0 = now_ns();
  s->st = CONNECTING;
  int rc = connect(s->fd, (struct sockaddr *)&addr, sizeof addr);
  if (rc < 0 && errno != EINPROGRESS) {
    slot_error(s, "connect");
    return -1;
  }
  s->ssl = SSL_new(ctx);
  SSL_set_fd(s->ssl, s->fd);
  SSL_set_tlsext_host_name(s->ssl, sni);
  SSL_set_connect_state(s->ssl);
  if (resume_mode && s->sess) SSL_set_session(s->ssl, s->sess);
  struct epoll_event e = {.events = EPOLLOUT, .data.ptr = s};
  epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &e);
  return 0;
}

// Parses the response head in s->buf once complete; returns 1 when parsed, 0 if incomplete.
static int parse_head(struct Slot *s) {
  char *end = memmem(s->buf, s->got, "\r\n\r\n", 4);
  if (!end) return 0;
  size_t head = (size_t)(end - s->buf) + 4;
  if (s->got < 12 || strncmp(s->buf, "HTTP/1.", 7) != 0) {
    s->status = -1;
  } else {
    s->status = atoi(s->buf + 9);
  }
  long cl = -1;
  for (char *p = s->buf; p < end;) {
    char *nl = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
    if (!nl) break;
    if ((size_t)(nl - p) > 15 && strncasecmp(p, "content-length:", 15) == 0) cl = atol(p + 15);
    p = nl + 2;
  }
  if (cl < 0) cl = 0;  // the benchmark path always sends Content-Length; treat absence as empty
  s->body_left = cl - (long)(s->got - head);
  return 1;
}

static void response_done(struct Slot *s) {
  s->done = 1;
  n_done++;
  if (SSL_session_reused(s->ssl)) n_resumed++;
  else n_full++;
  if (s->status < 200 || s->status > 299) n_non2xx++;
  if (lat_n < lat_cap) lat[lat_n++] = (now_ns() - s->t0) / 1000;
  int g = SSL_get_negotiated_group(s->ssl);
  const char *gn = g ? SSL_group_to_name(s->ssl, g) : NULL;
  snprintf(last_group, sizeof last_group, "%s", gn ? gn : "?");
  snprintf(last_proto, sizeof last_proto, "%s", SSL_get_version(s->ssl));
  if (resume_mode) {
    // The newest session: TLS 1.3 tickets arrive after the handshake and were processed while
    // reading the response.
    SSL_SESSION *ns = SSL_get1_session(s->ssl);
    if (ns && SSL_SESSION_is_resumable(ns)) {
      if (s->sess) SSL_SESSION_free(s->sess);
      s->sess = ns;
    } else {
      if (ns) SSL_SESSION_free(ns);
      if (s->sess) SSL_SESSION_free(s->sess);
      s->sess = NULL;
    }
  }
}

// Drives one slot as far as it goes; returns when it has to wait for the socket.
static void slot_step(struct Slot *s, int deadline_passed) {
  for (;;) {
    int rc, err;
    switch (s->st) {
      case CONNECTING: {
        int soerr = 0;
        socklen_t len = sizeof soerr;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        if (soerr) {
          errno = soerr;
          slot_error(s, "connect");
          return;
        }
        s->st = HANDSHAKE;
        break;
      }
      case HANDSHAKE:
        rc = SSL_connect(s->ssl);
        if (rc == 1) {
          s->st = WRITING;
          break;
        }
        err = SSL_get_error(s->ssl, rc);
        if (err == SSL_ERROR_WANT_READ) return set_events(s, EPOLLIN);
        if (err == SSL_ERROR_WANT_WRITE) return set_events(s, EPOLLOUT);
        return slot_error(s, "handshake");
      case WRITING:
        rc = SSL_write(s->ssl, req + s->wrote, (int)(req_len - s->wrote));
        if (rc > 0) {
          s->wrote += (size_t)rc;
          if (s->wrote == req_len) {
            s->st = READING;
            set_events(s, EPOLLIN);
          }
          break;
        }
        err = SSL_get_error(s->ssl, rc);
        if (err == SSL_ERROR_WANT_READ) return set_events(s, EPOLLIN);
        if (err == SSL_ERROR_WANT_WRITE) return set_events(s, EPOLLOUT);
        return slot_error(s, "write");
      case READING:
      case DRAINING: {
        char tmp[16384];
        char *dst = tmp;
        int cap = sizeof tmp;
        if (s->st == READING && s->body_left < 0) {
          dst = s->buf + s->got;
          cap = (int)(sizeof s->buf - s->got);
          if (cap <= 0) return slot_error(s, "response head too large");
        }
        rc = SSL_read(s->ssl, dst, cap);
        if (rc > 0) {
          if (s->st == DRAINING) break;  // extra bytes after the response: ignore
          if (s->body_left < 0) {
            s->got += (size_t)rc;
            if (!parse_head(s)) break;
          } else {
            s->body_left -= rc;
          }
          if (s->body_left <= 0) {
            response_done(s);
            s->st = DRAINING;  // now wait for the server's close
          }
          break;
        }
        err = SSL_get_error(s->ssl, rc);
        if (err == SSL_ERROR_WANT_READ) return set_events(s, EPOLLIN);
        if (err == SSL_ERROR_WANT_WRITE) return set_events(s, EPOLLOUT);
        if (s->st == DRAINING) {  // close_notify or EOF after the response: a normal end
          ERR_clear_error();
          // Without this, SSL_free treats the connection as broken and marks its session (the
          // one kept for -r) not resumable.
          SSL_set_shutdown(s->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
          slot_close(s);
          if (!deadline_passed && slot_start(s) < 0) return;
          if (deadline_passed) return;
          break;  // CONNECTING: wait for EPOLLOUT
        }
        return slot_error(s, "read (response incomplete)");
      }
    }
    if (s->st == CONNECTING) return;
  }
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  int conns = 32;
  double secs = 5;
  int opt;
  while ((opt = getopt(argc, argv, "c:d:rs:")) != -1) {
    switch (opt) {
      case 'c': conns = atoi(optarg); break;
      case 'd': secs = atof(optarg); break;
      case 'r': resume_mode = 1; break;
      case 's': sni = optarg; break;
      default:
        fprintf(stderr, "usage: hsload [-c CONNS] [-d SECONDS] [-r] [-s SNI] HOST PORT PATH\n");
        return 2;
    }
  }
  if (argc - optind != 3 || conns <= 0 || secs <= 0) {
    fprintf(stderr, "usage: hsload [-c CONNS] [-d SECONDS] [-r] [-s SNI] HOST PORT PATH\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)atoi(argv[optind + 1]));
  if (inet_pton(AF_INET, argv[optind], &addr.sin_addr) != 1) {
    fprintf(stderr, "hsload: bad IPv4 address %s\n", argv[optind]);
    return 2;
  }
  req_len = (size_t)snprintf(req, sizeof req,
                             "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hsload\r\nConnection: close\r\n\r\n",
                             argv[optind + 2], sni);

  ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);  // like h2load and wrk: signature checked, chain not
  static const unsigned char alpn[] = "\x08http/1.1";
  SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
  // No client-side session cache: sessions are offered only explicitly (-r).
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

  lat_cap = 4u << 20;
  lat = malloc(lat_cap * sizeof *lat);
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct Slot *slots = calloc((size_t)conns, sizeof *slots);
  for (int i = 0; i < conns; i++) {
    slots[i].fd = -1;
    slot_start(&slots[i]);
  }
  uint64_t start = now_ns(), deadline = start + (uint64_t)(secs * 1e9);
  struct epoll_event evs[256];
  for (;;) {
    uint64_t now = now_ns();
    int passed = now >= deadline;
    if (passed) break;
    int timeout = (int)((deadline - now) / 1000000) + 1;
    int n = epoll_wait(ep, evs, 256, timeout > 100 ? 100 : timeout);
    for (int i = 0; i < n; i++) {
      struct Slot *s = evs[i].data.ptr;
      slot_step(s, 0);
      if (s->fd < 0) slot_start(s);  // after an error: next connection
    }
  }
  double elapsed = (now_ns() - start) / 1e9;
  for (int i = 0; i < conns; i++) slot_close(&slots[i]);
  uint64_t p50 = 0, p99 = 0;
  if (lat_n) {
    qsort(lat, lat_n, sizeof *lat, cmp_u64);
    p50 = lat[lat_n / 2];
    p99 = lat[(size_t)((double)lat_n * 0.99)];
  }
  printf("RESULT rps=%.1f requests=%llu full=%llu resumed=%llu errors=%llu non2xx=%llu p50_us=%llu p99_us=%llu "
         "proto=%s group=%s secs=%.3f\n",
         n_done / elapsed, (unsigned long long)n_done, (unsigned long long)n_full, (unsigned long long)n_resumed,
         (unsigned long long)n_errors, (unsigned long long)n_non2xx, (unsigned long long)p50,
         (unsigned long long)p99, last_proto, last_group, elapsed);
  return 0;
}
