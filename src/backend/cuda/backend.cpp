// The CUDA backend: device memory through cudaMalloc (counted, so peak memory can be
// reported), copies on the backend's stream, and the kernels of kernels.hpp.
#include "backend/cuda/backend.hpp"

#include <cuda_runtime.h>

#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace whtlm::backend::cuda {
namespace {

void ok(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(err));
}

cudaStream_t st() { return static_cast<cudaStream_t>(stream()); }

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(Precision precision)
      : bf16_(precision == Precision::bf16),
        description_(std::string("cuda ") + precision_name(precision) + ": " +
                     device_description()) {}

  Device device() const override { return Device::cuda; }
  std::string description() const override { return description_; }

  void* allocate(std::size_t bytes) override {
    const std::size_t padded = (bytes + 255) / 256 * 256;
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, padded);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      throw std::runtime_error("CUDA: cannot allocate " + std::to_string(padded) +
                               " bytes of device memory (" + cudaGetErrorString(err) + "); " +
                               std::to_string(held_) + " bytes are held by whtlm");
    }
    ok(cudaMemsetAsync(p, 0, padded, st()), "cudaMemsetAsync");
    std::lock_guard<std::mutex> lock(mutex_);
    sizes_[p] = padded;
    held_ += padded;
    if (held_ > peak_) peak_ = held_;
    return p;
  }
  void release(void* p) override {
    if (p == nullptr) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto it = sizes_.find(p);
      if (it != sizes_.end()) {
        held_ -= it->second;
        sizes_.erase(it);
      }
    }
    // Work queued on the stream may still read p: cudaFree waits for the device.
    (void)cudaStreamSynchronize(st());
    (void)cudaFree(p);
  }
  void upload(void* dst, const void* src, std::size_t bytes) override {
    if (bytes == 0) return;
    // Synchronous with respect to the host buffer: the caller may reuse it at once.
    ok(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st()), "upload");
    ok(cudaStreamSynchronize(st()), "upload");
  }
  void download(void* dst, const void* src, std::size_t bytes) override {
    if (bytes == 0) return;
    ok(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, st()), "download");
    ok(cudaStreamSynchronize(st()), "download");
  }
  void copy(void* dst, const void* src, std::size_t bytes) override {
    if (bytes) ok(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st()), "copy");
  }
  void zero(void* dst, std::size_t bytes) override {
    if (bytes) ok(cudaMemsetAsync(dst, 0, bytes, st()), "zero");
  }
  void synchronize() override { cuda::synchronize(); }
  std::uint64_t memory_available() const override {
    std::size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
      (void)cudaGetLastError();
      return ~std::uint64_t{0};  // unknown: allocate() still says why it fails
    }
    return free_bytes;
  }
  std::size_t peak_allocated() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return peak_;
  }
  void reset_peak() override {
    std::lock_guard<std::mutex> lock(mutex_);
    peak_ = held_;
  }
  void release_caches() override { scratch_.reset(); }
  void parameters_changed() override {}  // bf16 operands are converted per call

  // The kernels take the shapes as plain sizes (kernels.hpp); they are unpacked here.
  // Activations that feed products are fp32 here (operand_type()): .f32() says so.
  void linear_forward(float* y, ConstOperand xo, const float* w, const float* b,
                      const LinearShape& s, Write y_write) override {
    const float* x = xo.f32();
    const bool in_out = s.layout == WeightLayout::in_out, add = y_write == Write::accumulate;
    if (bf16_)
      cuda::linear_forward_bf16(y, x, w, b, s.rows, s.in, s.out, in_out, add,
                                bf16_scratch(s.rows, s.in, s.out));
    else
      cuda::linear_forward(y, x, w, b, s.rows, s.in, s.out, in_out, add);
  }
  void linear_backward(float* dx, float* dw, float* db, const float* dy, ConstOperand xo,
                       const float* w, const LinearShape& s, Write dx_write) override {
    const float* x = xo.f32();
    const bool in_out = s.layout == WeightLayout::in_out, add = dx_write == Write::accumulate;
    if (bf16_)
      cuda::linear_backward_bf16(dx, dw, db, dy, x, w, s.rows, s.in, s.out, in_out, add,
                                 bf16_scratch(s.rows, s.in, s.out));
    else
      cuda::linear_backward(dx, dw, db, dy, x, w, s.rows, s.in, s.out, in_out, add);
  }
  void linear_forward_packed(float*, const float*, const PackedWeight& w, const float*, std::size_t,
                             Write) override {
    throw std::invalid_argument(std::string("--weights ") + weight_format_name(w.format) +
                                " runs on the CPU only (--device cpu)");
  }
  void layernorm_forward(Operand y, float* mean, float* rstd, const float* x, const float* w,
                         const float* b, const NormShape& s, float eps) override {
    cuda::layernorm_forward(y.f32(), mean, rstd, x, w, b, s.rows, s.d, eps);
  }
  void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                          const float* mean, const float* rstd, const float* w,
                          const NormShape& s) override {
    cuda::layernorm_backward(dx, dw, db, dy, x, mean, rstd, w, s.rows, s.d);
  }
  void rmsnorm_forward(Operand y, float* rstd, const float* x, const float* w, const NormShape& s,
                       float eps) override {
    cuda::rmsnorm_forward(y.f32(), rstd, x, w, s.rows, s.d, eps);
  }
  void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* rstd,
                        const float* w, const NormShape& s) override {
    cuda::rmsnorm_backward(dx, dw, dy, x, rstd, w, s.rows, s.d);
  }
  void gelu_forward(Operand y, const float* x, std::size_t n) override {
    cuda::gelu_forward(y.f32(), x, n);
  }
  void gelu_backward(float* dx, const float* dy, const float* x, std::size_t n) override {
    cuda::gelu_backward(dx, dy, x, n);
  }
  void swiglu_forward(Operand y, const float* h, std::size_t rows, std::size_t ff) override {
    cuda::swiglu_forward(y.f32(), h, rows, ff);
  }
  void swiglu_backward(float* dh, const float* dy, const float* h, std::size_t rows,
                       std::size_t ff) override {
    cuda::swiglu_backward(dh, dy, h, rows, ff);
  }
  void rope_forward(float* qkv, const float* cos, const float* sin, std::size_t rows,
                    std::size_t seq, const HeadShape& h) override {
    cuda::rope_forward(qkv, cos, sin, rows, seq, h.n_head, h.n_kv, h.hd);
  }
  void rope_backward(float* dqkv, const float* cos, const float* sin, std::size_t rows,
                     std::size_t seq, const HeadShape& h) override {
    cuda::rope_backward(dqkv, cos, sin, rows, seq, h.n_head, h.n_kv, h.hd);
  }
  std::size_t attention_scratch_floats(const AttentionShape&) const override { return 0; }
  void attention_forward(float* out, float* lse, const float* qkv, const AttentionShape& s,
                         float*) override {
    cuda::attention_forward(out, lse, qkv, s);
  }
  void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                          const float* lse, const AttentionShape& s, float*) override {
    cuda::attention_backward(dqkv, dout, qkv, out, lse, s);
  }
  void embedding_forward(float* x, const std::int32_t* tokens, const float* wte, const float* wpe,
                         std::size_t rows, std::size_t seq, std::size_t d) override {
    cuda::embedding_forward(x, tokens, wte, wpe, rows, seq, d);
  }
  void embedding_forward_at(float* x, const std::int32_t* tokens, const float* wte,
                            const float* wpe, std::size_t rows, const std::int32_t* positions,
                            std::size_t d) override {
    cuda::embedding_forward_at(x, tokens, wte, wpe, rows, positions, d);
  }
  void rope_forward_at(float* qkv, const float* cos, const float* sin, std::size_t rows,
                       const std::int32_t* positions, const HeadShape& h) override {
    cuda::rope_forward_at(qkv, cos, sin, rows, positions, h.n_head, h.n_kv, h.hd);
  }
  std::size_t attention_cached_scratch_floats(const CacheShape&) const override { return 0; }
  void kv_cache_store(float* k_cache, float* v_cache, const float* qkv, std::size_t qkv_stride,
                      const CachedSegment* segments, std::size_t n_segments,
                      const CacheShape& s) override {
    cuda::kv_cache_store(k_cache, v_cache, qkv, qkv_stride, segments, n_segments, s);
  }
  void attention_cached(float* out, const float* q, std::size_t q_stride, const float* k_cache,
                        const float* v_cache, const CachedSegment* segments, std::size_t n_segments,
                        const CacheShape& s, float*) override {
    cuda::attention_cached(out, q, q_stride, k_cache, v_cache, segments, n_segments, s);
  }
  void embedding_backward(float* dwte, float* dwpe, const float* dx, const std::int32_t* tokens,
                          std::size_t rows, std::size_t seq, std::size_t d) override {
    cuda::embedding_backward(dwte, dwpe, dx, tokens, rows, seq, d);
  }
  void cross_entropy_forward(float* losses, float* lse, const float* logits,
                             const std::int32_t* targets, std::size_t rows,
                             std::size_t vocab) override {
    cuda::cross_entropy_forward(losses, lse, logits, targets, rows, vocab);
  }
  void cross_entropy_backward(float* logits, const float* lse, const std::int32_t* targets,
                              std::size_t rows, std::size_t vocab, float s) override {
    cuda::cross_entropy_backward(logits, lse, targets, rows, vocab, s);
  }
  void add(float* y, const float* a, const float* b, std::size_t n) override {
    cuda::add(y, a, b, n);
  }
  void scale(float* x, float s, std::size_t n) override { cuda::scale(x, s, n); }
  double sum_squares(const float* x, std::size_t n) override { return cuda::sum_squares(x, n); }
  void hadamard_projection_forward(float* y, const float* x, const float* gamma, const float* beta,
                                   std::size_t rows, std::size_t n, float s) override {
    cuda::hadamard_projection_forward(y, x, gamma, beta, rows, n, s);
  }
  void hadamard_projection_backward(float* dx, float* dgamma, float* dbeta, const float* dy,
                                    const float* x, const float* gamma, std::size_t rows,
                                    std::size_t n, float s) override {
    cuda::hadamard_projection_backward(dx, dgamma, dbeta, dy, x, gamma, rows, n, s);
  }
  void adamw(float* p, const float* g, float* m, float* v, std::size_t n, float lr, float b1,
             float b2, float eps, float c1, float c2, float shrink) override {
    cuda::adamw(p, g, m, v, n, lr, b1, b2, eps, c1, c2, shrink);
  }

 private:
  // Room for a product's bf16 operands; grows to the largest layer and stays.
  std::uint16_t* bf16_scratch(std::size_t rows, std::size_t in, std::size_t out) {
    const std::size_t need = linear_bf16_scratch(rows, in, out);
    if (need > scratch_.size()) {
      scratch_.reset();
      scratch_ = DeviceArray<std::uint16_t>(*this, need);
    }
    return scratch_.data();
  }

  bool bf16_;
  std::string description_;
  mutable std::mutex mutex_;
  std::unordered_map<void*, std::size_t> sizes_;
  std::size_t held_ = 0, peak_ = 0;
  DeviceArray<std::uint16_t> scratch_;  // last: released before the counters go
};

}  // namespace

Backend& backend(Precision precision) {
  ok(cudaSetDevice(0), "cudaSetDevice");
  static CudaBackend fp32(Precision::fp32), bf16(Precision::bf16);
  return precision == Precision::bf16 ? bf16 : fp32;
}

}  // namespace whtlm::backend::cuda
