// AdamW (decoupled weight decay), the learning-rate schedule and the gradient norm.
#include <omp.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "backend/cpu/parallel.hpp"
#include "whtlm/train.hpp"

namespace whtlm {

AdamW::AdamW(const ParamLayout& layout, AdamWConfig config)
    : layout_(layout), config_(config), m_(layout.total_floats()), v_(layout.total_floats()) {}

// Per element, with bias-corrected moments m^ = m / (1 - b1^t), v^ = v / (1 - b2^t):
//   p -= lr * wd * p (decaying tensors only);  p -= lr * m^ / (sqrt(v^) + eps).
void AdamW::update(float* params, const float* grads, float lr, std::int64_t step) {
  const float b1 = config_.beta1, b2 = config_.beta2, eps = config_.eps;
  const double t = static_cast<double>(step);
  const float c1 = static_cast<float>(1.0 / (1.0 - std::pow(double(b1), t)));
  const float c2 = static_cast<float>(1.0 / (1.0 - std::pow(double(b2), t)));
  float* m = m_.data();
  float* v = v_.data();
  for (const TensorSpec& ts : layout_.tensors()) {
    const float shrink = ts.decay ? 1.0f - lr * config_.weight_decay : 1.0f;
    backend::cpu::parallel_ranges(ts.numel, ts.numel * 8, [&](std::size_t i0, std::size_t len) {
      float* p = params + ts.offset + i0;
      const float* g = grads + ts.offset + i0;
      float* mm = m + ts.offset + i0;
      float* vv = v + ts.offset + i0;
#pragma omp simd
      for (std::size_t i = 0; i < len; ++i) {
        mm[i] = b1 * mm[i] + (1.0f - b1) * g[i];
        vv[i] = b2 * vv[i] + (1.0f - b2) * g[i] * g[i];
        const float mh = mm[i] * c1, vh = vv[i] * c2;
        p[i] = p[i] * shrink - lr * mh / (std::sqrt(vh) + eps);
      }
    });
  }
}

double learning_rate(std::int64_t step, std::int64_t warmup, std::int64_t total, double peak,
                     double min_ratio) {
  if (warmup > 0 && step <= warmup) return peak * static_cast<double>(step) / double(warmup);
  if (step >= total) return peak * min_ratio;
  const double progress = static_cast<double>(step - warmup) / static_cast<double>(total - warmup);
  const double cosine = 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  return peak * (min_ratio + (1.0 - min_ratio) * cosine);
}

double global_norm(std::span<const float> g) {
  // Fixed chunks summed in order: the same answer for any thread count.
  constexpr std::size_t kChunk = 1 << 16;
  const std::size_t chunks = (g.size() + kChunk - 1) / kChunk;
  std::vector<double> partial(chunks, 0.0);
  backend::cpu::parallel_ranges(chunks, g.size(), [&](std::size_t c0, std::size_t nc) {
    for (std::size_t c = c0; c < c0 + nc; ++c) {
      const std::size_t lo = c * kChunk, hi = std::min(g.size(), lo + kChunk);
      double s = 0;
#pragma omp simd reduction(+ : s)
      for (std::size_t i = lo; i < hi; ++i) s += double(g[i]) * double(g[i]);
      partial[c] = s;
    }
  });
  double total = 0;
  for (double s : partial) total += s;
  return std::sqrt(total);
}

}  // namespace whtlm
