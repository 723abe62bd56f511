// The one place that names the BLAS library: oneDNN's dnnl_sgemm (docs/blas.md says
// why). It picks its kernels from cpuid at run time, needs no environment variable,
// and threads through the same libgomp as our OpenMP kernels, taking its thread
// count from omp_get_max_threads() on every call.
#include <oneapi/dnnl/dnnl.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "whtlm/matmul.hpp"

namespace whtlm {
namespace {

const char* isa_label(dnnl_cpu_isa_t isa) {
  switch (isa) {
    case dnnl_cpu_isa_sse41:
      return "sse41";
    case dnnl_cpu_isa_avx:
      return "avx";
    case dnnl_cpu_isa_avx2:
      return "avx2";
    case dnnl_cpu_isa_avx2_vnni:
      return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core:
      return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx:
      return "avx512_core_amx";
    default:
      return "other";
  }
}

std::int64_t to_dim(std::size_t v, const char* name) {
  if (v > static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max()))
    throw std::invalid_argument(std::string("sgemm: ") + name + " too large");
  return static_cast<std::int64_t>(v);
}

}  // namespace

void sgemm(Trans ta, Trans tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
           const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
           std::size_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // C = beta * C; oneDNN is not asked to handle an empty product
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < n; ++j)
        c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  const dnnl_status_t st =
      dnnl_sgemm(ta == Trans::yes ? 'T' : 'N', tb == Trans::yes ? 'T' : 'N', to_dim(m, "m"),
                 to_dim(n, "n"), to_dim(k, "k"), alpha, a, to_dim(lda, "lda"), b,
                 to_dim(ldb, "ldb"), beta, c, to_dim(ldc, "ldc"));
  if (st != dnnl_success)
    throw std::invalid_argument("sgemm: oneDNN refused the call (status " +
                                std::to_string(static_cast<int>(st)) + ", m=" + std::to_string(m) +
                                " n=" + std::to_string(n) + " k=" + std::to_string(k) + ")");
}

std::string blas_description() {
  const dnnl_version_t* v = dnnl_version();
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
         std::to_string(v->patch) + " dnnl_sgemm (" + isa_label(dnnl_get_effective_cpu_isa()) + ")";
}

}  // namespace whtlm
