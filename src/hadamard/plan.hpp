// Internal: how a transform length n decomposes into K * 2^m, and the kernel entry
// points of each instruction-set family (scalar, AVX2, AVX-512).
#pragma once

#include <cstddef>
#include <vector>

namespace whtlm::hadamard_detail {

// A Hadamard matrix of order k in {1, 12, 20, 28}, as ints and as the +-1 factors
// the kernels multiply by.
struct Base {
  std::size_t k = 1;
  std::vector<int> h;
  std::vector<float> hf;
  std::vector<double> hd;
};

// n = k * l with l a power of two; base points to static storage.
struct Plan {
  std::size_t n = 0, k = 1, l = 0;
  const Base* base = nullptr;
};

// Throws std::invalid_argument for an unsupported n.
Plan make_plan(std::size_t n);

// Arguments of the fused projection step for rows [0, rows) of a chunk. Pointers to
// per-row data (x, out, resid) point at the chunk's first row; gamma and beta are
// per channel. out and beta may be null.
struct AffineResidualArgs {
  const float* x;
  float* out;
  float* resid;
  const float* gamma;
  const float* beta;
  float scale;
};

// Each family transforms `rows` consecutive rows in the calling thread.
void fwht_rows_scalar(float* x, std::size_t rows, const Plan& plan, float scale);
void fwht_rows_scalar(double* x, std::size_t rows, const Plan& plan, double scale);
void affine_residual_rows_scalar(const AffineResidualArgs& a, std::size_t rows, const Plan& plan);

void fwht_rows_avx2(float* x, std::size_t rows, const Plan& plan, float scale);
void affine_residual_rows_avx2(const AffineResidualArgs& a, std::size_t rows, const Plan& plan);

void fwht_rows_avx512(float* x, std::size_t rows, const Plan& plan, float scale);
void affine_residual_rows_avx512(const AffineResidualArgs& a, std::size_t rows, const Plan& plan);

}  // namespace whtlm::hadamard_detail
