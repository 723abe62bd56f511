// Internal: how a transform length n decomposes into K * 2^m, and the kernel entry
// points of each instruction-set family (scalar, AVX2, AVX-512).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace whtlm::hadamard_detail {

// A Hadamard matrix of order k in {1, 12, 20, 28}, and each row in the form the
// kernels use. With T the sum of all k inputs and S_a the sum of the inputs where
// row a has its less frequent sign, output a is
//   2 S_a - T   when that sign is +1 (sign[a] = +1),
//   T - 2 S_a   when it is -1       (sign[a] = -1),
// at most k/2 additions per output instead of k - 1.
struct Base {
  std::size_t k = 1;
  std::vector<int> h;                  // k x k, row-major, entries +1/-1
  std::vector<std::uint8_t> minority;  // k x k: row a's first count[a] columns used
  std::vector<std::uint8_t> count;
  std::vector<int> sign;
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
