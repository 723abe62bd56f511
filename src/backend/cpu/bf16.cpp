// bf16 conversion and oneDNN matmul products with bf16 operands (bf16.hpp).
#include "backend/cpu/bf16.hpp"

#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <stdexcept>
#include <tuple>

#include "base/parallel.hpp"

namespace whtlm::backend::cpu {
namespace {

using dnnl::memory;

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::stream& stream() {
  static dnnl::stream s(engine());
  return s;
}

// A product's shape and strides: the key of the primitive cache.
using Key = std::tuple<bool, bool, std::size_t, std::size_t, std::size_t, std::size_t, std::size_t,
                       std::size_t, bool>;

memory::desc matrix(std::size_t rows, std::size_t cols, std::size_t ld, bool trans,
                    memory::data_type type) {
  // op(X) is [rows, cols]; X is stored row-major with stride ld, transposed or not.
  const memory::dims dims{static_cast<memory::dim>(rows), static_cast<memory::dim>(cols)};
  const memory::dims strides = trans ? memory::dims{1, static_cast<memory::dim>(ld)}
                                     : memory::dims{static_cast<memory::dim>(ld), 1};
  return memory::desc(dims, type, strides);
}

struct Product {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul prim;
};

Product make_product(const Key& key) {
  const auto [ta, tb, m, n, k, lda, ldb, ldc, accumulate] = key;
  const memory::desc a = matrix(m, k, lda, ta, memory::data_type::bf16);
  const memory::desc b = matrix(k, n, ldb, tb, memory::data_type::bf16);
  const memory::desc c = matrix(m, n, ldc, false, memory::data_type::f32);
  dnnl::primitive_attr attr;
  if (accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);
    attr.set_post_ops(ops);
  }
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, engine());
  return {pd, dnnl::matmul(pd)};
}

Product& product(const Key& key) {
  static std::mutex mutex;
  static std::map<Key, Product> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, make_product(key)).first;
  return it->second;
}

}  // namespace

void to_bf16(std::uint16_t* dst, const float* src, std::size_t n) {
  parallel_ranges(n, n, [&](std::size_t i0, std::size_t len) {
#pragma omp simd
    for (std::size_t i = i0; i < i0 + len; ++i) dst[i] = to_bf16(src[i]);
  });
}

void to_bf16_rows(std::uint16_t* dst, std::size_t ld_dst, const float* src, std::size_t ld_src,
                  std::size_t rows, std::size_t cols) {
  parallel_ranges(rows, rows * cols, [&](std::size_t r0, std::size_t nr) {
    for (std::size_t r = r0; r < r0 + nr; ++r) {
      const float* s = src + r * ld_src;
      std::uint16_t* d = dst + r * ld_dst;
#pragma omp simd
      for (std::size_t j = 0; j < cols; ++j) d[j] = to_bf16(s[j]);
    }
  });
}

void gemm_bf16(Trans ta, Trans tb, std::size_t m, std::size_t n, std::size_t k,
               const std::uint16_t* a, std::size_t lda, const std::uint16_t* b, std::size_t ldb,
               bool accumulate, float* c, std::size_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate)
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) c[i * ldc + j] = 0.0f;
    return;
  }
  const Key key{ta == Trans::yes, tb == Trans::yes, m, n, k, lda, ldb, ldc, accumulate};
  Product& p = product(key);
  memory ma(p.pd.src_desc(), engine(), const_cast<std::uint16_t*>(a));
  memory mb(p.pd.weights_desc(), engine(), const_cast<std::uint16_t*>(b));
  memory mc(p.pd.dst_desc(), engine(), c);
  p.prim.execute(stream(), {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}});
  stream().wait();
}

std::string bf16_gemm_implementation(std::size_t m, std::size_t n, std::size_t k) {
  return product(Key{false, true, m, n, k, k, k, n, false}).pd.impl_info_str();
}

std::string bf16_support(std::string* why) {
  try {
    const std::string impl = bf16_gemm_implementation(64, 64, 64);
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if (impl.find("amx") != std::string::npos) return "amx (" + impl + ")";
    if (isa == dnnl_cpu_isa_avx512_core_bf16 || isa == dnnl_cpu_isa_avx512_core_amx)
      return "avx512_bf16 (" + impl + ")";
    return "emulated (" + impl + ")";
  } catch (const dnnl::error& e) {
    if (why != nullptr)
      *why = std::string("oneDNN has no bf16 matrix product for this CPU (") + e.what() + ")";
    return "";
  }
}

}  // namespace whtlm::backend::cpu
