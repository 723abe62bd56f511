// Causal multi-head attention with grouped-query heads on the GPU, fused in the
// flash-attention style: the same functions as src/backend/cpu/attention.cpp and
// attention_cached.cpp, in fp32 throughout, with nothing of size seq x seq stored and
// nothing but the outputs written to global memory.
//
// Forward (forward_tile): one block of 256 threads per (sequence, query head, block
// of kTile = 64 query rows). The Q tile [64][hd] stays in shared memory; the block
// walks the key blocks up to the diagonal, loads each K and V tile [64][hd] into
// shared memory and keeps an online softmax, per row a running max m and sum l:
//   S = Q K^T * scale * log2(e)      (each thread owns 4 rows x 4 keys of S)
//   m' = max(m, rowmax S),  P = 2^(S - m'),  l = l 2^(m - m') + rowsum P,
//   O = O 2^(m - m') + P V           (each thread owns 4 rows x hd/16 columns of O)
// and writes O / l and lse = (m + log2 l) ln 2 once at the end. Scores are kept in
// base 2 so that every exponential is one exp2.
//
// Backward. backward_delta stores D_i = dO_i . O_i; P = exp(S - lse) is recomputed
// from the saved lse, dP = dO V^T, dS = P * (dP - D) * scale, and
//   backward_dkdv_tile: one block per (sequence, kv head, block of 64 keys) keeps
//     its K and V tiles and accumulates dK = sum dS^T Q and dV = sum P^T dO in
//     registers over every query head of its group and every query block on or
//     below the diagonal, then writes them once (so GQA needs no second pass);
//   backward_dq_tile: one block per (sequence, query head, block of 64 rows) walks
//     the key blocks like the forward and accumulates dQ = sum dS K.
// dQ is a pass of its own rather than atomics, so the result is deterministic. D has
// no buffer: backward_delta stores D_i in the first element of row i's dq slot in
// dqkv, both passes read it there, and backward_dq_tile overwrites it last (each of
// its blocks reads the D of its rows before a barrier and writes their dq after).
//
// Cached attention (inference): segments of more than kShortSegment rows (prefill)
// run forward_tile, positions offset by the segment's pos0; the rows of short
// segments (decoding) run forward_rows, one block per (row, query head) with one
// thread per key of a 128-key tile and the values read straight from global memory.
// The segments travel by value in the kernel parameters, kMaxSegments per launch, so
// the host array needs no copy and no lifetime beyond the call.
//
// Head dimensions: the tiled kernels are compiled for hd up to 32, 64 and 128 (tiles
// padded with zeros); a larger hd, or a device without the shared memory a tile
// needs, runs the generic kernels instead: one warp per row, any hd, slower.
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "backend/cuda/common.cuh"

namespace whtlm::backend::cuda {
namespace {

constexpr int kTile = 64;              // query rows per block and keys per step
constexpr int kThreads = 256;          // 16 x 16 threads, each 4 x 4 scores of a tile
constexpr int kPad = 4;                // floats after each row of a [64][D] tile
constexpr int kScoreLd = kTile + 16;   // row stride of a score tile (conflict-free stores)
constexpr int kRowThreads = 128;       // forward_rows: one thread per key of a tile
constexpr int kRowKeys = kRowThreads;  // keys per forward_rows tile
constexpr int kWarpThreads = 256;      // generic kernels: 8 warps, one row each
constexpr int kShortSegment = 8;       // cached segments up to this many rows go row by row
constexpr int kMaxSegments = 128;      // segments per cached launch (4 KiB of parameters)
constexpr int kMaxTileDim = 128;
constexpr float kLog2e = 1.44269504088896340736f;
constexpr float kLn2 = 0.693147180559945309417f;

static_assert(kThreads == 16 * 16 && kTile == 4 * 16, "each thread owns 4 x 4 of a tile");
static_assert(kRowThreads == 4 * 32, "forward_rows reduces over 4 warps");

// --- device helpers -------------------------------------------------------------------

__device__ __forceinline__ float* dynamic_smem() {
  extern __shared__ float4 attention_smem[];
  return reinterpret_cast<float*>(attention_smem);
}

__device__ __forceinline__ float4 ld4(const float* p) {
  return *reinterpret_cast<const float4*>(p);
}

// W consecutive floats of shared memory (aligned to W floats).
template <int W>
__device__ __forceinline__ void ld_vec(const float* p, float (&v)[W]) {
  if constexpr (W == 4) {
    const float4 t = ld4(p);
    v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
  } else if constexpr (W == 2) {
    const float2 t = *reinterpret_cast<const float2*>(p);
    v[0] = t.x, v[1] = t.y;
  } else {
#pragma unroll
    for (int e = 0; e < W; ++e) v[e] = p[e];
  }
}

__device__ __forceinline__ void unpack(const float4 t, float (&v)[4]) {
  v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
}

__device__ __forceinline__ float dot4(const float4 a, const float4 b, float acc) {
  acc = fmaf(a.x, b.x, acc);
  acc = fmaf(a.y, b.y, acc);
  acc = fmaf(a.z, b.z, acc);
  return fmaf(a.w, b.w, acc);
}

// Reductions over the 16 lanes of a half warp (the threads sharing a tile row) and
// over a whole warp. Every lane of the warp must call them.
__device__ __forceinline__ float max16(float x) {
#pragma unroll
  for (int o = 8; o > 0; o /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float sum16(float x) {
#pragma unroll
  for (int o = 8; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
__device__ __forceinline__ float max32(float x) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float sum32(float x) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// Copies rows [0, n) of a [rows][hd] slice with row stride `stride` into a
// [kTile][D + kPad] shared tile, zero-filling rows >= n and columns >= hd (the pad
// columns are never read). Consecutive threads take consecutive columns.
template <int D>
__device__ __forceinline__ void load_tile(float* tile, const float* src, std::size_t stride, int n,
                                          int hd) {
  constexpr int kLd = D + kPad;
#pragma unroll 4
  for (int it = 0; it < kTile * D / kThreads; ++it) {
    const int e = it * kThreads + static_cast<int>(threadIdx.x);
    const int r = e / D, c = e % D;
    float x = 0.0f;
    if (r < n && c < hd) x = src[static_cast<std::size_t>(r) * stride + c];
    tile[r * kLd + c] = x;
  }
}

// --- work items -----------------------------------------------------------------------

// One unit of forward work: nq consecutive query rows of one head. Row r sits at
// position pos0 + r and attends keys 0 .. pos0 + r of its kv head.
struct Job {
  const float* q;  // row 0, this head's hd values
  const float* k;  // key 0 of the kv head
  const float* v;
  float* o;    // row 0 of the output
  float* lse;  // row 0's log-sum-exp (rows contiguous), or nullptr
  std::size_t q_stride, kv_stride, o_stride;
  int nq, pos0;
};

// Training: item -> (block of kRows query rows, sequence, head); the latest blocks,
// which have the most keys, come first.
struct TrainProblem {
  const float* qkv;
  float* out;
  float* lse;
  std::size_t seq, n_head, group, hd, width, out_width, k_off, v_off, batch_heads;

  template <int kRows>
  __device__ Job job(std::size_t item) const {
    const std::size_t blocks = (seq + kRows - 1) / kRows;
    const std::size_t blk = blocks - 1 - item / batch_heads;
    const std::size_t bh = item % batch_heads, b = bh / n_head, h = bh % n_head;
    const std::size_t i0 = blk * kRows, kv = h / group;
    const float* base = qkv + b * seq * width;
    Job j;
    j.q = base + i0 * width + h * hd;
    j.k = base + k_off + kv * hd;
    j.v = base + v_off + kv * hd;
    j.o = out + (b * seq + i0) * out_width + h * hd;
    j.lse = lse != nullptr ? lse + bh * seq + i0 : nullptr;
    j.q_stride = width;
    j.kv_stride = width;
    j.o_stride = out_width;
    j.nq = static_cast<int>(seq - i0 < kRows ? seq - i0 : kRows);
    j.pos0 = static_cast<int>(i0);
    return j;
  }
};

// Inference: up to kMaxSegments segments, passed by value. Segment i owns items
// [first[i], first[i + 1]) * n_head: its blocks of kRows rows, times the heads.
struct CachedProblem {
  const float* q;
  const float* k_cache;
  const float* v_cache;
  float* out;
  std::size_t q_stride, out_width, n_head, n_kv, group, hd, max_len;
  int n;
  unsigned first[kMaxSegments + 1];
  unsigned slot[kMaxSegments], row0[kMaxSegments], count[kMaxSegments], pos0[kMaxSegments];

  template <int kRows>
  __device__ Job job(std::size_t item) const {
    const std::size_t h = item % n_head;
    const unsigned t = static_cast<unsigned>(item / n_head);
    int lo = 0, hi = n - 1;  // the last segment with first <= t
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (first[mid] <= t)
        lo = mid;
      else
        hi = mid - 1;
    }
    const unsigned r0 = (t - first[lo]) * kRows;
    const std::size_t row = static_cast<std::size_t>(row0[lo]) + r0;
    const std::size_t cache =
        (static_cast<std::size_t>(slot[lo]) * n_kv + h / group) * max_len * hd;
    Job j;
    j.q = q + row * q_stride + h * hd;
    j.k = k_cache + cache;
    j.v = v_cache + cache;
    j.o = out + row * out_width + h * hd;
    j.lse = nullptr;
    j.q_stride = q_stride;
    j.kv_stride = hd;
    j.o_stride = out_width;
    const unsigned left = count[lo] - r0;
    j.nq = static_cast<int>(left < static_cast<unsigned>(kRows) ? left : kRows);
    j.pos0 = static_cast<int>(pos0[lo] + r0);
    return j;
  }
};

// Kernel parameters stay within the 4 KiB every architecture accepts.
static_assert(sizeof(CachedProblem) + 64 <= 4096, "kMaxSegments too large");

// acc[i][j] += sum_d a[ra + 16 i][d] b[rb + 16 j][d] over d < hd4 (a multiple of 4),
// rows of both with stride D + kPad: the Q K^T shaped product of the tile kernels.
template <int D, int kUnroll>
__device__ __forceinline__ void accumulate_scores(float (&acc)[4][4], const float* a, int ra,
                                                  const float* b, int rb, int hd4) {
  constexpr int kLd = D + kPad;
#pragma unroll kUnroll
  for (int d = 0; d < hd4; d += 4) {
    float4 x[4], y[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) x[i] = ld4(a + (ra + 16 * i) * kLd + d);
#pragma unroll
    for (int j = 0; j < 4; ++j) y[j] = ld4(b + (rb + 16 * j) * kLd + d);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] = dot4(x[i], y[j], acc[i][j]);
  }
}

// acc[i][ch * kW + e] += sum_r a[ty + 16 i][r] b[r][ch * 16 kW + tx * kW + e] over the
// kTile columns r of a (row stride kScoreLd) and rows of b (row stride D + kPad): the
// P V shaped product every tile kernel ends its step with.
template <int D>
__device__ __forceinline__ void accumulate_product(float (&acc)[4][D / 16], const float* a,
                                                   const float* b, int tx, int ty) {
  constexpr int kLd = D + kPad, kCols = D / 16, kW = kCols < 4 ? kCols : 4, kChunks = kCols / kW;
#pragma unroll 2
  for (int r = 0; r < kTile; r += 4) {
    float x[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i) unpack(ld4(a + (ty + 16 * i) * kScoreLd + r), x[i]);
#pragma unroll
    for (int rr = 0; rr < 4; ++rr) {
      const float* brow = b + (r + rr) * kLd + tx * kW;
#pragma unroll
      for (int ch = 0; ch < kChunks; ++ch) {
        float y[kW];
        ld_vec<kW>(brow + ch * 16 * kW, y);
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int e = 0; e < kW; ++e)
            acc[i][ch * kW + e] = fmaf(x[i][rr], y[e], acc[i][ch * kW + e]);
      }
    }
  }
}

// --- forward ------------------------------------------------------------------------

constexpr std::size_t forward_tile_smem(int d) {
  return sizeof(float) * (3 * kTile * (d + kPad) + kTile * kScoreLd);
}

// One block per job of up to kTile rows; grid = jobs. D >= hd, a multiple of 32.
// Shared: Q, K, V [kTile][D + kPad], P [kTile][kScoreLd].
// Thread (ty, tx) owns rows ty + 16 i, keys tx + 16 j and output columns
// ch * 16 kW + tx * kW + e, so the 16 threads of a row are one half warp.
template <int D, class Problem>
__global__ void __launch_bounds__(kThreads, D <= 64 ? 2 : 1)
    forward_tile(const __grid_constant__ Problem prob, int hd, float scale_log2) {
  constexpr int kLd = D + kPad, kCols = D / 16, kW = kCols < 4 ? kCols : 4, kChunks = kCols / kW;
  float* const qs = dynamic_smem();
  float* const ks = qs + kTile * kLd;
  float* const vs = ks + kTile * kLd;
  float* const ps = vs + kTile * kLd;
  const Job job = prob.template job<kTile>(blockIdx.x);
  const int tx = static_cast<int>(threadIdx.x) % 16, ty = static_cast<int>(threadIdx.x) / 16;
  const int hd4 = (hd + 3) & ~3;
  const int n_keys = job.pos0 + job.nq;  // keys 0 .. n_keys - 1 are seen by some row

  load_tile<D>(qs, job.q, job.q_stride, job.nq, hd);
  float m[4], l[4], acc[4][kCols];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int c = 0; c < kCols; ++c) acc[i][c] = 0.0f;
  }

  for (int k0 = 0; k0 < n_keys; k0 += kTile) {
    __syncthreads();  // the previous step is done with ks, vs and ps
    load_tile<D>(ks, job.k + static_cast<std::size_t>(k0) * job.kv_stride, job.kv_stride,
                 n_keys - k0, hd);
    load_tile<D>(vs, job.v + static_cast<std::size_t>(k0) * job.kv_stride, job.kv_stride,
                 n_keys - k0, hd);
    __syncthreads();

    // S = Q K^T for this thread's 4 x 4.
    float s[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) s[i][j] = 0.0f;
    accumulate_scores<D, 2>(s, qs, ty, ks, tx, hd4);

    // Online softmax: mask above the diagonal, rescale the running state, P to ps.
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int qpos = job.pos0 + ty + 16 * i;
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int kpos = k0 + tx + 16 * j;
        s[i][j] = kpos <= qpos ? s[i][j] * scale_log2 : -INFINITY;
        mx = fmaxf(mx, s[i][j]);
      }
      mx = max16(mx);
      const float m_new = fmaxf(m[i], mx);
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // a row with no key yet
      const float alpha = exp2f(m[i] - m_use);
      m[i] = m_new;
      l[i] *= alpha;  // this thread's share of the row sum, reduced at the end
#pragma unroll
      for (int c = 0; c < kCols; ++c) acc[i][c] *= alpha;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float p = exp2f(s[i][j] - m_use);
        l[i] += p;
        ps[(ty + 16 * i) * kScoreLd + tx + 16 * j] = p;
      }
    }
    __syncthreads();

    accumulate_product<D>(acc, ps, vs, tx, ty);  // O += P V
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float sum = sum16(l[i]);
    const int r = ty + 16 * i;
    if (r >= job.nq) continue;
    const float inv = 1.0f / sum;
    float* orow = job.o + static_cast<std::size_t>(r) * job.o_stride;
#pragma unroll
    for (int ch = 0; ch < kChunks; ++ch)
#pragma unroll
      for (int e = 0; e < kW; ++e) {
        const int col = ch * 16 * kW + tx * kW + e;
        if (col < hd) orow[col] = acc[i][ch * kW + e] * inv;
      }
    if (tx == 0 && job.lse != nullptr) job.lse[r] = m[i] * kLn2 + logf(sum);
  }
}

constexpr std::size_t forward_rows_smem(int d) {
  return sizeof(float) * (d + kRowKeys * (d + kPad) + kRowKeys + 8);
}

// One block per job of one row; grid = jobs. Each 128-key tile: K to shared memory,
// thread t scores key t, block-wide max and sum, then each thread accumulates kV
// output columns (kV = 4 with kVec: float4 loads, hd % 4 == 0 and 16-byte aligned
// caches; otherwise 1) over every kGroups-th key of the tile, reading V straight
// from global memory (consecutive threads, consecutive columns). The kGroups partial
// sums of each column are added at the end. Shared: q [D], K [kRowKeys][D + kPad],
// P [kRowKeys], 8 floats of warp partials.
template <int D, bool kVec, class Problem>
__global__ void __launch_bounds__(kRowThreads)
    forward_rows(const __grid_constant__ Problem prob, int hd, float scale_log2) {
  constexpr int kLd = D + kPad, kV = kVec ? 4 : 1, kColThreads = D / kV,
                kGroups = kRowThreads / kColThreads;
  static_assert(kRowThreads % kColThreads == 0, "whole column groups");
  float* const qs = dynamic_smem();
  float* const ks = qs + D;
  float* const ps = ks + kRowKeys * kLd;
  float* const red = ps + kRowKeys;  // [0, 4): warp maxima, [4, 8): warp sums
  const Job job = prob.template job<1>(blockIdx.x);
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int col = tid % kColThreads * kV, grp = tid / kColThreads;  // first column, key group
  const int hd4 = (hd + 3) & ~3;
  const int n_keys = job.pos0 + 1;

  for (int d = tid; d < D; d += kRowThreads) qs[d] = d < hd ? job.q[d] : 0.0f;
  float m = -INFINITY, l = 0.0f, acc[kV];
#pragma unroll
  for (int e = 0; e < kV; ++e) acc[e] = 0.0f;
  for (int k0 = 0; k0 < n_keys; k0 += kRowKeys) {
    const int nk = n_keys - k0 < kRowKeys ? n_keys - k0 : kRowKeys;
    const float* kt = job.k + static_cast<std::size_t>(k0) * job.kv_stride;
    const float* vt = job.v + static_cast<std::size_t>(k0) * job.kv_stride + col;
    __syncthreads();  // the previous tile is done with ks and ps; qs is written
#pragma unroll 8
    for (int it = 0; it < kRowKeys * D / (kRowThreads * kV); ++it) {
      const int e = (it * kRowThreads + tid) * kV;
      const int r = e / D, c = e % D;
      const float* src = kt + static_cast<std::size_t>(r) * job.kv_stride + c;
      if constexpr (kVec) {
        float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (r < nk && c < hd) x = __ldg(reinterpret_cast<const float4*>(src));
        *reinterpret_cast<float4*>(ks + r * kLd + c) = x;
      } else {
        ks[r * kLd + c] = r < nk && c < hd ? *src : 0.0f;
      }
    }
    __syncthreads();

    float s = -INFINITY;
    if (tid < nk) {
      float dot = 0.0f;
      const float* krow = ks + tid * kLd;
#pragma unroll 4
      for (int d = 0; d < hd4; d += 4) dot = dot4(ld4(qs + d), ld4(krow + d), dot);
      s = dot * scale_log2;
    }
    const float wmax = max32(s);
    if (lane == 0) red[warp] = wmax;
    __syncthreads();
    // Key k0 is always present, so m_new is finite.
    const float m_new = fmaxf(m, fmaxf(fmaxf(red[0], red[1]), fmaxf(red[2], red[3])));
    const float alpha = exp2f(m - m_new);
    const float p = exp2f(s - m_new);
    ps[tid] = p;
    const float wsum = sum32(p);
    if (lane == 0) red[4 + warp] = wsum;
    __syncthreads();
    l = l * alpha + ((red[4] + red[5]) + (red[6] + red[7]));
    m = m_new;
#pragma unroll
    for (int e = 0; e < kV; ++e) acc[e] *= alpha;
    if (col < hd) {
#pragma unroll 8
      for (int j = grp; j < nk; j += kGroups) {
        const float pj = ps[j];
        const float* src = vt + static_cast<std::size_t>(j) * job.kv_stride;
        if constexpr (kVec) {
          const float4 v = __ldg(reinterpret_cast<const float4*>(src));
          acc[0] = fmaf(pj, v.x, acc[0]);
          acc[1] = fmaf(pj, v.y, acc[1]);
          acc[2] = fmaf(pj, v.z, acc[2]);
          acc[3] = fmaf(pj, v.w, acc[3]);
        } else {
          acc[0] = fmaf(pj, *src, acc[0]);
        }
      }
    }
  }
  __syncthreads();  // everyone is done with ks
#pragma unroll
  for (int e = 0; e < kV; ++e) ks[tid * kV + e] = acc[e];  // == ks[grp * D + col + e]
  __syncthreads();
  if (grp == 0) {
#pragma unroll
    for (int e = 0; e < kV; ++e) {
      if (col + e >= hd) break;
      float o = 0.0f;
#pragma unroll
      for (int g = 0; g < kGroups; ++g) o += ks[g * D + col + e];
      job.o[col + e] = o / l;
    }
  }
}

// Any hd: one warp per job of one row, lane-strided over the head dimension, one key
// at a time; the output row itself holds the running sum.
template <class Problem>
__global__ void __launch_bounds__(kWarpThreads)
    forward_generic(const __grid_constant__ Problem prob, std::size_t jobs, int hd,
                    float scale_log2) {
  const std::size_t item = (static_cast<std::size_t>(blockIdx.x) * kWarpThreads + threadIdx.x) / 32;
  if (item >= jobs) return;  // whole warps
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const Job job = prob.template job<1>(item);
  for (int d = lane; d < hd; d += 32) job.o[d] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (int key = 0; key <= job.pos0; ++key) {
    const float* k = job.k + static_cast<std::size_t>(key) * job.kv_stride;
    const float* v = job.v + static_cast<std::size_t>(key) * job.kv_stride;
    float part = 0.0f;
    for (int d = lane; d < hd; d += 32) part = fmaf(job.q[d], k[d], part);
    const float s = sum32(part) * scale_log2;
    const float m_new = fmaxf(m, s);
    const float alpha = exp2f(m - m_new), p = exp2f(s - m_new);
    l = l * alpha + p;
    for (int d = lane; d < hd; d += 32) job.o[d] = fmaf(p, v[d], job.o[d] * alpha);
    m = m_new;
  }
  const float inv = 1.0f / l;
  for (int d = lane; d < hd; d += 32) job.o[d] *= inv;
  if (lane == 0 && job.lse != nullptr) *job.lse = m * kLn2 + logf(l);
}

// --- backward -----------------------------------------------------------------------

struct BackwardShape {
  std::size_t batch, seq, n_head, n_kv, group, hd, width, out_width, k_off, v_off;
  float scale, scale_log2;
};

// D_i = dO_i . O_i per (row, head), stored at the start of that row's dq slot.
// One warp per (row, head).
__global__ void __launch_bounds__(kWarpThreads)
    backward_delta(float* dqkv, const float* dout, const float* out, BackwardShape sh) {
  const std::size_t item = (static_cast<std::size_t>(blockIdx.x) * kWarpThreads + threadIdx.x) / 32;
  if (item >= sh.batch * sh.seq * sh.n_head) return;  // whole warps
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const std::size_t row = item / sh.n_head, h = item % sh.n_head;
  const float* o = out + row * sh.out_width + h * sh.hd;
  const float* g = dout + row * sh.out_width + h * sh.hd;
  float part = 0.0f;
  for (std::size_t d = static_cast<std::size_t>(lane); d < sh.hd; d += 32)
    part = fmaf(g[d], o[d], part);
  const float sum = sum32(part);
  if (lane == 0) dqkv[row * sh.width + h * sh.hd] = sum;
}

constexpr std::size_t dkdv_tile_smem(int d) {
  return sizeof(float) * (4 * kTile * (d + kPad) + 2 * kTile * kScoreLd + 2 * kTile);
}

// One block per (block of kTile keys, sequence, kv head); the first key blocks, which
// see the most queries, come first. Shared: K, V, Q, dO [kTile][D + kPad];
// P^T, dS^T [kTile keys][kScoreLd]; lse * log2(e) and D of the query rows.
// Thread (ty, tx) owns keys ty + 16 i, query rows tx + 16 j and the dK, dV columns
// ch * 16 kW + tx * kW + e.
template <int D>
__global__ void __launch_bounds__(kThreads, D <= 64 ? 2 : 1)
    backward_dkdv_tile(float* dqkv, const float* dout, const float* qkv, const float* lse,
                       BackwardShape sh) {
  constexpr int kLd = D + kPad, kCols = D / 16, kW = kCols < 4 ? kCols : 4, kChunks = kCols / kW;
  float* const ks = dynamic_smem();
  float* const vs = ks + kTile * kLd;
  float* const qs = vs + kTile * kLd;
  float* const gs = qs + kTile * kLd;  // dO
  float* const pt = gs + kTile * kLd;
  float* const dst = pt + kTile * kScoreLd;
  float* const lse2 = dst + kTile * kScoreLd;
  float* const delta = lse2 + kTile;
  const std::size_t bkv_count = sh.batch * sh.n_kv;
  const std::size_t bkv = blockIdx.x % bkv_count, b = bkv / sh.n_kv, kv = bkv % sh.n_kv;
  const int k0 = static_cast<int>(blockIdx.x / bkv_count) * kTile;
  const int seq = static_cast<int>(sh.seq), hd = static_cast<int>(sh.hd);
  const int nk = seq - k0 < kTile ? seq - k0 : kTile;
  const int tid = static_cast<int>(threadIdx.x), tx = tid % 16, ty = tid / 16;
  const int hd4 = (hd + 3) & ~3;
  const float* base = qkv + b * sh.seq * sh.width;
  float* const dbase = dqkv + b * sh.seq * sh.width;

  load_tile<D>(ks, base + static_cast<std::size_t>(k0) * sh.width + sh.k_off + kv * sh.hd, sh.width,
               nk, hd);
  load_tile<D>(vs, base + static_cast<std::size_t>(k0) * sh.width + sh.v_off + kv * sh.hd, sh.width,
               nk, hd);
  float dk[4][kCols], dv[4][kCols];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int c = 0; c < kCols; ++c) dk[i][c] = dv[i][c] = 0.0f;

  for (std::size_t h = kv * sh.group; h < (kv + 1) * sh.group; ++h) {
    const float* lse_h = lse + (b * sh.n_head + h) * sh.seq;
    // Query blocks on or below the diagonal (query and key blocks share boundaries).
    for (int i0 = k0; i0 < seq; i0 += kTile) {
      const int nq = seq - i0 < kTile ? seq - i0 : kTile;
      __syncthreads();  // the previous step is done with qs, gs, pt, dst, lse2, delta
      load_tile<D>(qs, base + static_cast<std::size_t>(i0) * sh.width + h * sh.hd, sh.width, nq,
                   hd);
      load_tile<D>(gs, dout + (b * sh.seq + i0) * sh.out_width + h * sh.hd, sh.out_width, nq, hd);
      if (tid < kTile) {
        // Rows past the end get lse = +inf: P = 0 there.
        lse2[tid] = tid < nq ? lse_h[i0 + tid] * kLog2e : INFINITY;
        delta[tid] =
            tid < nq ? dbase[static_cast<std::size_t>(i0 + tid) * sh.width + h * sh.hd] : 0.0f;
      }
      __syncthreads();

      // S^T = K Q^T and dP^T = V dO^T for this thread's 4 keys x 4 rows.
      float s[4][4], dp[4][4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) s[i][j] = dp[i][j] = 0.0f;
      accumulate_scores<D, 1>(s, ks, ty, qs, tx, hd4);
      accumulate_scores<D, 1>(dp, vs, ty, gs, tx, hd4);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int c = ty + 16 * i, kpos = k0 + c;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int r = tx + 16 * j, qpos = i0 + r;
          const float p = kpos <= qpos ? exp2f(s[i][j] * sh.scale_log2 - lse2[r]) : 0.0f;
          pt[c * kScoreLd + r] = p;
          dst[c * kScoreLd + r] = p * (dp[i][j] - delta[r]) * sh.scale;
        }
      }
      __syncthreads();

      // dV += P^T dO, then dK += dS^T Q (two passes: fewer live registers).
      accumulate_product<D>(dv, pt, gs, tx, ty);
      accumulate_product<D>(dk, dst, qs, tx, ty);
    }
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int c = ty + 16 * i;
    if (c >= nk) continue;
    float* row = dbase + static_cast<std::size_t>(k0 + c) * sh.width + kv * sh.hd;
#pragma unroll
    for (int ch = 0; ch < kChunks; ++ch)
#pragma unroll
      for (int e = 0; e < kW; ++e) {
        const int col = ch * 16 * kW + tx * kW + e;
        if (col < hd) {
          row[sh.k_off + col] = dk[i][ch * kW + e];
          row[sh.v_off + col] = dv[i][ch * kW + e];
        }
      }
  }
}

constexpr std::size_t dq_tile_smem(int d) {
  return sizeof(float) * (4 * kTile * (d + kPad) + kTile * kScoreLd + 2 * kTile);
}

// One block per (block of kTile query rows, sequence, head); the latest blocks come
// first. Shared: Q, dO, K, V [kTile][D + kPad]; dS [kTile rows][kScoreLd]; lse * log2(e)
// and D of the rows. Thread (ty, tx) owns rows ty + 16 i, keys tx + 16 j and the dQ
// columns ch * 16 kW + tx * kW + e.
template <int D>
__global__ void __launch_bounds__(kThreads, D <= 64 ? 2 : 1)
    backward_dq_tile(float* dqkv, const float* dout, const float* qkv, const float* lse,
                     BackwardShape sh) {
  constexpr int kLd = D + kPad, kCols = D / 16, kW = kCols < 4 ? kCols : 4, kChunks = kCols / kW;
  float* const qs = dynamic_smem();
  float* const gs = qs + kTile * kLd;  // dO
  float* const ks = gs + kTile * kLd;
  float* const vs = ks + kTile * kLd;
  float* const dss = vs + kTile * kLd;
  float* const lse2 = dss + kTile * kScoreLd;
  float* const delta = lse2 + kTile;
  const std::size_t bh_count = sh.batch * sh.n_head;
  const std::size_t bh = blockIdx.x % bh_count, b = bh / sh.n_head, h = bh % sh.n_head;
  const std::size_t kv = h / sh.group;
  const int seq = static_cast<int>(sh.seq), hd = static_cast<int>(sh.hd);
  const int blocks = (seq + kTile - 1) / kTile;
  const int i0 = (blocks - 1 - static_cast<int>(blockIdx.x / bh_count)) * kTile;
  const int nq = seq - i0 < kTile ? seq - i0 : kTile;
  const int tid = static_cast<int>(threadIdx.x), tx = tid % 16, ty = tid / 16;
  const int hd4 = (hd + 3) & ~3;
  const float* base = qkv + b * sh.seq * sh.width;
  float* const dbase = dqkv + b * sh.seq * sh.width;

  load_tile<D>(qs, base + static_cast<std::size_t>(i0) * sh.width + h * sh.hd, sh.width, nq, hd);
  load_tile<D>(gs, dout + (b * sh.seq + i0) * sh.out_width + h * sh.hd, sh.out_width, nq, hd);
  if (tid < kTile) {
    lse2[tid] = tid < nq ? lse[bh * sh.seq + i0 + tid] * kLog2e : INFINITY;
    // Read here, before the loop's first barrier; this block overwrites it at the end.
    delta[tid] = tid < nq ? dbase[static_cast<std::size_t>(i0 + tid) * sh.width + h * sh.hd] : 0.0f;
  }
  float dq[4][kCols];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int c = 0; c < kCols; ++c) dq[i][c] = 0.0f;

  const int n_keys = i0 + nq;
  for (int k0 = 0; k0 < n_keys; k0 += kTile) {
    __syncthreads();  // the previous step is done with ks, vs and dss
    load_tile<D>(ks, base + static_cast<std::size_t>(k0) * sh.width + sh.k_off + kv * sh.hd,
                 sh.width, n_keys - k0, hd);
    load_tile<D>(vs, base + static_cast<std::size_t>(k0) * sh.width + sh.v_off + kv * sh.hd,
                 sh.width, n_keys - k0, hd);
    __syncthreads();

    // S = Q K^T and dP = dO V^T for this thread's 4 rows x 4 keys.
    float s[4][4], dp[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) s[i][j] = dp[i][j] = 0.0f;
    accumulate_scores<D, 1>(s, qs, ty, ks, tx, hd4);
    accumulate_scores<D, 1>(dp, gs, ty, vs, tx, hd4);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = ty + 16 * i, qpos = i0 + r;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int c = tx + 16 * j, kpos = k0 + c;
        const float p = kpos <= qpos ? exp2f(s[i][j] * sh.scale_log2 - lse2[r]) : 0.0f;
        dss[r * kScoreLd + c] = p * (dp[i][j] - delta[r]) * sh.scale;
      }
    }
    __syncthreads();

    accumulate_product<D>(dq, dss, ks, tx, ty);  // dQ += dS K
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = ty + 16 * i;
    if (r >= nq) continue;
    float* row = dbase + static_cast<std::size_t>(i0 + r) * sh.width + h * sh.hd;
#pragma unroll
    for (int ch = 0; ch < kChunks; ++ch)
#pragma unroll
      for (int e = 0; e < kW; ++e) {
        const int col = ch * 16 * kW + tx * kW + e;
        if (col < hd) row[col] = dq[i][ch * kW + e];
      }
  }
}

// Any hd: one warp per (key, sequence, kv head), keys in ascending order (most work
// first); dK and dV accumulate in place in dqkv, lane-strided over the head dimension.
__global__ void __launch_bounds__(kWarpThreads)
    backward_dkdv_generic(float* dqkv, const float* dout, const float* qkv, const float* lse,
                          BackwardShape sh) {
  const std::size_t item = (static_cast<std::size_t>(blockIdx.x) * kWarpThreads + threadIdx.x) / 32;
  const std::size_t bkv_count = sh.batch * sh.n_kv;
  if (item >= bkv_count * sh.seq) return;  // whole warps
  const int lane = static_cast<int>(threadIdx.x) % 32, hd = static_cast<int>(sh.hd);
  const std::size_t j = item / bkv_count, bkv = item % bkv_count;
  const std::size_t b = bkv / sh.n_kv, kv = bkv % sh.n_kv;
  const float* base = qkv + b * sh.seq * sh.width;
  float* const dbase = dqkv + b * sh.seq * sh.width;
  const float* k = base + j * sh.width + sh.k_off + kv * sh.hd;
  const float* v = base + j * sh.width + sh.v_off + kv * sh.hd;
  float* const dk = dbase + j * sh.width + sh.k_off + kv * sh.hd;
  float* const dv = dbase + j * sh.width + sh.v_off + kv * sh.hd;
  for (int d = lane; d < hd; d += 32) dk[d] = dv[d] = 0.0f;
  for (std::size_t h = kv * sh.group; h < (kv + 1) * sh.group; ++h) {
    for (std::size_t i = j; i < sh.seq; ++i) {
      const float* q = base + i * sh.width + h * sh.hd;
      const float* g = dout + (b * sh.seq + i) * sh.out_width + h * sh.hd;
      float qk = 0.0f, gv = 0.0f;
      for (int d = lane; d < hd; d += 32) {
        qk = fmaf(q[d], k[d], qk);
        gv = fmaf(g[d], v[d], gv);
      }
      qk = sum32(qk);
      gv = sum32(gv);
      const float l2 = lse[(b * sh.n_head + h) * sh.seq + i] * kLog2e;
      const float p = exp2f(qk * sh.scale_log2 - l2);
      const float ds = p * (gv - dbase[i * sh.width + h * sh.hd]) * sh.scale;
      for (int d = lane; d < hd; d += 32) {
        dv[d] = fmaf(p, g[d], dv[d]);
        dk[d] = fmaf(ds, q[d], dk[d]);
      }
    }
  }
}

// Any hd: one warp per (row, sequence, head), latest rows first; dQ accumulates in
// place, after the row's D has been read from the same slot.
__global__ void __launch_bounds__(kWarpThreads)
    backward_dq_generic(float* dqkv, const float* dout, const float* qkv, const float* lse,
                        BackwardShape sh) {
  const std::size_t item = (static_cast<std::size_t>(blockIdx.x) * kWarpThreads + threadIdx.x) / 32;
  const std::size_t bh_count = sh.batch * sh.n_head;
  if (item >= bh_count * sh.seq) return;  // whole warps
  const int lane = static_cast<int>(threadIdx.x) % 32, hd = static_cast<int>(sh.hd);
  const std::size_t i = sh.seq - 1 - item / bh_count, bh = item % bh_count;
  const std::size_t b = bh / sh.n_head, h = bh % sh.n_head, kv = h / sh.group;
  const float* base = qkv + b * sh.seq * sh.width;
  const float* q = base + i * sh.width + h * sh.hd;
  const float* g = dout + (b * sh.seq + i) * sh.out_width + h * sh.hd;
  float* const dq = dqkv + (b * sh.seq + i) * sh.width + h * sh.hd;
  const float delta = dq[0];
  __syncwarp();  // every lane has read D before lane 0 clears it
  for (int d = lane; d < hd; d += 32) dq[d] = 0.0f;
  const float l2 = lse[bh * sh.seq + i] * kLog2e;
  for (std::size_t j = 0; j <= i; ++j) {
    const float* k = base + j * sh.width + sh.k_off + kv * sh.hd;
    const float* v = base + j * sh.width + sh.v_off + kv * sh.hd;
    float qk = 0.0f, gv = 0.0f;
    for (int d = lane; d < hd; d += 32) {
      qk = fmaf(q[d], k[d], qk);
      gv = fmaf(g[d], v[d], gv);
    }
    qk = sum32(qk);
    gv = sum32(gv);
    const float p = exp2f(qk * sh.scale_log2 - l2);
    const float ds = p * (gv - delta) * sh.scale;
    for (int d = lane; d < hd; d += 32) dq[d] = fmaf(ds, k[d], dq[d]);
  }
}

// --- host side ------------------------------------------------------------------------

template <class... Params, class... Args>
void launch(void (*kernel)(Params...), std::size_t blocks, int threads, std::size_t smem,
            const char* what, const Args&... args) {
  if (blocks == 0) return;
  if (blocks > static_cast<std::size_t>(INT_MAX))
    throw std::invalid_argument(std::string(what) + ": too many blocks");
  kernel<<<static_cast<unsigned>(blocks), threads, smem, cu_stream()>>>(args...);
  check_launch(what);
}

std::size_t blocks_of_warps(std::size_t warps) {
  constexpr std::size_t kWarps = kWarpThreads / 32;
  return (warps + kWarps - 1) / kWarps;
}

// The most dynamic shared memory one block may have on the current device.
std::size_t shared_memory_limit() {
  static const std::size_t limit = [] {
    int device = 0, bytes = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
          "cudaDeviceGetAttribute(shared memory)");
    return static_cast<std::size_t>(bytes);
  }();
  return limit;
}

// Whether `kernel` can run with `bytes` of dynamic shared memory here; raises its
// limit above the default 48 KiB when it needs more.
template <class... Params>
bool shared_memory_ok(void (*kernel)(Params...), std::size_t bytes) {
  if (bytes > shared_memory_limit()) return false;
  if (bytes > 48 * 1024)
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(bytes)),
          "cudaFuncSetAttribute(attention)");
  return true;
}

// Calls f(std::integral_constant<int, D>) with the tile size D for hd (the smallest
// of 32, 64, 128 that holds it); false when hd is larger or f says so.
template <class F>
bool with_tile_dim(std::size_t hd, F&& f) {
  if (hd <= 32) return f(std::integral_constant<int, 32>{});
  if (hd <= 64) return f(std::integral_constant<int, 64>{});
  if (hd <= static_cast<std::size_t>(kMaxTileDim)) return f(std::integral_constant<int, 128>{});
  return false;
}

float softmax_scale(std::size_t hd) { return 1.0f / std::sqrt(static_cast<float>(hd)); }

void check_heads(std::size_t n_head, std::size_t n_kv, std::size_t hd, const char* what) {
  if (n_head == 0 || n_kv == 0 || n_head % n_kv != 0 || hd == 0 ||
      hd > static_cast<std::size_t>(INT_MAX / 2))
    throw std::invalid_argument(std::string(what) + ": bad head shape");
}

void check_shape(const AttentionShape& s, const char* what) {
  check_heads(s.n_head, s.n_kv, s.hd, what);
  if (s.seq > static_cast<std::size_t>(INT_MAX / 2))
    throw std::invalid_argument(std::string(what) + ": sequence too long");
}

TrainProblem train_problem(float* out, float* lse, const float* qkv, const AttentionShape& s) {
  TrainProblem p;
  p.qkv = qkv;
  p.out = out;
  p.lse = lse;
  p.seq = s.seq;
  p.n_head = s.n_head;
  p.group = s.n_head / s.n_kv;
  p.hd = s.hd;
  p.width = (s.n_head + 2 * s.n_kv) * s.hd;
  p.out_width = s.n_head * s.hd;
  p.k_off = s.n_head * s.hd;
  p.v_off = (s.n_head + s.n_kv) * s.hd;
  p.batch_heads = s.batch * s.n_head;
  return p;
}

template <int D, class Problem>
bool launch_forward_tile(const Problem& p, std::size_t jobs, int hd, float scale_log2) {
  const auto kernel = forward_tile<D, Problem>;
  if (!shared_memory_ok(kernel, forward_tile_smem(D))) return false;
  launch(kernel, jobs, kThreads, forward_tile_smem(D), "attention forward", p, hd, scale_log2);
  return true;
}

template <int D, bool kVec, class Problem>
bool launch_forward_rows(const Problem& p, std::size_t jobs, int hd, float scale_log2) {
  const auto kernel = forward_rows<D, kVec, Problem>;
  if (!shared_memory_ok(kernel, forward_rows_smem(D))) return false;
  launch(kernel, jobs, kRowThreads, forward_rows_smem(D), "attention (cached rows)", p, hd,
         scale_log2);
  return true;
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

template <class Problem>
void launch_forward_generic(const Problem& p, std::size_t jobs, int hd, float scale_log2) {
  launch(forward_generic<Problem>, blocks_of_warps(jobs), kWarpThreads, 0,
         "attention forward (generic)", p, jobs, hd, scale_log2);
}

template <int D>
bool launch_backward_tiles(float* dqkv, const float* dout, const float* qkv, const float* lse,
                           const BackwardShape& sh) {
  const auto dkdv = backward_dkdv_tile<D>;
  const auto dq = backward_dq_tile<D>;
  if (!shared_memory_ok(dkdv, dkdv_tile_smem(D)) || !shared_memory_ok(dq, dq_tile_smem(D)))
    return false;
  const std::size_t blocks = (sh.seq + kTile - 1) / kTile;
  launch(dkdv, blocks * sh.batch * sh.n_kv, kThreads, dkdv_tile_smem(D), "attention backward dkdv",
         dqkv, dout, qkv, lse, sh);
  launch(dq, blocks * sh.batch * sh.n_head, kThreads, dq_tile_smem(D), "attention backward dq",
         dqkv, dout, qkv, lse, sh);
  return true;
}

}  // namespace

void attention_forward(float* out, float* lse, const float* qkv, const AttentionShape& s) {
  check_shape(s, "attention_forward");
  if (s.batch == 0 || s.seq == 0) return;
  const TrainProblem p = train_problem(out, lse, qkv, s);
  const int hd = static_cast<int>(s.hd);
  const float scale_log2 = softmax_scale(s.hd) * kLog2e;
  const std::size_t jobs = s.batch * s.n_head * ((s.seq + kTile - 1) / kTile);
  const bool tiled = with_tile_dim(s.hd, [&](auto dim) {
    return launch_forward_tile<decltype(dim)::value>(p, jobs, hd, scale_log2);
  });
  if (!tiled) launch_forward_generic(p, s.batch * s.n_head * s.seq, hd, scale_log2);
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                        const float* lse, const AttentionShape& s) {
  check_shape(s, "attention_backward");
  if (s.batch == 0 || s.seq == 0) return;
  BackwardShape sh;
  sh.batch = s.batch;
  sh.seq = s.seq;
  sh.n_head = s.n_head;
  sh.n_kv = s.n_kv;
  sh.group = s.n_head / s.n_kv;
  sh.hd = s.hd;
  sh.width = (s.n_head + 2 * s.n_kv) * s.hd;
  sh.out_width = s.n_head * s.hd;
  sh.k_off = s.n_head * s.hd;
  sh.v_off = (s.n_head + s.n_kv) * s.hd;
  sh.scale = softmax_scale(s.hd);
  sh.scale_log2 = sh.scale * kLog2e;
  // D first (into the dq slots); then dK, dV (which read D there); then dQ (which
  // reads each row's D and overwrites it).
  launch(backward_delta, blocks_of_warps(s.batch * s.seq * s.n_head), kWarpThreads, 0,
         "attention backward delta", dqkv, dout, out, sh);
  const bool tiled = with_tile_dim(s.hd, [&](auto dim) {
    return launch_backward_tiles<decltype(dim)::value>(dqkv, dout, qkv, lse, sh);
  });
  if (tiled) return;
  launch(backward_dkdv_generic, blocks_of_warps(s.batch * s.n_kv * s.seq), kWarpThreads, 0,
         "attention backward dkdv (generic)", dqkv, dout, qkv, lse, sh);
  launch(backward_dq_generic, blocks_of_warps(s.batch * s.n_head * s.seq), kWarpThreads, 0,
         "attention backward dq (generic)", dqkv, dout, qkv, lse, sh);
}

void attention_cached(float* out, const float* q, std::size_t q_stride, const float* k_cache,
                      const float* v_cache, const CachedSegment* segments, std::size_t n_segments,
                      const CacheShape& s) {
  check_heads(s.n_head, s.n_kv, s.hd, "attention_cached");
  if (n_segments == 0) return;
  for (std::size_t i = 0; i < n_segments; ++i) {
    const CachedSegment& g = segments[i];
    if (g.slot > UINT_MAX / 2 || g.row0 > UINT_MAX / 2 || g.count > UINT_MAX / 2 ||
        g.pos0 > static_cast<std::size_t>(INT_MAX / 2) ||
        g.pos0 + g.count > static_cast<std::size_t>(INT_MAX / 2) || g.pos0 + g.count > s.max_len)
      throw std::invalid_argument("attention_cached: segment " + std::to_string(i) +
                                  " outside the cache");
  }
  const int hd = static_cast<int>(s.hd);
  const float scale_log2 = softmax_scale(s.hd) * kLog2e;
  CachedProblem base;
  base.q = q;
  base.k_cache = k_cache;
  base.v_cache = v_cache;
  base.out = out;
  base.q_stride = q_stride;
  base.out_width = s.n_head * s.hd;
  base.n_head = s.n_head;
  base.n_kv = s.n_kv;
  base.group = s.n_head / s.n_kv;
  base.hd = s.hd;
  base.max_len = s.max_len;
  base.n = 0;
  base.first[0] = 0;

  // Segments that take whole kTile-row tiles, if the device can run them.
  const bool tiles_ok = with_tile_dim(s.hd, [&](auto dim) {
    constexpr int D = decltype(dim)::value;
    return shared_memory_ok(forward_tile<D, CachedProblem>, forward_tile_smem(D));
  });
  const auto tiled = [&](const CachedSegment& g) { return tiles_ok && g.count > kShortSegment; };
  // Rows read whole float4s of the cache when its rows are 16-byte aligned.
  const bool vec_rows = s.hd % 4 == 0 && aligned16(k_cache) && aligned16(v_cache);

  // Packs the chosen segments into problems of at most kMaxSegments and launches each
  // with its number of jobs (blocks of rows_per_job rows, times the heads).
  const auto run = [&](std::size_t rows_per_job, bool want_tiled, const auto& go) {
    CachedProblem p = base;
    const std::size_t max_jobs = static_cast<std::size_t>(INT_MAX / 2) / s.n_head;
    const auto flush = [&] {
      if (p.n > 0) go(p, static_cast<std::size_t>(p.first[p.n]) * s.n_head);
      p.n = 0;
    };
    for (std::size_t i = 0; i < n_segments; ++i) {
      const CachedSegment& g = segments[i];
      if (g.count == 0 || tiled(g) != want_tiled) continue;
      const std::size_t jobs = (g.count + rows_per_job - 1) / rows_per_job;
      if (jobs > max_jobs) throw std::invalid_argument("attention_cached: segment too long");
      if (p.n == kMaxSegments || p.first[p.n] + jobs > max_jobs) flush();
      p.slot[p.n] = static_cast<unsigned>(g.slot);
      p.row0[p.n] = static_cast<unsigned>(g.row0);
      p.count[p.n] = static_cast<unsigned>(g.count);
      p.pos0[p.n] = static_cast<unsigned>(g.pos0);
      p.first[p.n + 1] = p.first[p.n] + static_cast<unsigned>(jobs);
      ++p.n;
    }
    flush();
  };
  run(kTile, true, [&](const CachedProblem& p, std::size_t jobs) {
    with_tile_dim(s.hd, [&](auto dim) {
      return launch_forward_tile<decltype(dim)::value>(p, jobs, hd, scale_log2);
    });
  });
  run(1, false, [&](const CachedProblem& p, std::size_t jobs) {
    const bool rows = with_tile_dim(s.hd, [&](auto dim) {
      constexpr int D = decltype(dim)::value;
      return vec_rows ? launch_forward_rows<D, true>(p, jobs, hd, scale_log2)
                      : launch_forward_rows<D, false>(p, jobs, hd, scale_log2);
    });
    if (!rows) launch_forward_generic(p, jobs, hd, scale_log2);
  });
}

}  // namespace whtlm::backend::cuda
