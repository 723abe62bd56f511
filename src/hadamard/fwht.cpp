// Public entry points: argument checks, run-time choice of the kernel family, and
// the split of a batch across the OpenMP team by rows.
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "base/parallel.hpp"
#include "hadamard/plan.hpp"
#include "whtlm/hadamard.hpp"

namespace whtlm {
namespace {

using hadamard_detail::Plan;

bool cpu_has(Isa isa) {
#if defined(WHTLM_HAVE_X86_KERNELS)
  __builtin_cpu_init();
  switch (isa) {
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") != 0;
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") != 0 && __builtin_cpu_supports("fma") != 0;
    default:
      return true;
  }
#else
  return isa == Isa::scalar || isa == Isa::best;
#endif
}

Isa widest_available() {
  if (cpu_has(Isa::avx512)) return Isa::avx512;
  if (cpu_has(Isa::avx2)) return Isa::avx2;
  return Isa::scalar;
}

// WHTLM_ISA=scalar|avx2|avx512 narrows the automatic choice (for benchmarks and for
// checking a fallback on a machine that has the wider family).
Isa detect() {
  const Isa widest = widest_available();
  const char* env = std::getenv("WHTLM_ISA");
  if (env == nullptr || *env == '\0') return widest;
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    if (std::strcmp(env, isa_name(isa)) == 0) {
      if (!cpu_has(isa))
        throw std::runtime_error(std::string("WHTLM_ISA=") + env +
                                 ": this CPU does not support it");
      return isa;
    }
  }
  throw std::runtime_error(std::string("WHTLM_ISA=") + env + ": expected scalar, avx2 or avx512");
}

Isa resolve(Isa isa) {
  if (isa == Isa::best) return detected_isa();
  if (!cpu_has(isa))
    throw std::invalid_argument(std::string("instruction set ") + isa_name(isa) +
                                " is not available on this CPU or in this build");
  return isa;
}

// The entry points of one kernel family.
struct Kernels {
  void (*fwht)(float*, std::size_t, const Plan&, float);
  void (*affine_residual)(const hadamard_detail::AffineResidualArgs&, std::size_t, const Plan&);
};

const Kernels& kernels_for(Isa isa) {
  using namespace hadamard_detail;
  static constexpr Kernels scalar{fwht_rows_scalar, affine_residual_rows_scalar};
#if defined(WHTLM_HAVE_X86_KERNELS)
  static constexpr Kernels avx2{fwht_rows_avx2, affine_residual_rows_avx2};
  static constexpr Kernels avx512{fwht_rows_avx512, affine_residual_rows_avx512};
  if (isa == Isa::avx512) return avx512;
  if (isa == Isa::avx2) return avx2;
#endif
  (void)isa;
  return scalar;
}

void check_rows(const void* p, std::size_t rows, const char* what) {
  if (p == nullptr && rows > 0)
    throw std::invalid_argument(std::string("fwht: ") + what + " is null");
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::best:
      return "best";
    case Isa::scalar:
      return "scalar";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
  }
  return "?";
}

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}

bool isa_available(Isa isa) { return isa == Isa::best || cpu_has(isa); }

void fwht(float* data, std::size_t rows, std::size_t n, float scale, Isa isa) {
  const Plan plan = hadamard_detail::make_plan(n);
  check_rows(data, rows, "data");
  const Kernels& k = kernels_for(resolve(isa));
  parallel_ranges(rows, rows * n, [&](std::size_t first, std::size_t count) {
    k.fwht(data + first * n, count, plan, scale);
  });
}

void fwht(double* data, std::size_t rows, std::size_t n, double scale) {
  const Plan plan = hadamard_detail::make_plan(n);
  check_rows(data, rows, "data");
  parallel_ranges(rows, rows * n, [&](std::size_t first, std::size_t count) {
    hadamard_detail::fwht_rows_scalar(data + first * n, count, plan, scale);
  });
}

void fwht_affine_residual(const float* x, float* out, float* resid, const float* gamma,
                          const float* beta, std::size_t rows, std::size_t n, float scale,
                          Isa isa) {
  const Plan plan = hadamard_detail::make_plan(n);
  check_rows(x, rows, "x");
  check_rows(resid, rows, "resid");
  check_rows(gamma, rows, "gamma");
  const Kernels& k = kernels_for(resolve(isa));
  parallel_ranges(rows, rows * n, [&](std::size_t first, std::size_t count) {
    const hadamard_detail::AffineResidualArgs a{
        x + first * n, out != nullptr ? out + first * n : nullptr, resid + first * n, gamma, beta,
        scale};
    k.affine_residual(a, count, plan);
  });
}

}  // namespace whtlm
