// What the CPU offers for low-precision products (whtlm/matmul.hpp), from cpuid and
// from oneDNN's choice of implementation.
#include <cpuid.h>

#include <string>

#include "backend/cpu/bf16.hpp"
#include "whtlm/hadamard.hpp"
#include "whtlm/matmul.hpp"

namespace whtlm {
namespace {

// cpuid leaf 7, sub-leaf `sub`: {eax, ebx, ecx, edx}, zeros where the leaf is missing.
struct Leaf7 {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
};
Leaf7 leaf7(unsigned sub) {
  Leaf7 r;
  if (__get_cpuid_max(0, nullptr) < 7) return r;
  __cpuid_count(7, sub, r.eax, r.ebx, r.ecx, r.edx);
  return r;
}

}  // namespace

PrecisionSupport precision_support() {
  PrecisionSupport s;
  std::string why;
  const std::string bf16 = backend::cpu::bf16_support(&why);
  if (bf16.empty()) {
    s.bf16 = "none";
    s.bf16_impl = why;
  } else {
    const std::size_t open = bf16.find(" (");
    s.bf16 = bf16.substr(0, open);
    s.bf16_impl = open == std::string::npos ? "" : bf16.substr(open + 2, bf16.size() - open - 3);
  }
  const Leaf7 l0 = leaf7(0), l1 = leaf7(1);
  const bool amx_int8 = (l0.edx >> 25) & 1u, avx512_vnni = (l0.ecx >> 11) & 1u,
             avx_vnni = (l1.eax >> 4) & 1u;
  for (auto [has, name] : {std::pair{amx_int8, "amx_int8"}, std::pair{avx512_vnni, "avx512_vnni"},
                           std::pair{avx_vnni, "avx_vnni"}})
    if (has) {
      if (!s.int8.empty()) s.int8.push_back(' ');
      s.int8.append(name);
    }
  if (s.int8.empty()) s.int8 = "none";
  return s;
}

std::string isa_summary() {
  static const std::string summary = [] {
    const PrecisionSupport p = precision_support();
    const std::string blas = blas_description();
    const std::size_t open = blas.rfind('('), close = blas.rfind(')');
    const std::string onednn =
        open == std::string::npos ? blas : blas.substr(open + 1, close - open - 1);
    return std::string("kernels ") + isa_name(detected_isa()) + ", oneDNN " + onednn + ", bf16 " +
           p.bf16 + ", int8 " + p.int8;
  }();
  return summary;
}

}  // namespace whtlm
