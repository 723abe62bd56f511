// LayerNorm (gpt2) and RMSNorm (llama): forward and backward side by side. Row
// statistics are saved by the forward; parameter gradients are summed over rows in a
// second pass split by columns, so they do not depend on the thread count.
#include <cmath>

#include "backend/cpu/bf16.hpp"
#include "backend/ops.hpp"
#include "base/parallel.hpp"

namespace whtlm::backend {

// x, y: [rows, d]; w, b: [d]; mean, rstd: [rows].
template <class T, class Y>
void layernorm_forward(Y* y, T* mean, T* rstd, const T* x, const T* w, const T* b,
                       const NormShape& shape, T eps) {
  const std::size_t rows = shape.rows, d = shape.d;
  parallel_ranges(rows, rows * d, [&](std::size_t r0, std::size_t nr) {
    for (std::size_t r = r0; r < r0 + nr; ++r) {
      const T* xr = x + r * d;
      Y* yr = y + r * d;
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (std::size_t i = 0; i < d; ++i) s += xr[i];
      const T m = s / T(d);
      T v = 0;
#pragma omp simd reduction(+ : v)
      for (std::size_t i = 0; i < d; ++i) v += (xr[i] - m) * (xr[i] - m);
      const T rs = T(1) / std::sqrt(v / T(d) + eps);
#pragma omp simd
      for (std::size_t i = 0; i < d; ++i) yr[i] = cpu::output_as<Y>((xr[i] - m) * rs * w[i] + b[i]);
      mean[r] = m;
      rstd[r] = rs;
    }
  });
}

// dx += d loss/dx, dw += sum dy * xhat, db += sum dy; with xhat = (x - mean) * rstd.
template <class T>
void layernorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* mean, const T* rstd,
                        const T* w, const NormShape& shape) {
  const std::size_t rows = shape.rows, d = shape.d;
  parallel_ranges(rows, rows * d, [&](std::size_t r0, std::size_t nr) {
    for (std::size_t r = r0; r < r0 + nr; ++r) {
      const T* xr = x + r * d;
      const T* gr = dy + r * d;
      T* dxr = dx + r * d;
      const T m = mean[r], rs = rstd[r];
      T sg = 0, sgx = 0;  // sums of g = dy * w and of g * xhat
#pragma omp simd reduction(+ : sg, sgx)
      for (std::size_t i = 0; i < d; ++i) {
        const T g = gr[i] * w[i];
        sg += g;
        sgx += g * (xr[i] - m) * rs;
      }
      sg /= T(d);
      sgx /= T(d);
#pragma omp simd
      for (std::size_t i = 0; i < d; ++i)
        dxr[i] += rs * (gr[i] * w[i] - sg - (xr[i] - m) * rs * sgx);
    }
  });
  parallel_ranges(d, rows * d, [&](std::size_t c0, std::size_t nc) {
    for (std::size_t r = 0; r < rows; ++r) {
      const T* xr = x + r * d;
      const T* gr = dy + r * d;
      const T m = mean[r], rs = rstd[r];
#pragma omp simd
      for (std::size_t i = c0; i < c0 + nc; ++i) {
        dw[i] += gr[i] * (xr[i] - m) * rs;
        db[i] += gr[i];
      }
    }
  });
}

// x, y: [rows, d]; w: [d]; rstd: [rows].
template <class T, class Y>
void rmsnorm_forward(Y* y, T* rstd, const T* x, const T* w, const NormShape& shape, T eps) {
  const std::size_t rows = shape.rows, d = shape.d;
  parallel_ranges(rows, rows * d, [&](std::size_t r0, std::size_t nr) {
    for (std::size_t r = r0; r < r0 + nr; ++r) {
      const T* xr = x + r * d;
      Y* yr = y + r * d;
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (std::size_t i = 0; i < d; ++i) s += xr[i] * xr[i];
      const T rs = T(1) / std::sqrt(s / T(d) + eps);
#pragma omp simd
      for (std::size_t i = 0; i < d; ++i) yr[i] = cpu::output_as<Y>(xr[i] * rs * w[i]);
      rstd[r] = rs;
    }
  });
}

// dx += rstd * (g - x * rstd^2 * mean(g * x)) with g = dy * w; dw += sum dy * x * rstd.
template <class T>
void rmsnorm_backward(T* dx, T* dw, const T* dy, const T* x, const T* rstd, const T* w,
                      const NormShape& shape) {
  const std::size_t rows = shape.rows, d = shape.d;
  parallel_ranges(rows, rows * d, [&](std::size_t r0, std::size_t nr) {
    for (std::size_t r = r0; r < r0 + nr; ++r) {
      const T* xr = x + r * d;
      const T* gr = dy + r * d;
      T* dxr = dx + r * d;
      const T rs = rstd[r];
      T sgx = 0;
#pragma omp simd reduction(+ : sgx)
      for (std::size_t i = 0; i < d; ++i) sgx += gr[i] * w[i] * xr[i];
      const T c = rs * rs * sgx / T(d);
#pragma omp simd
      for (std::size_t i = 0; i < d; ++i) dxr[i] += rs * (gr[i] * w[i] - xr[i] * c);
    }
  });
  parallel_ranges(d, rows * d, [&](std::size_t c0, std::size_t nc) {
    for (std::size_t r = 0; r < rows; ++r) {
      const T* xr = x + r * d;
      const T* gr = dy + r * d;
      const T rs = rstd[r];
#pragma omp simd
      for (std::size_t i = c0; i < c0 + nc; ++i) dw[i] += gr[i] * xr[i] * rs;
    }
  });
}

#define WHTLM_INSTANTIATE(T)                                                                     \
  template void layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, const NormShape&, \
                                     T);                                                         \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,        \
                                      const T*, const NormShape&);                               \
  template void rmsnorm_forward<T>(T*, T*, const T*, const T*, const NormShape&, T);             \
  template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*,              \
                                    const NormShape&);
WHTLM_INSTANTIATE(float)
WHTLM_INSTANTIATE(double)
#undef WHTLM_INSTANTIATE
template void layernorm_forward<float, std::uint16_t>(std::uint16_t*, float*, float*, const float*,
                                                      const float*, const float*, const NormShape&,
                                                      float);
template void rmsnorm_forward<float, std::uint16_t>(std::uint16_t*, float*, const float*,
                                                    const float*, const NormShape&, float);

}  // namespace whtlm::backend
