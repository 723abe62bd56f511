// The AdamW step on the GPU: one elementwise pass over the parameters that updates both
// moments and the parameter, with the same update as the CPU backend's adamw.
#include "backend/cuda/launch.cuh"

namespace whtlm::backend::cuda {
namespace {

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

void adamw(float* p, const float* g, float* m, float* v, std::size_t n, float lr, float b1,
           float b2, float eps, float c1, float c2, float shrink) {
  launch_map("adamw", AdamWStep{p, g, m, v, lr, b1, b2, eps, c1, c2, shrink}, n,
             vec4(n, p, g, m, v));
}

}  // namespace whtlm::backend::cuda
