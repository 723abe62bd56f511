// One thread pool for everything: our OpenMP kernels and the BLAS share the same
// OpenMP runtime, so one setting governs both and they never oversubscribe.
#pragma once

namespace whtlm {

// Sets the number of threads our kernels and the BLAS use (n >= 1).
void set_num_threads(int n);
// The number of threads parallel regions will use.
int num_threads();
// Cores available to this process.
int available_cores();

}  // namespace whtlm
