// The launch shapes and vector access of the layer kernels besides the GEMMs, attention
// and the Hadamard projection (activation, adamw, cross_entropy, embedding, norm, rope and
// vector .cu). Each of those computes what its CPU op computes (src/backend/cpu/), with the
// same formulas in the same operation order wherever the summation order allows.
//
// Three launch shapes cover almost everything (the norms run a warp per row, norm.cu):
//   map:    elementwise over n values, grid-stride, V = 4 (float4) when n % 4 == 0 and
//           every pointer is 16-byte aligned, V = 1 otherwise;
//   rows:   [rows, cols] with blockIdx.y striding over rows and x over column groups of
//           V values (no division per element);
//   column sums over rows (norm parameter gradients, bias gradients): per-block
//           partials added with one atomicAdd per column and block, so they accumulate
//           into what is already there, like the CPU ops; the order of those additions,
//           and so the last bits, can vary from run to run.
// Included by those .cu files only.
#pragma once

#include "backend/cuda/common.cuh"

namespace whtlm::backend::cuda {

constexpr unsigned kThreads = 256;
constexpr unsigned kMaxGridY = 65535;

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

inline bool aligned(const void* p, std::size_t bytes) {
  return reinterpret_cast<std::uintptr_t>(p) % bytes == 0;
}

// Whether n values at each pointer can be read as float4 (null pointers are unused).
template <class... P>
bool vec4(std::size_t n, const P*... p) {
  return n % 4 == 0 && (aligned(p, 16) && ...);
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

}  // namespace whtlm::backend::cuda
