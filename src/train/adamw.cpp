// AdamW (decoupled weight decay), the learning-rate schedule and the gradient norm.
#include <cmath>
#include <numbers>
#include <vector>

#include "backend/backend.hpp"
#include "whtlm/train.hpp"

namespace whtlm {

// The moments in host memory (through the CPU backend's allocator, so they count in
// its peak) and, once a GPU model has been updated, on that device.
struct AdamW::State {
  backend::DeviceArray<float> m, v;
  backend::Backend* device = nullptr;
  backend::DeviceArray<float> device_m, device_v;
};

AdamW::AdamW(const ParamLayout& layout, AdamWConfig config)
    : layout_(layout), config_(config), state_(std::make_unique<State>()) {
  backend::Backend& cpu = backend::cpu_backend();
  state_->m = backend::DeviceArray<float>(cpu, layout.total_floats());
  state_->v = backend::DeviceArray<float>(cpu, layout.total_floats());
}
AdamW::~AdamW() = default;

std::span<float> AdamW::exp_avg() { return {state_->m.data(), state_->m.size()}; }
std::span<float> AdamW::exp_avg_sq() { return {state_->v.data(), state_->v.size()}; }

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
  adamw_update(backend::cpu_backend(), layout_, config_, params, grads, state_->m.data(),
               state_->v.data(), lr, step);
}

void AdamW::update(Transformer& model, float lr, std::int64_t step) {
  backend::Backend& be = model.backend();
  if (be.device() == Device::cpu) {
    update(model.device_params(), model.device_grads(), lr, step);
    return;
  }
  State& s = *state_;
  if (s.device == nullptr) {
    s.device = &be;
    s.device_m = backend::DeviceArray<float>(be, s.m.size());
    s.device_v = backend::DeviceArray<float>(be, s.v.size());
    upload_state();
  }
  adamw_update(be, layout_, config_, model.device_params(), model.device_grads(), s.device_m.data(),
               s.device_v.data(), lr, step);
}

void AdamW::download_state() {
  State& s = *state_;
  if (s.device == nullptr) return;
  s.device->download(s.m.data(), s.device_m.data(), s.m.size() * sizeof(float));
  s.device->download(s.v.data(), s.device_v.data(), s.v.size() * sizeof(float));
}

void AdamW::upload_state() {
  State& s = *state_;
  if (s.device == nullptr) return;
  s.device->upload(s.device_m.data(), s.m.data(), s.m.size() * sizeof(float));
  s.device->upload(s.device_v.data(), s.v.data(), s.v.size() * sizeof(float));
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
