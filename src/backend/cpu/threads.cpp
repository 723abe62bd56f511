// The shared thread pool: OpenMP's, which the BLAS uses too (see blas.cpp).
#include "whtlm/threads.hpp"

#include <omp.h>
#include <sched.h>

#include <stdexcept>
#include <string>

#include "backend/cpu/blas.hpp"

namespace whtlm {

void set_num_threads(int n) {
  if (n < 1)
    throw std::invalid_argument("thread count must be at least 1, got " + std::to_string(n));
  omp_set_num_threads(n);
  backend::cpu::blas_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  return omp_get_num_procs();
}

}  // namespace whtlm
