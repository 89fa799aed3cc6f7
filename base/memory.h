// Giving freed heap memory back to the system, whichever allocator the binary links: jemalloc
// (the berth binary, see CONTRIBUTING.md) or glibc's malloc (tests, sanitizer builds). Thread: any.
#pragma once

namespace berth {

/// Returns the heap's free pages to the system (jemalloc purges every arena, glibc trims; nothing
/// under AddressSanitizer, whose allocator glibc cannot trim). Called by a worker's once-a-second
/// sweep when its pools shrank, so RSS follows the load down.
void release_free_memory();

/// The allocator in use: "jemalloc" or "glibc".
const char* allocator_name();

}  // namespace berth
