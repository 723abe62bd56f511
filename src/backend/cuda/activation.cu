// Elementwise activations on the GPU, forward and backward, as in
// src/backend/cpu/activation.cpp: GELU (tanh approximation, gpt2) over n values and
// SwiGLU (llama) over the gate | up halves of each row.
#include "backend/cuda/launch.cuh"

namespace whtlm::backend::cuda {
namespace {

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

}  // namespace

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

}  // namespace whtlm::backend::cuda
