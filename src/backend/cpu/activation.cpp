// Elementwise activations: GELU (tanh approximation, gpt2) and SwiGLU (llama).
#include <cmath>
#include <cstdint>

#include "backend/cpu/bf16.hpp"
#include "backend/cpu/vmath.hpp"
#include "backend/ops.hpp"
#include "base/parallel.hpp"

namespace whtlm::backend {
namespace {

constexpr double kGeluC = 0.7978845608028654;  // sqrt(2 / pi)
constexpr double kGeluA = 0.044715;

}  // namespace

// y = 0.5 x (1 + tanh(c (x + a x^3))).
template <class T, class Y>
void gelu_forward(Y* y, const T* x, std::size_t n) {
  parallel_ranges(n, n * 8, [&](std::size_t i0, std::size_t len) {
#pragma omp simd
    for (std::size_t i = i0; i < i0 + len; ++i) {
      const T v = x[i];
      y[i] = cpu::output_as<Y>(T(0.5) * v *
                               (T(1) + cpu::vtanh(T(kGeluC) * (v + T(kGeluA) * v * v * v))));
    }
  });
}

// dx = dy * (0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2)), t = tanh(c (x + a x^3)).
template <class T>
void gelu_backward(T* dx, const T* dy, const T* x, std::size_t n) {
  parallel_ranges(n, n * 8, [&](std::size_t i0, std::size_t len) {
#pragma omp simd
    for (std::size_t i = i0; i < i0 + len; ++i) {
      const T v = x[i];
      const T t = cpu::vtanh(T(kGeluC) * (v + T(kGeluA) * v * v * v));
      const T dt = T(kGeluC) * (T(1) + T(3 * kGeluA) * v * v);
      dx[i] = dy[i] * (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * dt);
    }
  });
}

// h: [rows, 2 ff] = gate | up; y = silu(gate) * up with silu(g) = g / (1 + e^-g).
template <class T, class Y>
void swiglu_forward(Y* y, const T* h, std::size_t rows, std::size_t ff) {
  parallel_ranges(rows, rows * ff * 8, [&](std::size_t r0, std::size_t nr) {
    for (std::size_t r = r0; r < r0 + nr; ++r) {
      const T* g = h + r * 2 * ff;
      const T* u = g + ff;
      Y* yr = y + r * ff;
#pragma omp simd
      for (std::size_t i = 0; i < ff; ++i)
        yr[i] = cpu::output_as<Y>(g[i] / (T(1) + cpu::vexp(-g[i])) * u[i]);
    }
  });
}

// d gate = dy * up * s (1 + g (1 - s)) with s = sigmoid(g); d up = dy * silu(g).
template <class T>
void swiglu_backward(T* dh, const T* dy, const T* h, std::size_t rows, std::size_t ff) {
  parallel_ranges(rows, rows * ff * 8, [&](std::size_t r0, std::size_t nr) {
    for (std::size_t r = r0; r < r0 + nr; ++r) {
      const T* g = h + r * 2 * ff;
      const T* u = g + ff;
      const T* dyr = dy + r * ff;
      T* dg = dh + r * 2 * ff;
      T* du = dg + ff;
#pragma omp simd
      for (std::size_t i = 0; i < ff; ++i) {
        const T s = T(1) / (T(1) + cpu::vexp(-g[i]));
        dg[i] = dyr[i] * u[i] * s * (T(1) + g[i] * (T(1) - s));
        du[i] = dyr[i] * g[i] * s;
      }
    }
  });
}

#define WHTLM_INSTANTIATE(T)                                               \
  template void gelu_forward<T>(T*, const T*, std::size_t);                \
  template void gelu_backward<T>(T*, const T*, const T*, std::size_t);     \
  template void swiglu_forward<T>(T*, const T*, std::size_t, std::size_t); \
  template void swiglu_backward<T>(T*, const T*, const T*, std::size_t, std::size_t);
WHTLM_INSTANTIATE(float)
WHTLM_INSTANTIATE(double)
#undef WHTLM_INSTANTIATE
template void gelu_forward<float, std::uint16_t>(std::uint16_t*, const float*, std::size_t);
template void swiglu_forward<float, std::uint16_t>(std::uint16_t*, const float*, std::size_t,
                                                   std::size_t);

}  // namespace whtlm::backend
