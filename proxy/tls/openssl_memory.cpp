#include "proxy/tls/openssl_memory.h"

#include <openssl/crypto.h>

#include "proxy/block_pool.h"

namespace berth::proxy::tls {
namespace {

bool g_pooled = false;

void* ssl_malloc(size_t size, const char*, int) { return BlockPool::malloc_sized(size); }
void* ssl_realloc(void* p, size_t size, const char*, int) { return BlockPool::realloc_sized(p, size); }
void ssl_free(void* p, const char*, int) { BlockPool::free_sized(p); }

}  // namespace

bool use_pooled_openssl_memory() {
  g_pooled = CRYPTO_set_mem_functions(ssl_malloc, ssl_realloc, ssl_free) == 1;
  return g_pooled;
}

bool openssl_memory_pooled() { return g_pooled; }

}  // namespace berth::proxy::tls
