// The layer kernels besides the GEMMs, attention and the Hadamard projection: norms,
// activations, rotary embedding, token/position embeddings, cross-entropy, small vector
// helpers and AdamW. Each computes what its CPU op computes (src/backend/cpu/), with
// the same formulas in the same operation order wherever the summation order allows.
//
// Three launch shapes cover almost everything:
//   map:    elementwise over n values, grid-stride, V = 4 (float4) when n % 4 == 0 and
//           every pointer is 16-byte aligned, V = 1 otherwise;
//   rows:   [rows, cols] with blockIdx.y striding over rows and x over column groups of
//           V values (no division per element);
//   warp per row for the norms, with shuffles for the row sums.
// Column sums over rows (norm parameter gradients, bias gradients) are per-block
// partials added with one atomicAdd per column and block, so they accumulate into
// what is already there, like the CPU ops; the order of those additions, and so the
// last bits, can vary from run to run.
#include <cfloat>

#include "backend/cuda/common.cuh"

namespace whtlm::backend::cuda {
namespace {

constexpr unsigned kThreads = 256;
constexpr unsigned kMaxGridY = 65535;
constexpr unsigned kFullMask = 0xffffffffu;

// --- vector access -------------------------------------------------------------------

// V consecutive floats at p: one 16-byte access when V == 4 (p must be 16-byte aligned).
template <int V>
__device__ __forceinline__ void load(const float* p, float (&v)[V]) {
  static_assert(V == 1 || V == 4);
  if constexpr (V == 4) {
    const float4 f = *reinterpret_cast<const float4*>(p);
    v[0] = f.x;
    v[1] = f.y;
    v[2] = f.z;
    v[3] = f.w;
  } else {
    v[0] = *p;
  }
}

template <int V>
__device__ __forceinline__ void store(float* p, const float (&v)[V]) {
  static_assert(V == 1 || V == 4);
  if constexpr (V == 4)
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  else
    *p = v[0];
}

bool aligned(const void* p, std::size_t bytes) {
  return reinterpret_cast<std::uintptr_t>(p) % bytes == 0;
}

// Whether n values at each pointer can be read as float4 (null pointers are unused).
template <class... P>
bool vec4(std::size_t n, const P*... p) {
  return n % 4 == 0 && (aligned(p, 16) && ...);
}

// --- reductions ------------------------------------------------------------------------

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32); the result is valid in thread 0.
// Call once per kernel: the shared buffer is not released for reuse.
template <class T>
__device__ T block_sum(T v) {
  __shared__ T warp_sums[32];
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  v = warp_sum(v);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) v = warp_sum(lane < blockDim.x / 32 ? warp_sums[lane] : T(0));
  return v;
}

// --- launch shapes -------------------------------------------------------------------

// op.at<V>(i) handles values [i, i + V) of n; count = n / V.
template <int V, class Op>
__global__ void map_kernel(Op op, std::size_t count) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride)
    op.template at<V>(i * V);
}

template <class Op>
void launch_map(const char* name, const Op& op, std::size_t n, bool vec) {
  if (n == 0) return;
  if (vec)
    map_kernel<4><<<blocks_for(n / 4, kThreads), kThreads, 0, cu_stream()>>>(op, n / 4);
  else
    map_kernel<1><<<blocks_for(n, kThreads), kThreads, 0, cu_stream()>>>(op, n);
  check_launch(name);
}

// op.at<V>(r, j) handles columns [j, j + V) of row r; groups = cols / V.
template <int V, class Op>
__global__ void rows_kernel(Op op, std::size_t rows, std::size_t groups) {
  const std::size_t g = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= groups) return;
  for (std::size_t r = blockIdx.y; r < rows; r += gridDim.y) op.template at<V>(r, g * V);
}

template <int V, class Op>
void launch_rows_of(const char* name, const Op& op, std::size_t rows, std::size_t cols) {
  const std::size_t groups = cols / V;
  if (rows == 0 || groups == 0) return;
  // Narrow rows (rope on small heads, tests) get one warp-rounded block per row.
  const unsigned threads =
      groups >= kThreads ? kThreads : static_cast<unsigned>((groups + 31) / 32 * 32);
  const dim3 grid(static_cast<unsigned>((groups + threads - 1) / threads),
                  static_cast<unsigned>(rows < kMaxGridY ? rows : kMaxGridY));
  rows_kernel<V><<<grid, threads, 0, cu_stream()>>>(op, rows, groups);
  check_launch(name);
}

template <class Op>
void launch_rows(const char* name, const Op& op, std::size_t rows, std::size_t cols, bool vec) {
  if (vec)
    launch_rows_of<4>(name, op, rows, cols);
  else
    launch_rows_of<1>(name, op, rows, cols);
}

// Column sums: term.add(r, c, acc) adds row r's terms for column c to acc[0..kOutputs),
// term.flush(c, acc) adds the block's sums to the outputs. Blocks are 32 columns x
// kColumnLanes row lanes; block (x, y) covers columns [32x, 32x + 32) of rows
// [y chunk, (y + 1) chunk).
constexpr unsigned kColumnLanes = 8;

template <class Term>
__global__ void column_kernel(Term term, std::size_t rows, std::size_t cols, std::size_t chunk) {
  constexpr int N = Term::kOutputs;
  __shared__ float partial[N][kColumnLanes][32];
  const std::size_t c = static_cast<std::size_t>(blockIdx.x) * 32 + threadIdx.x;
  const std::size_t r0 = blockIdx.y * chunk;
  const std::size_t r1 = rows - r0 < chunk ? rows : r0 + chunk;
  float acc[N];
#pragma unroll
  for (int k = 0; k < N; ++k) acc[k] = 0.0f;
  if (c < cols)
    for (std::size_t r = r0 + threadIdx.y; r < r1; r += kColumnLanes) term.add(r, c, acc);
#pragma unroll
  for (int k = 0; k < N; ++k) partial[k][threadIdx.y][threadIdx.x] = acc[k];
  __syncthreads();
  if (threadIdx.y != 0 || c >= cols) return;
#pragma unroll
  for (int k = 0; k < N; ++k) {
    float s = 0.0f;
#pragma unroll
    for (unsigned l = 0; l < kColumnLanes; ++l) s += partial[k][l][threadIdx.x];
    acc[k] = s;
  }
  term.flush(c, acc);
}

template <class Term>
void launch_columns(const char* name, const Term& term, std::size_t rows, std::size_t cols) {
  if (rows == 0 || cols == 0) return;
  // About 1024 blocks in all (a few waves on an H100/H200), each of at least 64 rows.
  constexpr std::size_t kTargetBlocks = 1024, kMinRows = 64;
  const std::size_t col_blocks = (cols + 31) / 32;
  std::size_t chunks = (kTargetBlocks + col_blocks - 1) / col_blocks;
  const std::size_t max_chunks = (rows + kMinRows - 1) / kMinRows;
  if (chunks > max_chunks) chunks = max_chunks;
  if (chunks > kMaxGridY) chunks = kMaxGridY;
  const std::size_t chunk = (rows + chunks - 1) / chunks;
  chunks = (rows + chunk - 1) / chunk;
  const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(chunks));
  column_kernel<<<grid, dim3(32, kColumnLanes), 0, cu_stream()>>>(term, rows, cols, chunk);
  check_launch(name);
}

// Warp-per-row kernels: 4 warps (rows) per block.
constexpr unsigned kRowWarps = 4;

unsigned row_blocks(std::size_t rows) { return blocks_for(rows, kRowWarps); }

__device__ __forceinline__ std::size_t first_row() {
  return static_cast<std::size_t>(blockIdx.x) * kRowWarps + threadIdx.x / 32;
}
__device__ __forceinline__ std::size_t row_stride() {
  return static_cast<std::size_t>(gridDim.x) * kRowWarps;
}

// --- LayerNorm -----------------------------------------------------------------------

// x, y: [rows, d]; w, b: [d]; mean, rstd: [rows].
template <int V>
__global__ void layernorm_forward_kernel(float* y, float* mean, float* rstd, const float* x,
                                         const float* w, const float* b, std::size_t rows,
                                         std::size_t d, float eps) {
  const unsigned lane = threadIdx.x % 32;
  const float fd = static_cast<float>(d);
  for (std::size_t r = first_row(); r < rows; r += row_stride()) {
    const float* xr = x + r * d;
    float* yr = y + r * d;
    float s = 0.0f;
    for (std::size_t i = lane * V; i < d; i += 32 * V) {
      float v[V];
      load<V>(xr + i, v);
#pragma unroll
      for (int k = 0; k < V; ++k) s += v[k];
    }
    const float m = warp_sum(s) / fd;
    float q = 0.0f;
    for (std::size_t i = lane * V; i < d; i += 32 * V) {
      float v[V];
      load<V>(xr + i, v);
#pragma unroll
      for (int k = 0; k < V; ++k) q += (v[k] - m) * (v[k] - m);
    }
    const float rs = 1.0f / sqrtf(warp_sum(q) / fd + eps);
    for (std::size_t i = lane * V; i < d; i += 32 * V) {
      float v[V], wv[V], bv[V];
      load<V>(xr + i, v);
      load<V>(w + i, wv);
      load<V>(b + i, bv);
#pragma unroll
      for (int k = 0; k < V; ++k) v[k] = (v[k] - m) * rs * wv[k] + bv[k];
      store<V>(yr + i, v);
    }
    if (lane == 0) {
      mean[r] = m;
      rstd[r] = rs;
    }
  }
}

// dx += rstd (g - mean(g) - xhat mean(g xhat)) with g = dy w, xhat = (x - mean) rstd.
template <int V>
__global__ void layernorm_backward_kernel(float* dx, const float* dy, const float* x,
                                          const float* mean, const float* rstd, const float* w,
                                          std::size_t rows, std::size_t d) {
  const unsigned lane = threadIdx.x % 32;
  const float fd = static_cast<float>(d);
  for (std::size_t r = first_row(); r < rows; r += row_stride()) {
    const float* xr = x + r * d;
    const float* gr = dy + r * d;
    float* dxr = dx + r * d;
    const float m = mean[r], rs = rstd[r];
    float sg = 0.0f, sgx = 0.0f;
    for (std::size_t i = lane * V; i < d; i += 32 * V) {
      float xv[V], gv[V], wv[V];
      load<V>(xr + i, xv);
      load<V>(gr + i, gv);
      load<V>(w + i, wv);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float g = gv[k] * wv[k];
        sg += g;
        sgx += g * (xv[k] - m) * rs;
      }
    }
    sg = warp_sum(sg) / fd;
    sgx = warp_sum(sgx) / fd;
    for (std::size_t i = lane * V; i < d; i += 32 * V) {
      float xv[V], gv[V], wv[V], dv[V];
      load<V>(xr + i, xv);
      load<V>(gr + i, gv);
      load<V>(w + i, wv);
      load<V>(dxr + i, dv);
#pragma unroll
      for (int k = 0; k < V; ++k) dv[k] += rs * (gv[k] * wv[k] - sg - (xv[k] - m) * rs * sgx);
      store<V>(dxr + i, dv);
    }
  }
}

// dw[c] += sum_r dy xhat; db[c] += sum_r dy.
struct LayerNormParamGrads {
  static constexpr int kOutputs = 2;
  float* dw;
  float* db;
  const float* dy;
  const float* x;
  const float* mean;
  const float* rstd;
  std::size_t d;
  __device__ void add(std::size_t r, std::size_t c, float (&acc)[2]) const {
    const float g = dy[r * d + c];
    acc[0] += g * (x[r * d + c] - mean[r]) * rstd[r];
    acc[1] += g;
  }
  __device__ void flush(std::size_t c, const float (&acc)[2]) const {
    atomicAdd(dw + c, acc[0]);
    atomicAdd(db + c, acc[1]);
  }
};

// --- RMSNorm -------------------------------------------------------------------------

// x, y: [rows, d]; w: [d]; rstd: [rows]. y = x rstd w, rstd = 1 / sqrt(mean(x^2) + eps).
template <int V>
__global__ void rmsnorm_forward_kernel(float* y, float* rstd, const float* x, const float* w,
                                       std::size_t rows, std::size_t d, float eps) {
  const unsigned lane = threadIdx.x % 32;
  const float fd = static_cast<float>(d);
  for (std::size_t r = first_row(); r < rows; r += row_stride()) {
    const float* xr = x + r * d;
    float* yr = y + r * d;
    float s = 0.0f;
    for (std::size_t i = lane * V; i < d; i += 32 * V) {
      float v[V];
      load<V>(xr + i, v);
#pragma unroll
      for (int k = 0; k < V; ++k) s += v[k] * v[k];
    }
    const float rs = 1.0f / sqrtf(warp_sum(s) / fd + eps);
    for (std::size_t i = lane * V; i < d; i += 32 * V) {
      float v[V], wv[V];
      load<V>(xr + i, v);
      load<V>(w + i, wv);
#pragma unroll
      for (int k = 0; k < V; ++k) v[k] = v[k] * rs * wv[k];
      store<V>(yr + i, v);
    }
    if (lane == 0) rstd[r] = rs;
  }
}

// dx += rstd (g - x rstd^2 mean(g x)) with g = dy w.
template <int V>
__global__ void rmsnorm_backward_kernel(float* dx, const float* dy, const float* x,
                                        const float* rstd, const float* w, std::size_t rows,
                                        std::size_t d) {
  const unsigned lane = threadIdx.x % 32;
  const float fd = static_cast<float>(d);
  for (std::size_t r = first_row(); r < rows; r += row_stride()) {
    const float* xr = x + r * d;
    const float* gr = dy + r * d;
    float* dxr = dx + r * d;
    const float rs = rstd[r];
    float sgx = 0.0f;
    for (std::size_t i = lane * V; i < d; i += 32 * V) {
      float xv[V], gv[V], wv[V];
      load<V>(xr + i, xv);
      load<V>(gr + i, gv);
      load<V>(w + i, wv);
#pragma unroll
      for (int k = 0; k < V; ++k) sgx += gv[k] * wv[k] * xv[k];
    }
    const float c = rs * rs * warp_sum(sgx) / fd;
    for (std::size_t i = lane * V; i < d; i += 32 * V) {
      float xv[V], gv[V], wv[V], dv[V];
      load<V>(xr + i, xv);
      load<V>(gr + i, gv);
      load<V>(w + i, wv);
      load<V>(dxr + i, dv);
#pragma unroll
      for (int k = 0; k < V; ++k) dv[k] += rs * (gv[k] * wv[k] - xv[k] * c);
      store<V>(dxr + i, dv);
    }
  }
}

// dw[c] += sum_r dy x rstd.
struct RmsNormParamGrad {
  static constexpr int kOutputs = 1;
  float* dw;
  const float* dy;
  const float* x;
  const float* rstd;
  std::size_t d;
  __device__ void add(std::size_t r, std::size_t c, float (&acc)[1]) const {
    acc[0] += dy[r * d + c] * x[r * d + c] * rstd[r];
  }
  __device__ void flush(std::size_t c, const float (&acc)[1]) const { atomicAdd(dw + c, acc[0]); }
};

// out[c] += sum_r x[r][c].
struct ColumnSum {
  static constexpr int kOutputs = 1;
  float* out;
  const float* x;
  std::size_t cols;
  __device__ void add(std::size_t r, std::size_t c, float (&acc)[1]) const {
    acc[0] += x[r * cols + c];
  }
  __device__ void flush(std::size_t c, const float (&acc)[1]) const { atomicAdd(out + c, acc[0]); }
};

// --- activations ---------------------------------------------------------------------

// Rounded from double exactly as the CPU's T(kGeluC), T(kGeluA), T(3 * kGeluA).
constexpr float kGeluC = static_cast<float>(0.7978845608028654);  // sqrt(2 / pi)
constexpr float kGeluA = static_cast<float>(0.044715);
constexpr float kGelu3A = static_cast<float>(3 * 0.044715);

// y = 0.5 x (1 + tanh(c (x + a x^3))).
struct GeluForward {
  float* y;
  const float* x;
  template <int V>
  __device__ void at(std::size_t i) const {
    float v[V];
    load<V>(x + i, v);
#pragma unroll
    for (int k = 0; k < V; ++k)
      v[k] = 0.5f * v[k] * (1.0f + tanhf(kGeluC * (v[k] + kGeluA * v[k] * v[k] * v[k])));
    store<V>(y + i, v);
  }
};

// dx = dy (0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2)), t = tanh(c (x + a x^3)).
// Every value is read before it is written, so dx may alias dy.
struct GeluBackward {
  float* dx;
  const float* dy;
  const float* x;
  template <int V>
  __device__ void at(std::size_t i) const {
    float v[V], g[V];
    load<V>(x + i, v);
    load<V>(dy + i, g);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float t = tanhf(kGeluC * (v[k] + kGeluA * v[k] * v[k] * v[k]));
      const float dt = kGeluC * (1.0f + kGelu3A * v[k] * v[k]);
      g[k] = g[k] * (0.5f * (1.0f + t) + 0.5f * v[k] * (1.0f - t * t) * dt);
    }
    store<V>(dx + i, g);
  }
};

// h: [rows, 2 ff] = gate | up; y: [rows, ff] = silu(gate) up, silu(g) = g / (1 + e^-g).
struct SwigluForward {
  float* y;
  const float* h;
  std::size_t ff;
  template <int V>
  __device__ void at(std::size_t r, std::size_t j) const {
    float g[V], u[V];
    load<V>(h + r * 2 * ff + j, g);
    load<V>(h + r * 2 * ff + ff + j, u);
#pragma unroll
    for (int k = 0; k < V; ++k) g[k] = g[k] / (1.0f + expf(-g[k])) * u[k];
    store<V>(y + r * ff + j, g);
  }
};

// d gate = dy up s (1 + g (1 - s)) with s = sigmoid(g); d up = dy silu(g).
struct SwigluBackward {
  float* dh;
  const float* dy;
  const float* h;
  std::size_t ff;
  template <int V>
  __device__ void at(std::size_t r, std::size_t j) const {
    float g[V], u[V], d[V], dg[V], du[V];
    load<V>(h + r * 2 * ff + j, g);
    load<V>(h + r * 2 * ff + ff + j, u);
    load<V>(dy + r * ff + j, d);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float s = 1.0f / (1.0f + expf(-g[k]));
      dg[k] = d[k] * u[k] * s * (1.0f + g[k] * (1.0f - s));
      du[k] = d[k] * g[k] * s;
    }
    store<V>(dh + r * 2 * ff + j, dg);
    store<V>(dh + r * 2 * ff + ff + j, du);
  }
};

// --- rotary embedding ----------------------------------------------------------------

// Rotates pair p = h * half + j (element j of q/k head h with element j + half) of row
// r by sign * the angle of its position: positions[r], or r % seq when positions is
// null. Columns of the launch are the (n_head + n_kv) * half pairs of a row.
struct Rope {
  float* qkv;
  const float* cos_table;  // [positions, half]
  const float* sin_table;
  const std::int32_t* positions;
  std::size_t seq, width;
  unsigned hd, half;
  float sign;
  template <int V>
  __device__ void at(std::size_t r, std::size_t p) const {
    static_assert(V == 1, "one pair per thread");
    const unsigned h = static_cast<unsigned>(p) / half, j = static_cast<unsigned>(p) % half;
    const std::size_t pos = positions != nullptr ? static_cast<std::size_t>(positions[r]) : r % seq;
    float* a = qkv + r * width + static_cast<std::size_t>(h) * hd + j;
    float* b = a + half;
    const float c = cos_table[pos * half + j], sj = sign * sin_table[pos * half + j];
    const float xa = *a, xb = *b;
    *a = xa * c - xb * sj;
    *b = xb * c + xa * sj;
  }
};

void launch_rope(const char* name, float* qkv, const float* cos, const float* sin, std::size_t rows,
                 std::size_t seq, const std::int32_t* positions, std::size_t n_head,
                 std::size_t n_kv, std::size_t hd, float sign) {
  const auto half = static_cast<unsigned>(hd / 2);
  const std::size_t width = (n_head + 2 * n_kv) * hd;
  const Rope op{qkv, cos, sin, positions, seq, width, static_cast<unsigned>(hd), half, sign};
  launch_rows_of<1>(name, op, rows, (n_head + n_kv) * half);
}

// --- embeddings ----------------------------------------------------------------------

// x[r] = wte[tokens[r]] + wpe[positions[r] or r % seq] (wpe may be null).
struct Embedding {
  float* x;
  const std::int32_t* tokens;
  const float* wte;
  const float* wpe;
  const std::int32_t* positions;
  std::size_t seq, d;
  template <int V>
  __device__ void at(std::size_t r, std::size_t i) const {
    float e[V];
    load<V>(wte + static_cast<std::size_t>(tokens[r]) * d + i, e);
    if (wpe != nullptr) {
      const std::size_t pos =
          positions != nullptr ? static_cast<std::size_t>(positions[r]) : r % seq;
      float pe[V];
      load<V>(wpe + pos * d + i, pe);
#pragma unroll
      for (int k = 0; k < V; ++k) e[k] += pe[k];
    }
    store<V>(x + r * d + i, e);
  }
};

// dwte[tokens[r]] += dx[r]: rows with the same token meet, so the adds are atomic.
struct EmbeddingTokenGrad {
  float* dwte;
  const float* dx;
  const std::int32_t* tokens;
  std::size_t d;
  template <int V>
  __device__ void at(std::size_t r, std::size_t i) const {
    float g[V];
    load<V>(dx + r * d + i, g);
    float* e = dwte + static_cast<std::size_t>(tokens[r]) * d + i;
#pragma unroll
    for (int k = 0; k < V; ++k) atomicAdd(e + k, g[k]);
  }
};

// dwpe[t] += dx[t], dx[t + seq], ... in row order: one thread per (position, column),
// so no atomics and the same order as the CPU.
struct EmbeddingPositionGrad {
  float* dwpe;
  const float* dx;
  std::size_t rows, seq, d;
  template <int V>
  __device__ void at(std::size_t t, std::size_t i) const {
    float acc[V];
    load<V>(dwpe + t * d + i, acc);
    for (std::size_t r = t; r < rows; r += seq) {
      float g[V];
      load<V>(dx + r * d + i, g);
#pragma unroll
      for (int k = 0; k < V; ++k) acc[k] += g[k];
    }
    store<V>(dwpe + t * d + i, acc);
  }
};

// --- cross-entropy -------------------------------------------------------------------

// Online log-sum-exp state: every value seen so far is <= m and s = sum e^(z - m).
// m starts at -FLT_MAX rather than -inf so that no difference is inf - inf: a -inf
// logit then adds e^-inf = 0, and merging an empty state adds 0 * 0.
__device__ __forceinline__ void lse_add(float& m, float& s, float z) {
  if (z > m) {
    s = s * expf(m - z) + 1.0f;
    m = z;
  } else {
    s += expf(z - m);
  }
}

__device__ __forceinline__ void lse_merge(float& m, float& s, float m2, float s2) {
  const float mx = fmaxf(m, m2);
  s = s * expf(m - mx) + s2 * expf(m2 - mx);
  m = mx;
}

__device__ __forceinline__ void lse_warp(float& m, float& s) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(kFullMask, m, o);
    const float s2 = __shfl_xor_sync(kFullMask, s, o);
    lse_merge(m, s, m2, s2);
  }
}

constexpr unsigned kLossThreads = 512;

// One block per row (grid-stride over rows), one pass over the logits:
// lse[r] = log sum_j e^z[j]; losses[r] = lse[r] - z[targets[r]].
template <int V>
__global__ void __launch_bounds__(kLossThreads)
    cross_entropy_forward_kernel(float* losses, float* lse, const float* logits,
                                 const std::int32_t* targets, std::size_t rows, std::size_t vocab) {
  __shared__ float warp_m[kLossThreads / 32], warp_s[kLossThreads / 32];
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (std::size_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* z = logits + r * vocab;
    float m = -FLT_MAX, s = 0.0f;
    for (std::size_t i = threadIdx.x * V; i < vocab; i += kLossThreads * V) {
      float v[V];
      load<V>(z + i, v);
#pragma unroll
      for (int k = 0; k < V; ++k) lse_add(m, s, v[k]);
    }
    lse_warp(m, s);
    if (lane == 0) {
      warp_m[warp] = m;
      warp_s[warp] = s;
    }
    __syncthreads();
    if (warp == 0) {
      m = lane < kLossThreads / 32 ? warp_m[lane] : -FLT_MAX;
      s = lane < kLossThreads / 32 ? warp_s[lane] : 0.0f;
      lse_warp(m, s);
      if (lane == 0) {
        const float l = m + logf(s);
        lse[r] = l;
        losses[r] = l - z[targets[r]];
      }
    }
    __syncthreads();  // warp 0 has read warp_m/warp_s before the next row writes them
  }
}

// logits[r][j] = scale (e^(z - lse[r]) - [j == targets[r]]), in place.
struct CrossEntropyBackward {
  float* logits;
  const float* lse;
  const std::int32_t* targets;
  std::size_t vocab;
  float scale;
  template <int V>
  __device__ void at(std::size_t r, std::size_t j) const {
    float* z = logits + r * vocab + j;
    const float l = lse[r];
    const std::size_t t = static_cast<std::size_t>(targets[r]);
    float v[V];
    load<V>(z, v);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      v[k] = scale * expf(v[k] - l);
      if (j + k == t) v[k] -= scale;
    }
    store<V>(z, v);
  }
};

// --- vectors -------------------------------------------------------------------------

struct Add {  // y = a + b; y may alias a or b
  float* y;
  const float* a;
  const float* b;
  template <int V>
  __device__ void at(std::size_t i) const {
    float u[V], v[V];
    load<V>(a + i, u);
    load<V>(b + i, v);
#pragma unroll
    for (int k = 0; k < V; ++k) u[k] += v[k];
    store<V>(y + i, u);
  }
};

struct Scale {  // x *= s
  float* x;
  float s;
  template <int V>
  __device__ void at(std::size_t i) const {
    float v[V];
    load<V>(x + i, v);
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] *= s;
    store<V>(x + i, v);
  }
};

// Sum of squares in double, deterministic: a grid fixed by n (at most kSumBlocks
// blocks) writes one partial per block, then one block adds them in a fixed order.
constexpr unsigned kSumBlocks = 512;
constexpr unsigned kSumThreads = 256;

__device__ double g_sum_partials[kSumBlocks];
__device__ double g_sum_total;

template <int V>
__global__ void __launch_bounds__(kSumThreads)
    sum_squares_kernel(const float* x, std::size_t count) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * kSumThreads;
  double s = 0.0;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * kSumThreads + threadIdx.x; i < count;
       i += stride) {
    float v[V];
    load<V>(x + i * V, v);
#pragma unroll
    for (int k = 0; k < V; ++k) s += static_cast<double>(v[k]) * static_cast<double>(v[k]);
  }
  s = block_sum(s);
  if (threadIdx.x == 0) g_sum_partials[blockIdx.x] = s;
}

__global__ void __launch_bounds__(kSumBlocks) sum_partials_kernel(unsigned blocks) {
  const double s = block_sum(threadIdx.x < blocks ? g_sum_partials[threadIdx.x] : 0.0);
  if (threadIdx.x == 0) g_sum_total = s;
}

// bf16 <-> fp32, round to nearest even. V = 4 moves the 4 bf16 values as one 8-byte uint2.
struct ToBf16 {
  std::uint16_t* dst;
  const float* src;
  template <int V>
  __device__ void at(std::size_t i) const {
    float v[V];
    load<V>(src + i, v);
    if constexpr (V == 4) {
      uint2 packed;
      packed.x = float_to_bf16(v[0]) | static_cast<unsigned>(float_to_bf16(v[1])) << 16;
      packed.y = float_to_bf16(v[2]) | static_cast<unsigned>(float_to_bf16(v[3])) << 16;
      *reinterpret_cast<uint2*>(dst + i) = packed;
    } else {
      dst[i] = float_to_bf16(v[0]);
    }
  }
};

struct FromBf16 {
  float* dst;
  const std::uint16_t* src;
  template <int V>
  __device__ void at(std::size_t i) const {
    float v[V];
    if constexpr (V == 4) {
      const uint2 packed = *reinterpret_cast<const uint2*>(src + i);
      v[0] = bf16_to_float(static_cast<std::uint16_t>(packed.x & 0xffffu));
      v[1] = bf16_to_float(static_cast<std::uint16_t>(packed.x >> 16));
      v[2] = bf16_to_float(static_cast<std::uint16_t>(packed.y & 0xffffu));
      v[3] = bf16_to_float(static_cast<std::uint16_t>(packed.y >> 16));
    } else {
      v[0] = bf16_to_float(src[i]);
    }
    store<V>(dst + i, v);
  }
};

// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p = p shrink - lr (m c1) / (sqrt(v c2) + eps).
struct AdamWStep {
  float* p;
  const float* g;
  float* m;
  float* v;
  float lr, b1, b2, eps, c1, c2, shrink;
  template <int V>
  __device__ void at(std::size_t i) const {
    float pv[V], gv[V], mv[V], vv[V];
    load<V>(p + i, pv);
    load<V>(g + i, gv);
    load<V>(m + i, mv);
    load<V>(v + i, vv);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      mv[k] = b1 * mv[k] + (1.0f - b1) * gv[k];
      vv[k] = b2 * vv[k] + (1.0f - b2) * gv[k] * gv[k];
      const float mh = mv[k] * c1, vh = vv[k] * c2;
      pv[k] = pv[k] * shrink - lr * mh / (sqrtf(vh) + eps);
    }
    store<V>(p + i, pv);
    store<V>(m + i, mv);
    store<V>(v + i, vv);
  }
};

}  // namespace

void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* w,
                       const float* b, std::size_t rows, std::size_t d, float eps) {
  if (rows == 0 || d == 0) return;
  const unsigned blocks = row_blocks(rows);
  if (vec4(d, y, x, w, b))
    layernorm_forward_kernel<4>
        <<<blocks, kRowWarps * 32, 0, cu_stream()>>>(y, mean, rstd, x, w, b, rows, d, eps);
  else
    layernorm_forward_kernel<1>
        <<<blocks, kRowWarps * 32, 0, cu_stream()>>>(y, mean, rstd, x, w, b, rows, d, eps);
  check_launch("layernorm_forward");
}

void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                        const float* mean, const float* rstd, const float* w, std::size_t rows,
                        std::size_t d) {
  if (rows == 0 || d == 0) return;
  const unsigned blocks = row_blocks(rows);
  if (vec4(d, dx, dy, x, w))
    layernorm_backward_kernel<4>
        <<<blocks, kRowWarps * 32, 0, cu_stream()>>>(dx, dy, x, mean, rstd, w, rows, d);
  else
    layernorm_backward_kernel<1>
        <<<blocks, kRowWarps * 32, 0, cu_stream()>>>(dx, dy, x, mean, rstd, w, rows, d);
  check_launch("layernorm_backward");
  launch_columns("layernorm_backward (dw, db)", LayerNormParamGrads{dw, db, dy, x, mean, rstd, d},
                 rows, d);
}

void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, std::size_t rows,
                     std::size_t d, float eps) {
  if (rows == 0 || d == 0) return;
  const unsigned blocks = row_blocks(rows);
  if (vec4(d, y, x, w))
    rmsnorm_forward_kernel<4>
        <<<blocks, kRowWarps * 32, 0, cu_stream()>>>(y, rstd, x, w, rows, d, eps);
  else
    rmsnorm_forward_kernel<1>
        <<<blocks, kRowWarps * 32, 0, cu_stream()>>>(y, rstd, x, w, rows, d, eps);
  check_launch("rmsnorm_forward");
}

void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* rstd,
                      const float* w, std::size_t rows, std::size_t d) {
  if (rows == 0 || d == 0) return;
  const unsigned blocks = row_blocks(rows);
  if (vec4(d, dx, dy, x, w))
    rmsnorm_backward_kernel<4>
        <<<blocks, kRowWarps * 32, 0, cu_stream()>>>(dx, dy, x, rstd, w, rows, d);
  else
    rmsnorm_backward_kernel<1>
        <<<blocks, kRowWarps * 32, 0, cu_stream()>>>(dx, dy, x, rstd, w, rows, d);
  check_launch("rmsnorm_backward");
  launch_columns("rmsnorm_backward (dw)", RmsNormParamGrad{dw, dy, x, rstd, d}, rows, d);
}

void gelu_forward(float* y, const float* x, std::size_t n) {
  launch_map("gelu_forward", GeluForward{y, x}, n, vec4(n, y, x));
}

void gelu_backward(float* dx, const float* dy, const float* x, std::size_t n) {
  launch_map("gelu_backward", GeluBackward{dx, dy, x}, n, vec4(n, dx, dy, x));
}

void swiglu_forward(float* y, const float* h, std::size_t rows, std::size_t ff) {
  launch_rows("swiglu_forward", SwigluForward{y, h, ff}, rows, ff, vec4(ff, y, h));
}

void swiglu_backward(float* dh, const float* dy, const float* h, std::size_t rows, std::size_t ff) {
  launch_rows("swiglu_backward", SwigluBackward{dh, dy, h, ff}, rows, ff, vec4(ff, dh, dy, h));
}

void rope_forward(float* qkv, const float* cos, const float* sin, std::size_t rows, std::size_t seq,
                  std::size_t n_head, std::size_t n_kv, std::size_t hd) {
  launch_rope("rope_forward", qkv, cos, sin, rows, seq, nullptr, n_head, n_kv, hd, 1.0f);
}

void rope_backward(float* dqkv, const float* cos, const float* sin, std::size_t rows,
                   std::size_t seq, std::size_t n_head, std::size_t n_kv, std::size_t hd) {
  launch_rope("rope_backward", dqkv, cos, sin, rows, seq, nullptr, n_head, n_kv, hd, -1.0f);
}

void rope_forward_at(float* qkv, const float* cos, const float* sin, std::size_t rows,
                     const std::int32_t* positions, std::size_t n_head, std::size_t n_kv,
                     std::size_t hd) {
  launch_rope("rope_forward_at", qkv, cos, sin, rows, 1, positions, n_head, n_kv, hd, 1.0f);
}

void embedding_forward(float* x, const std::int32_t* tokens, const float* wte, const float* wpe,
                       std::size_t rows, std::size_t seq, std::size_t d) {
  launch_rows("embedding_forward", Embedding{x, tokens, wte, wpe, nullptr, seq, d}, rows, d,
              vec4(d, x, wte, wpe));
}

void embedding_forward_at(float* x, const std::int32_t* tokens, const float* wte, const float* wpe,
                          std::size_t rows, const std::int32_t* positions, std::size_t d) {
  launch_rows("embedding_forward_at", Embedding{x, tokens, wte, wpe, positions, 1, d}, rows, d,
              vec4(d, x, wte, wpe));
}

void embedding_backward(float* dwte, float* dwpe, const float* dx, const std::int32_t* tokens,
                        std::size_t rows, std::size_t seq, std::size_t d) {
  launch_rows("embedding_backward (dwte)", EmbeddingTokenGrad{dwte, dx, tokens, d}, rows, d,
              vec4(d, dx));
  if (dwpe != nullptr && rows > 0) {
    const std::size_t positions = rows < seq ? rows : seq;
    launch_rows("embedding_backward (dwpe)", EmbeddingPositionGrad{dwpe, dx, rows, seq, d},
                positions, d, vec4(d, dwpe, dx));
  }
}

void cross_entropy_forward(float* losses, float* lse, const float* logits,
                           const std::int32_t* targets, std::size_t rows, std::size_t vocab) {
  if (rows == 0 || vocab == 0) return;
  const unsigned blocks = blocks_for(rows, 1);
  if (vec4(vocab, logits))
    cross_entropy_forward_kernel<4>
        <<<blocks, kLossThreads, 0, cu_stream()>>>(losses, lse, logits, targets, rows, vocab);
  else
    cross_entropy_forward_kernel<1>
        <<<blocks, kLossThreads, 0, cu_stream()>>>(losses, lse, logits, targets, rows, vocab);
  check_launch("cross_entropy_forward");
}

void cross_entropy_backward(float* logits, const float* lse, const std::int32_t* targets,
                            std::size_t rows, std::size_t vocab, float scale) {
  launch_rows("cross_entropy_backward", CrossEntropyBackward{logits, lse, targets, vocab, scale},
              rows, vocab, vec4(vocab, logits));
}

void add(float* y, const float* a, const float* b, std::size_t n) {
  launch_map("add", Add{y, a, b}, n, vec4(n, y, a, b));
}

void column_sum(float* out, const float* x, std::size_t rows, std::size_t cols) {
  launch_columns("column_sum", ColumnSum{out, x, cols}, rows, cols);
}

void scale(float* x, float s, std::size_t n) { launch_map("scale", Scale{x, s}, n, vec4(n, x)); }

double sum_squares(const float* x, std::size_t n) {
  if (n == 0) return 0.0;
  const bool vec = vec4(n, x);
  const std::size_t count = vec ? n / 4 : n;
  const std::size_t wanted = (count + kSumThreads - 1) / kSumThreads;
  const unsigned blocks = static_cast<unsigned>(wanted < kSumBlocks ? wanted : kSumBlocks);
  if (vec)
    sum_squares_kernel<4><<<blocks, kSumThreads, 0, cu_stream()>>>(x, count);
  else
    sum_squares_kernel<1><<<blocks, kSumThreads, 0, cu_stream()>>>(x, count);
  check_launch("sum_squares");
  sum_partials_kernel<<<1, kSumBlocks, 0, cu_stream()>>>(blocks);
  check_launch("sum_squares (partials)");
  double total = 0.0;
  check(cudaMemcpyFromSymbolAsync(&total, g_sum_total, sizeof total, 0, cudaMemcpyDeviceToHost,
                                  cu_stream()),
        "sum_squares (copy)");
  check(cudaStreamSynchronize(cu_stream()), "sum_squares (synchronize)");
  return total;
}

void to_bf16(std::uint16_t* dst, const float* src, std::size_t n) {
  launch_map("to_bf16", ToBf16{dst, src}, n, n % 4 == 0 && aligned(dst, 8) && aligned(src, 16));
}

void from_bf16(float* dst, const std::uint16_t* src, std::size_t n) {
  launch_map("from_bf16", FromBf16{dst, src}, n, n % 4 == 0 && aligned(dst, 16) && aligned(src, 8));
}

void adamw(float* p, const float* g, float* m, float* v, std::size_t n, float lr, float b1,
           float b2, float eps, float c1, float c2, float shrink) {
  launch_map("adamw", AdamWStep{p, g, m, v, lr, b1, b2, eps, c1, c2, shrink}, n,
             vec4(n, p, g, m, v));
}

}  // namespace whtlm::backend::cuda
