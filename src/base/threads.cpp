// The shared thread pool: OpenMP's, which the BLAS uses too (backend/cpu/blas.cpp).
#include "whtlm/threads.hpp"

#include <omp.h>
#include <sched.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include <stdexcept>
#include <string>

#include "base/parallel.hpp"

namespace whtlm {

void set_num_threads(int n) {
  if (n < 1)
    throw std::invalid_argument("thread count must be at least 1, got " + std::to_string(n));
  omp_set_num_threads(n);
  flush_denormals();  // the team may have new threads
}

// Subnormal floats (below 1.2e-38) take a slow path in the FPU, 10-100x slower.
// Training produces them (squared tiny gradients in AdamW's second moment, tails of
// softmax), and a step can slow down a hundredfold. Every thread of the team flushes
// them to zero, as GPUs and most training frameworks' CPU kernels do.
void flush_denormals() {
#if defined(__x86_64__)
  constexpr unsigned kFlushToZero = 0x8000, kDenormalsAreZero = 0x0040;
#pragma omp parallel
  _mm_setcsr(_mm_getcsr() | kFlushToZero | kDenormalsAreZero);
#endif
}

int num_threads() { return omp_get_max_threads(); }

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  return omp_get_num_procs();
}

}  // namespace whtlm
