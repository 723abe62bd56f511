// AVX-512 kernels of the inference weight formats (weights_kernels.hpp). Compiled with
// -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mf16c -mfma; only called after a cpuid
// check (weights.cpp). No template or inline function here may be shared with another
// translation unit: everything is in an anonymous namespace and works on raw pointers.
//
// Each output j of each row r is one pass over weight row j, kept in vector lanes
// (bf16, f32: two accumulators of 16 lanes; q8_0: one of 16 lanes) and reduced at the
// end in a fixed order. Rows are taken 8 at a time, all against the same weight chunk,
// so a weight row comes from memory once (from L1 for the later groups of 8 rows).
//
// bf16: a 64-byte load of 32 bf16 values, read as 16 uint32 lanes, holds the even
// values in the low halves and the odd ones in the high halves; `lane << 16` and
// `lane & 0xffff0000` are those values as exact fp32 (no shuffle). The activations are
// permuted once per call to match: per chunk of 32, the 16 even values then the 16 odd.
// Measured against VDPBF16PS (activations rounded to bf16 once per call): no faster at
// rows = 1, where the product is bound by the weight stream, and it would add the
// activations' rounding (2^-9 relative) to every product; so fp32 FMA it is.
//
// q8_0: VPDPBUSD multiplies unsigned by signed bytes. The activations are stored as
// x + 128 (unsigned, 1 .. 255), and every lane starts from -128 * (its 4 weights' sum),
// computed once per weight block for all rows: each int32 lane ends as the exact sum
// of its 4 products x * w. Without VNNI: |x| times w with x's sign (maddubs, then madd
// by ones), the same lanes and the same integers. A lane's int32 converted to fp32
// (exact: |sum| <= 4 * 127 * 127) is scaled by d_w * d_x and accumulated in fp32.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "backend/cpu/weights_kernels.hpp"
#include "backend/weights.hpp"

namespace whtlm::backend::weights_detail {
namespace {

constexpr std::size_t kRowGroup = 8;

// ---- activations ---------------------------------------------------------------

// ceil(n / m) * m
constexpr std::size_t round_up(std::size_t n, std::size_t m) { return (n + m - 1) / m * m; }

// q8_0 activations: per row, qs of nb_even * 32 bytes (nb rounded up to even blocks,
// the padding 0), then the scales expanded to 8 lanes per block (nb_even * 8 floats).
struct Q8Layout {
  std::size_t nb, nb_even, qs_row, d_row;  // qs_row bytes, d_row floats
  explicit Q8Layout(std::size_t in)
      : nb(in / kQ8Block),
        nb_even(round_up(in / kQ8Block, 2)),
        qs_row(nb_even * kQ8Block),
        d_row(nb_even * 8) {}
  std::size_t qs_bytes(std::size_t rows) const { return rows * qs_row; }
};

// roundf(v) for |v| < 2^23, as int32: truncate, then step away from zero when the
// (exact) fraction is at least one half.
inline __m512i round_half_away(__m512 v) {
  __m512i t = _mm512_cvttps_epi32(v);
  const __m512 f = _mm512_sub_ps(v, _mm512_cvtepi32_ps(t));
  const __m512i one = _mm512_set1_epi32(1);
  t = _mm512_mask_add_epi32(t, _mm512_cmp_ps_mask(f, _mm512_set1_ps(0.5f), _CMP_GE_OQ), t, one);
  t = _mm512_mask_sub_epi32(t, _mm512_cmp_ps_mask(f, _mm512_set1_ps(-0.5f), _CMP_LE_OQ), t, one);
  return t;
}

// One block of 32 values as ggml's quantize_row_q8_0_ref; returns d (fp32).
inline float quantize_block(std::int8_t* qs, const float* x) {
  const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const __m512 vid = _mm512_set1_ps(id);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs),
                   _mm512_cvtepi32_epi8(round_half_away(_mm512_mul_ps(a, vid))));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 16),
                   _mm512_cvtepi32_epi8(round_half_away(_mm512_mul_ps(b, vid))));
  return d;
}

void quantize_q8_0(void* dst, const float* src, std::size_t nblocks) {
  auto* out = static_cast<unsigned char*>(dst);
  for (std::size_t i = 0; i < nblocks; ++i) {
    unsigned char* blk = out + i * kQ8BlockBytes;
    const float d = quantize_block(reinterpret_cast<std::int8_t*>(blk + 2), src + i * kQ8Block);
    const std::uint16_t h = fp32_to_fp16(d);
    __builtin_memcpy(blk, &h, sizeof h);
  }
}

std::size_t prep_bytes(WeightFormat f, std::size_t rows, std::size_t in) {
  switch (f) {
    case WeightFormat::f32:
      return 0;
    case WeightFormat::bf16:
      return rows * round_up(in, 32) * sizeof(float);
    case WeightFormat::q8_0: {
      const Q8Layout l(in);
      return l.qs_bytes(rows) + rows * l.d_row * sizeof(float);
    }
  }
  return 0;
}

template <bool Vnni>
void prepare(WeightFormat f, void* prep, const float* x, std::size_t rows, std::size_t in) {
  if (f == WeightFormat::bf16) {
    // Per chunk of 32: the even values, then the odd ones; the tail padded with 0.
    const std::size_t in32 = round_up(in, 32);
    auto* xp = static_cast<float*>(prep);
    const __m512i even =
                      _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
                  odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (std::size_t r = 0; r < rows; ++r) {
      const float* xr = x + r * in;
      float* pr = xp + r * in32;
      for (std::size_t c = 0; c < in32; c += 32) {
        const std::size_t n = in - c < 32 ? in - c : 32;
        const __mmask16 m0 = static_cast<__mmask16>(n >= 16 ? 0xffffu : (1u << n) - 1u),
                        m1 = static_cast<__mmask16>(n >= 32  ? 0xffffu
                                                    : n > 16 ? (1u << (n - 16)) - 1u
                                                             : 0u);
        const __m512 a = _mm512_maskz_loadu_ps(m0, xr + c),
                     b = _mm512_maskz_loadu_ps(m1, xr + c + 16);
        _mm512_storeu_ps(pr + c, _mm512_permutex2var_ps(a, even, b));
        _mm512_storeu_ps(pr + c + 16, _mm512_permutex2var_ps(a, odd, b));
      }
    }
    return;
  }
  if (f != WeightFormat::q8_0) return;
  const Q8Layout l(in);
  auto* qs = static_cast<std::int8_t*>(prep);
  auto* d = reinterpret_cast<float*>(static_cast<unsigned char*>(prep) + l.qs_bytes(rows));
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
  for (std::size_t r = 0; r < rows; ++r) {
    std::int8_t* qr = qs + r * l.qs_row;
    float* dr = d + r * l.d_row;
    for (std::size_t blk = 0; blk < l.nb_even; ++blk) {
      std::int8_t* q = qr + blk * kQ8Block;
      float db = 0.0f;
      if (blk < l.nb) {
        db = quantize_block(q, x + r * in + blk * kQ8Block);
        if (Vnni) {  // x + 128 as unsigned bytes
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm256_xor_si256(v, bias));
        }
      } else {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm256_setzero_si256());
      }
      _mm256_storeu_ps(dr + blk * 8, _mm256_set1_ps(db));
    }
  }
}

// ---- outputs ---------------------------------------------------------------------

inline void store(const GemvArgs& a, std::size_t r, std::size_t j, float s) {
  if (a.b != nullptr) s += a.b[j];
  float& o = a.y[r * a.out + j];
  o = a.accumulate ? o + s : s;
}

// bf16 and f32: rows r0 .. r0 + NR - 1 of output j.
template <std::size_t NR, bool Bf16>
void dense_rows(const GemvArgs& a, std::size_t j, std::size_t r0) {
  const std::size_t in = a.in, full = in / 32 * 32, tail = in - full;
  __m512 acc0[NR], acc1[NR];
  for (std::size_t r = 0; r < NR; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  if (Bf16) {
    const std::uint16_t* wr = static_cast<const std::uint16_t*>(a.w) + j * in;
    const std::size_t ld = round_up(in, 32);
    const float* xp = static_cast<const float*>(a.prep) + r0 * ld;
    const __m512i hi = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
    auto step = [&](__m512i v, std::size_t c) {
      const __m512 we = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)),
                   wo = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
      for (std::size_t r = 0; r < NR; ++r) {
        acc0[r] = _mm512_fmadd_ps(we, _mm512_loadu_ps(xp + r * ld + c), acc0[r]);
        acc1[r] = _mm512_fmadd_ps(wo, _mm512_loadu_ps(xp + r * ld + c + 16), acc1[r]);
      }
    };
    for (std::size_t c = 0; c < full; c += 32) step(_mm512_loadu_si512(wr + c), c);
    if (tail > 0)
      step(_mm512_maskz_loadu_epi16(static_cast<__mmask32>((std::uint64_t{1} << tail) - 1),
                                    wr + full),
           full);
  } else {
    const float* wr = static_cast<const float*>(a.w) + j * in;
    const float* x = a.x + r0 * in;
    for (std::size_t c = 0; c < full; c += 32) {
      const __m512 w0 = _mm512_loadu_ps(wr + c), w1 = _mm512_loadu_ps(wr + c + 16);
      for (std::size_t r = 0; r < NR; ++r) {
        acc0[r] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + r * in + c), acc0[r]);
        acc1[r] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + r * in + c + 16), acc1[r]);
      }
    }
    if (tail > 0) {
      const __mmask16 m0 = static_cast<__mmask16>(tail >= 16 ? 0xffffu : (1u << tail) - 1u),
                      m1 = static_cast<__mmask16>(tail > 16 ? (1u << (tail - 16)) - 1u : 0u);
      const __m512 w0 = _mm512_maskz_loadu_ps(m0, wr + full),
                   w1 = _mm512_maskz_loadu_ps(m1, wr + full + 16);
      for (std::size_t r = 0; r < NR; ++r) {
        acc0[r] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m0, x + r * in + full), acc0[r]);
        acc1[r] = _mm512_fmadd_ps(w1, _mm512_maskz_loadu_ps(m1, x + r * in + full + 16), acc1[r]);
      }
    }
  }
  for (std::size_t r = 0; r < NR; ++r)
    store(a, r0 + r, j, _mm512_reduce_add_ps(_mm512_add_ps(acc0[r], acc1[r])));
}

// The scales of two consecutive blocks (fp16 at p0 and p1) as [d0 x 8, d1 x 8].
inline __m512 scales2(const unsigned char* p0, const unsigned char* p1) {
  std::uint16_t h0, h1;
  __builtin_memcpy(&h0, p0, sizeof h0);
  __builtin_memcpy(&h1, p1, sizeof h1);
  const __m128 f =
      _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(h0 | (std::uint32_t{h1} << 16))));
  const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f));
}

// q8_0: rows r0 .. r0 + NR - 1 of output j, two blocks (64 bytes) a step.
template <std::size_t NR, bool Vnni>
void q8_rows(const GemvArgs& a, std::size_t j, std::size_t r0) {
  const Q8Layout l(a.in);
  const unsigned char* wr = static_cast<const unsigned char*>(a.w) + j * l.nb * kQ8BlockBytes;
  const auto* qs = static_cast<const std::int8_t*>(a.prep) + r0 * l.qs_row;
  const float* d = reinterpret_cast<const float*>(static_cast<const unsigned char*>(a.prep) +
                                                  l.qs_bytes(a.rows)) +
                   r0 * l.d_row;
  __m512 acc[NR];
  for (std::size_t r = 0; r < NR; ++r) acc[r] = _mm512_setzero_ps();
  const __m512i zero = _mm512_setzero_si512();
  auto step = [&](__m512i wv, __m512 dw, std::size_t pair) {
    if (Vnni) {
      // -128 * (sum of each lane's 4 weights): the correction for x + 128.
      const __m512i neg = _mm512_sub_epi32(
          zero, _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(static_cast<char>(0x80)), wv));
      for (std::size_t r = 0; r < NR; ++r) {
        const __m512i xv = _mm512_loadu_si512(qs + r * l.qs_row + pair * 64);
        const __m512i s = _mm512_dpbusd_epi32(neg, xv, wv);
        const __m512 scale = _mm512_mul_ps(dw, _mm512_loadu_ps(d + r * l.d_row + pair * 16));
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[r]);
      }
    } else {
      const __m512i ones = _mm512_set1_epi16(1);
      for (std::size_t r = 0; r < NR; ++r) {
        const __m512i xv = _mm512_loadu_si512(qs + r * l.qs_row + pair * 64);
        const __m512i sw = _mm512_mask_sub_epi8(wv, _mm512_movepi8_mask(xv), zero, wv);
        const __m512i s = _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(xv), sw), ones);
        const __m512 scale = _mm512_mul_ps(dw, _mm512_loadu_ps(d + r * l.d_row + pair * 16));
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[r]);
      }
    }
  };
  const std::size_t pairs = l.nb / 2;
  for (std::size_t p = 0; p < pairs; ++p) {
    const unsigned char* blk = wr + p * 2 * kQ8BlockBytes;
    const __m512i wv = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kQ8BlockBytes + 2)), 1);
    step(wv, scales2(blk, blk + kQ8BlockBytes), p);
  }
  if (l.nb % 2 != 0) {  // the last block alone, the upper half zero
    const unsigned char* blk = wr + pairs * 2 * kQ8BlockBytes;
    const __m512i wv = _mm512_maskz_loadu_epi8(0xffffffffull, blk + 2);
    step(wv, scales2(blk, blk), pairs);
  }
  for (std::size_t r = 0; r < NR; ++r) store(a, r0 + r, j, _mm512_reduce_add_ps(acc[r]));
}

template <std::size_t NR, bool Vnni>
inline void rows_of(const GemvArgs& a, std::size_t j, std::size_t r0) {
  switch (a.format) {
    case WeightFormat::f32:
      dense_rows<NR, false>(a, j, r0);
      return;
    case WeightFormat::bf16:
      dense_rows<NR, true>(a, j, r0);
      return;
    case WeightFormat::q8_0:
      q8_rows<NR, Vnni>(a, j, r0);
      return;
  }
}

template <bool Vnni>
void gemv(const GemvArgs& a, std::size_t j0, std::size_t nj) {
  for (std::size_t j = j0; j < j0 + nj; ++j)
    for (std::size_t r0 = 0; r0 < a.rows; r0 += kRowGroup) {
      switch (a.rows - r0 < kRowGroup ? a.rows - r0 : kRowGroup) {
        case 1:
          rows_of<1, Vnni>(a, j, r0);
          break;
        case 2:
          rows_of<2, Vnni>(a, j, r0);
          break;
        case 3:
          rows_of<3, Vnni>(a, j, r0);
          break;
        case 4:
          rows_of<4, Vnni>(a, j, r0);
          break;
        case 5:
          rows_of<5, Vnni>(a, j, r0);
          break;
        case 6:
          rows_of<6, Vnni>(a, j, r0);
          break;
        case 7:
          rows_of<7, Vnni>(a, j, r0);
          break;
        default:
          rows_of<8, Vnni>(a, j, r0);
          break;
      }
    }
}

}  // namespace

const Family& avx512_family(bool vnni) {
  static constexpr Family bw{"avx512bw", prep_bytes, prepare<false>, gemv<false>, quantize_q8_0};
  static constexpr Family vn{"avx512vnni", prep_bytes, prepare<true>, gemv<true>, quantize_q8_0};
  return vnni ? vn : bw;
}

}  // namespace whtlm::backend::weights_detail
