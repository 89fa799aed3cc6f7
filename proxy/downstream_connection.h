// One accepted client connection: reads request heads (keep-alive, pipelining) and hands each
// exchange to the forwarder (forwarder.cpp). One coroutine per connection (HP-5).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "proxy/coro/task.h"
#include "proxy/deadline_wheel.h"
#include "proxy/h2_session.h"
#include "proxy/http/h1/parser.h"
#include "proxy/io_buffer.h"
#include "proxy/net.h"
#include "proxy/observe/exchange_record.h"
#include "proxy/park_set.h"
#include "proxy/snapshot.h"
#include "proxy/stream.h"
#include "proxy/upstream/pool.h"
#include "proxy/worker.h"

namespace berth::proxy {

/// What the metrics and the access log need of an exchange besides its request and response,
/// gathered as it runs (observe/exchange_record.h is made of it at the end).
struct ExchangeLog {
  /// The snapshot the exchange is served from, held until the exchange is recorded.
  std::shared_ptr<const Snapshot> snapshot;
  bool internal = false;         ///< berth answered itself (ping, metrics, API): not counted, logged only with addInternals
  std::string_view internal_router;  ///< the answer's internal router when no route matched ("ping@internal")
  int64_t start_ns = 0;          ///< steady clock
  int64_t start_unix_ns = 0;
  int64_t read_mark = 0;         ///< the stream's bytes read before this exchange's head
  uint64_t written_mark = 0;     ///< the stream's bytes written before this exchange
  size_t response_head = 0;      ///< bytes of the head sent downstream (not counted as body)
  uint64_t response_framing = 0; ///< chunk framing and trailers among the body bytes sent (not counted either)
  uint64_t request_framing = 0;  ///< chunk framing and trailers among the body bytes read (not counted)
  const router::Route* route = nullptr;
  const Service* service = nullptr;    ///< the load balancer that picked the server
  const Endpoint* endpoint = nullptr;  ///< the server of the last try
  uint32_t tries = 0;
  int origin_status = 0;               ///< the status a server answered (0: none did)
  int64_t origin_start_ns = 0;         ///< steady clock: the last try began
  int grpc_status = -1;                ///< Grpc-Status of the server's head (a trailers-only answer), if any
  bool upgraded = false;               ///< a 101: the bytes after it are a tunnel's, not the exchange's
  // Read when the exchange began, since body bytes later overwrite the request head in the buffer.
  std::string_view method_label;       ///< the metrics' method (a static string)
  observe::Protocol protocol = observe::Protocol::kHttp;
  // Copies for the access log (its lines are written at the end, after the buffers were reused).
  // Capacity is kept across exchanges: no allocation in steady state.
  std::string request_copy;            ///< the request head's bytes
  std::vector<http::Header> request_headers;  ///< views into request_copy
  std::string_view method, target, host, forwarded_for;  ///< views into request_copy
  std::string origin_copy;             ///< the server's header names and values
  std::vector<http::Header> origin_headers;   ///< views into origin_copy
};

/// Per-exchange scratch space, pooled per worker so idle connections hold none (HP-1, HP-6).
struct ExchangeState {
  ExchangeLog log;
  http::h1::RequestHead request;
  http::h1::ResponseHead response;
  std::string out;  ///< the head being written (request upstream or response downstream)
  middleware::Edits edits;  ///< what the route's middlewares decided
  std::string body;         ///< a body read whole (buffering middleware); trimmed after big ones
  bool body_done = false;   ///< the request body has been read (a local reply must not skip it again)
  // What a deploy's drain looks for (DownstreamConnection::drains_into, evict), while the exchange runs:
  const Service* routed_service = nullptr;  ///< its router's service
  uint64_t routed_generation = 0;           ///< the snapshot generation that routed it
  const upstream::EndpointHealth* upstream_health = nullptr;  ///< the server forward() is on
  ExchangeState() {
    request.headers.reserve(16);
    response.headers.reserve(16);
    out.reserve(1024);
  }
};

enum class BodyMode : uint8_t { kNone, kLength, kChunked, kUntilClose };

class DownstreamConnection : public std::enable_shared_from_this<DownstreamConnection>, private ParkSet::Sleeper {
 public:
  DownstreamConnection(Worker& worker, size_t ep_index, Socket socket);
  /// Stream mode: one HTTP/2 stream of `parent`'s connection, whose request head `head` the session
  /// rendered as HTTP/1.1. Serves that one exchange, then ends.
  DownstreamConnection(const DownstreamConnection& parent, std::shared_ptr<H2Stream> stream, std::string_view head);
  ~DownstreamConnection();

  /// Starts serving: parks until the first bytes arrive. Thread: worker.
  void start();
  /// Stream mode: serves the exchange. Thread: worker.
  void start_stream();


  /// Wakes the connection if it is idle on entry point `ep` so it can close (drain). Thread: worker.
  void wake_if_idle(size_t ep);
  /// Closes both sides at once; the coroutine unwinds on its next resumption. Thread: worker.
  void abort();
  /// Stream mode: the client reset the stream or left; the exchange stops where it is (its
  /// backend request is cancelled, no retry). Thread: worker.
  void stop_exchange();
  /// Ends the exchange (a WebSocket included) if it is on one of the servers in `gone` (a deploy's
  /// drain timeout): a connection closes, an HTTP/2 stream is reset. Thread: worker.
  void evict(const DrainTarget& gone);
  /// Its exchange is one `target` waits for. Thread: worker.
  bool drains_into(const DrainTarget& target) const;

  // Intrusive list links owned by Worker.
  DownstreamConnection* prev_ = nullptr;
  DownstreamConnection* next_ = nullptr;

 private:
  friend class H2Session;
  /// Which limit the watchdog enforces right now.
  enum class Phase : uint8_t { kNone, kWarmIdle, kIdle, kReadRequest, kDial, kAwaitResponse, kWriteResponse, kTunnel };
  /// How long an idle keep-alive connection keeps its buffer before giving it back.
  static constexpr std::chrono::milliseconds kWarmIdle{250};

  enum class Wait : uint8_t { kData, kPark, kClose };
  /// Before the first request: a connection whose first bytes are a TLS ClientHello gets the
  /// SSL_CTX of the TLS options its SNI names (Traefik's choice) and is handshaken. False: close.
  coro::Task<bool> accept_tls();
  /// The connection speaks HTTP/2 (ALPN h2, or the h2c preface in in_): serves it to the end.
  coro::Task<void> serve_h2();
  /// The exchange loop; ends by parking the connection or closing it.
  coro::Task<void> run();
  /// Waits briefly for the next request with the buffer still held.
  coro::Task<Wait> wait_warm();
  /// Waits for readability in the worker's ParkSet, without a coroutine; `phase` picks readTimeout
  /// or idleTimeout.
  void park(Phase phase);
  void on_ready() override;
  /// Closes a parked connection (deadline, drain, abort); false if it is not parked.
  bool close_parked();
  /// The TLS session requests come over: the connection's, or an HTTP/2 stream's connection's.
  SSL* tls_session() const { return stream_.ssl() != nullptr ? stream_.ssl() : parent_ssl_; }
  /// TLS: the server name the client asked for (SNI), as sent; empty without one.
  std::string_view server_name() const;
  /// Gives a descriptor detached for parking back to the stream; false if that failed (closed).
  bool reattach();
  void close();

  // forwarder.cpp: the request flow.
  coro::Task<bool> serve_exchange(size_t head_size);
  /// Around serve_exchange(): start the exchange's log, then hand its record to the metrics and
  /// the access log.
  void begin_exchange(size_t head_size);
  /// The server's head was read: keep what the metrics and the access log need of it.
  void observe_origin_head();
  void finish_exchange(size_t head_size);
  /// /metrics (or a router to prometheus@internal): the Prometheus exposition.
  coro::Task<bool> reply_metrics(const Snapshot& snap);
  /// internal_service.cpp: berth's own services (router::kApiService...) for a route to them, after
  /// its middlewares ran. `path` is the request's, as the middlewares left it.
  coro::Task<bool> serve_internal(const Snapshot& snap, uint32_t service, std::string_view path, std::string_view query);
  /// Forwards to server `first` of load balancer `service`; a failed connect moves on to the next
  /// server in rotation.
  coro::Task<bool> forward(const Snapshot& snap, const Service& service, size_t first, int64_t now_ms);
  /// The error page for `status` from the errors middleware's service (or a plain answer if it
  /// cannot be had), with the original status.
  coro::Task<bool> reply_error_page(const Snapshot& snap, int status, bool close);
  /// Holds the request while `gate` is paused; false when max-pause passed first (504).
  coro::Task<bool> wait_while_paused(const upstream::ServiceGate& gate);
  /// Answers `status` locally, through the errors middleware when it covers the status.
  coro::Task<bool> reply_status(const Snapshot& snap, int status, std::string_view body, bool close,
                                std::string_view location = {}, const middleware::HeaderEdits* headers = nullptr);
  /// buffering: reads the request body whole into ex_->body (not through in_, whose bytes the
  /// request head's views point into). 0, or 413/400 to answer, or -1 when the client failed.
  /// `pipelined` is set when bytes after the body were read and dropped (the connection then closes).
  coro::Task<int> store_request_body(BodyMode mode, uint64_t length, int64_t max, bool& pipelined);
  /// buffering: reads the rest of the response body into ex_->body; false if over `max` or failed.
  coro::Task<bool> store_response_body(size_t response_head, BodyMode mode, int64_t max);
  /// After a 101: bytes flow both ways (WebSocket) until either side closes, nothing moves for
  /// the entry point's idleTimeout, or its webSocket.maxLifetime is over. Upstream -> client here,
  /// client -> upstream in pump_upstream().
  coro::Task<void> tunnel();
  coro::Task<void> pump_upstream(std::shared_ptr<DownstreamConnection> self, Timer* done, bool* running,
                                 Timer::time_point end);
  /// The tunnel's deadline: idleTimeout from now, but never past `end` (its lifetime).
  void arm_tunnel(Timer::time_point end);
  /// HTTP/2 servers: streams the rest of the request body to `upstream` while forward() reads the
  /// response; serve_exchange() waits for it (pump_).
  coro::Task<void> pump_request_body(std::shared_ptr<DownstreamConnection> self, std::shared_ptr<H2Stream> upstream,
                                     BodyMode mode, uint64_t left, http::h1::ChunkedFramer framer);
  /// The Upgrade value the client asked for ("websocket"), if it asked with Connection: upgrade.
  std::string_view requested_upgrade() const;
  /// contentType: adds a Content-Type sniffed from the first body bytes (read now if none came yet).
  coro::Task<void> sniff_content_type(size_t response_head, BodyMode mode, std::chrono::milliseconds timeout,
                                      bool stored);
  /// Sends copies of the request to the mirrors of mirroring service `mirroring` that are due one.
  void send_mirrors(const Snapshot& snap, uint32_t mirroring, size_t head_size, int64_t now_ms);
  enum class HeadFor : uint8_t { kExchange, kMirror, kMirrorWithoutBody };
  /// Writes the request head for `endpoint` into ex_->out (mirrors: with "Connection: close").
  void build_upstream_head(const Service& service, const Endpoint& endpoint, HeadFor purpose = HeadFor::kExchange);
  /// Writes the response head into ex_->out; `compressed`: the body is re-encoded (no length;
  /// Content-Encoding, and chunked framing when `chunked`).
  void build_downstream_head(bool close, bool compressed = false, bool chunked = false);
  /// The response head's fields as they go downstream (the server's, less hop-by-hop and edited
  /// ones, then the middlewares' edits and additions): `emit(name, value)` for each.
  template <class Emit>
  void emit_response_fields(bool compressed, bool chunked, Emit&& emit);
  /// An HTTP/2 client's stream: submits the response head as fields (no HTTP/1.1 rendering);
  /// false if the stream is gone or refused it.
  bool submit_h2_response_head();
  /// compress: whether this response gets compressed (type, size, not encoded already).
  bool should_compress(BodyMode mode, uint64_t length) const;
  /// compress: relays the upstream body through the worker's compressor (chunked out when asked).
  coro::Task<bool> relay_compressed(BodyMode mode, uint64_t length, bool chunked_out, bool& upstream_failed);

  // Shared steps.
  /// Answers from berth itself; `headers` (middleware edits; empty values skipped) go along.
  coro::Task<bool> reply_local(int status, std::string_view body, std::string_view content_type, bool close,
                               std::string_view location = {}, const middleware::HeaderEdits* headers = nullptr);
  coro::Task<bool> discard_request_body();
  coro::Task<bool> relay_body(Stream& from, IoBuffer& buffer, Stream& to, BodyMode mode, uint64_t length,
                                          bool& source_failed, http::h1::ChunkedFramer* framer = nullptr);
  coro::Task<int> read_response_head(upstream::UpstreamConnection& up, size_t& head_size);
  void close_upstream();

  void arm(Phase phase, std::chrono::milliseconds timeout);
  void disarm();
  static void on_deadline(void* self);


  Worker& worker_;
  const EntryPointSettings& settings_;
  size_t ep_index_;
  Stream stream_;
  IoBuffer in_;
  std::unique_ptr<ExchangeState> ex_;
  std::unique_ptr<upstream::UpstreamConnection> up_;  ///< the upstream connection of the exchange in flight
  DeadlineWheel::Entry deadline_;
  Phase phase_ = Phase::kNone;
  Phase expired_ = Phase::kNone;  ///< set when the watchdog fired during that phase
  bool v6_ = false;               ///< an IPv6 socket (to give a detached descriptor back to Asio)
  int detached_fd_ = -1;          ///< parked idle: the descriptor, out of Asio's reactor (Stream::detach())
  std::shared_ptr<DownstreamConnection> parked_self_;  ///< keeps a parked connection alive
  bool idle_ = false;             ///< parked, or warm-waiting for the next request
  bool park_registered_ = false;  ///< the socket has a (possibly disarmed) ParkSet registration
  bool trusted_ = false;          ///< peer may set X-Forwarded-* headers
  bool closing_ = false;
  bool first_read_ = true;        ///< accept_tls() has not looked at the connection yet
  bool served_ = false;           ///< at least one exchange was served (a drain closes it when idle)
  std::shared_ptr<H2Session> h2_; ///< the HTTP/2 session, when the connection speaks HTTP/2
  SSL* parent_ssl_ = nullptr;     ///< stream mode over TLS: the connection's TLS session (a reference)
  /// pump_request_body()'s state, made by the first pump (inline it would cost every idle
  /// connection 96 bytes).
  struct BodyPump {
    explicit BodyPump(Executor executor) : done(executor) {}
    Timer done;                  ///< cancelled when it ends
    std::weak_ptr<H2Stream> to;  ///< the server stream it writes to
    bool running = false;
  };
  std::unique_ptr<BodyPump> pump_;
  boost::asio::ip::address peer_;  ///< IPv4-mapped peers unmapped
  uint16_t peer_port_ = 0;
};

}  // namespace berth::proxy
