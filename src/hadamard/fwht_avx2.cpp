// AVX2 + FMA kernels (8 floats a vector). Compiled with -mavx2 -mfma; only called
// after a run-time check that the CPU has both.
#include <immintrin.h>

#include "hadamard/kernel.hpp"

namespace whtlm::hadamard_detail {
namespace {

struct Avx2 {
  using T = float;
  using V = __m256;
  static constexpr std::size_t W = 8;
  static constexpr std::size_t kBlockLog = 3;
  static constexpr std::size_t kRadixLog = 3;
  static V load(const T* p) { return _mm256_loadu_ps(p); }
  static void store(T* p, V v) { _mm256_storeu_ps(p, v); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V set1(T a) { return _mm256_set1_ps(a); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  // Stages h = 1, 2, 4 inside the vector. Lane i gets partner lane i ^ h (t); the
  // lower lane of a pair computes t + v, the upper t - v, as one exact-product FMA
  // with a +-1 sign vector: the same single rounding as the scalar a + b / a - b.
  static V in_vector(V v) {
    const V s1 = _mm256_setr_ps(1, -1, 1, -1, 1, -1, 1, -1);
    const V s2 = _mm256_setr_ps(1, 1, -1, -1, 1, 1, -1, -1);
    const V s4 = _mm256_setr_ps(1, 1, 1, 1, -1, -1, -1, -1);
    v = _mm256_fmadd_ps(v, s1, _mm256_permute_ps(v, 0xB1));
    v = _mm256_fmadd_ps(v, s2, _mm256_permute_ps(v, 0x4E));
    v = _mm256_fmadd_ps(v, s4, _mm256_permute2f128_ps(v, v, 0x01));
    return v;
  }
};

}  // namespace

void fwht_rows_avx2(float* x, std::size_t rows, const Plan& plan, float scale) {
  if (plan.l < Avx2::W) return fwht_rows_scalar(x, rows, plan, scale);
  Kernel<Avx2>::fwht_rows(x, rows, plan, scale);
}

void affine_residual_rows_avx2(const AffineResidualArgs& a, std::size_t rows, const Plan& plan) {
  if (plan.l < Avx2::W) return affine_residual_rows_scalar(a, rows, plan);
  Kernel<Avx2>::affine_residual_rows(a, rows, plan);
}

}  // namespace whtlm::hadamard_detail
