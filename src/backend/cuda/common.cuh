// What every CUDA source of the backend shares: error checks, the stream, launch
// arithmetic and bf16 conversion. Included by .cu files only.
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

}  // namespace whtlm::backend::cuda
