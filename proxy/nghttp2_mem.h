// An nghttp2 allocator over BlockPool, so the objects nghttp2 makes for every stream and frame
// (stream state, HPACK buffers, queued frames) come from the worker thread's lists. Thread: any.
#pragma once

#include <nghttp2/nghttp2.h>

namespace berth::proxy {

/// For nghttp2_session_{server,client}_new3: BlockPool::malloc_sized and its kin.
nghttp2_mem* pooled_nghttp2_mem();

}  // namespace berth::proxy
