// OpenSSL's heap memory from BlockPool: a TLS request allocates in OpenSSL (the record buffers that
// SSL_MODE_RELEASE_BUFFERS takes and gives back, and a few small temporaries per record in 3.0's
// cipher calls), six calls per HTTPS/1.1 request with malloc; from the worker's lists, none (HP-1).
// Thread: call once, first thing in main, before anything uses OpenSSL.
#pragma once

namespace berth::proxy::tls {

/// Routes OpenSSL's allocations through BlockPool::malloc_sized and its kin. False (and nothing
/// changed) when OpenSSL has already allocated: its blocks would then reach the wrong free.
bool use_pooled_openssl_memory();

/// Whether use_pooled_openssl_memory() succeeded in this process (for `berth version`).
bool openssl_memory_pooled();

}  // namespace berth::proxy::tls
