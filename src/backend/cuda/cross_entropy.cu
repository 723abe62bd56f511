// The softmax cross-entropy at the top of the model on the GPU (on the CPU it sits in
// src/backend/cpu/embedding.cpp): the loss and log-sum-exp of each row of logits in one
// pass (an online log-sum-exp, one block per row), and the gradient in place.
#include <cfloat>

#include "backend/cuda/launch.cuh"

namespace whtlm::backend::cuda {
namespace {

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

}  // namespace

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

}  // namespace whtlm::backend::cuda
