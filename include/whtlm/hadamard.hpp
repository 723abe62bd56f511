// Fast Walsh-Hadamard transforms over the last dimension of a row-major batch.
//
// Supported lengths n: every power of two 2 .. 2^15, and n = K * 2^m for K in
// {12, 20, 28} and m >= 0 with n <= 2^15. For n = K * 2^m the transform is the
// Kronecker product H_K (x) H_{2^m}, where H_K is a symmetric Hadamard matrix of
// order K built in code (Paley's constructions) and H_{2^m} is the Sylvester
// (natural-order) Walsh-Hadamard matrix:
//
//   y[a * 2^m + b] = sum_{a', b'} H_K[a][a'] * H_{2^m}[b][b'] * x[a' * 2^m + b']
//
// Every matrix used is symmetric with H H^T = n I, so with scale = 1/sqrt(n) the
// transform is orthonormal and its own inverse.
#pragma once

#include <cstddef>
#include <vector>

namespace whtlm {

// Which kernel family runs the float32 transforms. `best` picks the widest one the
// CPU supports at run time (AVX-512 > AVX2 > scalar). Every family gives
// bit-identical results: each performs the same additions in the same order.
enum class Isa { best, scalar, avx2, avx512 };

// The widest kernel family this CPU and build support (never Isa::best).
Isa detected_isa();
// Whether `isa` can run here (scalar and best always can).
bool isa_available(Isa isa);
const char* isa_name(Isa isa);

// True when n is a supported transform length.
bool hadamard_supported(std::size_t n);
// All supported lengths, ascending.
const std::vector<std::size_t>& hadamard_supported_sizes();
// Throws std::invalid_argument naming n and the nearest supported sizes when n is
// not supported.
void check_hadamard_size(std::size_t n);
// 1/sqrt(n): the scale that makes the transform orthonormal.
double hadamard_orthonormal_scale(std::size_t n);

// The explicit n x n matrix (entries +1/-1, row-major) that the fast transform
// applies. For tests and references: O(n^2) memory.
std::vector<double> hadamard_matrix(std::size_t n);
// The Kronecker factor of order K in {1, 12, 20, 28}: row-major K x K, entries +1/-1.
std::vector<int> hadamard_base_matrix(std::size_t k);

// In-place transform of `rows` rows of length n (row-major, contiguous, row stride
// n), every output multiplied by `scale`. Parallel across rows (OpenMP) when the
// batch is large enough to pay for it. Throws std::invalid_argument for a bad n or
// an ISA this CPU lacks.
void fwht(float* data, std::size_t rows, std::size_t n, float scale = 1.0f, Isa isa = Isa::best);
// float64 reference version (scalar kernels, same order of operations).
void fwht(double* data, std::size_t rows, std::size_t n, double scale = 1.0);

// The fused step of the model's Hadamard output projection, per row r and channel i:
//   t[i]         = scale * (H x_r)[i]               x: rows x n, left unchanged
//   out[r][i]    = t[i]            when out != nullptr (kept for the gamma gradient)
//   resid[r][i] += gamma[i] * t[i] + beta[i]       beta may be nullptr (taken as 0)
// One pass over memory per row: x read once, resid read and written once.
void fwht_affine_residual(const float* x, float* out, float* resid, const float* gamma,
                          const float* beta, std::size_t rows, std::size_t n, float scale,
                          Isa isa = Isa::best);

}  // namespace whtlm
