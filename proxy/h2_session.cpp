// HTTP/2 sessions and streams; see h2_session.h.
#include "proxy/h2_session.h"

#include <boost/asio/bind_allocator.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "base/log.h"
#include "base/text.h"
#include "proxy/local_reply.h"
#include "proxy/nghttp2_mem.h"
#include "proxy/upstream/pool.h"
#include "proxy/downstream_connection.h"
#include "proxy/http/h1/parser.h"

namespace berth::proxy {

namespace asio = boost::asio;
using boost::system::error_code;
using namespace std::string_view_literals;

namespace {

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

H2Stream::H2Stream(H2Connection* connection, int32_t id, Executor executor, std::chrono::milliseconds idle_limit,
                   Role role)
    : connection_(connection), id_(id), role_(role), executor_(executor), idle_limit_(idle_limit) {
  chunks_.keep_trailers(&trailers_out_);
  drain_.owner = this;
  drain_.fire = &H2Stream::on_drain_deadline;
}

H2Stream::~H2Stream() {
  if (client_ && --client_->open_streams_ == 0) client_->idle_since_ = std::chrono::steady_clock::now();
}

coro::Task<error_code> H2Stream::wait(std::optional<Timer>& wake, bool& waiting) {
  // Made at the first wait: most streams never wait (each timer made costs a lock of the
  // io_context's service registry, and each one cancelled a lock of its timer queue).
  if (!wake) wake.emplace(executor_);
  // A stream that moves nothing for the entry point's idleTimeout (a client that never opens its
  // window, or stops sending a body) fails, so it cannot hold an exchange and a backend forever.
  if (idle_limit_.count() > 0) wake->expires_after(idle_limit_);
  else wake->expires_at(Timer::time_point::max());
  waiting = true;
  auto [ec] = co_await wake->async_wait(coro::use_task);
  waiting = false;
  if (ec == asio::error::operation_aborted) co_return error_code{};  // woken
  co_return ec ? ec : error_code(asio::error::timed_out);
}

void H2Stream::wake() {
  if (std::exchange(read_waiting_, false)) read_wake_->cancel();
  if (std::exchange(write_waiting_, false)) write_wake_->cancel();
}

void H2Stream::on_drain_deadline(void* owner) {
  auto* self = static_cast<H2Stream*>(owner);
  if (self->connection_ != nullptr)
    self->connection_->reset_stream(self->id_, self->pending_out() > 0 ? NGHTTP2_CANCEL : NGHTTP2_NO_ERROR);
  // Let go of the stream later: the wheel is walking its entries, and this may be the last hold.
  asio::post(self->executor_, asio::bind_allocator(PoolAllocator<void>{}, [s = std::move(self->drain_self_)] {}));
}

void H2Stream::end_drain() {
  if (!drain_self_) return;
  if (drain_.armed()) wheel_->disarm(drain_);
  drain_self_.reset();  // never the last hold: the caller holds the stream too
}

void H2Stream::cancel() {
  // As a socket's cancel: the operations in progress fail, later ones do not.
  read_aborted_ = reading_;
  write_aborted_ = writing_;
  wake();
}

namespace {
// Marks a read or write in progress for cancel(), and clears its mark when it ends.
struct InProgress {
  bool& busy;
  bool& aborted;
  InProgress(bool& b, bool& a) : busy(b), aborted(a) { busy = true; }
  ~InProgress() {
    busy = false;
    aborted = false;
  }
};
}  // namespace

coro::Task<IoResult> H2Stream::read(asio::mutable_buffer buffer) {
  InProgress in_progress(reading_, read_aborted_);
  while (true) {
    if (read_aborted_) co_return IoResult{asio::error::operation_aborted, 0};
    if (body_in_pos_ < body_in_.size()) {
      size_t n = std::min(buffer.size(), body_in_.size() - body_in_pos_);
      std::memcpy(buffer.data(), body_in_.data() + body_in_pos_, n);
      body_in_pos_ += n;
      if (body_in_pos_ == body_in_.size()) {
        // All taken: the client may send the next window's worth.
        body_in_.clear();
        body_in_pos_ = 0;
        if (connection_ != nullptr && unconsumed_ > 0) connection_->consume(id_, std::exchange(unconsumed_, 0));
      }
      co_return IoResult{error_code{}, n};
    }
    if (reset_) co_return IoResult{asio::error::connection_reset, 0};
    // A server's stream has nothing more to give the exchange once its response is complete.
    if (end_in_ || (role_ == Role::kServer && out_ == Out::kDone) || connection_ == nullptr)
      co_return IoResult{asio::error::eof, 0};
    if (auto ec = co_await wait(read_wake_, read_waiting_)) co_return IoResult{ec, 0};
  }
}

coro::Task<IoResult> H2Stream::write(ConstBufferList list) {
  if (list.overflow) co_return IoResult{asio::error::no_buffer_space, 0};
  InProgress in_progress(writing_, write_aborted_);
  size_t written = 0;
  for (size_t i = 0; i < list.count; ++i) {
    std::string_view data(static_cast<const char*>(list.buffers[i].data()), list.buffers[i].size());
    while (!data.empty()) {
      if (write_aborted_) co_return IoResult{asio::error::operation_aborted, written};
      if (reset_ || connection_ == nullptr) co_return IoResult{asio::error::connection_reset, written};
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
            connection_->reset_stream(id_, NGHTTP2_INTERNAL_ERROR);
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
            connection_->reset_stream(id_, NGHTTP2_INTERNAL_ERROR);
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
      while (pending_out() >= kHighWater && !reset_ && connection_ != nullptr && !write_aborted_)
        if (auto ec = co_await wait(write_wake_, write_waiting_)) co_return IoResult{ec, written};
    }
  }
  co_return IoResult{error_code{}, written};
}

bool H2Stream::submit_head() { return role_ == Role::kServer ? submit_response_head() : submit_request_head(); }

namespace {

// Where a head being submitted is parsed and turned into a header list. nghttp2 copies the list
// when it is submitted, so one per thread serves every stream without allocating (HP-1).
struct HeadScratch {
  http::h1::ResponseHead response;
  http::h1::RequestHead request;
  std::string names;               ///< lower-cased names: nva's point into it once the list is complete
  std::vector<nghttp2_nv> nva;
  std::vector<uint32_t> name_at;   ///< per entry of nva: where its name is in `names` (kOwnName: nva has it)
  static constexpr uint32_t kOwnName = UINT32_MAX;
  static HeadScratch& get() {
    thread_local HeadScratch scratch;
    return scratch;
  }
  static HeadScratch& fresh() {
    HeadScratch& scratch = get();
    scratch.names.clear();
    scratch.nva.clear();
    scratch.name_at.clear();
    return scratch;
  }
  void add_literal(std::string_view name, std::string_view value) {
    nva.push_back(make_nv(name, value));
    name_at.push_back(kOwnName);
  }
  // A field of an HTTP/1.1 head as an HTTP/2 field: the name lower-cased, connection-specific
  // fields left out; "te: trailers" is the one TE allowed.
  void add_field(std::string_view name, std::string_view value, http::HeaderId id) {
    if (hop_by_hop(id)) return;
    if (id == http::HeaderId::kTe && !iequals(trim(value), "trailers")) return;
    name_at.push_back(static_cast<uint32_t>(names.size()));
    for (char c : name) names.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
    nva.push_back(make_nv(std::string_view(names).substr(names.size() - name.size()), value));
  }
  // The list, its names pointing into `names` now that it no longer grows.
  nghttp2_nv* list() {
    for (size_t i = 0; i < nva.size(); ++i)
      if (name_at[i] != kOwnName) nva[i].name = reinterpret_cast<uint8_t*>(names.data() + name_at[i]);
    return nva.data();
  }
};

}  // namespace

void H2Stream::begin_response() {
  HeadScratch::fresh().add_literal(":status", {});  // its value is set as the list is submitted
}

void H2Stream::add_response_field(std::string_view name, std::string_view value, http::HeaderId id) {
  HeadScratch::get().add_field(name, value, id == http::HeaderId::kOther ? http::header_id(name) : id);
}

bool H2Stream::submit_response(int status, const http::h1::Framing& framing) {
  if (reset_ || connection_ == nullptr) return false;
  if (submit_fields(status, framing)) return true;
  connection_->reset_stream(id_, NGHTTP2_INTERNAL_ERROR);
  return false;
}

bool H2Stream::submit_fields(int status, const http::h1::Framing& framing) {
  HeadScratch& scratch = HeadScratch::get();
  char digits[4];
  std::to_chars(digits, digits + 3, status);
  nghttp2_nv* nva = scratch.list();
  nva[0].value = reinterpret_cast<uint8_t*>(digits);
  nva[0].valuelen = 3;
  if (status < 200) {
    // 100 Continue (and other 1xx) go on as informational HEADERS; 101 has no HTTP/2 form.
    return status != 101 && connection_->submit_informational(id_, nva, scratch.nva.size());
  }
  bool no_body = is_head_ || status == 204 || status == 304;
  if (!no_body && framing.chunked) out_ = Out::kChunked;
  else if (!no_body && framing.content_length > 0) out_ = Out::kLength;
  else if (!no_body && framing.content_length < 0) out_ = Out::kUntilClose;
  else out_ = Out::kDone;
  out_left_ = out_ == Out::kLength ? static_cast<uint64_t>(framing.content_length) : 0;
  out_end_ = out_ == Out::kDone;
  return connection_->submit_response(id_, nva, scratch.nva.size(), out_ != Out::kDone);
}

bool H2Stream::submit_response_head() {
  http::h1::ResponseHead& head = HeadScratch::get().response;
  if (http::h1::parse_response(head_out_, head) != http::h1::ParseStatus::kOk) return false;
  begin_response();
  for (const auto& h : head.headers) HeadScratch::get().add_field(h.name, h.value, h.id);
  bool ok = submit_fields(head.status, head.framing);
  head_out_.clear();
  if (head.status >= 200) head_out_.shrink_to_fit();
  return ok;
}

bool H2Stream::submit_request_head() {
  HeadScratch& scratch = HeadScratch::fresh();
  http::h1::RequestHead& head = scratch.request;
  if (http::h1::parse_request(head_out_, head) != http::h1::ParseStatus::kOk) return false;
  scratch.add_literal(":method", head.method);
  scratch.add_literal(":scheme", tls_ ? "https"sv : "http"sv);
  scratch.add_literal(":authority", head.host);
  scratch.add_literal(":path", head.target);
  for (const auto& h : head.headers)
    if (h.id != http::HeaderId::kHost) scratch.add_field(h.name, h.value, h.id);
  is_head_ = head.method == "HEAD"sv;
  if (head.framing.chunked) out_ = Out::kChunked;
  else if (head.framing.content_length > 0) out_ = Out::kLength;
  else out_ = Out::kDone;  // a request without framing has no body (RFC 9112 6.3)
  out_left_ = out_ == Out::kLength ? static_cast<uint64_t>(head.framing.content_length) : 0;
  out_end_ = out_ == Out::kDone;
  trailers_out_.clear();
  chunks_.keep_trailers(nullptr);  // request trailers are not passed on
  bool ok = connection_->submit_request(*this, scratch.list(), scratch.nva.size(), out_ != Out::kDone);
  head_out_.clear();
  head_out_.shrink_to_fit();
  return ok;
}

void H2Stream::append_field(std::string_view name, std::string_view value) {
  // Go's CanonicalMIMEHeaderKey, as Traefik passes HTTP/2 names on to HTTP/1.1 ("user-agent" ->
  // "User-Agent"); nghttp2 has checked they are lower-case tokens.
  PooledString& h = head_in_;
  bool upper = true;
  for (char c : name) {
    h.push_back(upper && c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c);
    upper = c == '-';
  }
  h.append(": ").append(value).append("\r\n");
}

void H2Stream::push_body(std::string_view data) {
  if (data.empty()) return;
  data_out_ += data.size();
  if (body_out_pos_ == body_out_.size()) {
    body_out_.clear();
    body_out_pos_ = 0;
  }
  body_out_.append(data);
  connection_->resume_data(id_);
}

void H2Stream::finish_body() {
  out_ = Out::kDone;
  out_end_ = true;
  connection_->resume_data(id_);
}

void H2Stream::close() {
  // Runs when the exchange ends, so nothing waits on this stream any more.
  finished_ = true;
  if (connection_ == nullptr || reset_ || id_ < 0) return;
  if (role_ == Role::kClient) {
    // Done with the server's answer. If berth did not read all of it, or did not send the whole
    // request (the server answered early), the stream is reset: it must not keep one of the
    // server's stream slots.
    if (!end_in_ || !out_end_) connection_->reset_stream(id_, NGHTTP2_CANCEL);
    else if (unconsumed_ > 0) connection_->consume(id_, std::exchange(unconsumed_, 0));
    return;
  }
  body_in_.clear();
  body_in_pos_ = 0;
  if (unconsumed_ > 0) connection_->consume(id_, std::exchange(unconsumed_, 0));
  if (out_ == Out::kUntilClose) finish_body();  // a close-delimited body ends with the exchange
  if (out_ != Out::kDone) {
    connection_->reset_stream(id_, NGHTTP2_INTERNAL_ERROR);
    return;
  }
  if ((pending_out() > 0 || !end_in_) && idle_limit_.count() > 0 && wheel_ != nullptr) {
    // DATA still queued for a client that may never open its window, or a request body the
    // response no longer needs: the stream gets the entry point's idleTimeout to end by itself
    // (a gRPC client stops sending once it has the status), then it is reset (RFC 9113 8.1),
    // since its exchange no longer bounds it. Not at once: gRPC clients take a reset that
    // arrives with the status for an error. Most streams come here (their last DATA is still
    // queued), so the deadline is an entry in the worker's wheel, not a timer.
    drain_self_ = shared_from_this();
    wheel_->arm_after(drain_, idle_limit_);
  }
}

// ---- H2Connection: both sides ----

H2Connection::H2Connection(Stream& transport, Executor executor) : transport_(transport), writer_done_(executor) {}

H2Connection::~H2Connection() {
  detach_all();
  nghttp2_session_del(session_);
}

void H2Connection::set_common_callbacks(nghttp2_session_callbacks* callbacks) {
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &H2Connection::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &H2Connection::on_stream_close);
}

void H2Connection::detach_all() {
  for (auto& [id, s] : streams_) {
    s->connection_ = nullptr;
    if (!s->complete()) s->reset_ = true;
    s->wake();
    s->end_drain();
    if (auto exchange = s->exchange_.lock(); exchange && s->reset_ && !s->finished_) exchange->stop_exchange();
  }
  streams_.clear();
  found_id_ = 0;
  found_ = nullptr;
}

H2Stream* H2Connection::find(int32_t id) {
  if (id == found_id_) return found_;
  auto it = streams_.find(id);
  if (it == streams_.end()) return nullptr;
  found_id_ = id;
  return found_ = it->second.get();
}

int H2Connection::on_data_chunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len,
                                void* user) {
  auto* self = static_cast<H2Connection*>(user);
  H2Stream* s = self->find(stream_id);
  if (s != nullptr) s->data_in_ += len;
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

int H2Connection::on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  auto it = self->streams_.find(stream_id);
  if (it == self->streams_.end()) return 0;
  H2Stream& s = *it->second;
  if (s.unconsumed_ > 0) nghttp2_session_consume_connection(self->session_, std::exchange(s.unconsumed_, 0));
  s.connection_ = nullptr;
  // A server may end a stream (RST_STREAM NO_ERROR) once its response is complete, while berth
  // still sends the request body (RFC 9113 8.1): the response stands.
  if (!s.complete() || (s.role_ == H2Stream::Role::kServer && error_code != NGHTTP2_NO_ERROR)) s.reset_ = true;
  // nghttp2 closes the streams a received GOAWAY does not cover with REFUSED_STREAM too.
  if (s.role_ == H2Stream::Role::kClient && error_code == NGHTTP2_REFUSED_STREAM) s.refused_ = true;
  s.wake();
  s.end_drain();
  // A client's stream reset before its exchange is done: the backend request stops too.
  if (auto exchange = s.exchange_.lock(); exchange && s.reset_ && !s.finished_) exchange->stop_exchange();
  if (self->found_id_ == stream_id) {
    self->found_id_ = 0;
    self->found_ = nullptr;
  }
  self->streams_.erase(it);
  if (self->streams_.empty() && !self->closed_) self->on_idle();
  return 0;
}

ssize_t H2Connection::read_data(nghttp2_session* session, int32_t stream_id, uint8_t* buf, size_t length,
                                uint32_t* flags, nghttp2_data_source* source, void*) {
  auto* s = static_cast<H2Stream*>(source->ptr);
  size_t n = std::min(length, s->pending_out());
  std::memcpy(buf, s->body_out_.data() + s->body_out_pos_, n);
  s->body_out_pos_ += n;
  if (s->pending_out() == 0) {
    s->body_out_.clear();
    s->body_out_pos_ = 0;
    if (s->out_end_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!s->trailers_out_.empty()) {
        // A chunked body's trailer section ends the stream as trailing HEADERS (gRPC's status).
        std::vector<nghttp2_nv> nva;
        std::string names;
        names.reserve(s->trailers_out_.size());
        for (std::string_view rest = s->trailers_out_; !rest.empty();) {
          size_t eol = rest.find("\r\n");
          std::string_view line = rest.substr(0, eol);
          rest = eol == std::string_view::npos ? std::string_view{} : rest.substr(eol + 2);
          size_t colon = line.find(':');
          if (colon == std::string_view::npos) continue;
          size_t at = names.size();
          for (char c : line.substr(0, colon)) names.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
          std::string_view name = std::string_view(names).substr(at, colon);
          if (hop_by_hop(http::header_id(name)) || name.empty()) continue;
          nva.push_back(make_nv(name, trim(line.substr(colon + 1))));
        }
        if (!nva.empty() && nghttp2_submit_trailer(session, stream_id, nva.data(), nva.size()) == 0)
          *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      }
    } else if (n == 0) {
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  if (s->pending_out() < H2Stream::kHighWater) s->wake();  // a writer waiting for room
  return static_cast<ssize_t>(n);
}

bool H2Connection::submit_response(int32_t id, const nghttp2_nv* nva, size_t count, bool with_body) {
  H2Stream* s = find(id);
  if (s == nullptr || closed_) return false;
  nghttp2_data_provider provider{};
  provider.source.ptr = s;
  provider.read_callback = &H2Connection::read_data;
  int rv = nghttp2_submit_response(session_, id, nva, count, with_body ? &provider : nullptr);
  flush();
  return rv == 0;
}

bool H2Connection::submit_request(H2Stream& stream, const nghttp2_nv* nva, size_t count, bool with_body) {
  if (closed_) return false;
  nghttp2_data_provider provider{};
  provider.source.ptr = &stream;
  provider.read_callback = &H2Connection::read_data;
  int32_t id = nghttp2_submit_request(session_, nullptr, nva, count, with_body ? &provider : nullptr, nullptr);
  if (id < 0) return false;
  stream.id_ = id;
  // The connection keeps the stream while it is open; the exchange holds the other reference.
  streams_.emplace(id, stream.shared_from_this());
  flush();
  return true;
}

bool H2Connection::submit_informational(int32_t id, const nghttp2_nv* nva, size_t count) {
  if (closed_) return false;
  int rv = nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, id, nullptr, nva, count, nullptr);
  flush();
  return rv >= 0;
}

void H2Connection::resume_data(int32_t id) {
  if (closed_) return;
  nghttp2_session_resume_data(session_, id);
  flush();
}

void H2Connection::consume(int32_t id, size_t n) {
  if (closed_) return;
  nghttp2_session_consume(session_, id, n);
  flush();
}

void H2Connection::reset_stream(int32_t id, uint32_t error_code) {
  if (closed_) return;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, error_code);
  flush();
}

void H2Connection::flush() {
  // Not at once: whatever else this turn of the event loop queues (the other streams' frames, the
  // DATA after a HEADERS) goes out in the same write, so one TLS record carries many frames.
  if (writing_ || closed_ || flush_posted_) return;
  flush_posted_ = true;
  auto start = [self = shared_from_this()] {
    self->flush_posted_ = false;
    if (self->writing_ || self->closed_) return;
    self->writing_ = true;
    coro::spawn(self->write_loop(self));
  };
  asio::post(writer_done_.get_executor(), asio::bind_allocator(PoolAllocator<void>{}, std::move(start)));
}

coro::Task<void> H2Connection::write_loop(std::shared_ptr<H2Connection> self) {
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
    auto [ec, written] = co_await transport_.write(asio::buffer(out_));
    if (ec) {
      closed_ = true;
      break;
    }
  }
  writing_ = false;
  writer_done_.cancel();
  // Nothing left to do either way (GOAWAY sent, streams done): the reader ends the connection.
  if (closed_ || (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0))
    transport_.cancel();
}

coro::Task<void> H2Connection::finish() {
  // Whatever is queued (GOAWAY) goes out if it can be sent now; then the streams learn the
  // connection is gone; the transport must outlive the writer, which writes on it.
  if (!closed_ && !writing_) {
    writing_ = true;  // this is the writer now: a posted flush() must not start another
    out_.clear();
    const uint8_t* data = nullptr;
    ssize_t n;
    while (out_.size() < kGatherBytes && (n = nghttp2_session_mem_send(session_, &data)) > 0)
      out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    if (!out_.empty()) co_await transport_.write(asio::buffer(out_));
    writing_ = false;
  }
  closed_ = true;
  detach_all();
  if (writing_) {
    transport_.cancel();
    writer_done_.expires_at(Timer::time_point::max());
    while (writing_) co_await writer_done_.async_wait(coro::use_task);
  }
}

// ---- H2Session: a client's connection ----

H2Session::H2Session(DownstreamConnection& conn)
    : H2Connection(conn.stream_, conn.worker_.context().get_executor()), conn_(conn) {
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  set_common_callbacks(callbacks);
  nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, &H2Session::on_begin_frame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, &H2Session::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &H2Session::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &H2Session::on_frame_recv);
  nghttp2_option* options = nullptr;
  nghttp2_option_new(&options);
  nghttp2_option_set_no_auto_window_update(options, 1);
  nghttp2_option_set_stream_reset_rate_limit(options, kResetBurst, kResetRate);
  nghttp2_option_set_max_settings(options, 32);  // entries in one SETTINGS frame
  nghttp2_option_set_no_closed_streams(options, 1);  // no RFC 7540 priority tree (run())
  nghttp2_session_server_new3(&session_, callbacks, this, options, pooled_nghttp2_mem());
  nghttp2_option_del(options);
  nghttp2_session_callbacks_del(callbacks);
}

H2Session::~H2Session() = default;

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
  auto stream = std::allocate_shared<H2Stream>(PoolAllocator<H2Stream>{}, self, frame->hd.stream_id,
                                               self->conn_.worker_.context().get_executor(),
                                               self->conn_.settings_.idle_timeout, H2Stream::Role::kServer);
  stream->head_in_.reserve(512);
  stream->wheel_ = &self->conn_.worker_.deadlines();
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
  if (name[0] == ':') {
    // nghttp2 has checked the pseudo-headers (RFC 9113 8.3.1): they come first, once each.
    if (name == ":method"sv) {
      s->method_.assign(value);
      s->is_head_ = value == "HEAD"sv;
    } else if (name == ":path"sv) {
      s->path_.assign(value);
    } else if (name == ":authority"sv) {
      s->head_in_.append("Host: ").append(value).append("\r\n");
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
  s->append_field(name, value);
  return 0;
}

void H2Session::start_exchange(H2Stream& s) {
  PooledString head;
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
  PooledString().swap(s.method_);
  PooledString().swap(s.path_);
  PooledString().swap(s.head_in_);
  PooledString().swap(s.cookies_);
  // Started once nghttp2 has read the whole buffer (start_pending), not from inside its callback:
  // the exchange may submit its response at once.
  pending_.push_back(Pending{s.shared_from_this(), std::move(head)});
}

void H2Session::start_pending() {
  // By now a stream may be gone (a client resetting streams as fast as it opens them,
  // CVE-2023-44487) or the session ending (a GOAWAY for flooding): then no request reaches a backend.
  const bool ending = closed_ || nghttp2_session_want_read(session_) == 0;
  for (auto& p : pending_) {
    H2Stream& stream = *p.stream;
    if (ending || stream.reset_ || stream.connection_ == nullptr) continue;
    auto exchange = std::allocate_shared<DownstreamConnection>(PoolAllocator<DownstreamConnection>{}, conn_,
                                                               std::move(p.stream), p.head);
    stream.exchange_ = exchange;
    exchange->start_stream();
  }
  pending_.clear();
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

void H2Session::on_idle() {
  // The reader armed no idle limit while streams were open; the last one closing starts it.
  conn_.arm(DownstreamConnection::Phase::kIdle, conn_.settings_.idle_timeout);
}

void H2Session::shutdown() {
  if (closed_ || going_away_) return;
  going_away_ = true;
  // Two steps (RFC 9113 6.8): a notice first (a GOAWAY naming the highest stream id), so requests
  // already on their way are still served; the final GOAWAY, naming the last stream taken, a
  // moment later. A GOAWAY at once would refuse a request the client sent just before it arrived.
  nghttp2_submit_shutdown_notice(session_);
  flush();
  auto timer = std::make_shared<Timer>(conn_.worker_.context().get_executor(), std::chrono::milliseconds(200));
  std::weak_ptr<H2Connection> weak = shared_from_this();
  timer->async_wait([weak, timer](boost::system::error_code) {
    auto self = std::static_pointer_cast<H2Session>(weak.lock());
    if (!self || self->closed_) return;
    nghttp2_submit_goaway(self->session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(self->session_),
                          NGHTTP2_NO_ERROR, nullptr, 0);
    self->flush();
  });
}

coro::Task<void> H2Session::run() {
  auto self = shared_from_this();
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, conn_.settings_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(conn_.settings_.max_header_bytes)},
      // RFC 9113 5.3.2 deprecated RFC 7540's priority tree; RFC 9218 2.1 says so in SETTINGS.
      // nghttp2 then schedules by RFC 9218 urgency and forgets a stream once it closes, instead of
      // keeping up to maxConcurrentStreams closed ones in its tree: 5% less CPU per h2 request.
      {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  IoBuffer& in = conn_.in_;
  in.attach(conn_.worker_.buffers());
  while (!closed_) {
    if (!in.empty()) {
      ssize_t used = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(in.data()), in.size());
      in.consume(in.size());
      if (used >= 0) start_pending();
      else pending_.clear();
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
  // The last frames (GOAWAY) get a second to go out, from a peer that may have stopped reading.
  conn_.arm(DownstreamConnection::Phase::kWriteResponse, std::chrono::seconds(1));
  co_await finish();
  conn_.disarm();
}

// ---- H2Client: a connection to a server ----

H2Client::H2Client(std::unique_ptr<upstream::UpstreamConnection> connection, bool tls, BufferPool& buffers)
    : H2Connection(connection->stream, connection->stream.socket().get_executor()),
      connection_(std::move(connection)),
      tls_(tls),
      buffers_(buffers),
      idle_since_(std::chrono::steady_clock::now()) {
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  set_common_callbacks(callbacks);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &H2Client::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &H2Client::on_frame_recv);
  nghttp2_option* options = nullptr;
  nghttp2_option_new(&options);
  nghttp2_option_set_no_auto_window_update(options, 1);
  nghttp2_option_set_no_closed_streams(options, 1);  // no RFC 7540 priority tree (see H2Session::run)
  nghttp2_session_client_new3(&session_, callbacks, this, options, pooled_nghttp2_mem());
  nghttp2_option_del(options);
  nghttp2_session_callbacks_del(callbacks);
}

H2Client::~H2Client() = default;

std::shared_ptr<H2Client> H2Client::start(std::unique_ptr<upstream::UpstreamConnection> connection, bool tls,
                                          BufferPool& buffers, std::chrono::milliseconds read_idle,
                                          std::chrono::milliseconds ping_timeout) {
  std::shared_ptr<H2Client> client(new H2Client(std::move(connection), tls, buffers));
  client->read_idle_ = read_idle;
  client->ping_timeout_ = ping_timeout;
  client->last_read_ = std::chrono::steady_clock::now();
  coro::spawn(client->run(client));
  if (read_idle.count() > 0) {
    client->ping_timer_.emplace(client->connection_->stream.socket().get_executor());
    coro::spawn(client->keep_alive(client));
  }
  return client;
}

coro::Task<void> H2Client::keep_alive(std::shared_ptr<H2Client> self) {
  // readIdleTimeout / pingTimeout, as Go's HTTP/2 transport (so Traefik) does them.
  while (reading_) {
    const auto quiet = std::chrono::steady_clock::now() - last_read_;
    if (quiet < read_idle_) {
      ping_timer_->expires_after(read_idle_ - quiet);
      co_await ping_timer_->async_wait(coro::use_task);
      continue;
    }
    const auto sent = std::chrono::steady_clock::now();
    nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr);
    flush();
    ping_timer_->expires_after(ping_timeout_);
    co_await ping_timer_->async_wait(coro::use_task);
    if (!reading_) break;
    if (last_read_ < sent) {
      LOG_DEBUG("HTTP/2 connection to a server: nothing came back ", ping_timeout_.count(), " ms after a PING; closed");
      abort();
      break;
    }
  }
}

bool H2Client::usable() const {
  return !closed_ && !going_away_ &&
         open_streams_ < nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

std::unique_ptr<upstream::UpstreamConnection> H2Client::open_stream(std::chrono::milliseconds idle_limit) {
  if (!usable()) return nullptr;
  auto executor = connection_->stream.socket().get_executor();
  auto stream = std::allocate_shared<H2Stream>(PoolAllocator<H2Stream>{}, this, -1, executor, idle_limit,
                                               H2Stream::Role::kClient);
  stream->tls_ = tls_;
  stream->client_ = std::static_pointer_cast<H2Client>(shared_from_this());
  ++open_streams_;
  return std::make_unique<upstream::UpstreamConnection>(executor, std::move(stream));
}

void H2Client::shutdown() {
  if (closed_ || going_away_) return;
  going_away_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, nullptr, 0);
  flush();
}

void H2Client::abort() {
  // Shut down, not closed: the descriptor stays this connection's until the Stream goes, so
  // nothing (OpenSSL's writes included) can reach whoever gets the number next.
  boost::system::error_code ec;
  connection_->stream.socket().shutdown(Socket::shutdown_both, ec);
  connection_->stream.cancel();
}

int H2Client::on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name_p, size_t namelen,
                        const uint8_t* value_p, size_t valuelen, uint8_t, void* user) {
  auto* self = static_cast<H2Client*>(user);
  H2Stream* s = self->find(frame->hd.stream_id);
  if (s == nullptr || frame->hd.type != NGHTTP2_HEADERS) return 0;
  std::string_view name = view(name_p, namelen), value = view(value_p, valuelen);
  if (name == ":status"sv) {
    std::from_chars(value.data(), value.data() + value.size(), s->status_);
    return 0;
  }
  if (name[0] == ':') return 0;
  if (name == "content-length"sv && !s->in_trailers_) s->has_length_ = true;
  if (s->in_trailers_) {
    if (!s->chunked_in_) return 0;  // a body with a length has no trailer section in HTTP/1.1
    s->trailers_in_.append(name).append(": ").append(value).append("\r\n");
    return 0;
  }
  s->append_field(name, value);
  return 0;
}

int H2Client::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Client*>(user);
  H2Stream* s = self->find(frame->hd.stream_id);
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    self->going_away_ = true;  // streams in flight finish; new ones go to a new connection
    return 0;
  }
  if (s == nullptr) return 0;
  bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS && !s->in_trailers_) {
    // A response head, rendered as HTTP/1.1 for the exchange; 1xx heads come before the final one.
    PooledString& out = s->body_in_;
    char status[4] = "000";
    std::to_chars(status, status + 3, s->status_);
    out.append("HTTP/1.1 ").append(status, 3).append(" ").append(local_reply::reason_phrase(s->status_)).append("\r\n");
    out.append(s->head_in_);
    s->head_in_.clear();
    if (s->status_ >= 200) {
      bool no_body = s->is_head_ || s->status_ == 204 || s->status_ == 304;
      if (end && !s->has_length_ && !no_body) out.append("Content-Length: 0\r\n");
      else if (!end && !s->has_length_ && !no_body) {
        out.append("Transfer-Encoding: chunked\r\n");
        s->chunked_in_ = true;
      }
      s->in_trailers_ = true;  // any later HEADERS are trailers
    }
    out.append("\r\n");
    s->has_length_ = false;
  }
  if (end && (frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS)) {
    s->end_in_ = true;
    if (s->chunked_in_) s->body_in_.append("0\r\n").append(s->trailers_in_).append("\r\n");
  }
  s->wake();
  return 0;
}

coro::Task<void> H2Client::run(std::shared_ptr<H2Client> self) {
  nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}, {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1}};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  IoBuffer& in = connection_->buffer;
  in.attach(buffers_);
  while (!closed_) {
    flush();
    auto [ec, n] = co_await connection_->stream.read_some(asio::buffer(in.write_ptr(), in.write_space()));
    if (ec) break;
    in.commit(n);
    if (read_idle_.count() > 0) last_read_ = std::chrono::steady_clock::now();
    ssize_t used = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(in.data()), in.size());
    in.consume(in.size());
    if (used < 0) {
      LOG_DEBUG("HTTP/2 connection to a server failed: ", nghttp2_strerror(static_cast<int>(used)));
      break;
    }
    if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) break;
  }
  going_away_ = true;
  reading_ = false;
  if (ping_timer_) ping_timer_->cancel();
  co_await finish();
  in.release(buffers_);
  connection_->stream.close();
}

}  // namespace berth::proxy
