// AVX-512 causal attention (attention_kernels.hpp). Compiled with -mavx512f -mavx512bw
// -mavx512vl -mavx512bf16 -mfma; only called after a cpuid check (attention.cpp), the
// bf16 products only where the CPU has AVX512-BF16. As in weights_avx512.cpp, nothing
// here may be shared with another translation unit: everything is in an unnamed
// namespace, works on raw pointers and uses no library template (std::min, std::fill)
// whose instantiation here, compiled for AVX-512, the linker could pick for another unit.
//
// The products. Every one is C[m x n] (=, or +=) alpha * A B with n a multiple of 16,
// computed in tiles of kMR rows x up to 64 columns held in 24 zmm accumulators:
//   fp32: per step k, the kMR values A(i, k) broadcast, times row k of B (FMA).
//   bf16: per step t, the kMR words A(i, t) (two bf16 values, depths 2t and 2t + 1)
//         broadcast, times row t of B, whose 32-bit words hold the pairs (B(2t, j),
//         B(2t + 1, j)) (VDPBF16PS: both products summed into the fp32 lane).
// fp32 reads A with any strides (so dK += dS^T Q reads dS^T in place); bf16 reads A as
// rows of words, and B always as rows. Each work item lays out what its products read as
// B (K^T, V^T, and for bf16 the pair layouts) in its thread's scratch, zero-padded to a
// multiple of 16 keys, where it stays in cache for all the item's query blocks: the
// forward's item is a (sequence, query head), the backward's a (sequence, kv head).
//
// Per query block of 64 rows the scores are computed only up to the last key the block
// sees (per tile of kMR rows, up to its own diagonal), and the sums over keys stop at
// a tile's diagonal: the probabilities past it are zero. The forward keeps
// E = exp(S - max) unnormalised and divides the rows of O = E V by their sums; the
// backward takes D_i = dO_i . O_i as sum_j P_ij dP_ij, from the rows it holds.
//
// bf16 (Operands::bf16): every product but the scores' has bf16 operands: V, dO, and K
// and Q as dQ and dK read them, are rounded to bf16 as they are laid out, E, P and dS
// when they are made. The scores S = Q K^T / sqrt(hd) stay fp32 products (forward, and
// the backward's recomputation): an error in a score is an error in an exponent, which
// scales a probability by e^error, and the scores are largest where attention is
// sharpest; bf16 scores moved a 300-step run's validation loss by +1.09% of fp32's,
// fp32 scores by +0.70% (tiny, seed 1). The softmax, the log-sum-exp, D and every
// accumulation stay fp32. The backward forms dK^T = Q^T dS and dV^T = dO^T P (both
// operands then pair along the queries without a transpose of dS or P) in fp32
// accumulators of one (sequence, kv head), transposed into dqkv at its end.
#include <immintrin.h>
#include <omp.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "backend/cpu/attention_kernels.hpp"

namespace whtlm::backend::attention_detail {
namespace {

constexpr std::size_t kBlock = 64;  // query rows per block, as attention.cpp
constexpr int kMR = 6;              // rows per tile
constexpr int kMaxNV = 4;           // 16-float vectors per tile row (64 columns)

std::size_t at_most(std::size_t a, std::size_t b) { return a < b ? a : b; }
std::size_t round16(std::size_t n) { return (n + 15) / 16 * 16; }

// The accumulators of an MR x (16 NV) tile, and their store: C = alpha acc (+ C).
template <int MR, int NV>
void zero_tile(__m512 (&acc)[MR][NV]) {
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
}

template <int MR, int NV, class Args>
void store_tile(const __m512 (&acc)[MR][NV], const Args& p) {
  const __m512 alpha = _mm512_set1_ps(p.alpha);
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* cp = p.c + r * p.ldc + 16 * v;
      __m512 y = _mm512_mul_ps(acc[r][v], alpha);
      if (p.accumulate) y = _mm512_add_ps(y, _mm512_loadu_ps(cp));
      _mm512_storeu_ps(cp, y);
    }
}

// ---- fp32 products -------------------------------------------------------------------

// A(i, k) = a[i * a_rs + k * a_cs]; row k of B at b + k * ldb; row i of C at c + i * ldc.
struct F32Args {
  const float* a;
  std::size_t a_rs, a_cs;
  const float* b;
  std::size_t ldb;
  float* c;
  std::size_t ldc;
  float alpha;
  bool accumulate;
};

template <int MR, int NV>
void tile_f32(const F32Args& p, std::size_t k) {
  __m512 acc[MR][NV];
  zero_tile<MR, NV>(acc);
  for (std::size_t kk = 0; kk < k; ++kk) {
    const float* br = p.b + kk * p.ldb;
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(br + 16 * v);
    const float* ak = p.a + kk * p.a_cs;
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(ak[r * p.a_rs]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
  store_tile<MR, NV>(acc, p);
}

// ---- bf16 products -------------------------------------------------------------------

// A(i, t) = a[i * a_rs + t] (a word: the bf16 pair at depths 2t, 2t + 1); row t of B at
// b + t * ldb (words: the pairs of depths 2t, 2t + 1 of each column).
struct Bf16Args {
  const std::uint32_t* a;
  std::size_t a_rs;
  const std::uint32_t* b;
  std::size_t ldb;
  float* c;
  std::size_t ldc;
  float alpha;
  bool accumulate;
};

template <int MR, int NV>
void tile_bf16(const Bf16Args& p, std::size_t kp) {
  __m512 acc[MR][NV];
  zero_tile<MR, NV>(acc);
  for (std::size_t t = 0; t < kp; ++t) {
    const std::uint32_t* br = p.b + t * p.ldb;
    __m512bh bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = (__m512bh)_mm512_loadu_si512(br + 16 * v);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(p.a[r * p.a_rs + t]));
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
    }
  }
  store_tile<MR, NV>(acc, p);
}

// ---- the tile loop ------------------------------------------------------------------

// How the causal mask trims a product whose rows are query rows diag, diag + 1, ...:
// `columns`: the columns are keys (S, dP): a tile computes keys up to its last row's
// diagonal; `depth`: the depth is keys (P V, dS K): a tile sums keys up to it.
enum class Causal { none, columns, depth };

template <class Args>
using TileFn = void (*)(const Args&, std::size_t);

template <int MR, int NV>
struct F32Tile {
  static void run(const F32Args& p, std::size_t k) { tile_f32<MR, NV>(p, k); }
};
template <int MR, int NV>
struct Bf16Tile {
  static void run(const Bf16Args& p, std::size_t k) { tile_bf16<MR, NV>(p, k); }
};

template <class Args, template <int, int> class Tile>
struct Table {
  TileFn<Args> fn[kMR][kMaxNV];
  constexpr Table() : fn{} { fill<1>(); }
  template <int MR>
  constexpr void fill() {
    fn[MR - 1][0] = &Tile<MR, 1>::run;
    fn[MR - 1][1] = &Tile<MR, 2>::run;
    fn[MR - 1][2] = &Tile<MR, 3>::run;
    fn[MR - 1][3] = &Tile<MR, 4>::run;
    if constexpr (MR < kMR) fill<MR + 1>();
  }
};

constexpr Table<F32Args, F32Tile> kF32Tiles;
constexpr Table<Bf16Args, Bf16Tile> kBf16Tiles;

// Moves the arguments to the tile at row i, column j.
F32Args at(const F32Args& p, std::size_t i, std::size_t j) {
  F32Args q = p;
  q.a += i * p.a_rs;
  q.b += j;
  q.c += i * p.ldc + j;
  return q;
}
Bf16Args at(const Bf16Args& p, std::size_t i, std::size_t j) {
  Bf16Args q = p;
  q.a += i * p.a_rs;
  q.b += j;
  q.c += i * p.ldc + j;
  return q;
}

// C[m x n] = alpha A B (+ C), n a multiple of 16, depth k (bf16: k pairs). With a causal
// trim, row i of C is query diag + i.
template <class Args, template <int, int> class Tile>
void product(const Table<Args, Tile>& table, const Args& p, std::size_t m, std::size_t n,
             std::size_t k, Causal causal, std::size_t diag, bool pairs) {
  for (std::size_t j = 0; j < n; j += 16 * kMaxNV) {
    for (std::size_t i = 0; i < m; i += kMR) {
      const std::size_t mr = at_most(kMR, m - i);
      const std::size_t last_key = diag + i + mr;  // keys 0 .. last_key - 1 are seen
      std::size_t cols = at_most(16 * kMaxNV, n - j), depth = k;
      if (causal == Causal::columns) {
        const std::size_t seen = round16(last_key);
        if (j >= seen) continue;
        cols = at_most(cols, seen - j);
      } else if (causal == Causal::depth) {
        depth = at_most(k, pairs ? (last_key + 1) / 2 : last_key);
      }
      table.fn[mr - 1][cols / 16 - 1](at(p, i, j), depth);
    }
  }
}

void product_f32(const F32Args& p, std::size_t m, std::size_t n, std::size_t k,
                 Causal causal = Causal::none, std::size_t diag = 0) {
  product(kF32Tiles, p, m, n, k, causal, diag, false);
}
void product_bf16(const Bf16Args& p, std::size_t m, std::size_t n, std::size_t kp,
                  Causal causal = Causal::none, std::size_t diag = 0) {
  product(kBf16Tiles, p, m, n, kp, causal, diag, true);
}

// ---- layouts -------------------------------------------------------------------------

// dst[c][r] = src[r][c] for 32-bit elements, r < rows, c < cols; 16 x 16 blocks in
// registers (unpack by 32 and 64 bits, then two shuffles of 128-bit lanes).
void transpose32(std::uint32_t* dst, std::size_t ld_dst, const std::uint32_t* src,
                 std::size_t ld_src, std::size_t rows, std::size_t cols) {
  std::size_t r0 = 0;
  for (; r0 + 16 <= rows; r0 += 16) {
    std::size_t c0 = 0;
    for (; c0 + 16 <= cols; c0 += 16) {
      __m512i x[16], t[16];
      for (int i = 0; i < 16; ++i) x[i] = _mm512_loadu_si512(src + (r0 + i) * ld_src + c0);
      for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_epi32(x[2 * i], x[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(x[2 * i], x[2 * i + 1]);
      }
      for (int i = 0; i < 4; ++i) {
        x[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        x[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        x[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        x[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
      }
      // x[4 g + c] holds columns c, c + 4, c + 8, c + 12 of rows 4 g .. 4 g + 3.
      for (int c = 0; c < 4; ++c) {
        const __m512i v0 = _mm512_shuffle_i32x4(x[c], x[4 + c], 0x88);
        const __m512i v1 = _mm512_shuffle_i32x4(x[c], x[4 + c], 0xdd);
        const __m512i v2 = _mm512_shuffle_i32x4(x[8 + c], x[12 + c], 0x88);
        const __m512i v3 = _mm512_shuffle_i32x4(x[8 + c], x[12 + c], 0xdd);
        _mm512_storeu_si512(dst + (c0 + c) * ld_dst + r0, _mm512_shuffle_i32x4(v0, v2, 0x88));
        _mm512_storeu_si512(dst + (c0 + c + 8) * ld_dst + r0, _mm512_shuffle_i32x4(v0, v2, 0xdd));
        _mm512_storeu_si512(dst + (c0 + c + 4) * ld_dst + r0, _mm512_shuffle_i32x4(v1, v3, 0x88));
        _mm512_storeu_si512(dst + (c0 + c + 12) * ld_dst + r0, _mm512_shuffle_i32x4(v1, v3, 0xdd));
      }
    }
    for (; c0 < cols; ++c0)
      for (std::size_t r = r0; r < r0 + 16; ++r) dst[c0 * ld_dst + r] = src[r * ld_src + c0];
  }
  for (; r0 < rows; ++r0)
    for (std::size_t c = 0; c < cols; ++c) dst[c * ld_dst + r0] = src[r0 * ld_src + c];
}

void transpose_f32(float* dst, std::size_t ld_dst, const float* src, std::size_t ld_src,
                   std::size_t rows, std::size_t cols) {
  transpose32(reinterpret_cast<std::uint32_t*>(dst), ld_dst,
              reinterpret_cast<const std::uint32_t*>(src), ld_src, rows, cols);
}

// 16 fp32 values to bf16 (round to nearest even), as 16 uint16 in a ymm.
__m256i bf16_of(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }

// dst[r][c] = bf16(src[r][c]) for cols a multiple of 16.
void to_bf16_rows(std::uint16_t* dst, std::size_t ld_dst, const float* src, std::size_t ld_src,
                  std::size_t rows, std::size_t cols) {
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; c += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + r * ld_dst + c),
                          bf16_of(_mm512_loadu_ps(src + r * ld_src + c)));
}

// Pairs of rows: dst[t][c] = (bf16(src[2t][c]), bf16(src[2t + 1][c])) for t < pairs, the
// rows at or past `rows` read as zero; cols a multiple of 16.
void pair_rows(std::uint32_t* dst, std::size_t ld_dst, const float* src, std::size_t ld_src,
               std::size_t rows, std::size_t pairs, std::size_t cols) {
  const __m512 zero = _mm512_setzero_ps();
  for (std::size_t t = 0; t < pairs; ++t) {
    const std::size_t r = 2 * t;
    for (std::size_t c = 0; c < cols; c += 16) {
      const __m512 lo = r < rows ? _mm512_loadu_ps(src + r * ld_src + c) : zero;
      const __m512 hi = r + 1 < rows ? _mm512_loadu_ps(src + (r + 1) * ld_src + c) : zero;
      const __m512i w = _mm512_or_si512(_mm512_cvtepu16_epi32(bf16_of(lo)),
                                        _mm512_slli_epi32(_mm512_cvtepu16_epi32(bf16_of(hi)), 16));
      _mm512_storeu_si512(dst + t * ld_dst + c, w);
    }
  }
}

// ---- softmax ---------------------------------------------------------------------------

// e^x for 16 lanes: x = n ln 2 + r with |r| <= ln 2 / 2, e^r by the degree-6 polynomial of
// vmath.hpp's exp_fast, times 2^n (relative error about 2e-7).
__m512 exp16(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-87.0f), _mm512_min_ps(x, _mm512_set1_ps(88.0f)));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(y, n);
}

__mmask16 first(std::size_t n) {
  return n >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << n) - 1u);
}

// Rows of a query block hold scores of keys 0 .. ld - 1 (ld a multiple of 16); key j is
// seen when j < keep. Only the first round16(keep) are computed; the rest are set to 0.
void zero_from(float* row, std::uint16_t* pb, std::size_t from, std::size_t ld) {
  for (std::size_t j = from; j < ld; j += 16) {
    _mm512_storeu_ps(row + j, _mm512_setzero_ps());
    if (pb != nullptr)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(pb + j), _mm256_setzero_si256());
  }
}

// The forward's softmax without the division: row[j] = e^(S_j - max) over the seen keys
// (with pb, also as bf16), 0 for the others. Returns the sum; the log-sum-exp is
// max + log(sum), and O = (E V) / sum.
float exp_sum_row(float* row, std::size_t keep, std::size_t ld, float* lse, std::uint16_t* pb) {
  __m512 m = _mm512_set1_ps(-__builtin_inff());
  for (std::size_t j = 0; j < keep; j += 16)
    m = _mm512_max_ps(m, _mm512_mask_loadu_ps(m, first(keep - j), row + j));
  const float shift = _mm512_reduce_max_ps(m);
  const __m512 vs = _mm512_set1_ps(shift);
  __m512 sum = _mm512_setzero_ps();
  for (std::size_t j = 0; j < keep; j += 16) {
    const __m512 e =
        _mm512_maskz_mov_ps(first(keep - j), exp16(_mm512_sub_ps(_mm512_loadu_ps(row + j), vs)));
    sum = _mm512_add_ps(sum, e);
    _mm512_storeu_ps(row + j, e);
    if (pb != nullptr) _mm256_storeu_si256(reinterpret_cast<__m256i*>(pb + j), bf16_of(e));
  }
  zero_from(row, pb, round16(keep), ld);
  const float total = _mm512_reduce_add_ps(sum);
  *lse = shift + __builtin_logf(total);
  return total;
}

// The backward's probabilities: row[j] = e^(S_j - lse) over the seen keys, 0 for the others.
void probabilities_row(float* row, std::size_t keep, std::size_t ld, float lse) {
  const __m512 vl = _mm512_set1_ps(lse);
  for (std::size_t j = 0; j < keep; j += 16)
    _mm512_storeu_ps(
        row + j,
        _mm512_maskz_mov_ps(first(keep - j), exp16(_mm512_sub_ps(_mm512_loadu_ps(row + j), vl))));
  zero_from(row, nullptr, round16(keep), ld);
}

// dS = P (dP - D) * scale over the seen keys into dp (and dsb as bf16), 0 for the others.
void score_gradient_row(float* dp, const float* p, std::size_t keep, std::size_t ld, float d,
                        float scale, std::uint16_t* dsb) {
  const __m512 vd = _mm512_set1_ps(d), vs = _mm512_set1_ps(scale);
  for (std::size_t j = 0; j < keep; j += 16) {
    const __m512 ds =
        _mm512_maskz_mul_ps(first(keep - j), _mm512_mul_ps(_mm512_loadu_ps(p + j), vs),
                            _mm512_sub_ps(_mm512_loadu_ps(dp + j), vd));
    _mm512_storeu_ps(dp + j, ds);
    if (dsb != nullptr) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dsb + j), bf16_of(ds));
  }
  zero_from(dp, dsb, round16(keep), ld);
}

// D = sum_j P_j dP_j over the seen keys (P and dP are 0 past them): equal to dO . O,
// since O = P V and dP = dO V^T, and read from the rows at hand instead of from O.
float dot_row(const float* p, const float* dp, std::size_t keep) {
  __m512 acc = _mm512_setzero_ps();
  for (std::size_t j = 0; j < keep; j += 16) {
    const __mmask16 k = first(keep - j);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, p + j), _mm512_maskz_loadu_ps(k, dp + j), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

// Columns [from, to) of rows x ld 32-bit values set to 0.
void zero_columns(std::uint32_t* x, std::size_t ld, std::size_t rows, std::size_t from,
                  std::size_t to) {
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t j = from; j < to; ++j) x[r * ld + j] = 0;
}

// ---- the shapes of one call ----------------------------------------------------------

struct Geometry {
  std::size_t width, out_width, k_off, v_off, group, blocks, sp, ld, qld;
  explicit Geometry(const AttentionShape& s)
      : width((s.n_head + 2 * s.n_kv) * s.hd),
        out_width(s.n_head * s.hd),
        k_off(s.n_head * s.hd),
        v_off((s.n_head + s.n_kv) * s.hd),
        group(s.n_head / s.n_kv),
        blocks((s.seq + kBlock - 1) / kBlock),
        sp(round16(s.seq)),
        // Rows indexed by key are sp long, stored ld apart: 64 bytes more than a multiple
        // of 16 floats, so that the rows of a tile do not all fall in the same cache sets.
        ld(round16(s.seq) + 16),
        qld(round16(s.seq) / 2 + 16) {}
};

// Each thread's scratch, in floats (a 32-bit word, or two bf16 values, take one).
struct Plan {
  std::size_t kt = 0, vt = 0;         // fp32 K^T, V^T: [hd][ld]
  std::size_t kb = 0;                 // bf16 V rows: [sp][hd]
  std::size_t vtp = 0;                // bf16 V^T, pairs of depths: [hd / 2][ld]
  std::size_t vp = 0, kp = 0;         // bf16 V, K, pairs of keys: [sp / 2][hd]
  std::size_t dob = 0;                // bf16 dO of a block: [kBlock][hd]
  std::size_t scores = 0, dp = 0;     // S or P, dP or dS: [kBlock][ld]
  std::size_t pb = 0, dsb = 0;        // bf16 P, dS: [kBlock][ld]
  std::size_t d = 0;                  // per row: 1 / sum, or D: [kBlock]
  std::size_t qt = 0, dot = 0;        // bf16 Q^T, dO^T, pairs of queries: [hd][qld]
  std::size_t tmp = 0;                // [sp / 2][hd] words
  std::size_t ppair = 0, dspair = 0;  // bf16 P, dS, pairs of queries: [kBlock / 2][ld]
  std::size_t dkt = 0, dvt = 0;       // dK^T, dV^T: [hd][ld]
  std::size_t per_thread = 0;

  Plan(const AttentionShape& s, bool backward, bool bf16) {
    const Geometry g(s);
    const std::size_t hd = s.hd;
    auto take = [this](std::size_t floats) {
      const std::size_t at = per_thread;
      per_thread += (floats + 15) / 16 * 16;
      return at;
    };
    scores = take(kBlock * g.ld);
    d = take(kBlock);
    kt = take(hd * g.ld);  // the scores are fp32 products with either operands
    if (backward) dp = take(kBlock * g.ld);
    if (!bf16) {
      if (backward) vt = take(hd * g.ld);
      return;
    }
    if (!backward) {
      pb = take(kBlock * g.ld / 2);
      vp = take(g.sp / 2 * hd);
      return;
    }
    kb = take(g.sp * hd / 2);
    vtp = take(hd / 2 * g.ld);
    kp = take(g.sp / 2 * hd);
    dob = take(kBlock * hd / 2);
    dsb = take(kBlock * g.ld / 2);
    qt = take(hd * g.qld);
    dot = take(hd * g.qld);
    tmp = take(g.sp / 2 * hd);
    ppair = take(kBlock / 2 * g.ld);
    dspair = take(kBlock / 2 * g.ld);
    dkt = take(hd * g.ld);
    dvt = take(hd * g.ld);
  }
};

std::uint32_t* words(float* p) { return reinterpret_cast<std::uint32_t*>(p); }
std::uint16_t* halves(float* p) { return reinterpret_cast<std::uint16_t*>(p); }

int team(std::size_t items) {
  if (omp_in_parallel()) return 1;
  const auto t = static_cast<std::size_t>(omp_get_max_threads());
  return static_cast<int>(items < t ? items : t);
}

float* thread_scratch(float* scratch, const Plan& pl) {
  return scratch + pl.per_thread * static_cast<std::size_t>(omp_get_thread_num());
}

// x^T into th + at: [hd][ld] (fp32), zero for keys seq .. sp.
void transposed_f32(float* th, std::size_t at, const float* x, const Geometry& g,
                    const AttentionShape& s) {
  transpose_f32(th + at, g.ld, x, g.width, s.seq, s.hd);
  zero_columns(words(th + at), g.ld, s.hd, s.seq, g.sp);
}

// x^T as bf16 pairs of depths into th + at: [hd / 2][ld] words, zero for keys seq .. sp
// (through th + pl.kb).
void transposed_pairs(float* th, std::size_t at, const float* x, const Geometry& g,
                      const AttentionShape& s, const Plan& pl) {
  to_bf16_rows(halves(th + pl.kb), s.hd, x, g.width, s.seq, s.hd);
  transpose32(words(th + at), g.ld, words(th + pl.kb), s.hd / 2, s.seq, s.hd / 2);
  zero_columns(words(th + at), g.ld, s.hd / 2, s.seq, g.sp);
}

}  // namespace

std::size_t avx512_scratch_floats(const AttentionShape& s, std::size_t threads) {
  std::size_t most = 0;
  for (bool backward : {false, true})
    for (bool bf16 : {false, true}) {
      const std::size_t n = Plan(s, backward, bf16).per_thread;
      most = n > most ? n : most;
    }
  return most * threads;
}

void forward_avx512(float* out, float* lse, const float* qkv, const AttentionShape& s,
                    float* scratch, Operands operands) {
  const Geometry g(s);
  const bool bf16 = operands == Operands::bf16;
  const Plan pl(s, false, bf16);
  const float scale = 1.0f / __builtin_sqrtf(static_cast<float>(s.hd));
  const std::size_t hd = s.hd, items = s.batch * s.n_head;
  // One work item per (sequence, query head): its kv head's K laid out once, in cache
  // for all its query blocks.
#pragma omp parallel num_threads(team(items))
  {
    float* th = thread_scratch(scratch, pl);
    float* sc = th + pl.scores;
    float* inv = th + pl.d;
#pragma omp for schedule(dynamic, 1)
    for (std::size_t item = 0; item < items; ++item) {
      const std::size_t b = item / s.n_head, h = item % s.n_head, kv = h / g.group;
      const float* base = qkv + b * s.seq * g.width;
      const float* k = base + g.k_off + kv * hd;
      const float* v = base + g.v_off + kv * hd;
      transposed_f32(th, pl.kt, k, g, s);
      if (bf16) pair_rows(words(th + pl.vp), hd, v, g.width, s.seq, g.sp / 2, hd);
      for (std::size_t blk = 0; blk < g.blocks; ++blk) {
        const std::size_t i0 = blk * kBlock, nq = at_most(kBlock, s.seq - i0);
        const std::size_t nk = round16(i0 + nq);
        const float* q = base + i0 * g.width + h * hd;
        float* o = out + (b * s.seq + i0) * g.out_width + h * hd;
        float* l = lse + item * s.seq + i0;
        std::uint16_t* pb = bf16 ? halves(th + pl.pb) : nullptr;
        // S = Q K^T / sqrt(hd); E = exp(S - max) and its row sums; O = (E V) / sum.
        product_f32({q, g.width, 1, th + pl.kt, g.ld, sc, g.ld, scale, false}, nq, nk, hd,
                    Causal::columns, i0);
        for (std::size_t r = 0; r < nq; ++r)
          inv[r] = 1.0f / exp_sum_row(sc + r * g.ld, i0 + r + 1, nk, l + r,
                                      bf16 ? pb + r * g.ld : nullptr);
        if (bf16)
          product_bf16(
              {words(th + pl.pb), g.ld / 2, words(th + pl.vp), hd, o, g.out_width, 1.0f, false}, nq,
              hd, nk / 2, Causal::depth, i0);
        else
          product_f32({sc, g.ld, 1, v, g.width, o, g.out_width, 1.0f, false}, nq, hd, nk,
                      Causal::depth, i0);
        for (std::size_t r = 0; r < nq; ++r) {
          const __m512 f = _mm512_set1_ps(inv[r]);
          for (std::size_t c = 0; c < hd; c += 16)
            _mm512_storeu_ps(o + r * g.out_width + c,
                             _mm512_mul_ps(_mm512_loadu_ps(o + r * g.out_width + c), f));
        }
      }
    }
  }
}

void backward_avx512(float* dqkv, const float* dout, const float* qkv, const float* /*out*/,
                     const float* lse, const AttentionShape& s, float* scratch, Operands operands) {
  const Geometry g(s);
  const bool bf16 = operands == Operands::bf16;
  const Plan pl(s, true, bf16);
  const float scale = 1.0f / __builtin_sqrtf(static_cast<float>(s.hd));
  const std::size_t hd = s.hd;
  // dK and dV of one kv head collect from all its query heads and blocks: one work item
  // per (sequence, kv head) keeps that sum on one thread, in a fixed order.
  const std::size_t items = s.batch * s.n_kv;
#pragma omp parallel num_threads(team(items))
  {
    float* th = thread_scratch(scratch, pl);
    float* p = th + pl.scores;
    float* dp = th + pl.dp;
#pragma omp for schedule(static)
    for (std::size_t item = 0; item < items; ++item) {
      const std::size_t b = item / s.n_kv, kv = item % s.n_kv;
      const float* base = qkv + b * s.seq * g.width;
      float* dbase = dqkv + b * s.seq * g.width;
      const float* k = base + g.k_off + kv * hd;
      const float* v = base + g.v_off + kv * hd;
      float* dk = dbase + g.k_off + kv * hd;
      float* dv = dbase + g.v_off + kv * hd;
      float* dkt = th + pl.dkt;
      float* dvt = th + pl.dvt;
      transposed_f32(th, pl.kt, k, g, s);
      if (bf16) {
        transposed_pairs(th, pl.vtp, v, g, s, pl);
        pair_rows(words(th + pl.kp), hd, k, g.width, s.seq, g.sp / 2, hd);
        std::memset(dkt, 0, hd * g.ld * sizeof(float));
        std::memset(dvt, 0, hd * g.ld * sizeof(float));
      } else {
        transposed_f32(th, pl.vt, v, g, s);
        for (std::size_t t = 0; t < s.seq; ++t) {
          std::memset(dk + t * g.width, 0, hd * sizeof(float));
          std::memset(dv + t * g.width, 0, hd * sizeof(float));
        }
      }
      for (std::size_t h = kv * g.group; h < (kv + 1) * g.group; ++h) {
        const std::size_t bh = b * s.n_head + h;
        const float* dout_h = dout + b * s.seq * g.out_width + h * hd;
        if (bf16) {
          // Q^T and dO^T of this head, pairs of queries: [hd][qld] words.
          std::uint32_t* tmp = words(th + pl.tmp);
          pair_rows(tmp, hd, base + h * hd, g.width, s.seq, g.sp / 2, hd);
          transpose32(words(th + pl.qt), g.qld, tmp, hd, g.sp / 2, hd);
          pair_rows(tmp, hd, dout_h, g.out_width, s.seq, g.sp / 2, hd);
          transpose32(words(th + pl.dot), g.qld, tmp, hd, g.sp / 2, hd);
        }
        for (std::size_t blk = 0; blk < g.blocks; ++blk) {
          const std::size_t i0 = blk * kBlock, nq = at_most(kBlock, s.seq - i0);
          const std::size_t nk = round16(i0 + nq);
          const float* q = base + i0 * g.width + h * hd;
          const float* dob = dout_h + i0 * g.out_width;
          const float* l = lse + bh * s.seq + i0;
          float* dq = dbase + i0 * g.width + h * hd;
          // S (for P, recomputed from lse: fp32 products, as the forward's) and dP = dO V^T.
          product_f32({q, g.width, 1, th + pl.kt, g.ld, p, g.ld, scale, false}, nq, nk, hd,
                      Causal::columns, i0);
          if (bf16) {
            to_bf16_rows(halves(th + pl.dob), hd, dob, g.out_width, nq, hd);
            product_bf16(
                {words(th + pl.dob), hd / 2, words(th + pl.vtp), g.ld, dp, g.ld, 1.0f, false}, nq,
                nk, hd / 2, Causal::columns, i0);
          } else {
            product_f32({dob, g.out_width, 1, th + pl.vt, g.ld, dp, g.ld, 1.0f, false}, nq, nk, hd,
                        Causal::columns, i0);
          }
          // P = exp(S - lse); dS = P (dP - D) / sqrt(hd) with D_i = dO_i . O_i = P_i . dP_i.
          std::uint16_t* dsb = bf16 ? halves(th + pl.dsb) : nullptr;
          for (std::size_t r = 0; r < nq; ++r) {
            const std::size_t keep = i0 + r + 1;
            probabilities_row(p + r * g.ld, keep, nk, l[r]);
            score_gradient_row(dp + r * g.ld, p + r * g.ld, keep, nk,
                               dot_row(p + r * g.ld, dp + r * g.ld, keep), scale,
                               bf16 ? dsb + r * g.ld : nullptr);
          }
          if (!bf16) {
            // dQ = dS K; dK += dS^T Q; dV += P^T dO (dS^T and P^T read in place).
            product_f32({dp, g.ld, 1, k, g.width, dq, g.width, 1.0f, false}, nq, hd, nk,
                        Causal::depth, i0);
            product_f32({dp, 1, g.ld, q, g.width, dk, g.width, 1.0f, true}, i0 + nq, hd, nq);
            product_f32({p, 1, g.ld, dob, g.out_width, dv, g.width, 1.0f, true}, i0 + nq, hd, nq);
            continue;
          }
          // dQ = dS K (pairs of keys); dK^T += Q^T dS and dV^T += dO^T P (pairs of queries).
          product_bf16(
              {words(th + pl.dsb), g.ld / 2, words(th + pl.kp), hd, dq, g.width, 1.0f, false}, nq,
              hd, nk / 2, Causal::depth, i0);
          const std::size_t qpairs = (nq + 1) / 2;
          pair_rows(words(th + pl.dspair), g.ld, dp, g.ld, nq, qpairs, nk);
          pair_rows(words(th + pl.ppair), g.ld, p, g.ld, nq, qpairs, nk);
          product_bf16({words(th + pl.qt) + i0 / 2, g.qld, words(th + pl.dspair), g.ld, dkt, g.ld,
                        1.0f, true},
                       hd, nk, qpairs);
          product_bf16({words(th + pl.dot) + i0 / 2, g.qld, words(th + pl.ppair), g.ld, dvt, g.ld,
                        1.0f, true},
                       hd, nk, qpairs);
        }
      }
      if (bf16) {
        transpose_f32(dk, g.width, dkt, g.ld, hd, s.seq);
        transpose_f32(dv, g.width, dvt, g.ld, hd, s.seq);
      }
    }
  }
}

}  // namespace whtlm::backend::attention_detail
