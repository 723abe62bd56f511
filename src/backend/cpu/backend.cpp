// The CPU backend: host memory and the float ops of src/backend/ops.hpp.
#include "backend/cpu/backend.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cpu/bf16.hpp"
#include "base/parallel.hpp"
#include "whtlm/hadamard.hpp"
#include "whtlm/io.hpp"
#include "whtlm/threads.hpp"

namespace whtlm::backend::cpu {
namespace {

// Allocation sizes are kept in a 64-byte header so release() can count them.
constexpr std::size_t kHeader = 64;
// Products of up to this many rows with a packed weight read it directly (decoding);
// more rows run bf16 products (prefill).
constexpr std::size_t kPackedGemvRows = 16;

// The bf16 copies of the weights that bf16 products read, made on a weight's first use
// after it changed and kept until it changes again: once per optimizer step, not per
// call. Shared by the fp32 and bf16 backends, since either may write a weight (the
// optimizer updates CPU models through the fp32 one). Every backend entry point that
// writes memory (upload, copy, zero, adamw) marks the copies it overlaps stale, and
// they are converted again in place on their next use; release() frees the copies of
// the memory it frees. Code that writes parameters behind the backend's back says so
// with parameters_changed() (Transformer::params() does).
class WeightCache {
 public:
  WeightCache() = default;
  WeightCache(const WeightCache&) = delete;
  WeightCache& operator=(const WeightCache&) = delete;
  // At exit the copies still held (of weights never released through the backend, such
  // as a caller's own arrays) are freed with the cache; the allocator's counts no
  // longer matter then.
  ~WeightCache() {
    for (auto& e : entries_) std::free(reinterpret_cast<char*>(e.second.data) - kHeader);
  }
  // The bf16 copy of w[0 .. n), made with alloc when missing.
  template <class Alloc>
  const std::uint16_t* get(const float* w, std::size_t n, Alloc&& alloc) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(w);
    if (it != entries_.end() && it->second.n == n) {
      // A stale copy is converted again in place: its memory stays, so a training
      // step neither allocates nor faults in fresh pages for it.
      if (it->second.stale) to_bf16(it->second.data, w, n);
      it->second.stale = false;
      return it->second.data;
    }
    if (it != entries_.end()) drop(it);
    auto* data = static_cast<std::uint16_t*>(alloc(n * sizeof(std::uint16_t)));
    to_bf16(data, w, n);
    entries_[w] = {data, n, false};
    return data;
  }
  // The copies of weights that overlap [p, p + bytes) are out of date (the weights
  // were written): they are converted again on their next use.
  void invalidate(const void* p, std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (overlaps(it, p, bytes)) it->second.stale = true;
  }
  // The memory [p, p + bytes) is being freed: its copies go with it.
  void forget(const void* p, std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = entries_.begin(); it != entries_.end();)
      it = overlaps(it, p, bytes) ? drop(it) : std::next(it);
  }
  void invalidate_all() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& e : entries_) e.second.stale = true;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    while (!entries_.empty()) drop(entries_.begin());
  }
  // Set once by the backend whose allocator holds the copies.
  void set_release(void (*release)(void*)) { release_ = release; }

 private:
  struct Entry {
    std::uint16_t* data = nullptr;
    std::size_t n = 0;
    bool stale = false;
  };
  static bool overlaps(std::map<const float*, Entry>::const_iterator it, const void* p,
                       std::size_t bytes) {
    const char* lo = static_cast<const char*>(p);
    const char* w = reinterpret_cast<const char*>(it->first);
    return w < lo + bytes && lo < w + it->second.n * sizeof(float);
  }
  std::map<const float*, Entry>::iterator drop(std::map<const float*, Entry>::iterator it) {
    release_(it->second.data);
    return entries_.erase(it);
  }
  std::mutex mutex_;
  std::map<const float*, Entry> entries_;
  void (*release_)(void*) = nullptr;
};

WeightCache& weight_cache() {
  static WeightCache cache;
  return cache;
}

class CpuBackend final : public Backend {
 public:
  // Subnormals are flushed on every thread that runs our kernels, from the start: the
  // backend's floating-point mode is its own business, not its callers'.
  explicit CpuBackend(Precision precision) : bf16_(precision == Precision::bf16) {
    flush_denormals();
  }
  Device device() const override { return Device::cpu; }
  std::string description() const override {
    return std::string("cpu ") + (bf16_ ? "bf16" : "fp32") + " (" + isa_name(detected_isa()) +
           ", " + std::to_string(num_threads()) + " threads" +
           (bf16_ ? ", bf16 products: " + bf16_support() : std::string()) + ")";
  }

  void* allocate(std::size_t bytes) override {
    // Refused before the allocation: on Linux a too-large one would succeed and the
    // kernel's OOM killer would end the process once its pages were touched.
    // (Small ones are not worth the look at /proc.)
    const std::uint64_t room =
        bytes < (std::size_t{16} << 20) ? ~std::uint64_t{0} : memory_available();
    if (bytes > std::numeric_limits<std::size_t>::max() / 2 || bytes + kHeader + 63 > room)
      throw std::runtime_error("cannot allocate " + std::to_string(bytes) +
                               " bytes: " + std::to_string(room) +
                               " bytes of memory are available to this process");
    const std::size_t padded = kHeader + (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, padded);
    if (p == nullptr)
      throw std::runtime_error("cannot allocate " + std::to_string(bytes) +
                               " bytes: the system refused the allocation");
    std::memset(p, 0, padded);
    *static_cast<std::size_t*>(p) = padded;
    const std::size_t now = (held_ += padded);
    std::size_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    return static_cast<char*>(p) + kHeader;
  }
  void release(void* p) override {
    if (p == nullptr) return;
    void* base = static_cast<char*>(p) - kHeader;
    weight_cache().forget(p, *static_cast<std::size_t*>(base) - kHeader);
    free_counted(p);
  }
  void free_counted(void* p) {
    if (p == nullptr) return;
    void* base = static_cast<char*>(p) - kHeader;
    held_ -= *static_cast<std::size_t*>(base);
    std::free(base);
  }
  void upload(void* dst, const void* src, std::size_t bytes) override {
    if (bytes == 0) return;
    weight_cache().invalidate(dst, bytes);
    std::memcpy(dst, src, bytes);
  }
  void download(void* dst, const void* src, std::size_t bytes) override {
    if (bytes == 0) return;
    weight_cache().invalidate(dst, bytes);
    std::memcpy(dst, src, bytes);
  }
  void copy(void* dst, const void* src, std::size_t bytes) override {
    if (bytes == 0) return;
    weight_cache().invalidate(dst, bytes);
    std::memmove(dst, src, bytes);
  }
  void zero(void* dst, std::size_t bytes) override {
    if (bytes == 0) return;
    weight_cache().invalidate(dst, bytes);
    std::memset(dst, 0, bytes);
  }
  void parameters_changed() override { weight_cache().invalidate_all(); }
  void synchronize() override {}
  std::uint64_t memory_available() const override { return io::host_memory_available(); }
  std::size_t peak_allocated() const override { return peak_.load(); }
  void reset_peak() override { peak_ = held_.load(); }
  void release_caches() override {
    weight_cache().clear();
    for (Scratch& s : scratch_) {
      free_counted(s.data);
      s = {};
    }
  }

  Operands operand_type() const override { return operands(); }

  void linear_forward(float* y, ConstOperand x, const float* w, const float* b,
                      const LinearShape& s, Write y_write) override {
    if (!bf16_) {
      backend::linear_forward(y, x.f32(), w, b, s, y_write);
      return;
    }
    const bool in_out = s.layout == WeightLayout::in_out;
    const std::uint16_t* wb = bf16_weight(w, s.in * s.out);
    if (s.rows <= kPackedGemvRows && !in_out && x.type == Operands::fp32) {
      // Decoding: the bf16 copy [out, in] is a packed bf16 weight; read it directly.
      packed_gemv(y, x.f32(), {WeightFormat::bf16, wb, s.out, s.in}, b, s.rows, y_write);
      return;
    }
    if (b != nullptr) add_rows(y, b, s.rows, s.out, y_write);
    const std::uint16_t* xb = bf16_operand(0, x, s.rows * s.in);
    gemm_bf16(Trans::no, in_out ? Trans::no : Trans::yes, s.rows, s.out, s.in, xb, s.in, wb,
              in_out ? s.out : s.in, b != nullptr || y_write == Write::accumulate, y, s.out);
  }
  void linear_backward(float* dx, float* dw, float* db, const float* dy, ConstOperand x,
                       const float* w, const LinearShape& s, Write dx_write) override {
    if (!bf16_) {
      backend::linear_backward(dx, dw, db, dy, x.f32(), w, s, dx_write);
      return;
    }
    const bool in_out = s.layout == WeightLayout::in_out;
    std::uint16_t* dyb = scratch(0, s.rows * s.out);
    to_bf16(dyb, dy, s.rows * s.out);
    if (dx != nullptr) {
      const std::uint16_t* wb = bf16_weight(w, s.in * s.out);
      // dx = dy w^T for w [in, out]; dx = dy w for w [out, in].
      gemm_bf16(Trans::no, in_out ? Trans::yes : Trans::no, s.rows, s.in, s.out, dyb, s.out, wb,
                in_out ? s.out : s.in, dx_write == Write::accumulate, dx, s.in);
    }
    const std::uint16_t* xb = bf16_operand(1, x, s.rows * s.in);
    if (in_out)  // dw[in, out] += x^T dy
      gemm_bf16(Trans::yes, Trans::no, s.in, s.out, s.rows, xb, s.in, dyb, s.out, true, dw, s.out);
    else  // dw[out, in] += dy^T x
      gemm_bf16(Trans::yes, Trans::no, s.out, s.in, s.rows, dyb, s.out, xb, s.in, true, dw, s.in);
    if (db != nullptr) backend::column_sum(db, dy, s.rows, s.out);
  }
  void linear_forward_packed(float* y, const float* x, const PackedWeight& w, const float* b,
                             std::size_t rows, Write y_write) override {
    if (rows <= kPackedGemvRows || w.format == WeightFormat::f32) {
      packed_gemv(y, x, w, b, rows, y_write);
      return;
    }
    // Prefill: one bf16 product. A bf16 weight is read where it is packed; q8_0 is
    // dequantized to bf16 once per call (a small cost next to a product of many rows).
    if (b != nullptr) add_rows(y, b, rows, w.out, y_write);
    const std::uint16_t* wb = static_cast<const std::uint16_t*>(w.data);
    if (w.format != WeightFormat::bf16) {
      std::uint16_t* unpacked = scratch(1, w.out * w.in);
      unpack_weight_bf16(unpacked, w, 0, w.out);
      wb = unpacked;
    }
    const std::uint16_t* xb = bf16_operand(0, x, rows * w.in);
    gemm_bf16(Trans::no, Trans::yes, rows, w.out, w.in, xb, w.in, wb, w.in,
              b != nullptr || y_write == Write::accumulate, y, w.out);
  }
  void layernorm_forward(Operand y, float* mean, float* rstd, const float* x, const float* w,
                         const float* b, const NormShape& s, float eps) override {
    y.visit([&](auto* out) { backend::layernorm_forward(out, mean, rstd, x, w, b, s, eps); });
  }
  void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                          const float* mean, const float* rstd, const float* w,
                          const NormShape& s) override {
    backend::layernorm_backward(dx, dw, db, dy, x, mean, rstd, w, s);
  }
  void rmsnorm_forward(Operand y, float* rstd, const float* x, const float* w, const NormShape& s,
                       float eps) override {
    y.visit([&](auto* out) { backend::rmsnorm_forward(out, rstd, x, w, s, eps); });
  }
  void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* rstd,
                        const float* w, const NormShape& s) override {
    backend::rmsnorm_backward(dx, dw, dy, x, rstd, w, s);
  }
  void gelu_forward(Operand y, const float* x, std::size_t n) override {
    y.visit([&](auto* out) { backend::gelu_forward(out, x, n); });
  }
  void gelu_backward(float* dx, const float* dy, const float* x, std::size_t n) override {
    backend::gelu_backward(dx, dy, x, n);
  }
  void swiglu_forward(Operand y, const float* h, std::size_t rows, std::size_t ff) override {
    y.visit([&](auto* out) { backend::swiglu_forward(out, h, rows, ff); });
  }
  void swiglu_backward(float* dh, const float* dy, const float* h, std::size_t rows,
                       std::size_t ff) override {
    backend::swiglu_backward(dh, dy, h, rows, ff);
  }
  void rope_forward(float* qkv, const float* cos, const float* sin, std::size_t rows,
                    std::size_t seq, const HeadShape& heads) override {
    backend::rope_forward(qkv, cos, sin, rows, seq, heads);
  }
  void rope_backward(float* dqkv, const float* cos, const float* sin, std::size_t rows,
                     std::size_t seq, const HeadShape& heads) override {
    backend::rope_backward(dqkv, cos, sin, rows, seq, heads);
  }
  std::size_t attention_scratch_floats(const AttentionShape& s) const override {
    return attention_scratch_size(s);
  }
  void attention_forward(float* out, float* lse, const float* qkv, const AttentionShape& s,
                         float* scratch) override {
    backend::attention_forward(out, lse, qkv, s, scratch, operands());
  }
  void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                          const float* lse, const AttentionShape& s, float* scratch) override {
    backend::attention_backward(dqkv, dout, qkv, out, lse, s, scratch, operands());
  }
  void embedding_forward(float* x, const std::int32_t* tokens, const float* wte, const float* wpe,
                         std::size_t rows, std::size_t seq, std::size_t d) override {
    backend::embedding_forward(x, tokens, wte, wpe, rows, seq, d);
  }
  void embedding_forward_at(float* x, const std::int32_t* tokens, const float* wte,
                            const float* wpe, std::size_t rows, const std::int32_t* positions,
                            std::size_t d) override {
    backend::embedding_forward_at(x, tokens, wte, wpe, rows, positions, d);
  }
  void rope_forward_at(float* qkv, const float* cos, const float* sin, std::size_t rows,
                       const std::int32_t* positions, const HeadShape& heads) override {
    backend::rope_forward_at(qkv, cos, sin, rows, positions, heads);
  }
  std::size_t attention_cached_scratch_floats(const CacheShape& s) const override {
    return attention_cached_scratch_size(s);
  }
  void kv_cache_store(float* k_cache, float* v_cache, const float* qkv, std::size_t qkv_stride,
                      const CachedSegment* segments, std::size_t n_segments,
                      const CacheShape& s) override {
    backend::kv_cache_store(k_cache, v_cache, qkv, qkv_stride, segments, n_segments, s);
  }
  void attention_cached(float* out, const float* q, std::size_t q_stride, const float* k_cache,
                        const float* v_cache, const CachedSegment* segments, std::size_t n_segments,
                        const CacheShape& s, float* scratch) override {
    backend::attention_cached(out, q, q_stride, k_cache, v_cache, segments, n_segments, s, scratch);
  }
  void embedding_backward(float* dwte, float* dwpe, const float* dx, const std::int32_t* tokens,
                          std::size_t rows, std::size_t seq, std::size_t d) override {
    backend::embedding_backward(dwte, dwpe, dx, tokens, rows, seq, d);
  }
  void cross_entropy_forward(float* losses, float* lse, const float* logits,
                             const std::int32_t* targets, std::size_t rows,
                             std::size_t vocab) override {
    backend::cross_entropy_forward(losses, lse, logits, targets, rows, vocab);
  }
  void cross_entropy_backward(float* logits, const float* lse, const std::int32_t* targets,
                              std::size_t rows, std::size_t vocab, float s) override {
    backend::cross_entropy_backward(logits, lse, targets, rows, vocab, s);
  }
  void add(float* y, const float* a, const float* b, std::size_t n) override {
    backend::add(y, a, b, n);
  }
  void scale(float* x, float s, std::size_t n) override {
    parallel_ranges(n, n, [&](std::size_t i0, std::size_t len) {
      for (std::size_t i = i0; i < i0 + len; ++i) x[i] *= s;
    });
  }
  double sum_squares(const float* x, std::size_t n) override {
    // Fixed chunks summed in order: the same answer for any thread count.
    constexpr std::size_t kChunk = 1 << 16;
    const std::size_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> partial(chunks, 0.0);
    parallel_ranges(chunks, n, [&](std::size_t c0, std::size_t nc) {
      for (std::size_t c = c0; c < c0 + nc; ++c) {
        const std::size_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (std::size_t i = lo; i < hi; ++i) s += double(x[i]) * double(x[i]);
        partial[c] = s;
      }
    });
    double total = 0;
    for (double s : partial) total += s;
    return total;
  }
  void hadamard_projection_forward(float* y, const float* x, const float* gamma, const float* beta,
                                   std::size_t rows, std::size_t n, float s) override {
    backend::hadamard_projection_forward(y, x, gamma, beta, rows, n, s);
  }
  void hadamard_projection_backward(float* dx, float* dgamma, float* dbeta, const float* dy,
                                    const float* x, const float* gamma, std::size_t rows,
                                    std::size_t n, float s) override {
    backend::hadamard_projection_backward(dx, dgamma, dbeta, dy, x, gamma, rows, n, s);
  }
  void adamw(float* p, const float* g, float* m, float* v, std::size_t n, float lr, float b1,
             float b2, float eps, float c1, float c2, float shrink) override {
    weight_cache().invalidate(p, n * sizeof(float));
    parallel_ranges(n, n * 8, [&](std::size_t i0, std::size_t len) {
      float* pp = p + i0;
      const float* gg = g + i0;
      float* mm = m + i0;
      float* vv = v + i0;
#pragma omp simd
      for (std::size_t i = 0; i < len; ++i) {
        mm[i] = b1 * mm[i] + (1.0f - b1) * gg[i];
        vv[i] = b2 * vv[i] + (1.0f - b2) * gg[i] * gg[i];
        const float mh = mm[i] * c1, vh = vv[i] * c2;
        pp[i] = pp[i] * shrink - lr * mh / (std::sqrt(vh) + eps);
      }
    });
  }

 private:
  // y = b in every row, or y += b with Write::accumulate.
  static void add_rows(float* y, const float* b, std::size_t rows, std::size_t n, Write w) {
    parallel_ranges(rows, rows * n, [&](std::size_t r0, std::size_t nr) {
      for (std::size_t r = r0; r < r0 + nr; ++r) {
        float* yr = y + r * n;
        if (w == Write::accumulate) {
#pragma omp simd
          for (std::size_t j = 0; j < n; ++j) yr[j] += b[j];
        } else {
          std::memcpy(yr, b, n * sizeof(float));
        }
      }
    });
  }
  // A product's activation operand as bf16: as it is, or converted into scratch slot.
  const std::uint16_t* bf16_operand(int slot, ConstOperand x, std::size_t n) {
    if (x.type == Operands::bf16) return x.bf16();
    std::uint16_t* xb = scratch(slot, n);
    to_bf16(xb, x.f32(), n);
    return xb;
  }
  const std::uint16_t* bf16_weight(const float* w, std::size_t n) {
    return weight_cache().get(w, n, [this](std::size_t bytes) { return allocate(bytes); });
  }
  // Room for bf16 operands; each of the two slots grows to the largest product and
  // stays (counted by the allocator, freed by release_caches()).
  struct Scratch {
    void* data = nullptr;
    std::size_t bytes = 0;
  };
  std::uint16_t* scratch(int slot, std::size_t n) {
    Scratch& s = scratch_[slot];
    if (s.bytes < n * sizeof(std::uint16_t)) {
      free_counted(s.data);
      s = {};
      s.data = allocate(n * sizeof(std::uint16_t));
      s.bytes = n * sizeof(std::uint16_t);
    }
    return static_cast<std::uint16_t*>(s.data);
  }

  Operands operands() const { return bf16_ ? Operands::bf16 : Operands::fp32; }

  bool bf16_;
  // Host memory is one device whichever precision's backend allocates it (the
  // optimizer's moments come from the fp32 one while a bf16 model trains): the two
  // instances count into the same totals.
  static inline std::atomic<std::size_t> held_{0}, peak_{0};
  Scratch scratch_[2];
};

}  // namespace

Backend& backend(Precision precision) {
  static CpuBackend fp32(Precision::fp32), bf16(Precision::bf16);
  static const bool once = [] {
    weight_cache().set_release(
        [](void* p) { static_cast<CpuBackend&>(backend(Precision::bf16)).free_counted(p); });
    return true;
  }();
  (void)once;
  return precision == Precision::bf16 ? bf16 : fp32;
}

}  // namespace whtlm::backend::cpu
