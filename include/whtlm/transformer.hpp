// The running model: parameters, gradients and activations in planned buffers, a
// forward pass over a batch of token sequences and its explicit backward pass.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "whtlm/device_type.hpp"
#include "whtlm/model.hpp"

namespace whtlm {
namespace backend {
class Backend;  // src/backend/backend.hpp: the library's kernels on one device
}
namespace model {
struct MemoryPart;  // src/model/memory.hpp
}

// A zero-initialised float array aligned to 64 bytes.
class FloatBuffer {
 public:
  FloatBuffer() = default;
  explicit FloatBuffer(std::size_t n);
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  std::size_t size() const { return size_; }
  std::span<float> span() { return {data_.get(), size_}; }
  std::span<const float> span() const { return {data_.get(), size_}; }

 private:
  struct Free {
    void operator()(float* p) const;
  };
  std::unique_ptr<float[], Free> data_;
  std::size_t size_ = 0;
};

// Floats of activation memory a training step at (batch, seq) needs on the CPU:
// everything the forward pass keeps for the backward pass, plus the backward's
// scratch (the CUDA backend's attention needs none of the latter; a model's own
// figure is Transformer::activation_bytes()). At bf16 the activations that only feed
// products (norm outputs, the MLP activation's) are kept in bf16.
std::size_t activation_floats(const ModelConfig& config, int batch, int seq,
                              Precision precision = Precision::fp32);

// The model on one device (Device::cuda: parameters, gradients and activations in GPU
// memory; throws std::runtime_error saying why when CUDA cannot be used), its matrix
// products in fp32 or, on CUDA, bf16 mixed precision. Host-side
// views (params, grads, logits) are the buffers themselves on the CPU and host
// copies on a GPU, as each accessor says.
class Transformer {
 public:
  explicit Transformer(const ModelConfig& config, Device device = Device::cpu,
                       Precision precision = Precision::fp32);
  ~Transformer();
  Transformer(const Transformer&) = delete;
  Transformer& operator=(const Transformer&) = delete;

  const ModelConfig& config() const;
  const ParamLayout& layout() const;
  Device device() const;
  // The parameters in host memory. On a GPU this is a host copy: download_params()
  // refreshes it from the device, upload_params() sends edits to the device (both
  // are no-ops on the CPU, where it is the model's own buffer).
  std::span<float> params();
  std::span<const float> params() const;
  void download_params();
  void upload_params();
  // The gradients, read into host memory (a fresh copy on each call on a GPU).
  std::span<const float> grads();

  // GPT-2's initialisation (see TensorInit), seeded; padding stays zero. `scale`: how
  // wht's gamma starts (ScaleInit).
  void init_weights(std::uint64_t seed, ScaleInit scale = kDefaultScaleInit);
  void zero_grads();
  // sqrt(sum of squared gradients), in double on the device; then grads *= s.
  double grad_norm();
  void scale_grads(float s);

  // The kernels and device buffers, for the library's optimizer and benchmarks.
  backend::Backend& backend() const;
  float* device_params();
  float* device_grads();

  // Sizes the activation arena for up to batch x seq tokens (done by forward when
  // needed; call it first to allocate outside a timed region). A shape whose
  // activations cannot fit in the device's free memory is refused (std::runtime_error
  // naming the sizes and the largest batch that would fit) before allocating.
  void reserve(int batch, int seq);
  std::size_t activation_bytes() const;
  // Refuses, the same way, a training step at batch x seq whose gradients, optimizer
  // state (optimizer_floats_per_param per parameter: AdamW keeps 2) and activations
  // do not fit beside the weights; allocates nothing.
  void check_training_memory(int batch, int seq, int optimizer_floats_per_param = 2);

  // tokens, targets: [batch, seq]. Returns the mean cross-entropy over all positions
  // (targets may be nullptr: logits only, returns 0). Token ids outside the
  // vocabulary throw std::out_of_range naming the position.
  double forward(const std::int32_t* tokens, const std::int32_t* targets, int batch, int seq);
  // The logits of the last forward, [batch * seq, vocab] (a host copy on a GPU);
  // backward overwrites them.
  std::span<const float> logits() const;
  // Gradients of loss_scale * (mean loss of the last forward) with respect to every
  // parameter, added into grads(). The last forward must have had targets.
  void backward(float loss_scale = 1.0f);

 private:
  std::vector<model::MemoryPart> activation_memory(int batch, int seq) const;
  std::string fitting_batch_hint(int seq, double other_bytes) const;

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace whtlm
