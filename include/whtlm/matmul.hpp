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
