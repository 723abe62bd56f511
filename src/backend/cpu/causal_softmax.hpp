// Internal: the causal softmax over a block of attention scores, shared by the
// training attention (attention.cpp) and the cached one (attention_cached.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "backend/cpu/vmath.hpp"

namespace whtlm::backend::cpu {

// Probabilities of rows i0..i0+nq-1 over keys 0..nk-1 from scores S (in place).
// Row i keeps keys j <= i. With lse_in == nullptr the row's log-sum-exp is computed
// and stored to lse_out (when not nullptr); otherwise P = exp(S - lse_in).
template <class T>
inline void softmax_rows(T* s, std::size_t nq, std::size_t nk, std::size_t i0, const T* lse_in,
                         T* lse_out) {
  for (std::size_t q = 0; q < nq; ++q) {
    T* row = s + q * nk;
    const std::size_t keep = i0 + q + 1;  // keys 0..i0+q
    if (lse_in != nullptr) {
      const T l = lse_in[q];
#pragma omp simd
      for (std::size_t j = 0; j < keep; ++j) row[j] = vexp(row[j] - l);
    } else {
      T m = -std::numeric_limits<T>::infinity();
      for (std::size_t j = 0; j < keep; ++j) m = std::max(m, row[j]);
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (std::size_t j = 0; j < keep; ++j) {
        row[j] = vexp(row[j] - m);
        sum += row[j];
      }
      const T inv = T(1) / sum;
#pragma omp simd
      for (std::size_t j = 0; j < keep; ++j) row[j] *= inv;
      if (lse_out != nullptr) lse_out[q] = m + std::log(sum);
    }
    std::fill(row + keep, row + nk, T(0));
  }
}

}  // namespace whtlm::backend::cpu
