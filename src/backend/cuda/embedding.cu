// Token and learned position embeddings on the GPU, as in src/backend/cpu/embedding.cpp:
// the table lookups (position row % seq, or a position per row at inference) and their
// gradients into the tables.
#include "backend/cuda/launch.cuh"

namespace whtlm::backend::cuda {
namespace {

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

}  // namespace

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

}  // namespace whtlm::backend::cuda
