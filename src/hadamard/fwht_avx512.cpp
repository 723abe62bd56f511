// AVX-512F kernels (16 floats a vector). Compiled with -mavx512f -mfma; only called
// after a run-time check that the CPU has AVX-512F.
#include <immintrin.h>

#include "hadamard/kernel.hpp"

namespace whtlm::hadamard_detail {
namespace {

struct Avx512 {
  using T = float;
  using V = __m512;
  static constexpr std::size_t W = 16;
  static constexpr std::size_t kBlockLog = 4;
  static constexpr std::size_t kRadixLog = 4;
  static V load(const T* p) { return _mm512_loadu_ps(p); }
  static void store(T* p, V v) { _mm512_storeu_ps(p, v); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V set1(T a) { return _mm512_set1_ps(a); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  // Stages h = 1, 2, 4, 8 inside the vector, as in the AVX2 family: partner lane
  // i ^ h by a permute, then t +- v as one exact-product FMA with a sign vector.
  static V in_vector(V v) {
    const V s1 = _mm512_setr_ps(1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1);
    const V s2 = _mm512_setr_ps(1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1);
    const V s4 = _mm512_setr_ps(1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1);
    const V s8 = _mm512_setr_ps(1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1);
    // The masked forms (all lanes on) avoid GCC 12's false "may be used
    // uninitialized" warning on the unmasked intrinsics' undefined source operand.
    constexpr __mmask16 all = 0xFFFF;
    v = _mm512_fmadd_ps(v, s1, _mm512_mask_permute_ps(v, all, v, 0xB1));
    v = _mm512_fmadd_ps(v, s2, _mm512_mask_permute_ps(v, all, v, 0x4E));
    v = _mm512_fmadd_ps(v, s4, _mm512_mask_shuffle_f32x4(v, all, v, v, 0xB1));
    v = _mm512_fmadd_ps(v, s8, _mm512_mask_shuffle_f32x4(v, all, v, v, 0x4E));
    return v;
  }
};

}  // namespace

void fwht_rows_avx512(float* x, std::size_t rows, const Plan& plan, float scale) {
  if (plan.l < Avx512::W) return fwht_rows_scalar(x, rows, plan, scale);
  Kernel<Avx512>::fwht_rows(x, rows, plan, scale);
}

void affine_residual_rows_avx512(const AffineResidualArgs& a, std::size_t rows, const Plan& plan) {
  if (plan.l < Avx512::W) return affine_residual_rows_scalar(a, rows, plan);
  Kernel<Avx512>::affine_residual_rows(a, rows, plan);
}

}  // namespace whtlm::hadamard_detail
