// Internal: hooks of the BLAS wrapper that other backend files need.
#pragma once

namespace whtlm::backend::cpu {

// Tells the BLAS how many threads to use (it shares our OpenMP runtime).
void blas_set_num_threads(int n);

}  // namespace whtlm::backend::cpu
