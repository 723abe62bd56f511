// Causal multi-head attention with grouped-query heads, in blocks of query rows.
// Forward, per (sequence, head, block of kBlock query rows i0..i1):
//   S = Q[i0:i1] K[0:i1]^T / sqrt(hd), masked above the diagonal,
//   P = softmax(S) row by row, lse = log-sum-exp of each row (saved),
//   O[i0:i1] = P V[0:i1].
// Backward recomputes P from lse (nothing of size seq x seq is stored):
//   dP = dO V^T, D_i = dO_i . O_i, dS = P * (dP - D) / sqrt(hd),
//   dQ = dS K, dK += dS^T Q, dV += P^T dO.
// Here the products go through gemm (the portable version, and double for the tests);
// float on a CPU with AVX-512 runs the same blocks in the kernels of attention_avx512.cpp
// (attention_kernels.hpp), with bf16 operands when asked and the CPU has AVX512-BF16.
// Scratch is kBlock x seq per thread (the kernels': a few rows of seq per thread more),
// so memory grows linearly with the sequence length.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "backend/cpu/attention_kernels.hpp"
#include "backend/cpu/causal_softmax.hpp"
#include "backend/ops.hpp"
#include "whtlm/hadamard.hpp"

namespace whtlm::backend {
using cpu::softmax_rows;
namespace {

constexpr std::size_t kBlock = 64;

struct Layout {
  std::size_t width, out_width;  // row strides of qkv and out
  std::size_t k_off, v_off;      // column offsets of the k and v heads
  std::size_t group;             // query heads per kv head
  explicit Layout(const AttentionShape& s)
      : width((s.n_head + 2 * s.n_kv) * s.hd),
        out_width(s.n_head * s.hd),
        k_off(s.n_head * s.hd),
        v_off((s.n_head + s.n_kv) * s.hd),
        group(s.n_head / s.n_kv) {}
};

std::size_t per_thread(const AttentionShape& s) { return 2 * kBlock * s.seq + kBlock; }

int team_size(std::size_t items) {
  if (omp_in_parallel()) return 1;
  return static_cast<int>(std::min<std::size_t>(items, omp_get_max_threads()));
}

// Whether the CPU has bf16 dot products (AVX512-BF16) for the kernels' bf16 products.
bool bf16_dot_products() {
#if defined(WHTLM_HAVE_X86_KERNELS)
  static const bool cpu = __builtin_cpu_supports("avx512bf16");
  return cpu;
#else
  return false;
#endif
}

}  // namespace

namespace attention_detail {

bool avx512_usable(const AttentionShape& s) {
#if defined(WHTLM_HAVE_X86_KERNELS)
  static const bool cpu = detected_isa() == Isa::avx512 && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  return cpu && s.hd % 16 == 0 && s.hd > 0 && s.n_kv > 0 && s.n_head % s.n_kv == 0;
#else
  (void)s;
  return false;
#endif
}

}  // namespace attention_detail

bool attention_kernels_used(const AttentionShape& s, Operands operands) {
  if (!attention_detail::avx512_usable(s)) return false;
  return operands == Operands::fp32 || bf16_dot_products();
}

std::size_t attention_scratch_size(const AttentionShape& s) {
  const auto threads = static_cast<std::size_t>(omp_get_max_threads());
  std::size_t n = per_thread(s) * threads;
#if defined(WHTLM_HAVE_X86_KERNELS)
  if (attention_detail::avx512_usable(s))
    n = std::max(n, attention_detail::avx512_scratch_floats(s, threads));
#endif
  return n;
}

namespace {

// What the float kernels run with: bf16 only where the CPU has bf16 dot products.
Operands kernel_operands(Operands operands) {
  return operands == Operands::bf16 && bf16_dot_products() ? Operands::bf16 : Operands::fp32;
}

// The portable version: products through gemm (the BLAS for float, a loop for double).
template <class T>
void blocked_forward(T* out, T* lse, const T* qkv, const AttentionShape& s, T* scratch) {
  const Layout L(s);
  const T scale = T(1) / std::sqrt(T(s.hd));
  const std::size_t blocks = (s.seq + kBlock - 1) / kBlock;
  const std::size_t items = s.batch * s.n_head * blocks;
#pragma omp parallel num_threads(team_size(items))
  {
    T* sc = scratch + per_thread(s) * static_cast<std::size_t>(omp_get_thread_num());
#pragma omp for schedule(dynamic, 1)
    for (std::size_t item = 0; item < items; ++item) {
      // Later blocks have more keys: hand them out first.
      const std::size_t blk = blocks - 1 - item % blocks;
      const std::size_t bh = item / blocks, b = bh / s.n_head, h = bh % s.n_head;
      const std::size_t kv = h / L.group;
      const std::size_t i0 = blk * kBlock, nq = std::min(kBlock, s.seq - i0), nk = i0 + nq;
      const T* base = qkv + b * s.seq * L.width;
      const T* q = base + i0 * L.width + h * s.hd;
      const T* k = base + L.k_off + kv * s.hd;
      const T* v = base + L.v_off + kv * s.hd;
      gemm<T>(Trans::no, Trans::yes, nq, nk, s.hd, scale, q, L.width, k, L.width, T(0), sc, nk);
      softmax_rows(sc, nq, nk, i0, static_cast<const T*>(nullptr),
                   lse + (b * s.n_head + h) * s.seq + i0);
      T* o = out + (b * s.seq + i0) * L.out_width + h * s.hd;
      gemm<T>(Trans::no, Trans::no, nq, s.hd, nk, T(1), sc, nk, v, L.width, T(0), o, L.out_width);
    }
  }
}

template <class T>
void blocked_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse,
                      const AttentionShape& s, T* scratch) {
  const Layout L(s);
  const T scale = T(1) / std::sqrt(T(s.hd));
  const std::size_t blocks = (s.seq + kBlock - 1) / kBlock;
  // dK and dV of one kv head collect from all its query heads and blocks: one work
  // item per (sequence, kv head) keeps that sum on one thread, in a fixed order.
  const std::size_t items = s.batch * s.n_kv;
#pragma omp parallel num_threads(team_size(items))
  {
    T* p = scratch + per_thread(s) * static_cast<std::size_t>(omp_get_thread_num());
    T* dp = p + kBlock * s.seq;
    T* drow = dp + kBlock * s.seq;
#pragma omp for schedule(static)
    for (std::size_t item = 0; item < items; ++item) {
      const std::size_t b = item / s.n_kv, kv = item % s.n_kv;
      const T* base = qkv + b * s.seq * L.width;
      T* dbase = dqkv + b * s.seq * L.width;
      const T* k = base + L.k_off + kv * s.hd;
      const T* v = base + L.v_off + kv * s.hd;
      T* dk = dbase + L.k_off + kv * s.hd;
      T* dv = dbase + L.v_off + kv * s.hd;
      for (std::size_t t = 0; t < s.seq; ++t) {
        std::memset(dk + t * L.width, 0, s.hd * sizeof(T));
        std::memset(dv + t * L.width, 0, s.hd * sizeof(T));
      }
      for (std::size_t h = kv * L.group; h < (kv + 1) * L.group; ++h) {
        for (std::size_t blk = 0; blk < blocks; ++blk) {
          const std::size_t i0 = blk * kBlock, nq = std::min(kBlock, s.seq - i0), nk = i0 + nq;
          const T* q = base + i0 * L.width + h * s.hd;
          T* dq = dbase + i0 * L.width + h * s.hd;
          const T* o = out + (b * s.seq + i0) * L.out_width + h * s.hd;
          const T* dout_b = dout + (b * s.seq + i0) * L.out_width + h * s.hd;
          const T* l = lse + (b * s.n_head + h) * s.seq + i0;
          gemm<T>(Trans::no, Trans::yes, nq, nk, s.hd, scale, q, L.width, k, L.width, T(0), p, nk);
          softmax_rows(p, nq, nk, i0, l, static_cast<T*>(nullptr));
          gemm<T>(Trans::no, Trans::yes, nq, nk, s.hd, T(1), dout_b, L.out_width, v, L.width, T(0),
                  dp, nk);
          for (std::size_t r = 0; r < nq; ++r) {
            T dsum = 0;
            const T* orow = o + r * L.out_width;
            const T* grow = dout_b + r * L.out_width;
#pragma omp simd reduction(+ : dsum)
            for (std::size_t c = 0; c < s.hd; ++c) dsum += orow[c] * grow[c];
            drow[r] = dsum;
          }
          for (std::size_t r = 0; r < nq; ++r) {
            T* pr = p + r * nk;
            T* dpr = dp + r * nk;
            const T dsum = drow[r];
#pragma omp simd
            for (std::size_t j = 0; j < nk; ++j) dpr[j] = pr[j] * (dpr[j] - dsum) * scale;
          }
          gemm<T>(Trans::no, Trans::no, nq, s.hd, nk, T(1), dp, nk, k, L.width, T(0), dq, L.width);
          gemm<T>(Trans::yes, Trans::no, nk, s.hd, nq, T(1), dp, nk, q, L.width, T(1), dk, L.width);
          gemm<T>(Trans::yes, Trans::no, nk, s.hd, nq, T(1), p, nk, dout_b, L.out_width, T(1), dv,
                  L.width);
        }
      }
    }
  }
}

}  // namespace

template <class T>
void attention_forward(T* out, T* lse, const T* qkv, const AttentionShape& s, T* scratch,
                       Operands operands) {
#if defined(WHTLM_HAVE_X86_KERNELS)
  if constexpr (std::is_same_v<T, float>)
    if (attention_detail::avx512_usable(s)) {
      attention_detail::forward_avx512(out, lse, qkv, s, scratch, kernel_operands(operands));
      return;
    }
#endif
  (void)operands;
  blocked_forward(out, lse, qkv, s, scratch);
}

template <class T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse,
                        const AttentionShape& s, T* scratch, Operands operands) {
#if defined(WHTLM_HAVE_X86_KERNELS)
  if constexpr (std::is_same_v<T, float>)
    if (attention_detail::avx512_usable(s)) {
      attention_detail::backward_avx512(dqkv, dout, qkv, out, lse, s, scratch,
                                        kernel_operands(operands));
      return;
    }
#endif
  (void)operands;
  blocked_backward(dqkv, dout, qkv, out, lse, s, scratch);
}

#define WHTLM_INSTANTIATE(T)                                                                 \
  template void attention_forward<T>(T*, T*, const T*, const AttentionShape&, T*, Operands); \
  template void attention_backward<T>(T*, const T*, const T*, const T*, const T*,            \
                                      const AttentionShape&, T*, Operands);
WHTLM_INSTANTIATE(float)
WHTLM_INSTANTIATE(double)
#undef WHTLM_INSTANTIATE

}  // namespace whtlm::backend
