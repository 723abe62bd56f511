// Token and learned position embeddings (the table lookups at the bottom of the
// model) and the softmax cross-entropy at the top.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "backend/cpu/vmath.hpp"
#include "backend/ops.hpp"
#include "base/parallel.hpp"

namespace whtlm::backend {

// x: [rows, d]; wte: [vocab, d]; wpe: [seq, d] or nullptr.
template <class T>
void embedding_forward(T* x, const std::int32_t* tokens, const T* wte, const T* wpe,
                       std::size_t rows, std::size_t seq, std::size_t d) {
  parallel_ranges(rows, rows * d, [&](std::size_t r0, std::size_t nr) {
    for (std::size_t r = r0; r < r0 + nr; ++r) {
      const T* e = wte + static_cast<std::size_t>(tokens[r]) * d;
      T* xr = x + r * d;
      if (wpe == nullptr) {
        std::memcpy(xr, e, d * sizeof(T));
      } else {
        const T* pe = wpe + (r % seq) * d;
#pragma omp simd
        for (std::size_t i = 0; i < d; ++i) xr[i] = e[i] + pe[i];
      }
    }
  });
}

void embedding_forward_at(float* x, const std::int32_t* tokens, const float* wte, const float* wpe,
                          std::size_t rows, const std::int32_t* positions, std::size_t d) {
  parallel_ranges(rows, rows * d, [&](std::size_t r0, std::size_t nr) {
    for (std::size_t r = r0; r < r0 + nr; ++r) {
      const float* e = wte + static_cast<std::size_t>(tokens[r]) * d;
      float* xr = x + r * d;
      if (wpe == nullptr) {
        std::memcpy(xr, e, d * sizeof(float));
      } else {
        const float* pe = wpe + static_cast<std::size_t>(positions[r]) * d;
#pragma omp simd
        for (std::size_t i = 0; i < d; ++i) xr[i] = e[i] + pe[i];
      }
    }
  });
}

// Rows are visited in order and each thread owns a range of columns, so repeated
// tokens add up in the same order whatever the thread count.
template <class T>
void embedding_backward(T* dwte, T* dwpe, const T* dx, const std::int32_t* tokens, std::size_t rows,
                        std::size_t seq, std::size_t d) {
  parallel_ranges(d, rows * d, [&](std::size_t c0, std::size_t nc) {
    for (std::size_t r = 0; r < rows; ++r) {
      const T* g = dx + r * d + c0;
      T* e = dwte + static_cast<std::size_t>(tokens[r]) * d + c0;
#pragma omp simd
      for (std::size_t i = 0; i < nc; ++i) e[i] += g[i];
      if (dwpe != nullptr) {
        T* pe = dwpe + (r % seq) * d + c0;
#pragma omp simd
        for (std::size_t i = 0; i < nc; ++i) pe[i] += g[i];
      }
    }
  });
}

namespace {

// max and log-sum-exp of one row of logits.
template <class T>
T row_logsumexp(const T* z, std::size_t vocab, T& m) {
  m = -std::numeric_limits<T>::infinity();
  for (std::size_t j = 0; j < vocab; ++j) m = std::max(m, z[j]);
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (std::size_t j = 0; j < vocab; ++j) sum += cpu::vexp(z[j] - m);
  return m + std::log(sum);
}

}  // namespace

template <class T>
void cross_entropy_forward(T* losses, T* lse, const T* logits, const std::int32_t* targets,
                           std::size_t rows, std::size_t vocab) {
  parallel_ranges(rows, rows * vocab, [&](std::size_t r0, std::size_t nr) {
    for (std::size_t r = r0; r < r0 + nr; ++r) {
      const T* z = logits + r * vocab;
      T m;
      lse[r] = row_logsumexp(z, vocab, m);
      losses[r] = lse[r] - z[targets[r]];
    }
  });
}

template <class T>
void cross_entropy_backward(T* logits, const T* lse, const std::int32_t* targets, std::size_t rows,
                            std::size_t vocab, T scale) {
  parallel_ranges(rows, rows * vocab, [&](std::size_t r0, std::size_t nr) {
    for (std::size_t r = r0; r < r0 + nr; ++r) {
      T* z = logits + r * vocab;
      const T l = lse[r];
#pragma omp simd
      for (std::size_t j = 0; j < vocab; ++j) z[j] = scale * cpu::vexp(z[j] - l);
      z[targets[r]] -= scale;
    }
  });
}

#define WHTLM_INSTANTIATE(T)                                                                   \
  template void embedding_forward<T>(T*, const std::int32_t*, const T*, const T*, std::size_t, \
                                     std::size_t, std::size_t);                                \
  template void embedding_backward<T>(T*, T*, const T*, const std::int32_t*, std::size_t,      \
                                      std::size_t, std::size_t);                               \
  template void cross_entropy_forward<T>(T*, T*, const T*, const std::int32_t*, std::size_t,   \
                                         std::size_t);                                         \
  template void cross_entropy_backward<T>(T*, const T*, const std::int32_t*, std::size_t,      \
                                          std::size_t, T);
WHTLM_INSTANTIATE(float)
WHTLM_INSTANTIATE(double)
#undef WHTLM_INSTANTIATE

}  // namespace whtlm::backend
