// The fused attention forward of the GPU, shared by the training attention (attention.cu)
// and the cached one of inference (attention_cached.cu): causal, grouped-query, in the
// flash-attention style, in fp32 throughout, with nothing of size seq x seq stored and
// nothing but the outputs written to global memory. A Problem (one per .cu file) maps
// each block or warp to its Job: a run of query rows of one head and their keys.
//
// forward_tile: one block of 256 threads per job of up to kTile = 64 query rows. The Q
// tile [64][hd] stays in shared memory; the block walks the key blocks up to the
// diagonal, loads each K and V tile [64][hd] into shared memory and keeps an online
// softmax, per row a running max m and sum l:
//   S = Q K^T * scale * log2(e)      (each thread owns 4 rows x 4 keys of S)
//   m' = max(m, rowmax S),  P = 2^(S - m'),  l = l 2^(m - m') + rowsum P,
//   O = O 2^(m - m') + P V           (each thread owns 4 rows x hd/16 columns of O)
// and writes O / l and lse = (m + log2 l) ln 2 once at the end. Scores are kept in
// base 2 so that every exponential is one exp2.
//
// Head dimensions: the tiled kernels are compiled for hd up to 32, 64 and 128 (tiles
// padded with zeros); a larger hd, or a device without the shared memory a tile
// needs, runs the generic kernels instead: one warp per row, any hd, slower.
#pragma once

#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "backend/cuda/common.cuh"

namespace whtlm::backend::cuda {

constexpr int kTile = 64;             // query rows per block and keys per step
constexpr int kThreads = 256;         // 16 x 16 threads, each 4 x 4 scores of a tile
constexpr int kPad = 4;               // floats after each row of a [64][D] tile
constexpr int kScoreLd = kTile + 16;  // row stride of a score tile (conflict-free stores)
constexpr int kWarpThreads = 256;     // generic kernels: 8 warps, one row each
constexpr int kMaxTileDim = 128;
constexpr float kLog2e = 1.44269504088896340736f;
constexpr float kLn2 = 0.693147180559945309417f;

static_assert(kThreads == 16 * 16 && kTile == 4 * 16, "each thread owns 4 x 4 of a tile");

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

// Reductions over the 16 lanes of a half warp (the threads sharing a tile row); every
// lane of the warp must call them. (Whole warps: warp_sum, warp_max of common.cuh.)
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
    const float s = warp_sum(part) * scale_log2;
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

inline std::size_t blocks_of_warps(std::size_t warps) {
  constexpr std::size_t kWarps = kWarpThreads / 32;
  return (warps + kWarps - 1) / kWarps;
}

// The most dynamic shared memory one block may have on the current device.
inline std::size_t shared_memory_limit() {
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

inline float softmax_scale(std::size_t hd) { return 1.0f / std::sqrt(static_cast<float>(hd)); }

inline void check_heads(std::size_t n_head, std::size_t n_kv, std::size_t hd, const char* what) {
  if (n_head == 0 || n_kv == 0 || n_head % n_kv != 0 || hd == 0 ||
      hd > static_cast<std::size_t>(INT_MAX / 2))
    throw std::invalid_argument(std::string(what) + ": bad head shape");
}

template <int D, class Problem>
bool launch_forward_tile(const Problem& p, std::size_t jobs, int hd, float scale_log2) {
  const auto kernel = forward_tile<D, Problem>;
  if (!shared_memory_ok(kernel, forward_tile_smem(D))) return false;
  launch(kernel, jobs, kThreads, forward_tile_smem(D), "attention forward", p, hd, scale_log2);
  return true;
}

template <class Problem>
void launch_forward_generic(const Problem& p, std::size_t jobs, int hd, float scale_log2) {
  launch(forward_generic<Problem>, blocks_of_warps(jobs), kWarpThreads, 0,
         "attention forward (generic)", p, jobs, hd, scale_log2);
}

}  // namespace whtlm::backend::cuda
