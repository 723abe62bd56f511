// The small vector ops of the GPU backend: add, column sums (bias gradients), scale, the
// deterministic sum of squares (gradient norms) and the bf16 <-> fp32 conversions.
#include "backend/cuda/launch.cuh"

namespace whtlm::backend::cuda {
namespace {

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

}  // namespace

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

}  // namespace whtlm::backend::cuda
