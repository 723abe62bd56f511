// LayerNorm (gpt2) and RMSNorm (llama) on the GPU, forward and backward side by side, as
// in src/backend/cpu/norm.cpp: one warp per row, with shuffles for the row sums; the
// parameter gradients are column sums over rows (launch.cuh).
#include "backend/cuda/launch.cuh"

namespace whtlm::backend::cuda {
namespace {

// Warp-per-row kernels: 4 warps (rows) per block.
constexpr unsigned kRowWarps = 4;

unsigned row_blocks(std::size_t rows) { return blocks_for(rows, kRowWarps); }

__device__ __forceinline__ std::size_t first_row() {
  return static_cast<std::size_t>(blockIdx.x) * kRowWarps + threadIdx.x / 32;
}
__device__ __forceinline__ std::size_t row_stride() {
  return static_cast<std::size_t>(gridDim.x) * kRowWarps;
}

// sum_i term(xr[i]) over a row of d values: this lane's values (from lane * V, strided
// by 32 V) in order, then over the warp (every lane gets the sum).
template <int V, class Term>
__device__ __forceinline__ float row_sum(const float* xr, std::size_t d, unsigned lane, Term term) {
  float s = 0.0f;
  for (std::size_t i = lane * V; i < d; i += 32 * V) {
    float v[V];
    load<V>(xr + i, v);
#pragma unroll
    for (int k = 0; k < V; ++k) s += term(v[k]);
  }
  return warp_sum(s);
}

// dxr[i] += grad(xr[i], gr[i], w[i]) over a row of d values, this lane's values.
template <int V, class Grad>
__device__ __forceinline__ void add_row_grad(float* dxr, const float* xr, const float* gr,
                                             const float* w, std::size_t d, unsigned lane,
                                             Grad grad) {
  for (std::size_t i = lane * V; i < d; i += 32 * V) {
    float xv[V], gv[V], wv[V], dv[V];
    load<V>(xr + i, xv);
    load<V>(gr + i, gv);
    load<V>(w + i, wv);
    load<V>(dxr + i, dv);
#pragma unroll
    for (int k = 0; k < V; ++k) dv[k] += grad(xv[k], gv[k], wv[k]);
    store<V>(dxr + i, dv);
  }
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
    const float m = row_sum<V>(xr, d, lane, [](float v) { return v; }) / fd;
    const float q = row_sum<V>(xr, d, lane, [m](float v) { return (v - m) * (v - m); });
    const float rs = 1.0f / sqrtf(q / fd + eps);
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
    add_row_grad<V>(dxr, xr, gr, w, d, lane, [=](float xv, float g, float wv) {
      return rs * (g * wv - sg - (xv - m) * rs * sgx);
    });
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
    const float s = row_sum<V>(xr, d, lane, [](float v) { return v * v; });
    const float rs = 1.0f / sqrtf(s / fd + eps);
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
    add_row_grad<V>(dxr, xr, gr, w, d, lane,
                    [=](float xv, float g, float wv) { return rs * (g * wv - xv * c); });
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

}  // namespace whtlm::backend::cuda
