// AdamW (decoupled weight decay), the learning-rate schedule and the gradient norm.
#include <cmath>
#include <numbers>
#include <vector>

#include "backend/backend.hpp"
#include "whtlm/train.hpp"

namespace whtlm {

struct AdamW::OnDevice {
  backend::Backend& be;
  backend::DeviceArray<float> m, v;
};

AdamW::AdamW(const ParamLayout& layout, AdamWConfig config)
    : layout_(layout), config_(config), m_(layout.total_floats()), v_(layout.total_floats()) {}
AdamW::~AdamW() = default;

namespace {

// Per element, with bias-corrected moments m^ = m / (1 - b1^t), v^ = v / (1 - b2^t):
//   p -= lr * wd * p (decaying tensors only);  p -= lr * m^ / (sqrt(v^) + eps).
// One backend call per tensor, since weight decay follows the tensor.
void adamw_update(backend::Backend& be, const ParamLayout& layout, const AdamWConfig& config,
                  float* params, const float* grads, float* m, float* v, float lr,
                  std::int64_t step) {
  const double t = static_cast<double>(step);
  const float c1 = static_cast<float>(1.0 / (1.0 - std::pow(double(config.beta1), t)));
  const float c2 = static_cast<float>(1.0 / (1.0 - std::pow(double(config.beta2), t)));
  for (const TensorSpec& ts : layout.tensors()) {
    const float shrink = ts.decay ? 1.0f - lr * config.weight_decay : 1.0f;
    be.adamw(params + ts.offset, grads + ts.offset, m + ts.offset, v + ts.offset, ts.numel, lr,
             config.beta1, config.beta2, config.eps, c1, c2, shrink);
  }
}

}  // namespace

void AdamW::update(float* params, const float* grads, float lr, std::int64_t step) {
  adamw_update(backend::cpu_backend(), layout_, config_, params, grads, m_.data(), v_.data(), lr,
               step);
}

void AdamW::update(Transformer& model, float lr, std::int64_t step) {
  backend::Backend& be = model.backend();
  if (be.device() == Device::cpu) {
    update(model.device_params(), model.device_grads(), lr, step);
    return;
  }
  if (!device_) {
    const std::size_t n = m_.size();
    device_.reset(
        new OnDevice{be, backend::DeviceArray<float>(be, n), backend::DeviceArray<float>(be, n)});
    upload_state();
  }
  adamw_update(be, layout_, config_, model.device_params(), model.device_grads(), device_->m.data(),
               device_->v.data(), lr, step);
}

void AdamW::download_state() {
  if (!device_) return;
  device_->be.download(m_.data(), device_->m.data(), m_.size() * sizeof(float));
  device_->be.download(v_.data(), device_->v.data(), v_.size() * sizeof(float));
}

void AdamW::upload_state() {
  if (!device_) return;
  device_->be.upload(device_->m.data(), m_.data(), m_.size() * sizeof(float));
  device_->be.upload(device_->v.data(), v_.data(), v_.size() * sizeof(float));
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
  return std::sqrt(backend::cpu_backend().sum_squares(g.data(), g.size()));
}

}  // namespace whtlm
