// Inference weight formats (backend/weights.hpp): fp16 conversion, packing and
// unpacking, the scalar kernel family, and the threaded decode product over whichever
// family the CPU runs (weights_kernels.hpp).
#include "backend/weights.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cpu/bf16.hpp"
#include "backend/cpu/weights_kernels.hpp"
#include "base/parallel.hpp"
#include "whtlm/hadamard.hpp"

namespace whtlm::backend {

using weights_detail::Family;
using weights_detail::GemvArgs;
using weights_detail::kQ8Block;
using weights_detail::kQ8BlockBytes;

std::uint16_t fp32_to_fp16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const std::uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u)  // NaN: keep the top payload bits, force quiet
    return static_cast<std::uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u)  // >= 65520 (half-way above 65504, the tie goes up): inf
    return static_cast<std::uint16_t>(sign | 0x7c00u);
  if (a < 0x38800000u) {  // below 2^-14: an fp16 subnormal (or zero), units of 2^-24
    if (a <= 0x33000000u) return static_cast<std::uint16_t>(sign);  // <= 2^-25: ties to 0
    const std::uint32_t e = a >> 23, mant = (a & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126 - e;  // 14 .. 24
    std::uint32_t m = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (m & 1u))) ++m;  // 1024 is the smallest normal
    return static_cast<std::uint16_t>(sign | m);
  }
  std::uint32_t h = (a >> 13) - (112u << 10);  // rebias the exponent 127 -> 15
  const std::uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry may bump the exponent
  return static_cast<std::uint16_t>(sign | h);
}

float fp16_to_fp32(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t{h & 0x8000u} << 16, e = (h >> 10) & 0x1fu,
                      m = h & 0x3ffu;
  std::uint32_t u;
  if (e == 0) {
    // Zero or subnormal: m * 2^-24, exact (and a normal fp32, so no flush applies).
    const float v = static_cast<float>(m) * 0x1p-24f;
    std::memcpy(&u, &v, sizeof u);
    u |= sign;
  } else if (e == 31) {
    u = sign | 0x7f800000u | (m << 13);
  } else {
    u = sign | ((e + 112u) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

namespace weights_detail {
namespace {

// roundf without the libm call: half away from zero (|v| < 2^23 here: |v| <= 127.x).
inline float round_half_away(float v) {
  const float t = static_cast<float>(static_cast<std::int32_t>(v));  // truncation
  const float f = v - t;                                             // exact
  return f >= 0.5f ? t + 1.0f : (f <= -0.5f ? t - 1.0f : t);
}

// One block as ggml's quantize_row_q8_0_ref: d = amax / 127, id = d ? 1 / d : 0.
inline float quantize_block(std::int8_t* qs, const float* x) {
  float amax = 0.0f;
  for (std::size_t j = 0; j < kQ8Block; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (std::size_t j = 0; j < kQ8Block; ++j)
    qs[j] = static_cast<std::int8_t>(round_half_away(x[j] * id));
  return d;
}

void scalar_quantize_q8_0(void* dst, const float* src, std::size_t nblocks) {
  auto* out = static_cast<unsigned char*>(dst);
  for (std::size_t i = 0; i < nblocks; ++i) {
    unsigned char* blk = out + i * kQ8BlockBytes;
    const float d = quantize_block(reinterpret_cast<std::int8_t*>(blk + 2), src + i * kQ8Block);
    const std::uint16_t h = fp32_to_fp16(d);
    std::memcpy(blk, &h, sizeof h);
  }
}

std::size_t scalar_prep_bytes(WeightFormat f, std::size_t rows, std::size_t in) {
  if (f != WeightFormat::q8_0) return 0;
  return rows * in + rows * (in / kQ8Block) * sizeof(float);
}

void scalar_prepare(WeightFormat f, void* prep, const float* x, std::size_t rows, std::size_t in) {
  if (f != WeightFormat::q8_0) return;
  auto* qs = static_cast<std::int8_t*>(prep);
  auto* d = reinterpret_cast<float*>(static_cast<unsigned char*>(prep) + rows * in);
  quantize_activations_q8(qs, d, x, rows, in);
}

inline void store(const GemvArgs& a, std::size_t r, std::size_t j, float s) {
  if (a.b != nullptr) s += a.b[j];
  float& o = a.y[r * a.out + j];
  o = a.accumulate ? o + s : s;
}

void scalar_gemv(const GemvArgs& a, std::size_t j0, std::size_t nj) {
  const std::size_t in = a.in;
  if (a.format == WeightFormat::q8_0) {
    const std::size_t nb = in / kQ8Block;
    const auto* qx = static_cast<const std::int8_t*>(a.prep);
    const auto* dx =
        reinterpret_cast<const float*>(static_cast<const unsigned char*>(a.prep) + a.rows * in);
    for (std::size_t j = j0; j < j0 + nj; ++j) {
      const unsigned char* wr = static_cast<const unsigned char*>(a.w) + j * nb * kQ8BlockBytes;
      for (std::size_t r = 0; r < a.rows; ++r) {
        const std::int8_t* xr = qx + r * in;
        float acc = 0.0f;
        for (std::size_t blk = 0; blk < nb; ++blk) {
          const unsigned char* wb = wr + blk * kQ8BlockBytes;
          std::uint16_t h;
          std::memcpy(&h, wb, sizeof h);
          const auto* qs = reinterpret_cast<const std::int8_t*>(wb + 2);
          const std::int8_t* xs = xr + blk * kQ8Block;
          std::int32_t sumi = 0;
          for (std::size_t k = 0; k < kQ8Block; ++k) sumi += std::int32_t{qs[k]} * xs[k];
          acc += static_cast<float>(sumi) * (fp16_to_fp32(h) * dx[r * nb + blk]);
        }
        store(a, r, j, acc);
      }
    }
    return;
  }
  const bool bf16 = a.format == WeightFormat::bf16;
  for (std::size_t j = j0; j < j0 + nj; ++j) {
    const auto* wf = static_cast<const float*>(a.w) + j * in;
    const auto* wh = static_cast<const std::uint16_t*>(a.w) + j * in;
    for (std::size_t r = 0; r < a.rows; ++r) {
      const float* xr = a.x + r * in;
      float s = 0.0f;
      if (bf16) {
#pragma omp simd reduction(+ : s)
        for (std::size_t k = 0; k < in; ++k) s += xr[k] * cpu::from_bf16(wh[k]);
      } else {
#pragma omp simd reduction(+ : s)
        for (std::size_t k = 0; k < in; ++k) s += xr[k] * wf[k];
      }
      store(a, r, j, s);
    }
  }
}

// The family chosen once: AVX-512 where detected_isa() says avx512 (WHTLM_ISA may
// narrow it) and the CPU has BW and VL too; VNNI when present.
const Family& choose() {
#if defined(WHTLM_HAVE_X86_KERNELS)
  __builtin_cpu_init();
  if (detected_isa() == Isa::avx512 && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    return avx512_family(__builtin_cpu_supports("avx512vnni") != 0);
#endif
  return scalar_family();
}

// Scratch kept by the calling thread between calls (the workers only read it).
unsigned char* scratch(std::size_t bytes) {
  thread_local std::vector<unsigned char> buf;
  if (buf.size() < bytes) buf.resize(bytes);
  return buf.data();
}

void check_q8(std::size_t in) {
  if (in % kQ8Block != 0)
    throw std::invalid_argument(
        "weight format q8_0 needs the input size to be a multiple of 32, "
        "got in = " +
        std::to_string(in));
}

}  // namespace

void quantize_activations_q8(std::int8_t* qs, float* d, const float* x, std::size_t rows,
                             std::size_t in) {
  const std::size_t nb = in / kQ8Block;
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t blk = 0; blk < nb; ++blk)
      d[r * nb + blk] = quantize_block(qs + r * in + blk * kQ8Block, x + r * in + blk * kQ8Block);
}

const Family& scalar_family() {
  static constexpr Family f{"scalar", scalar_prep_bytes, scalar_prepare, scalar_gemv,
                            scalar_quantize_q8_0};
  return f;
}

const Family& best_family() {
  static const Family& f = choose();
  return f;
}

std::size_t available_families(const Family** out, std::size_t max) {
  std::size_t n = 0;
  auto add = [&](const Family& f) {
    if (n < max) out[n] = &f;
    ++n;
  };
  add(scalar_family());
#if defined(WHTLM_HAVE_X86_KERNELS)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl")) {
    add(avx512_family(false));
    if (__builtin_cpu_supports("avx512vnni")) add(avx512_family(true));
  }
#endif
  return n;
}

void packed_gemv_with(const Family& fam, float* y, const float* x, WeightFormat format,
                      const void* w, std::size_t out, std::size_t in, const float* b,
                      std::size_t rows, bool accumulate) {
  if (format == WeightFormat::q8_0) check_q8(in);
  if (rows == 0 || out == 0) return;
  GemvArgs a;
  a.format = format;
  a.y = y;
  a.x = x;
  a.w = w;
  a.b = b;
  a.rows = rows;
  a.out = out;
  a.in = in;
  a.accumulate = accumulate;
  const std::size_t bytes = fam.prep_bytes(format, rows, in);
  if (bytes > 0) {
    void* prep = scratch(bytes);
    fam.prepare(format, prep, x, rows, in);
    a.prep = prep;
  }
  // Threads split the outputs; each output is computed alone, so the split does not
  // change a bit of it.
  parallel_ranges(out, out * std::max<std::size_t>(in, 1) * rows,
                  [&](std::size_t j0, std::size_t nj) { fam.gemv(a, j0, nj); });
}

void pack_weight_with(const Family& fam, void* dst, WeightFormat f, const float* w, std::size_t out,
                      std::size_t in, bool w_in_out) {
  if (f == WeightFormat::q8_0) check_q8(in);
  if (out == 0 || in == 0) return;
  const std::size_t row_bytes = packed_weight_bytes(f, 1, in);
  auto* d = static_cast<unsigned char*>(dst);
  // A [in, out] weight is transposed through a tile of kTile output rows at a time
  // (each source row read as one contiguous run of kTile floats).
  constexpr std::size_t kTile = 16;
  parallel_ranges(out, out * in, [&](std::size_t j0, std::size_t nj) {
    std::vector<float> tile;
    if (w_in_out) tile.resize(kTile * in);
    for (std::size_t t0 = j0; t0 < j0 + nj; t0 += kTile) {
      const std::size_t nt = std::min(kTile, j0 + nj - t0);
      if (w_in_out)
        for (std::size_t i = 0; i < in; ++i)
          for (std::size_t t = 0; t < nt; ++t) tile[t * in + i] = w[i * out + t0 + t];
      for (std::size_t t = 0; t < nt; ++t) {
        const float* src = w_in_out ? tile.data() + t * in : w + (t0 + t) * in;
        unsigned char* row = d + (t0 + t) * row_bytes;
        switch (f) {
          case WeightFormat::f32:
            std::memcpy(row, src, in * sizeof(float));
            break;
          case WeightFormat::bf16: {
            auto* h = reinterpret_cast<std::uint16_t*>(row);
            for (std::size_t i = 0; i < in; ++i) h[i] = cpu::to_bf16(src[i]);
            break;
          }
          case WeightFormat::q8_0:
            fam.quantize_q8_0(row, src, in / kQ8Block);
            break;
        }
      }
    }
  });
}

}  // namespace weights_detail

std::size_t packed_weight_bytes(WeightFormat f, std::size_t out, std::size_t in) {
  switch (f) {
    case WeightFormat::f32:
      return out * in * sizeof(float);
    case WeightFormat::bf16:
      return out * in * sizeof(std::uint16_t);
    case WeightFormat::q8_0:
      weights_detail::check_q8(in);
      return out * (in / kQ8Block) * kQ8BlockBytes;
  }
  throw std::invalid_argument("unknown weight format");
}

void pack_weight(void* dst, WeightFormat f, const float* w, std::size_t out, std::size_t in,
                 WeightLayout layout) {
  weights_detail::pack_weight_with(weights_detail::best_family(), dst, f, w, out, in,
                                   layout == WeightLayout::in_out);
}

void packed_gemv(float* y, const float* x, const PackedWeight& w, const float* b, std::size_t rows,
                 Write y_write) {
  weights_detail::packed_gemv_with(weights_detail::best_family(), y, x, w.format, w.data, w.out,
                                   w.in, b, rows, y_write == Write::accumulate);
}

namespace {

// Calls row_fn(r, out_row) for rows row0 .. row0 + rows - 1, threaded over rows, with
// out_row the dequantized fp32 row (a per-thread buffer, or dst itself).
template <class F>
void unpack_rows(const PackedWeight& w, std::size_t row0, std::size_t rows, F&& emit) {
  if (row0 + rows > w.out)
    throw std::invalid_argument("unpack_weight: rows " + std::to_string(row0) + " .. " +
                                std::to_string(row0 + rows) + " outside a weight of " +
                                std::to_string(w.out) + " rows");
  const std::size_t in = w.in;
  if (w.format == WeightFormat::q8_0) weights_detail::check_q8(in);
  const std::size_t row_bytes = packed_weight_bytes(w.format, 1, in);
  parallel_ranges(rows, rows * in, [&](std::size_t r0, std::size_t nr) {
    for (std::size_t r = r0; r < r0 + nr; ++r) {
      const auto* src = static_cast<const unsigned char*>(w.data) + (row0 + r) * row_bytes;
      emit(r, src);
    }
  });
}

// Dequantizes one packed row of `in` values into dst (fp32), exactly.
void dequant_row(float* dst, WeightFormat f, const unsigned char* src, std::size_t in) {
  switch (f) {
    case WeightFormat::f32:
      std::memcpy(dst, src, in * sizeof(float));
      return;
    case WeightFormat::bf16: {
      const auto* h = reinterpret_cast<const std::uint16_t*>(src);
      for (std::size_t i = 0; i < in; ++i) dst[i] = cpu::from_bf16(h[i]);
      return;
    }
    case WeightFormat::q8_0:
      for (std::size_t blk = 0; blk < in / kQ8Block; ++blk) {
        const unsigned char* b = src + blk * kQ8BlockBytes;
        std::uint16_t h;
        std::memcpy(&h, b, sizeof h);
        const float d = fp16_to_fp32(h);
        const auto* qs = reinterpret_cast<const std::int8_t*>(b + 2);
        for (std::size_t k = 0; k < kQ8Block; ++k)
          dst[blk * kQ8Block + k] = static_cast<float>(qs[k]) * d;
      }
      return;
  }
}

}  // namespace

void unpack_weight_f32(float* dst, const PackedWeight& w, std::size_t row0, std::size_t rows) {
  unpack_rows(w, row0, rows, [&](std::size_t r, const unsigned char* src) {
    dequant_row(dst + r * w.in, w.format, src, w.in);
  });
}

void unpack_weight_bf16(std::uint16_t* dst, const PackedWeight& w, std::size_t row0,
                        std::size_t rows) {
  unpack_rows(w, row0, rows, [&](std::size_t r, const unsigned char* src) {
    std::uint16_t* d = dst + r * w.in;
    if (w.format == WeightFormat::bf16) {
      std::memcpy(d, src, w.in * sizeof(std::uint16_t));
      return;
    }
    thread_local std::vector<float> row;
    row.resize(w.in);
    dequant_row(row.data(), w.format, src, w.in);
    for (std::size_t i = 0; i < w.in; ++i) d[i] = cpu::to_bf16(row[i]);
  });
}

}  // namespace whtlm::backend
