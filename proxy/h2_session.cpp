// HTTP/2 sessions and streams; see h2_session.h.
#include "proxy/h2_session.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "base/log.h"
#include "base/text.h"
#include "proxy/downstream_connection.h"
#include "proxy/http/h1/parser.h"

namespace berth::proxy {

namespace asio = boost::asio;
using boost::system::error_code;
using namespace std::string_view_literals;

namespace {

constexpr uint32_t kMaxConcurrentStreams = 250;     // Traefik's (Go's) default
constexpr int32_t kConnectionWindow = 1 << 20;      // request bytes in flight per connection
constexpr size_t kGatherBytes = 16 * 1024;          // frames gathered into one write
// Rapid reset (CVE-2023-44487): streams a client may reset; nghttpx's defaults.
constexpr uint64_t kResetBurst = 1000;
constexpr uint64_t kResetRate = 33;

std::string_view view(const uint8_t* p, size_t n) { return {reinterpret_cast<const char*>(p), n}; }

nghttp2_nv make_nv(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                    NGHTTP2_NV_FLAG_NONE};
}

// Connection-specific fields (RFC 9113 8.2.2) are not sent on HTTP/2.
bool hop_by_hop(http::HeaderId id) {
  using http::HeaderId;
  return id == HeaderId::kConnection || id == HeaderId::kKeepAlive || id == HeaderId::kProxyConnection ||
         id == HeaderId::kTransferEncoding || id == HeaderId::kUpgrade;
}

}  // namespace

// ---- H2Stream ----

H2Stream::H2Stream(H2Session* session, int32_t id, Executor executor, std::chrono::milliseconds idle_limit)
    : session_(session), id_(id), wake_(executor), idle_limit_(idle_limit) {}

coro::Task<error_code> H2Stream::wait() {
  // A stream that moves nothing for the entry point's idleTimeout (a client that never opens its
  // window, or stops sending a body) fails, so it cannot hold an exchange and a backend forever.
  if (idle_limit_.count() > 0) wake_.expires_after(idle_limit_);
  else wake_.expires_at(Timer::time_point::max());
  auto [ec] = co_await wake_.async_wait(coro::use_task);
  if (ec == asio::error::operation_aborted) co_return error_code{};  // woken
  co_return ec ? ec : error_code(asio::error::timed_out);
}

void H2Stream::wake() { wake_.cancel(); }

void H2Stream::cancel() {
  aborted_ = true;
  wake();
}

coro::Task<IoResult> H2Stream::read(asio::mutable_buffer buffer) {
  while (true) {
    if (std::exchange(aborted_, false)) co_return IoResult{asio::error::operation_aborted, 0};
    if (body_in_pos_ < body_in_.size()) {
      size_t n = std::min(buffer.size(), body_in_.size() - body_in_pos_);
      std::memcpy(buffer.data(), body_in_.data() + body_in_pos_, n);
      body_in_pos_ += n;
      if (body_in_pos_ == body_in_.size()) {
        // All taken: the client may send the next window's worth.
        body_in_.clear();
        body_in_pos_ = 0;
        if (session_ != nullptr && unconsumed_ > 0) session_->consume(id_, std::exchange(unconsumed_, 0));
      }
      co_return IoResult{error_code{}, n};
    }
    if (reset_) co_return IoResult{asio::error::connection_reset, 0};
    if (end_in_ || out_ == Out::kDone || session_ == nullptr) co_return IoResult{asio::error::eof, 0};
    if (auto ec = co_await wait()) co_return IoResult{ec, 0};
  }
}

coro::Task<IoResult> H2Stream::write(ConstBufferList list) {
  if (list.overflow) co_return IoResult{asio::error::no_buffer_space, 0};
  size_t written = 0;
  for (size_t i = 0; i < list.count; ++i) {
    std::string_view data(static_cast<const char*>(list.buffers[i].data()), list.buffers[i].size());
    while (!data.empty()) {
      if (std::exchange(aborted_, false)) co_return IoResult{asio::error::operation_aborted, written};
      if (reset_ || session_ == nullptr) co_return IoResult{asio::error::connection_reset, written};
      switch (out_) {
        case Out::kHead: {
          size_t before = head_out_.size();
          head_out_.append(data);
          size_t end = http::h1::find_head_end(head_out_, before > 3 ? before - 3 : 0);
          if (end == 0) {
            if (head_out_.size() > (1 << 20)) co_return IoResult{asio::error::message_size, written};
            written += data.size();
            data = {};
            break;
          }
          size_t used = end - before;
          written += used;
          data.remove_prefix(used);
          head_out_.resize(end);
          if (!submit_head()) {
            session_->reset_stream(id_, NGHTTP2_INTERNAL_ERROR);
            co_return IoResult{asio::error::connection_reset, written};
          }
          break;
        }
        case Out::kLength: {
          size_t take = static_cast<size_t>(std::min<uint64_t>(out_left_, data.size()));
          push_body(data.substr(0, take));
          out_left_ -= take;
          written += take;
          data.remove_prefix(take);
          if (out_left_ == 0) {
            finish_body();
            written += data.size();
            data = {};
          }
          break;
        }
        case Out::kChunked: {
          size_t used = 0;
          std::string_view payload;
          auto st = chunks_.decode(data, used, payload);
          written += used;
          data.remove_prefix(used);
          if (st == http::h1::ChunkedDecoder::Status::kData) {
            push_body(payload);
          } else if (st == http::h1::ChunkedDecoder::Status::kDone) {
            finish_body();
            written += data.size();
            data = {};
          } else if (st == http::h1::ChunkedDecoder::Status::kError) {
            session_->reset_stream(id_, NGHTTP2_INTERNAL_ERROR);
            co_return IoResult{asio::error::connection_reset, written};
          }
          break;
        }
        case Out::kUntilClose:
          push_body(data);
          written += data.size();
          data = {};
          break;
        case Out::kDone:  // bytes after the message: nothing to send them on
          written += data.size();
          data = {};
          break;
      }
      // Backpressure: the exchange waits while the client is slow to take DATA.
      while (pending_out() >= kHighWater && !reset_ && session_ != nullptr && !aborted_)
        if (auto ec = co_await wait()) co_return IoResult{ec, written};
    }
  }
  co_return IoResult{error_code{}, written};
}

bool H2Stream::submit_head() {
  http::h1::ResponseHead head;
  head.headers.reserve(16);
  if (http::h1::parse_response(head_out_, head) != http::h1::ParseStatus::kOk) return false;
  char status[4];
  std::to_chars(status, status + 3, head.status);
  std::string names;  // lower-cased names; values point into head_out_
  size_t name_bytes = 0;
  for (const auto& h : head.headers) name_bytes += h.name.size();
  names.reserve(name_bytes);
  std::vector<nghttp2_nv> nva;
  nva.reserve(head.headers.size() + 1);
  nva.push_back(make_nv(":status", std::string_view(status, 3)));
  for (const auto& h : head.headers) {
    if (hop_by_hop(h.id)) continue;
    size_t at = names.size();
    for (char c : h.name) names.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
    nva.push_back(make_nv(std::string_view(names).substr(at, h.name.size()), h.value));
  }
  if (head.status < 200) {
    // 100 Continue (and other 1xx) go on as informational HEADERS; 101 has no HTTP/2 form.
    if (head.status == 101 || !session_->submit_informational(id_, nva.data(), nva.size())) return false;
    head_out_.clear();
    return true;
  }
  bool no_body = is_head_ || head.status == 204 || head.status == 304;
  if (!no_body && head.framing.chunked) out_ = Out::kChunked;
  else if (!no_body && head.framing.content_length > 0) out_ = Out::kLength;
  else if (!no_body && head.framing.content_length < 0) out_ = Out::kUntilClose;
  else out_ = Out::kDone;
  out_left_ = out_ == Out::kLength ? static_cast<uint64_t>(head.framing.content_length) : 0;
  head_out_.clear();
  head_out_.shrink_to_fit();
  return session_->submit_response(id_, nva.data(), nva.size(), out_ != Out::kDone);
}

void H2Stream::push_body(std::string_view data) {
  if (data.empty()) return;
  if (body_out_pos_ == body_out_.size()) {
    body_out_.clear();
    body_out_pos_ = 0;
  }
  body_out_.append(data);
  session_->resume_data(id_);
}

void H2Stream::finish_body() {
  out_ = Out::kDone;
  out_end_ = true;
  session_->resume_data(id_);
}

void H2Stream::close() {
  // Runs when the exchange ends, so nothing waits on this stream any more.
  finished_ = true;
  if (session_ == nullptr || reset_) return;
  body_in_.clear();
  body_in_pos_ = 0;
  if (unconsumed_ > 0) session_->consume(id_, std::exchange(unconsumed_, 0));
  if (out_ == Out::kUntilClose) {
    finish_body();  // a close-delimited body ends with the exchange
    return;
  }
  if (out_ == Out::kDone) {
    // The response is complete; a request body still arriving is not wanted (RFC 9113 8.1).
    if (!end_in_ && started_ && session_ != nullptr && pending_out() == 0 && out_end_) {
      // Sent once the DATA with END_STREAM has gone: nghttp2 orders frames of a stream.
      session_->reset_stream(id_, NGHTTP2_NO_ERROR);
    }
    return;
  }
  session_->reset_stream(id_, NGHTTP2_INTERNAL_ERROR);
}

// ---- H2Session ----

H2Session::H2Session(DownstreamConnection& conn)
    : conn_(conn), writer_done_(conn.worker_.context().get_executor()) {
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, &H2Session::on_begin_frame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, &H2Session::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &H2Session::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &H2Session::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &H2Session::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &H2Session::on_stream_close);
  nghttp2_option* options = nullptr;
  nghttp2_option_new(&options);
  nghttp2_option_set_no_auto_window_update(options, 1);
  nghttp2_option_set_stream_reset_rate_limit(options, kResetBurst, kResetRate);
  nghttp2_option_set_max_settings(options, 32);  // entries in one SETTINGS frame
  nghttp2_session_server_new2(&session_, callbacks, this, options);
  nghttp2_option_del(options);
  nghttp2_session_callbacks_del(callbacks);
}

H2Session::~H2Session() {
  detach_all();
  nghttp2_session_del(session_);
}

void H2Session::detach_all() {
  for (auto& [id, s] : streams_) {
    s->session_ = nullptr;
    if (s->out_ != H2Stream::Out::kDone || s->pending_out() > 0) s->reset_ = true;
    s->wake();
  }
  streams_.clear();
}

H2Stream* H2Session::find(int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

int H2Session::on_begin_frame(nghttp2_session* session, const nghttp2_frame_hd* hd, void* user) {
  auto* self = static_cast<H2Session*>(user);
  // A new stream must have a higher id than every earlier one (RFC 9113 5.1.1); nghttp2 quietly
  // drops HEADERS on an id it has forgotten, Go answers with a connection error, and so does berth.
  if (hd->type == NGHTTP2_HEADERS && (hd->stream_id & 1) != 0 && hd->stream_id < self->highest_stream_id_ &&
      nghttp2_session_find_stream(session, hd->stream_id) == nullptr)
    nghttp2_session_terminate_session(session, NGHTTP2_PROTOCOL_ERROR);
  return 0;
}

int H2Session::on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Session*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  self->highest_stream_id_ = std::max(self->highest_stream_id_, frame->hd.stream_id);
  auto stream = std::make_shared<H2Stream>(self, frame->hd.stream_id, self->conn_.worker_.context().get_executor(),
                                          self->conn_.settings_.idle_timeout);
  stream->head_in_.reserve(512);
  self->streams_.emplace(frame->hd.stream_id, std::move(stream));
  return 0;
}

int H2Session::on_header(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name_p, size_t namelen,
                         const uint8_t* value_p, size_t valuelen, uint8_t, void* user) {
  auto* self = static_cast<H2Session*>(user);
  H2Stream* s = self->find(frame->hd.stream_id);
  if (s == nullptr || s->started_) return 0;  // trailers of a request: not passed on
  // Header list size as SETTINGS_MAX_HEADER_LIST_SIZE counts it: an HPACK bomb (small frames that
  // decode to huge lists) costs the stream, not memory.
  s->header_bytes_ += namelen + valuelen + 32;
  if (s->header_bytes_ > self->conn_.settings_.max_header_bytes) {
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_ENHANCE_YOUR_CALM);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  std::string_view name = view(name_p, namelen), value = view(value_p, valuelen);
  std::string& h = s->head_in_;
  if (name[0] == ':') {
    // nghttp2 has checked the pseudo-headers (RFC 9113 8.3.1): they come first, once each.
    if (name == ":method"sv) {
      s->method_.assign(value);
      s->is_head_ = value == "HEAD"sv;
    } else if (name == ":path"sv) {
      s->path_.assign(value);
    } else if (name == ":authority"sv) {
      h.append("Host: ").append(value).append("\r\n");
      s->has_host_ = true;
    }
    return 0;
  }
  if (name == "cookie"sv) {
    if (!s->cookies_.empty()) s->cookies_.append("; ");
    s->cookies_.append(value);
    return 0;
  }
  if (name == "host"sv) {
    if (s->has_host_) return 0;  // :authority wins
    s->has_host_ = true;
  }
  if (name == "content-length"sv) s->has_length_ = true;
  // Go's CanonicalMIMEHeaderKey, as Traefik's HTTP/2 server passes names on ("user-agent" ->
  // "User-Agent"); nghttp2 has checked they are lower-case tokens.
  bool upper = true;
  for (char c : name) {
    h.push_back(upper && c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c);
    upper = c == '-';
  }
  h.append(": ").append(value).append("\r\n");
  return 0;
}

void H2Session::start_exchange(H2Stream& s) {
  std::string head;
  head.reserve(s.method_.size() + s.path_.size() + s.head_in_.size() + s.cookies_.size() + 64);
  head.append(s.method_).append(" ").append(s.path_.empty() ? "/"sv : std::string_view(s.path_)).append(" HTTP/1.1\r\n");
  head.append(s.head_in_);
  if (!s.cookies_.empty()) head.append("Cookie: ").append(s.cookies_).append("\r\n");
  if (!s.end_in_ && !s.has_length_) {
    // No length given: the body is passed on chunked, framed as it arrives.
    head.append("Transfer-Encoding: chunked\r\n");
    s.chunked_in_ = true;
  }
  head.append("\r\n");
  s.started_ = true;
  std::string().swap(s.method_);
  std::string().swap(s.path_);
  std::string().swap(s.head_in_);
  std::string().swap(s.cookies_);
  std::shared_ptr<H2Stream> stream = streams_.at(s.id_);
  // Not from inside nghttp2's callback: the exchange may submit its response at once. By the time
  // it runs the stream may be gone (a client resetting streams as fast as it opens them, CVE-2023-44487)
  // or the session ending (a GOAWAY for flooding): then no request reaches a backend.
  asio::post(conn_.worker_.context(), [self = shared_from_this(), stream, head = std::move(head)] {
    if (stream->reset_ || stream->session_ == nullptr || self->closed_ || nghttp2_session_want_read(self->session_) == 0)
      return;
    std::make_shared<DownstreamConnection>(self->conn_, stream, head)->start_stream();
  });
}

int H2Session::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Session*>(user);
  H2Stream* s = self->find(frame->hd.stream_id);
  if (s == nullptr) return 0;
  bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    s->end_in_ = end;
    self->start_exchange(*s);
    return 0;
  }
  if (end && (frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS)) {
    s->end_in_ = true;
    if (s->chunked_in_) s->body_in_.append("0\r\n\r\n");
    s->wake();
  }
  return 0;
}

int H2Session::on_data_chunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len,
                             void* user) {
  auto* self = static_cast<H2Session*>(user);
  H2Stream* s = self->find(stream_id);
  if (s == nullptr || s->finished_) {
    nghttp2_session_consume(self->session_, stream_id, len);  // nobody reads it: the window stays open
    return 0;
  }
  if (s->body_in_pos_ == s->body_in_.size()) {
    s->body_in_.clear();
    s->body_in_pos_ = 0;
  }
  if (s->chunked_in_) http::h1::append_chunk(s->body_in_, view(data, len));
  else s->body_in_.append(view(data, len));
  s->unconsumed_ += len;
  s->wake();
  return 0;
}

int H2Session::on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user) {
  auto* self = static_cast<H2Session*>(user);
  auto it = self->streams_.find(stream_id);
  if (it == self->streams_.end()) return 0;
  H2Stream& s = *it->second;
  if (s.unconsumed_ > 0) nghttp2_session_consume_connection(self->session_, std::exchange(s.unconsumed_, 0));
  s.session_ = nullptr;
  if (error_code != NGHTTP2_NO_ERROR || s.out_ != H2Stream::Out::kDone) s.reset_ = true;
  s.wake();
  self->streams_.erase(it);
  // The reader armed no idle limit while streams were open; the last one closing starts it.
  if (self->streams_.empty() && !self->closed_) self->conn_.arm(DownstreamConnection::Phase::kIdle, self->conn_.settings_.idle_timeout);
  return 0;
}

ssize_t H2Session::read_data(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                             nghttp2_data_source* source, void*) {
  auto* s = static_cast<H2Stream*>(source->ptr);
  size_t n = std::min(length, s->pending_out());
  std::memcpy(buf, s->body_out_.data() + s->body_out_pos_, n);
  s->body_out_pos_ += n;
  if (s->pending_out() == 0) {
    s->body_out_.clear();
    s->body_out_pos_ = 0;
    if (s->out_end_) *flags |= NGHTTP2_DATA_FLAG_EOF;
    else if (n == 0) return NGHTTP2_ERR_DEFERRED;
  }
  if (s->pending_out() < H2Stream::kHighWater) s->wake();  // a writer waiting for room
  return static_cast<ssize_t>(n);
}

bool H2Session::submit_response(int32_t id, const nghttp2_nv* nva, size_t count, bool with_body) {
  H2Stream* s = find(id);
  if (s == nullptr || closed_) return false;
  nghttp2_data_provider provider{};
  provider.source.ptr = s;
  provider.read_callback = &H2Session::read_data;
  int rv = nghttp2_submit_response(session_, id, nva, count, with_body ? &provider : nullptr);
  flush();
  return rv == 0;
}

bool H2Session::submit_informational(int32_t id, const nghttp2_nv* nva, size_t count) {
  if (closed_) return false;
  int rv = nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, id, nullptr, nva, count, nullptr);
  flush();
  return rv >= 0;
}

void H2Session::resume_data(int32_t id) {
  if (closed_) return;
  nghttp2_session_resume_data(session_, id);
  flush();
}

void H2Session::consume(int32_t id, size_t n) {
  if (closed_) return;
  nghttp2_session_consume(session_, id, n);
  flush();
}

void H2Session::reset_stream(int32_t id, uint32_t error_code) {
  if (closed_) return;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, error_code);
  flush();
}

void H2Session::shutdown() {
  if (closed_ || going_away_) return;
  going_away_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
  flush();
}

void H2Session::flush() {
  if (writing_ || closed_) return;
  writing_ = true;
  coro::spawn(write_loop(shared_from_this()));
}

coro::Task<void> H2Session::write_loop(std::shared_ptr<H2Session> self) {
  // One writer at a time; it gathers whatever the library has queued (frames of every stream) into
  // writes of up to kGatherBytes, and stops when the library has nothing more.
  while (!closed_) {
    out_.clear();
    while (out_.size() < kGatherBytes) {
      const uint8_t* data = nullptr;
      ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n < 0) {
        LOG_DEBUG("HTTP/2 send failed: ", nghttp2_strerror(static_cast<int>(n)));
        closed_ = true;
        break;
      }
      if (n == 0) break;
      out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
    if (out_.empty()) break;
    auto [ec, written] = co_await conn_.stream_.write(asio::buffer(out_));
    if (ec) {
      closed_ = true;
      break;
    }
  }
  writing_ = false;
  writer_done_.cancel();
  // Nothing left to do either way (GOAWAY sent, streams done): the reader ends the connection.
  if (closed_ || (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0))
    conn_.stream_.cancel();
}

coro::Task<void> H2Session::run() {
  auto self = shared_from_this();
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(conn_.settings_.max_header_bytes)},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  IoBuffer& in = conn_.in_;
  in.attach(conn_.worker_.buffers());
  while (!closed_) {
    if (!in.empty()) {
      ssize_t used = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(in.data()), in.size());
      in.consume(in.size());
      if (used < 0) {
        // Protocol errors and floods (SETTINGS, PING, RST_STREAM): GOAWAY is queued; send it and end.
        LOG_DEBUG("HTTP/2 connection on entry point ", conn_.settings_.name, " failed: ",
                  nghttp2_strerror(static_cast<int>(used)));
        break;
      }
    }
    if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) break;
    flush();
    // Idle limit only while no stream is open; a stream's own exchange enforces its timeouts.
    if (streams_.empty()) conn_.arm(DownstreamConnection::Phase::kIdle, conn_.settings_.idle_timeout);
    else conn_.disarm();
    auto [ec, n] = co_await conn_.stream_.read_some(asio::buffer(in.write_ptr(), in.write_space()));
    if (ec) {
      if (conn_.expired_ == DownstreamConnection::Phase::kIdle && !closed_) {
        conn_.expired_ = DownstreamConnection::Phase::kNone;
        shutdown();
        if (!streams_.empty()) continue;
      }
      break;
    }
    in.commit(n);
  }
  // Whatever is queued (GOAWAY) goes out if the writer can send it now; then the streams learn the
  // connection is gone.
  if (!closed_ && !writing_) {
    out_.clear();
    const uint8_t* data = nullptr;
    ssize_t n;
    while (out_.size() < kGatherBytes && (n = nghttp2_session_mem_send(session_, &data)) > 0)
      out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    if (!out_.empty()) co_await conn_.stream_.write(asio::buffer(out_));
  }
  closed_ = true;
  detach_all();
  conn_.disarm();
  if (writing_) {
    // The connection must outlive the writer, which writes on it.
    conn_.stream_.cancel();
    writer_done_.expires_at(Timer::time_point::max());
    while (writing_) co_await writer_done_.async_wait(coro::use_task);
  }
}

}  // namespace berth::proxy
