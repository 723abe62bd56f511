// The Hadamard output projection on the CPU, composed from the transforms of
// src/hadamard (see ops.hpp for the maths). The forward is one fused pass per row;
// the backward recomputes t = scale * H x in dx, so it needs no memory of its own.
#include <cstring>
#include <vector>

#include "backend/ops.hpp"
#include "whtlm/hadamard.hpp"

namespace whtlm::backend {

template <class T>
void hadamard_projection_forward(T* y, const T* x, const T* gamma, const T* beta, std::size_t rows,
                                 std::size_t n, T scale) {
  if constexpr (sizeof(T) == 4) {
    fwht_affine_residual(x, nullptr, y, gamma, beta, rows, n, scale);
  } else {  // double: the tests' reference path, unfused
    std::vector<T> t(x, x + rows * n);
    fwht(t.data(), rows, n, scale);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t i = 0; i < n; ++i)
        y[r * n + i] += gamma[i] * t[r * n + i] + (beta != nullptr ? beta[i] : T(0));
  }
}

template <class T>
void hadamard_projection_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x,
                                  const T* gamma, std::size_t rows, std::size_t n, T scale) {
  const std::size_t total = rows * n;
  std::memcpy(dx, x, total * sizeof(T));
  fwht(dx, rows, n, scale);
  for (std::size_t i = 0; i < total; ++i) dx[i] *= dy[i];
  column_sum(dgamma, dx, rows, n);
  column_sum(dbeta, dy, rows, n);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t i = 0; i < n; ++i) dx[r * n + i] = gamma[i] * dy[r * n + i];
  fwht(dx, rows, n, scale);  // H is symmetric: the transform is its own transpose
}

#define WHTLM_INSTANTIATE(T)                                                                  \
  template void hadamard_projection_forward<T>(T*, const T*, const T*, const T*, std::size_t, \
                                               std::size_t, T);                               \
  template void hadamard_projection_backward<T>(T*, T*, T*, const T*, const T*, const T*,     \
                                                std::size_t, std::size_t, T);
WHTLM_INSTANTIATE(float)
WHTLM_INSTANTIATE(double)
#undef WHTLM_INSTANTIATE

}  // namespace whtlm::backend
