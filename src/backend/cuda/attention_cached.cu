// Attention against a KV cache on the GPU, for inference, as in
// src/backend/cpu/attention_cached.cpp. Rows arrive packed in segments (CachedSegment:
// one per sequence, or a chunk of one).
//
// The store: the k and v heads of packed qkv rows copied to their slots and positions in
// one launch (per 128 segments), instead of one copy per segment and head. Segment i owns
// rows first[i] .. first[i+1] of the launch; a block copies one row's k and v for one kv
// head, its threads striding over hd.
//   qkv: [rows, qkv_stride], q heads | k heads | v heads, each hd wide
//   caches: [slot][kv head][position][hd], max_len positions per (slot, kv head)
//
// The attention: segments of more than kShortSegment rows (prefill) run attention.cuh's
// forward_tile, positions offset by the segment's pos0; the rows of short segments
// (decoding) run forward_rows, one block per (row, query head) with one thread per key
// of a 128-key tile and the values read straight from global memory. A head dimension
// above 128, or a device without the shared memory those need, runs forward_generic.
//
// Both launches take the segments by value in the kernel parameters, kMaxSegments per
// launch, so the host array needs no copy and no lifetime beyond the call.
#include <algorithm>

#include "backend/cuda/attention.cuh"

namespace whtlm::backend::cuda {
namespace {

constexpr int kRowThreads = 128;       // forward_rows: one thread per key of a tile
constexpr int kRowKeys = kRowThreads;  // keys per forward_rows tile
constexpr int kShortSegment = 8;       // cached segments up to this many rows go row by row
constexpr int kMaxSegments = 128;      // segments per cached launch (4 KiB of parameters)

static_assert(kRowThreads == 4 * 32, "forward_rows reduces over 4 warps");

// --- the store ------------------------------------------------------------------------

struct StoreBatch {
  unsigned n = 0;
  unsigned first[kMaxSegments + 1];  // running row count: segment i has rows first[i]..first[i+1]
  unsigned slot[kMaxSegments], row0[kMaxSegments], pos0[kMaxSegments];
};
static_assert(sizeof(StoreBatch) + 128 <= 4096, "kMaxSegments too large");

__global__ void kv_store_kernel(float* __restrict__ k_cache, float* __restrict__ v_cache,
                                const float* __restrict__ qkv, std::size_t qkv_stride,
                                const StoreBatch batch, unsigned n_head, unsigned n_kv, unsigned hd,
                                std::size_t max_len) {
  const unsigned item = blockIdx.x;  // the launch's row
  const unsigned kv = blockIdx.y;
  // The segment holding this row: the last i with first[i] <= item (first[0] = 0).
  unsigned lo = 0, hi = batch.n;
  while (hi - lo > 1) {
    const unsigned mid = (lo + hi) / 2;
    if (batch.first[mid] <= item)
      lo = mid;
    else
      hi = mid;
  }
  const unsigned r = item - batch.first[lo];
  const float* row = qkv + (batch.row0[lo] + r) * qkv_stride;
  const float* k = row + (n_head + kv) * hd;
  const float* v = row + (n_head + n_kv + kv) * hd;
  const std::size_t at =
      ((std::size_t(batch.slot[lo]) * n_kv + kv) * max_len + batch.pos0[lo] + r) * hd;
  for (unsigned i = threadIdx.x; i < hd; i += blockDim.x) {
    k_cache[at + i] = k[i];
    v_cache[at + i] = v[i];
  }
}

// --- the attention --------------------------------------------------------------------

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
    const float wmax = warp_max(s);
    if (lane == 0) red[warp] = wmax;
    __syncthreads();
    // Key k0 is always present, so m_new is finite.
    const float m_new = fmaxf(m, fmaxf(fmaxf(red[0], red[1]), fmaxf(red[2], red[3])));
    const float alpha = exp2f(m - m_new);
    const float p = exp2f(s - m_new);
    ps[tid] = p;
    const float wsum = warp_sum(p);
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

// --- host side ------------------------------------------------------------------------

template <int D, bool kVec, class Problem>
bool launch_forward_rows(const Problem& p, std::size_t jobs, int hd, float scale_log2) {
  const auto kernel = forward_rows<D, kVec, Problem>;
  if (!shared_memory_ok(kernel, forward_rows_smem(D))) return false;
  launch(kernel, jobs, kRowThreads, forward_rows_smem(D), "attention (cached rows)", p, hd,
         scale_log2);
  return true;
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

}  // namespace

void kv_cache_store(float* k_cache, float* v_cache, const float* qkv, std::size_t qkv_stride,
                    const CachedSegment* segments, std::size_t n_segments, const CacheShape& s) {
  if (s.n_kv == 0 || s.hd == 0) return;
  const unsigned threads = static_cast<unsigned>(std::min<std::size_t>(128, (s.hd + 31) / 32 * 32));
  StoreBatch b;
  auto flush = [&] {
    if (b.first[b.n] > 0) {
      const dim3 grid(b.first[b.n], static_cast<unsigned>(s.n_kv));
      kv_store_kernel<<<grid, threads, 0, cu_stream()>>>(
          k_cache, v_cache, qkv, qkv_stride, b, static_cast<unsigned>(s.n_head),
          static_cast<unsigned>(s.n_kv), static_cast<unsigned>(s.hd), s.max_len);
      check_launch("kv_cache_store");
    }
    b.n = 0;
    b.first[0] = 0;
  };
  b.first[0] = 0;
  for (std::size_t i = 0; i < n_segments; ++i) {
    const CachedSegment& g = segments[i];
    if (g.count == 0) continue;
    b.slot[b.n] = static_cast<unsigned>(g.slot);
    b.row0[b.n] = static_cast<unsigned>(g.row0);
    b.pos0[b.n] = static_cast<unsigned>(g.pos0);
    b.first[b.n + 1] = b.first[b.n] + static_cast<unsigned>(g.count);
    ++b.n;
    if (b.n == kMaxSegments) flush();
  }
  flush();
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
