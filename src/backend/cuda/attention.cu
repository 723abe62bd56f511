// Causal multi-head attention with grouped-query heads on the GPU, for training: the
// same functions as src/backend/cpu/attention.cpp, fused in the flash-attention style
// (the forward is attention.cuh's), in fp32 throughout, with nothing of size seq x seq
// stored and nothing but the outputs written to global memory.
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
// A head dimension above 128, or a device without the shared memory a tile needs,
// runs the generic kernels: one warp per row, any hd, slower.
#include "backend/cuda/attention.cuh"

namespace whtlm::backend::cuda {
namespace {

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
  const float sum = warp_sum(part);
  if (lane == 0) dqkv[row * sh.width + h * sh.hd] = sum;
}

// Calls f(col, c) for each of this thread's output columns col < hd of a [rows][D]
// accumulator tile, c being the column's index in the thread's D / 16 accumulators:
// thread tx owns columns ch * 16 kW + tx * kW + e (the layout accumulate_product writes).
// forward_tile (attention.cuh) keeps these loops inline: through the helper, nvcc
// schedules its code differently (the same results, other PTX).
template <int D, class F>
__device__ __forceinline__ void for_own_columns(int tx, int hd, F&& f) {
  constexpr int kCols = D / 16, kW = kCols < 4 ? kCols : 4, kChunks = kCols / kW;
#pragma unroll
  for (int ch = 0; ch < kChunks; ++ch)
#pragma unroll
    for (int e = 0; e < kW; ++e) {
      const int col = ch * 16 * kW + tx * kW + e;
      if (col < hd) f(col, ch * kW + e);
    }
}

// The two score products of a backward tile step, for this thread's 4 x 4 from zero:
//   s[i][j] = a[ty + 16 i] . b[tx + 16 j],  dp[i][j] = c[ty + 16 i] . e[tx + 16 j]
// (dK, dV: K, Q, V, dO, so S^T and dP^T; dQ: Q, K, dO, V, so S and dP).
template <int D>
__device__ __forceinline__ void backward_scores(float (&s)[4][4], float (&dp)[4][4], const float* a,
                                                const float* b, const float* c, const float* e,
                                                int tx, int ty, int hd4) {
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) s[i][j] = dp[i][j] = 0.0f;
  accumulate_scores<D, 1>(s, a, ty, b, tx, hd4);
  accumulate_scores<D, 1>(dp, c, ty, e, tx, hd4);
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
  constexpr int kLd = D + kPad, kCols = D / 16;
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
      backward_scores<D>(s, dp, ks, qs, vs, gs, tx, ty, hd4);
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
    for_own_columns<D>(tx, hd, [&](int col, int e) {
      row[sh.k_off + col] = dk[i][e];
      row[sh.v_off + col] = dv[i][e];
    });
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
  constexpr int kLd = D + kPad, kCols = D / 16;
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
    backward_scores<D>(s, dp, qs, ks, gs, vs, tx, ty, hd4);
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
    for_own_columns<D>(tx, hd, [&](int col, int e) { row[col] = dq[i][e]; });
  }
}

// qk = q . k and gv = g . v over hd, lane-strided and summed over the warp (every lane
// gets both): the two dot products of a (row, key) pair in the generic kernels.
__device__ __forceinline__ void warp_dots(const float* q, const float* k, const float* g,
                                          const float* v, int hd, int lane, float& qk, float& gv) {
  qk = 0.0f;
  gv = 0.0f;
  for (int d = lane; d < hd; d += 32) {
    qk = fmaf(q[d], k[d], qk);
    gv = fmaf(g[d], v[d], gv);
  }
  qk = warp_sum(qk);
  gv = warp_sum(gv);
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
      float qk, gv;
      warp_dots(q, k, g, v, hd, lane, qk, gv);
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
    float qk, gv;
    warp_dots(q, k, g, v, hd, lane, qk, gv);
    const float p = exp2f(qk * sh.scale_log2 - l2);
    const float ds = p * (gv - delta) * sh.scale;
    for (int d = lane; d < hd; d += 32) dq[d] = fmaf(ds, k[d], dq[d]);
  }
}

// --- host side ------------------------------------------------------------------------

void check_shape(const AttentionShape& s, const char* what) {
  check_heads(s.n_head, s.n_kv, s.hd, what);
  if (s.seq > static_cast<std::size_t>(INT_MAX / 2))
    throw std::invalid_argument(std::string(what) + ": sequence too long");
}

// The packed qkv layout of s, in the fields TrainProblem and BackwardShape share.
template <class P>
void set_layout(P& p, const AttentionShape& s) {
  p.seq = s.seq;
  p.n_head = s.n_head;
  p.group = s.n_head / s.n_kv;
  p.hd = s.hd;
  p.width = (s.n_head + 2 * s.n_kv) * s.hd;
  p.out_width = s.n_head * s.hd;
  p.k_off = s.n_head * s.hd;
  p.v_off = (s.n_head + s.n_kv) * s.hd;
}

TrainProblem train_problem(float* out, float* lse, const float* qkv, const AttentionShape& s) {
  TrainProblem p;
  p.qkv = qkv;
  p.out = out;
  p.lse = lse;
  set_layout(p, s);
  p.batch_heads = s.batch * s.n_head;
  return p;
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
  sh.n_kv = s.n_kv;
  set_layout(sh, s);
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

}  // namespace whtlm::backend::cuda
