// Dense matrix multiply on the CPU: the one door to the BLAS library (the library
// itself is named only in src/backend/cpu/blas.cpp).
#pragma once

#include <cstddef>
#include <string>

namespace whtlm {

enum class Trans { no, yes };

// Row-major single precision: C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C,
// where op(X) is X or X^T. lda, ldb, ldc are the row strides of A, B, C as stored.
void sgemm(Trans ta, Trans tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
           const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
           std::size_t ldc);

// Human-readable name of the BLAS in use and the kernels it selected on this CPU.
std::string blas_description();

}  // namespace whtlm

namespace whtlm {

// What this CPU offers for low-precision products, as whtlm finds and uses it.
struct PrecisionSupport {
  // bf16 products through oneDNN: "amx" (AMX tiles), "avx512_bf16" (AVX512-BF16 dot
  // products), "emulated" (no bf16 instructions: oneDNN converts and computes in
  // fp32), or "none" (oneDNN refuses; --precision bf16 is refused too).
  std::string bf16;
  std::string bf16_impl;  // oneDNN's implementation of a bf16 product, or why there is none
  // int8 dot-product instructions: "amx_int8", "avx512_vnni", "avx_vnni" (all present,
  // space-separated), or "none".
  std::string int8;
  bool bf16_native() const { return bf16 == "amx" || bf16 == "avx512_bf16"; }
};
PrecisionSupport precision_support();
// The instruction sets that ran, in one line for bench records and reports:
// "kernels avx512, oneDNN avx512_core_amx, bf16 amx, int8 amx_int8 avx512_vnni".
std::string isa_summary();

}  // namespace whtlm
