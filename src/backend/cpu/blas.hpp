// Internal: hooks of the BLAS wrapper that other backend files need.
#pragma once

namespace whtlm::backend::cpu {

// Tells the BLAS how many threads to use (it shares our OpenMP runtime).
void blas_set_num_threads(int n);

// Sets flush-to-zero and denormals-are-zero on every thread of the OpenMP team
// (threads.cpp says why).
void flush_denormals();

}  // namespace whtlm::backend::cpu
