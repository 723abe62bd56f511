// bf16 on the CPU: conversion from fp32 (round to nearest even, as every bf16 unit
// and llama.cpp round) and matrix products with bf16 operands and fp32 accumulation
// through oneDNN's matmul primitive, which picks AMX, AVX512-BF16 or its own fallback
// from cpuid. The one place besides blas.cpp that names oneDNN.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "whtlm/matmul.hpp"

namespace whtlm::backend::cpu {

// fp32 -> bf16 bits, round to nearest even; NaN stays a (quiet) NaN.
inline std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  __builtin_memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline float from_bf16(std::uint16_t h) {
  const std::uint32_t u = std::uint32_t{h} << 16;
  float f;
  __builtin_memcpy(&f, &u, sizeof f);
  return f;
}

// A kernel's output value as its output type: itself, or as bf16 bits.
template <class Y, class T>
inline Y output_as(T v) {
  if constexpr (sizeof(Y) == 2 && sizeof(T) == 4)
    return to_bf16(v);
  else
    return static_cast<Y>(v);
}

// dst[i] = to_bf16(src[i]) for n values (threaded).
void to_bf16(std::uint16_t* dst, const float* src, std::size_t n);
// The same for a [rows, cols] block with row strides.
void to_bf16_rows(std::uint16_t* dst, std::size_t ld_dst, const float* src, std::size_t ld_src,
                  std::size_t rows, std::size_t cols);

// C[m x n] = op(A) op(B) (+ C when accumulate), A and B bf16 bits, C fp32, row-major
// with row strides lda, ldb, ldc as stored (op(X) = X or X^T).
void gemm_bf16(Trans ta, Trans tb, std::size_t m, std::size_t n, std::size_t k,
               const std::uint16_t* a, std::size_t lda, const std::uint16_t* b, std::size_t ldb,
               bool accumulate, float* c, std::size_t ldc);

// Whether oneDNN runs bf16 products on this CPU, and with what: "avx512_core_amx"
// (AMX tiles), "avx512_core_bf16" (AVX512-BF16 dot products), "emulated (ISA)" when
// the CPU has no bf16 instructions but oneDNN emulates them, or "" when oneDNN refuses
// (then *why says why).
std::string bf16_support(std::string* why = nullptr);
// The implementation oneDNN chose for a bf16 product of this shape ("brg:avx512_core_amx").
std::string bf16_gemm_implementation(std::size_t m, std::size_t n, std::size_t k);

}  // namespace whtlm::backend::cpu
