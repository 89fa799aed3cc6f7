// Heap allocation counter for benchmarks: linking alloc_counter.cpp replaces operator new.
#pragma once

#include <cstdint>

namespace berth::bench {

/// operator new calls in this process so far. Thread: any.
uint64_t allocation_count();

}  // namespace berth::bench
