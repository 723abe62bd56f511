// Internal: splitting independent items (rows, elements) across the one OpenMP
// team that our kernels and the BLAS share (whtlm/threads.hpp), and the team's
// floating-point mode.
#pragma once

#include <omp.h>

#include <cstddef>

namespace whtlm {

// Sets flush-to-zero and denormals-are-zero on every thread of the OpenMP team
// (threads.cpp says why). The CPU backend calls it when it starts, set_num_threads
// whenever the team changes.
void flush_denormals();

// Below this much work (elements touched) a call stays on the calling thread:
// waking the team costs more than it saves.
inline constexpr std::size_t kParallelMinWork = std::size_t{1} << 15;

// Calls f(first, count) over [0, items): one contiguous range per thread of the
// team when there are at least two items, at least kParallelMinWork work, more than
// one thread and no enclosing parallel region; otherwise once, on this thread.
template <class F>
void parallel_ranges(std::size_t items, std::size_t work, F&& f) {
  const bool parallel =
      items > 1 && work >= kParallelMinWork && omp_get_max_threads() > 1 && omp_in_parallel() == 0;
  if (!parallel) {
    f(std::size_t{0}, items);
    return;
  }
#pragma omp parallel
  {
    const auto t = static_cast<std::size_t>(omp_get_thread_num());
    const auto nt = static_cast<std::size_t>(omp_get_num_threads());
    const std::size_t lo = items * t / nt, hi = items * (t + 1) / nt;
    if (hi > lo) f(lo, hi - lo);
  }
}

}  // namespace whtlm
