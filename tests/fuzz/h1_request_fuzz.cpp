// libFuzzer target: the HTTP/1 request-head parser and the chunked framer on arbitrary bytes.
// Any crash, sanitizer report or broken invariant below is a bug.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "proxy/http/h1/parser.h"

using namespace berth::proxy::http::h1;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  static RequestHead req;
  size_t head = find_head_end(text);
  if (head > size) std::abort();
  if (head > 0) {
    if (parse_request(text.substr(0, head), req) == ParseStatus::kOk) {
      if (req.head_size != head) std::abort();
      for (const auto& h : req.headers)
        if (h.name.data() < text.data() || h.value.data() + h.value.size() > text.data() + head) std::abort();
    }
    static ResponseHead resp;
    (void)parse_response(text.substr(0, head), resp);
  }
  // Feed the rest as a chunked body, in two pieces, and check `used` never overruns.
  ChunkedFramer framer;
  std::string_view body = text.substr(head);
  size_t split = body.size() / 2, used = 0;
  auto st = framer.consume(body.substr(0, split), used);
  if (used > split) std::abort();
  if (st == ChunkedFramer::Status::kMore) {
    st = framer.consume(body.substr(split), used);
    if (used > body.size() - split) std::abort();
  }
  return 0;
}
