// What every CUDA source of the backend shares: error checks, the stream, launch
// arithmetic, bf16 conversion and the warp reductions. Included by .cu files only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "backend/cuda/kernels.hpp"

namespace whtlm::backend::cuda {

// Throws std::runtime_error("CUDA: <what>: <message>") when err is not cudaSuccess.
void check(cudaError_t err, const char* what);

inline cudaStream_t cu_stream() { return static_cast<cudaStream_t>(stream()); }

inline unsigned blocks_for(std::size_t n, unsigned threads) {
  const std::size_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 65535u * 32u ? b : 65535u * 32u);
}

__device__ __forceinline__ float bf16_to_float(std::uint16_t v) {
  return __uint_as_float(static_cast<unsigned>(v) << 16);
}
// Round to nearest even (NaN stays NaN).
__device__ __forceinline__ std::uint16_t float_to_bf16(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

constexpr unsigned kFullMask = 0xffffffffu;

// Sum and maximum over the 32 lanes of a warp, every lane getting the result (butterfly
// shuffles). Every lane of the warp must call them.
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

}  // namespace whtlm::backend::cuda
