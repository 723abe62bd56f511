// Scalar kernels: the portable fallback, and the float64 reference. Compiled with
// -ffp-contract=off so that the compiler never fuses a multiply and an add (that
// would change rounding and break bit-identity with the SIMD families).
#include "hadamard/kernel.hpp"

namespace whtlm::hadamard_detail {
namespace {

template <class F>
struct Scalar {
  using T = F;
  using V = F;
  static constexpr std::size_t W = 1;
  static constexpr std::size_t kBlockLog = 3;
  static constexpr std::size_t kRadixLog = 3;
  static V load(const T* p) { return *p; }
  static void store(T* p, V v) { *p = v; }
  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V set1(T a) { return a; }
  // Only called with b = +-1, so a * b is exact and a single rounding happens.
  static V fmadd(V a, V b, V c) { return a * b + c; }
  static V in_vector(V v) { return v; }
};

}  // namespace

void fwht_rows_scalar(float* x, std::size_t rows, const Plan& plan, float scale) {
  Kernel<Scalar<float>>::fwht_rows(x, rows, plan, scale);
}

void fwht_rows_scalar(double* x, std::size_t rows, const Plan& plan, double scale) {
  Kernel<Scalar<double>>::fwht_rows(x, rows, plan, scale);
}

void affine_residual_rows_scalar(const AffineResidualArgs& a, std::size_t rows, const Plan& plan) {
  Kernel<Scalar<float>>::affine_residual_rows(a, rows, plan);
}

}  // namespace whtlm::hadamard_detail
