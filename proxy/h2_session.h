// HTTP/2 on a client connection (nghttp2): ALPN h2 on TLS, or h2c with prior knowledge.
//
// Each stream becomes one exchange served by the same request flow as HTTP/1.1 (forwarder.cpp):
// a DownstreamConnection in stream mode whose Stream is an H2Stream. The request head reaches it
// rendered as HTTP/1.1 (pseudo-headers to request line and Host, cookies joined), the request body
// as it arrives (chunked when the client sent no content-length); what the exchange writes back
// (an HTTP/1.1 head and a framed body) is turned into HEADERS and DATA frames. So middlewares,
// balancing, retries, buffering, compression and error pages apply to HTTP/2 unchanged, at the
// price of rendering and parsing each head once more than a native path would.
//
// Flow control never buffers more than the window allows: the library's automatic window updates
// are off, and a stream's window reopens only once the exchange has taken its bytes; an exchange
// writing faster than the client reads waits once kHighWater bytes are pending on its stream.
// Thread: worker.
#pragma once

#include <nghttp2/nghttp2.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "proxy/coro/task.h"
#include "proxy/http/h1/chunked_decoder.h"
#include "proxy/net.h"
#include "proxy/stream.h"

namespace berth::proxy {

class DownstreamConnection;
class H2Session;

/// One HTTP/2 stream, seen by its exchange as a byte stream carrying HTTP/1.1. Shared by the
/// session (until the stream closes) and the exchange's Stream.
class H2Stream {
 public:
  H2Stream(H2Session* session, int32_t id, Executor executor, std::chrono::milliseconds idle_limit);

  /// The request body (HTTP/1.1-framed), then end of stream once the client ended it, the response
  /// was finished, or the stream was reset (connection_reset).
  coro::Task<IoResult> read(boost::asio::mutable_buffer buffer);
  /// Takes the exchange's HTTP/1.1 response: the head becomes HEADERS, the body DATA.
  coro::Task<IoResult> write(ConstBufferList buffers);
  /// Fails the operation waiting (or the next one) with operation_aborted (timeouts, abort).
  void cancel();
  /// The exchange is over: ends the stream if its response is complete or close-delimited,
  /// otherwise resets it.
  void close();

 private:
  friend class H2Session;
  enum class Out : uint8_t { kHead, kLength, kChunked, kUntilClose, kDone };
  static constexpr size_t kHighWater = 64 * 1024;

  /// Parses the HTTP/1.1 response head in head_out_ and submits it; false if it is unusable.
  bool submit_head();
  void push_body(std::string_view data);
  void finish_body();
  coro::Task<boost::system::error_code> wait();
  void wake();
  size_t pending_out() const { return body_out_.size() - body_out_pos_; }

  H2Session* session_;  ///< null once the session has gone
  int32_t id_;
  Timer wake_;          ///< a waiting read or write sleeps on it; cancel() wakes it
  std::chrono::milliseconds idle_limit_;  ///< the longest wait for the client (idleTimeout; 0: none)
  // Request.
  std::string method_, path_;      ///< :method and :path (until the exchange starts)
  std::string head_in_;            ///< the other header fields, rendered as HTTP/1.1 lines
  std::string cookies_;            ///< cookie fields, joined with "; " (RFC 9113 8.2.3)
  bool has_host_ = false;
  bool has_length_ = false;
  size_t header_bytes_ = 0;        ///< header list size so far (name + value + 32 each)
  bool is_head_ = false;           ///< a HEAD request: the response has no body
  bool chunked_in_ = false;        ///< no content-length: the body is passed on chunked
  std::string body_in_;            ///< request body bytes not yet read by the exchange
  size_t body_in_pos_ = 0;
  size_t unconsumed_ = 0;          ///< DATA payload received, window not yet given back
  bool end_in_ = false;            ///< END_STREAM received
  // Response.
  Out out_ = Out::kHead;
  std::string head_out_;
  uint64_t out_left_ = 0;          ///< kLength: body bytes still expected
  http::h1::ChunkedDecoder chunks_;
  std::string body_out_;           ///< DATA not yet taken by the library
  size_t body_out_pos_ = 0;
  bool out_end_ = false;           ///< the body is complete (END_STREAM goes with the last DATA)
  // Both.
  bool reset_ = false;             ///< closed before the exchange was done (RST_STREAM, connection gone)
  bool aborted_ = false;           ///< cancel() pending
  bool started_ = false;           ///< the exchange was started
  bool finished_ = false;          ///< the exchange is over: DATA still arriving is dropped
};

class H2Session : public std::enable_shared_from_this<H2Session> {
 public:
  /// `conn` is the client connection; its stream_ and in_ are used (in_ may hold the first bytes).
  explicit H2Session(DownstreamConnection& conn);
  ~H2Session();
  H2Session(const H2Session&) = delete;
  H2Session& operator=(const H2Session&) = delete;

  /// Serves the connection until it ends (client gone, error, GOAWAY done, idle timeout).
  coro::Task<void> run();
  /// Graceful shutdown: GOAWAY with the last stream id; streams in flight finish.
  void shutdown();

  // For H2Stream.
  void resume_data(int32_t id);
  void consume(int32_t id, size_t n);
  bool submit_response(int32_t id, const nghttp2_nv* nva, size_t count, bool with_body);
  bool submit_informational(int32_t id, const nghttp2_nv* nva, size_t count);
  void reset_stream(int32_t id, uint32_t error_code);
  /// Sends what the library has queued (starts the writer if it is not running).
  void flush();

 private:
  static int on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* self);
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t flags, void* self);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int on_data_chunk(nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data, size_t len,
                           void* self);
  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* self);
  static ssize_t read_data(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length, uint32_t* flags,
                           nghttp2_data_source* source, void* self);

  H2Stream* find(int32_t id);
  /// The request head is complete: renders the rest and starts the exchange.
  void start_exchange(H2Stream& s);
  coro::Task<void> write_loop(std::shared_ptr<H2Session> self);
  /// Detaches every stream (their exchanges see the stream reset) and forgets them.
  void detach_all();

  DownstreamConnection& conn_;
  nghttp2_session* session_ = nullptr;
  std::unordered_map<int32_t, std::shared_ptr<H2Stream>> streams_;
  std::string out_;          ///< frames gathered for one write
  bool writing_ = false;
  bool closed_ = false;      ///< the connection is done: nothing more is sent
  bool going_away_ = false;
  int32_t highest_stream_id_ = 0;  ///< of the client's streams so far
  Timer writer_done_;        ///< run() waits on it for the writer to stop before the connection goes
};

}  // namespace berth::proxy
