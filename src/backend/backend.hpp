// The backend boundary the model runs through: memory and the float ops of
// src/backend/ops.hpp, on one device. The CPU backend forwards to those ops; the
// CUDA backend (src/backend/cuda/) to its kernels. Pointers passed to a backend's
// ops live on its device; upload/download cross to and from host memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "backend/ops.hpp"
#include "backend/weights.hpp"
#include "whtlm/device_type.hpp"

namespace whtlm::backend {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  // "cpu (AVX-512, 2 threads)" / "cuda: NVIDIA H200 (sm_90, 139.8 GiB)".
  virtual std::string description() const = 0;

  // Memory, in bytes. allocate() returns zero-filled memory aligned to 64 bytes and
  // throws std::runtime_error naming the size and what is available when it cannot.
  virtual void* allocate(std::size_t bytes) = 0;
  // Bytes the device can still give: CPU, the host memory this process may take
  // (cpu/memory.hpp); CUDA, the device's free memory. Plans are checked against it
  // before anything is allocated (model/memory.hpp).
  virtual std::uint64_t memory_available() const = 0;
  virtual void release(void* p) = 0;
  virtual void upload(void* dst, const void* host_src, std::size_t bytes) = 0;
  virtual void download(void* host_dst, const void* src, std::size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void zero(void* dst, std::size_t bytes) = 0;
  // Waits until every op issued so far has finished (a no-op on the CPU).
  virtual void synchronize() = 0;
  // Peak bytes this backend has held allocated at once since start (or the last reset).
  virtual std::size_t peak_allocated() const = 0;
  virtual void reset_peak() = 0;
  // Frees what the backend keeps between ops (CUDA: the bf16 operands' scratch), so
  // that a measurement started after it counts that memory for its own model too.
  virtual void release_caches() = 0;
  // Says that parameters were written other than through this interface's ops (on the
  // CPU, through a pointer): copies of weights a backend keeps in another format are
  // made again from them on their next use.
  virtual void parameters_changed() = 0;

  // The type in which this backend's products read the activations that only feed them
  // (Operand): bf16 for the CPU's bf16 backend, whose norms and activations then write
  // them as bf16 for the products to read as they are; fp32 everywhere else. Every op
  // that takes an Operand accepts fp32 too.
  virtual Operands operand_type() const { return Operands::fp32; }

  virtual void linear_forward(float* y, ConstOperand x, const float* w, const float* b,
                              const LinearShape& s, Write y_write) = 0;
  // x is only read for dw.
  virtual void linear_backward(float* dx, float* dw, float* db, const float* dy, ConstOperand x,
                               const float* w, const LinearShape& s, Write dx_write) = 0;
  // Inference with a packed weight (weights.hpp): y = x W^T + b (b may be nullptr), or
  // y += ... with Write::accumulate; x: [rows, w.in], y: [rows, w.out]. Few rows
  // (decoding) read the packed weight directly; many (prefill) run bf16 products.
  // CPU only: CUDA throws std::invalid_argument.
  virtual void linear_forward_packed(float* y, const float* x, const PackedWeight& w,
                                     const float* b, std::size_t rows, Write y_write) = 0;
  virtual void layernorm_forward(Operand y, float* mean, float* rstd, const float* x,
                                 const float* w, const float* b, const NormShape& s, float eps) = 0;
  virtual void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                                  const float* mean, const float* rstd, const float* w,
                                  const NormShape& s) = 0;
  virtual void rmsnorm_forward(Operand y, float* rstd, const float* x, const float* w,
                               const NormShape& s, float eps) = 0;
  virtual void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x,
                                const float* rstd, const float* w, const NormShape& s) = 0;
  virtual void gelu_forward(Operand y, const float* x, std::size_t n) = 0;
  virtual void gelu_backward(float* dx, const float* dy, const float* x, std::size_t n) = 0;
  virtual void swiglu_forward(Operand y, const float* h, std::size_t rows, std::size_t ff) = 0;
  virtual void swiglu_backward(float* dh, const float* dy, const float* h, std::size_t rows,
                               std::size_t ff) = 0;
  virtual void rope_forward(float* qkv, const float* cos, const float* sin, std::size_t rows,
                            std::size_t seq, const HeadShape& heads) = 0;
  virtual void rope_backward(float* dqkv, const float* cos, const float* sin, std::size_t rows,
                             std::size_t seq, const HeadShape& heads) = 0;
  // Floats of scratch attention_forward/backward need at this shape (0 on CUDA).
  virtual std::size_t attention_scratch_floats(const AttentionShape& s) const = 0;
  virtual void attention_forward(float* out, float* lse, const float* qkv, const AttentionShape& s,
                                 float* scratch) = 0;
  virtual void attention_backward(float* dqkv, const float* dout, const float* qkv,
                                  const float* out, const float* lse, const AttentionShape& s,
                                  float* scratch) = 0;
  virtual void embedding_forward(float* x, const std::int32_t* tokens, const float* wte,
                                 const float* wpe, std::size_t rows, std::size_t seq,
                                 std::size_t d) = 0;
  // Inference: rows at explicit positions, and attention of packed rows against a KV
  // cache. tokens and positions are on the device; segments is a host array.
  virtual void embedding_forward_at(float* x, const std::int32_t* tokens, const float* wte,
                                    const float* wpe, std::size_t rows,
                                    const std::int32_t* positions, std::size_t d) = 0;
  virtual void rope_forward_at(float* qkv, const float* cos, const float* sin, std::size_t rows,
                               const std::int32_t* positions, const HeadShape& heads) = 0;
  virtual std::size_t attention_cached_scratch_floats(const CacheShape& s) const = 0;
  virtual void kv_cache_store(float* k_cache, float* v_cache, const float* qkv,
                              std::size_t qkv_stride, const CachedSegment* segments,
                              std::size_t n_segments, const CacheShape& s) = 0;
  virtual void attention_cached(float* out, const float* q, std::size_t q_stride,
                                const float* k_cache, const float* v_cache,
                                const CachedSegment* segments, std::size_t n_segments,
                                const CacheShape& s, float* scratch) = 0;
  virtual void embedding_backward(float* dwte, float* dwpe, const float* dx,
                                  const std::int32_t* tokens, std::size_t rows, std::size_t seq,
                                  std::size_t d) = 0;
  virtual void cross_entropy_forward(float* losses, float* lse, const float* logits,
                                     const std::int32_t* targets, std::size_t rows,
                                     std::size_t vocab) = 0;
  virtual void cross_entropy_backward(float* logits, const float* lse, const std::int32_t* targets,
                                      std::size_t rows, std::size_t vocab, float scale) = 0;
  virtual void add(float* y, const float* a, const float* b, std::size_t n) = 0;
  virtual void scale(float* x, float s, std::size_t n) = 0;
  // Sum of x[i]^2 in double, the same for any thread count on one device.
  virtual double sum_squares(const float* x, std::size_t n) = 0;
  // The Hadamard output projection (see model/projection.cpp for the maths):
  //   forward:  y += gamma * scale * H x + beta
  //   backward: dgamma += sum_r dy * (scale H x); dbeta += sum_r dy;
  //             dx = scale * H (gamma * dy)  (overwritten; must not alias dy or x)
  virtual void hadamard_projection_forward(float* y, const float* x, const float* gamma,
                                           const float* beta, std::size_t rows, std::size_t n,
                                           float scale) = 0;
  virtual void hadamard_projection_backward(float* dx, float* dgamma, float* dbeta, const float* dy,
                                            const float* x, const float* gamma, std::size_t rows,
                                            std::size_t n, float scale) = 0;
  // AdamW over n elements (see whtlm::AdamW::update): shrink = 1 - lr * wd, or 1.
  virtual void adamw(float* p, const float* g, float* m, float* v, std::size_t n, float lr,
                     float b1, float b2, float eps, float c1, float c2, float shrink) = 0;
};

// The process-wide backend of a device. cuda: throws std::runtime_error saying why
// it cannot run (a build without CUDA, no driver, no device). bf16 on the CPU:
// std::invalid_argument saying why when oneDNN has no bf16 product for this CPU.
Backend& get(Device device, Precision precision = Precision::fp32);
Backend& cpu_backend();
// Whether get(Device::cuda) would succeed; when not, *why says why.
bool cuda_usable(std::string* why = nullptr);

// An array on a backend's device, freed with it.
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(Backend& be, std::size_t n)
      : be_(&be), p_(n ? static_cast<T*>(be.allocate(n * sizeof(T))) : nullptr), n_(n) {}
  DeviceArray(DeviceArray&& o) noexcept : be_(o.be_), p_(o.p_), n_(o.n_) {
    o.p_ = nullptr;
    o.n_ = 0;
  }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) {
      reset();
      be_ = o.be_;
      p_ = o.p_;
      n_ = o.n_;
      o.p_ = nullptr;
      o.n_ = 0;
    }
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { reset(); }
  void reset() {
    if (p_ != nullptr) be_->release(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* data() { return p_; }
  const T* data() const { return p_; }
  std::size_t size() const { return n_; }

 private:
  Backend* be_ = nullptr;
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

// The rotary tables of rope_tables for positions 0 .. positions - 1, on a backend.
struct RopeTables {
  DeviceArray<float> cos, sin;
};
RopeTables make_rope_tables(Backend& be, std::size_t positions, std::size_t hd, double theta);

}  // namespace whtlm::backend
