// HTTP/2 (nghttp2) on both sides of the proxy: client connections (ALPN h2 on TLS, or h2c with
// prior knowledge) and server connections (h2c:// servers, and https:// servers that choose h2 by
// ALPN), over one shared stream type.
//
// berth's request flow (forwarder.cpp) speaks HTTP/1.1, and HTTP/2 streams join it as byte
// streams that carry HTTP/1.1:
//  - a client's stream becomes one exchange: a DownstreamConnection in stream mode whose Stream is
//    an H2Stream. The request head reaches it rendered as HTTP/1.1 (pseudo-headers to request line
//    and Host, cookies joined), the body as it arrives (chunked when the client sent no
//    content-length); what the exchange writes back (an HTTP/1.1 head and a framed body) becomes
//    HEADERS, DATA and, from a chunked body's trailer section, trailing HEADERS (gRPC status).
//    A server's answer relayed as it came skips the HTTP/1.1 head: the exchange hands its fields
//    over (begin_response() ... submit_response()) and writes the body alone.
//  - a stream to a server is the upstream connection of one exchange: the request head and body
//    the exchange writes become HEADERS and DATA; the response comes back rendered as HTTP/1.1,
//    chunked with the server's trailers in the last chunk unless it gave a content-length.
// So middlewares, balancing, retries, buffering, compression and error pages apply to HTTP/2 and
// gRPC unchanged, at the price of rendering and parsing each head once more than a native path.
//
// Flow control never buffers more than the window allows: the library's automatic window updates
// are off, and a stream's window reopens only once the exchange has taken its bytes; an exchange
// writing faster than the peer reads waits once kHighWater bytes are pending on its stream.
// Thread: worker.
#pragma once

#include <nghttp2/nghttp2.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proxy/block_pool.h"
#include "proxy/coro/task.h"
#include "proxy/deadline_wheel.h"
#include "proxy/http/h1/chunked_decoder.h"
#include "proxy/http/h1/parser.h"
#include "proxy/io_buffer.h"
#include "proxy/net.h"
#include "proxy/stream.h"

namespace berth::proxy {

namespace upstream {
struct UpstreamConnection;
}
class DownstreamConnection;
class H2Connection;
class H2Client;

/// One HTTP/2 stream, seen by its exchange as a byte stream carrying HTTP/1.1. Shared by the
/// connection (until the stream closes) and the exchange's Stream.
class H2Stream : public std::enable_shared_from_this<H2Stream> {
 public:
  /// kServer: a client's stream (berth answers); kClient: a stream to a server (berth asks).
  enum class Role : uint8_t { kServer, kClient };
  H2Stream(H2Connection* connection, int32_t id, Executor executor, std::chrono::milliseconds idle_limit, Role role);
  ~H2Stream();

  /// What the peer sends, as HTTP/1.1: the request body (kServer; the head came with the
  /// exchange), or the whole response (kClient). Then end of stream once the peer ended it, the
  /// response was finished, or the stream was reset (connection_reset).
  coro::Task<IoResult> read(boost::asio::mutable_buffer buffer);
  /// Takes the exchange's HTTP/1.1 message: the response (kServer) or the request (kClient); the
  /// head becomes HEADERS, the body DATA.
  coro::Task<IoResult> write(ConstBufferList buffers);
  /// kServer: the response head given as fields instead of written as HTTP/1.1 (the relay of a
  /// server's answer, whose head then is neither rendered nor parsed again): begin_response(),
  /// add_response_field() for each field, then submit_response() with the status and the body's
  /// framing. What the exchange writes afterwards is the body alone. The calls share the thread's
  /// scratch list, so they run one after the other, with no suspension between them.
  void begin_response();
  void add_response_field(std::string_view name, std::string_view value, http::HeaderId id = http::HeaderId::kOther);
  /// False if the stream is gone, or the head was refused (the stream is then reset).
  bool submit_response(int status, const http::h1::Framing& framing);
  /// Fails the read and write in progress with operation_aborted (timeouts, abort), as a socket's
  /// cancel does; later operations are not affected.
  void cancel();
  /// The exchange is over with this stream: ends it if what berth sent is complete or
  /// close-delimited, otherwise resets it.
  void close();
  /// DATA payload received from the peer, and sent to it, so far.
  uint64_t data_in() const { return data_in_; }
  uint64_t data_out() const { return data_out_; }
  /// kClient: the server refused the stream (RST_STREAM REFUSED_STREAM, or a GOAWAY naming a lower
  /// stream): it did not process the request, which may go again whatever its method (RFC 9113 8.7).
  bool refused() const { return refused_; }

 private:
  friend class H2Connection;
  friend class H2Session;
  friend class H2Client;
  enum class Out : uint8_t { kHead, kLength, kChunked, kUntilClose, kDone };
  static constexpr size_t kHighWater = 64 * 1024;

  /// Parses the HTTP/1.1 head in head_out_ and submits it; false if it is unusable.
  bool submit_head();
  bool submit_response_head();
  bool submit_request_head();
  /// Submits the response head gathered since begin_response(); sets how the body goes out.
  bool submit_fields(int status, const http::h1::Framing& framing);
  void push_body(std::string_view data);
  void finish_body();
  /// Sleeps until woken (read and write each have a timer: a request body may stream while the
  /// response arrives) or until idle_limit_ passes (timed_out); `waiting` is set meanwhile.
  coro::Task<boost::system::error_code> wait(std::optional<Timer>& wake, bool& waiting);
  void wake();
  /// The drain after close() is over: the stream ended, or the connection went.
  void end_drain();
  static void on_drain_deadline(void* self);
  size_t pending_out() const { return body_out_.size() - body_out_pos_; }
  /// The exchange has what it needs: the response went out whole (kServer), or came in whole (kClient).
  bool complete() const {
    return role_ == Role::kServer ? out_ == Out::kDone && pending_out() == 0 : end_in_;
  }
  /// Peer's HEADERS (kServer: the request; kClient: the response) rendered as an HTTP/1.1 head.
  void append_field(std::string_view name, std::string_view value);

  H2Connection* connection_;  ///< null once the connection has gone
  int32_t id_;                ///< kClient: -1 until the request is submitted
  Role role_;
  Executor executor_;
  std::optional<Timer> read_wake_;   ///< a waiting read sleeps on it (made by the first wait); wake() wakes it
  std::optional<Timer> write_wake_;  ///< the same for a waiting write
  bool read_waiting_ = false, write_waiting_ = false;  ///< a wait is pending on that timer
  // kServer: the drain after close(), when DATA is still queued or the request body still coming.
  DeadlineWheel* wheel_ = nullptr;        ///< the worker's
  DeadlineWheel::Entry drain_;            ///< armed for the entry point's idleTimeout: then the stream is reset
  std::shared_ptr<H2Stream> drain_self_;  ///< holds the stream while drain_ is armed
  std::chrono::milliseconds idle_limit_;  ///< the longest wait for the peer (0: none)
  // What the peer sends.
  PooledString method_, path_;     ///< kServer: :method and :path (until the exchange starts)
  int status_ = 0;                 ///< kClient: :status of the response being received
  PooledString head_in_;           ///< the other header fields, rendered as HTTP/1.1 lines
  PooledString cookies_;           ///< kServer: cookie fields, joined with "; " (RFC 9113 8.2.3)
  size_t header_bytes_ = 0;        ///< header list size so far (name + value + 32 each)
  bool has_host_ = false;
  bool has_length_ = false;
  bool is_head_ = false;           ///< a HEAD request: the response has no body
  bool chunked_in_ = false;        ///< no content-length: the body is passed on chunked
  bool in_trailers_ = false;       ///< kClient: the HEADERS being received are trailers
  bool tls_ = false;               ///< kClient: the connection is TLS (:scheme https)
  std::string trailers_in_;        ///< kClient: the response's trailers, as HTTP/1.1 lines
  PooledString body_in_;           ///< bytes not yet read by the exchange
  size_t body_in_pos_ = 0;
  size_t unconsumed_ = 0;          ///< DATA payload received, window not yet given back
  bool end_in_ = false;            ///< END_STREAM received
  uint64_t data_in_ = 0;           ///< DATA payload received (data_in())
  // What berth sends.
  Out out_ = Out::kHead;
  PooledString head_out_;
  uint64_t out_left_ = 0;          ///< kLength: body bytes still expected
  http::h1::ChunkedDecoder chunks_;
  std::string trailers_out_;       ///< a chunked body's trailer section: sent as trailing HEADERS
  PooledString body_out_;          ///< DATA not yet taken by the library
  size_t body_out_pos_ = 0;
  bool out_end_ = false;           ///< the body is complete (END_STREAM goes with the last DATA)
  uint64_t data_out_ = 0;          ///< DATA payload handed to the library (data_out())
  // Both.
  bool reset_ = false;             ///< closed before the exchange was done (RST_STREAM, connection gone)
  bool refused_ = false;           ///< kClient: closed with REFUSED_STREAM (refused())
  bool reading_ = false, writing_ = false;              ///< an operation is in progress
  bool read_aborted_ = false, write_aborted_ = false;  ///< cancel() hit it
  bool started_ = false;           ///< kServer: the exchange was started
  bool finished_ = false;          ///< the exchange is over: DATA still arriving is dropped
  std::weak_ptr<DownstreamConnection> exchange_;  ///< kServer: stopped if the stream is reset
  std::shared_ptr<H2Client> client_;  ///< kClient: its connection, kept while the exchange holds the stream
};

/// The frame layer of one HTTP/2 connection, either side: streams, flow control, the writer.
class H2Connection : public std::enable_shared_from_this<H2Connection> {
 public:
  virtual ~H2Connection();
  H2Connection(const H2Connection&) = delete;
  H2Connection& operator=(const H2Connection&) = delete;

  // For H2Stream.
  void resume_data(int32_t id);
  void consume(int32_t id, size_t n);
  bool submit_response(int32_t id, const nghttp2_nv* nva, size_t count, bool with_body);
  bool submit_informational(int32_t id, const nghttp2_nv* nva, size_t count);
  /// kClient streams: submits the request; the stream gets its id. False if the connection refused.
  bool submit_request(H2Stream& stream, const nghttp2_nv* nva, size_t count, bool with_body);
  void reset_stream(int32_t id, uint32_t error_code);
  /// Sends what the library has queued (starts the writer if it is not running).
  void flush();

 protected:
  H2Connection(Stream& transport, Executor executor);
  /// The callbacks both sides share; each side adds its own.
  static void set_common_callbacks(nghttp2_session_callbacks* callbacks);
  static int on_data_chunk(nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data, size_t len,
                           void* self);
  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* self);
  static ssize_t read_data(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length, uint32_t* flags,
                           nghttp2_data_source* source, void* self);
  /// The last open stream has closed.
  virtual void on_idle() {}
  H2Stream* find(int32_t id);
  coro::Task<void> write_loop(std::shared_ptr<H2Connection> self);
  /// Ends the connection: what is queued goes out if it can at once, streams learn it is gone,
  /// and the writer has stopped when this returns.
  coro::Task<void> finish();
  void detach_all();

  Stream& transport_;
  nghttp2_session* session_ = nullptr;
  using StreamMap = std::unordered_map<int32_t, std::shared_ptr<H2Stream>, std::hash<int32_t>, std::equal_to<int32_t>,
                                       PoolAllocator<std::pair<const int32_t, std::shared_ptr<H2Stream>>>>;
  StreamMap streams_;
  // The stream find() found last: nghttp2 calls back for one stream many times in a row (a
  // request's HEADERS: once per field), and the map lookup was 1.7% of an HTTP/2 request's CPU.
  int32_t found_id_ = 0;  ///< 0: none (no stream has id 0)
  H2Stream* found_ = nullptr;
  std::string out_;          ///< frames gathered for one write
  bool writing_ = false;
  bool flush_posted_ = false;  ///< flush() has posted the writer's start
  bool closed_ = false;      ///< the connection is done: nothing more is sent
  Timer writer_done_;        ///< finish() waits on it for the writer to stop
};

/// The server side: a client's connection, each stream served as an exchange.
class H2Session final : public H2Connection {
 public:
  /// `conn` is the client connection; its stream_ and in_ are used (in_ may hold the first bytes).
  explicit H2Session(DownstreamConnection& conn);
  ~H2Session() override;

  /// Serves the connection until it ends (client gone, error, GOAWAY done, idle timeout).
  coro::Task<void> run();
  /// Graceful shutdown: GOAWAY with the last stream id; streams in flight finish.
  void shutdown();

 private:
  static int on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* self);
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t flags, void* self);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* self);
  void on_idle() override;
  /// The request head is complete: renders the rest and queues the exchange.
  void start_exchange(H2Stream& s);
  /// Starts the exchanges queued while nghttp2 read the last buffer.
  void start_pending();

  DownstreamConnection& conn_;
  struct Pending {
    std::shared_ptr<H2Stream> stream;
    PooledString head;  ///< the request head, rendered as HTTP/1.1
  };
  std::vector<Pending> pending_;
  bool going_away_ = false;
  int32_t highest_stream_id_ = 0;  ///< of the client's streams so far
};

/// The client side: a connection to a server (h2c://, or https:// with ALPN h2), shared by the
/// exchanges of one worker: each opens a stream on it. Kept per server by the worker (h2_clients).
class H2Client final : public H2Connection {
 public:
  /// Takes over `connection` (connected, and handshaken when `tls`) and starts reading it.
  /// With `read_idle` > 0, a connection that received no frame for that long gets a PING, and is
  /// closed if still nothing came `ping_timeout` later (a server or a path that died silently).
  static std::shared_ptr<H2Client> start(std::unique_ptr<upstream::UpstreamConnection> connection, bool tls,
                                         BufferPool& buffers, std::chrono::milliseconds read_idle = {},
                                         std::chrono::milliseconds ping_timeout = {});
  ~H2Client() override;

  /// A new stream for one exchange: an upstream connection whose Stream carries HTTP/1.1. Null
  /// when this connection cannot take another stream (closed, going away, at the server's limit).
  std::unique_ptr<upstream::UpstreamConnection> open_stream(std::chrono::milliseconds idle_limit);
  /// Not closing, and below the server's SETTINGS_MAX_CONCURRENT_STREAMS.
  bool usable() const;
  /// No stream handed out is still held.
  bool idle() const { return open_streams_ == 0; }
  std::chrono::steady_clock::time_point idle_since() const { return idle_since_; }
  /// Ends the connection (GOAWAY, then close) once no stream is open.
  void shutdown();
  /// Closes the connection now (the worker stops); its streams fail.
  void abort();

 private:
  H2Client(std::unique_ptr<upstream::UpstreamConnection> connection, bool tls, BufferPool& buffers);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t flags, void* self);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* self);
  coro::Task<void> run(std::shared_ptr<H2Client> self);
  coro::Task<void> keep_alive(std::shared_ptr<H2Client> self);

  friend class H2Stream;
  std::unique_ptr<upstream::UpstreamConnection> connection_;
  size_t open_streams_ = 0;  ///< handed out by open_stream() and not yet released
  bool tls_;
  BufferPool& buffers_;
  bool going_away_ = false;  ///< GOAWAY sent or received: no new streams
  std::chrono::steady_clock::time_point idle_since_;
  std::chrono::milliseconds read_idle_{0}, ping_timeout_{0};
  std::chrono::steady_clock::time_point last_read_;  ///< when the server's last bytes came
  std::optional<Timer> ping_timer_;                  ///< keep_alive()'s, cancelled when run() ends
  bool reading_ = true;                              ///< run() still reads
};

}  // namespace berth::proxy
