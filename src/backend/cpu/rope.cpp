// Rotary position embedding, rotate-half convention (as Hugging Face LLaMA): within
// each head, element j < hd/2 pairs with element j + hd/2, and the pair at position t
// turns by the angle t * theta^(-2j/hd).
#include <cmath>

#include "backend/ops.hpp"
#include "base/parallel.hpp"

namespace whtlm::backend {
namespace {

// Rotates the q and k heads of rows [r0, r0 + nr) by +angle (sign = 1) or -angle.
// Row r is at position positions[r], or r % seq when positions is null.
template <class T>
void rotate(T* qkv, const T* cos, const T* sin, std::size_t r0, std::size_t nr, std::size_t seq,
            const std::int32_t* positions, std::size_t heads, std::size_t width, std::size_t hd,
            T sign) {
  const std::size_t half = hd / 2;
  for (std::size_t r = r0; r < r0 + nr; ++r) {
    const std::size_t pos = positions != nullptr ? static_cast<std::size_t>(positions[r]) : r % seq;
    const T* c = cos + pos * half;
    const T* s = sin + pos * half;
    for (std::size_t h = 0; h < heads; ++h) {
      T* a = qkv + r * width + h * hd;
      T* b = a + half;
#pragma omp simd
      for (std::size_t j = 0; j < half; ++j) {
        const T x = a[j], y = b[j], sj = sign * s[j];
        a[j] = x * c[j] - y * sj;
        b[j] = y * c[j] + x * sj;
      }
    }
  }
}

}  // namespace

template <class T>
void rope_tables(T* cos, T* sin, std::size_t seq, std::size_t hd, double theta) {
  const std::size_t half = hd / 2;
  for (std::size_t t = 0; t < seq; ++t)
    for (std::size_t j = 0; j < half; ++j) {
      const double angle =
          static_cast<double>(t) * std::pow(theta, -2.0 * static_cast<double>(j) / double(hd));
      cos[t * half + j] = static_cast<T>(std::cos(angle));
      sin[t * half + j] = static_cast<T>(std::sin(angle));
    }
}

// The q heads and the k heads are contiguous at the start of each row.
template <class T>
void rope_forward(T* qkv, const T* cos, const T* sin, std::size_t rows, std::size_t seq,
                  const HeadShape& heads) {
  const std::size_t n_head = heads.n_head, n_kv = heads.n_kv, hd = heads.hd;
  const std::size_t width = heads.width();
  parallel_ranges(rows, rows * width, [&](std::size_t r0, std::size_t nr) {
    rotate(qkv, cos, sin, r0, nr, seq, nullptr, n_head + n_kv, width, hd, T(1));
  });
}

// The rotation is orthogonal: its gradient is the rotation by the opposite angle.
template <class T>
void rope_backward(T* dqkv, const T* cos, const T* sin, std::size_t rows, std::size_t seq,
                   const HeadShape& heads) {
  const std::size_t n_head = heads.n_head, n_kv = heads.n_kv, hd = heads.hd;
  const std::size_t width = heads.width();
  parallel_ranges(rows, rows * width, [&](std::size_t r0, std::size_t nr) {
    rotate(dqkv, cos, sin, r0, nr, seq, nullptr, n_head + n_kv, width, hd, T(-1));
  });
}

template <class T>
void rope_forward_at(T* qkv, const T* cos, const T* sin, std::size_t rows,
                     const std::int32_t* positions, const HeadShape& heads) {
  const std::size_t n_head = heads.n_head, n_kv = heads.n_kv, hd = heads.hd;
  const std::size_t width = heads.width();
  parallel_ranges(rows, rows * width, [&](std::size_t r0, std::size_t nr) {
    rotate(qkv, cos, sin, r0, nr, 1, positions, n_head + n_kv, width, hd, T(1));
  });
}

#define WHTLM_INSTANTIATE(T)                                                                 \
  template void rope_tables<T>(T*, T*, std::size_t, std::size_t, double);                    \
  template void rope_forward<T>(T*, const T*, const T*, std::size_t, std::size_t,            \
                                const HeadShape&);                                           \
  template void rope_backward<T>(T*, const T*, const T*, std::size_t, std::size_t,           \
                                 const HeadShape&);                                          \
  template void rope_forward_at<T>(T*, const T*, const T*, std::size_t, const std::int32_t*, \
                                   const HeadShape&);
WHTLM_INSTANTIATE(float)
WHTLM_INSTANTIATE(double)
#undef WHTLM_INSTANTIATE

}  // namespace whtlm::backend
