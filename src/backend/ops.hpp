// The kernels the model is made of, on the CPU; they define each op's semantics, which
// the CUDA kernels (src/backend/cuda/kernels.hpp) match and the model reaches through
// backend.hpp. Each op is a forward/backward pair; most exist for float (the engine)
// and double (the finite-difference tests). All tensors are row-major and contiguous
// unless a row stride is given. "+=" in a comment means the op accumulates into that
// output; everything else is overwritten. Parameter gradients always accumulate, so
// micro-batches add up without a copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include "whtlm/matmul.hpp"

namespace whtlm::backend {

// C[m x n] = alpha * op(A) op(B) + beta * C (float: the BLAS; double: a plain loop).
template <class T>
void gemm(Trans ta, Trans tb, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
          std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc);

// Whether an op overwrites its output or adds into it ("+=" below).
enum class Write { overwrite, accumulate };

// The operands of an op's matrix products: fp32, or rounded to bf16 (round to nearest
// even) with fp32 accumulation. Only float ops take bf16 where a kernel for it exists
// (attention: see attention_forward); double ignores it.
enum class Operands { fp32, bf16 };

// An activation that only feeds matrix products (a norm's output, the MLP activation's),
// as it is stored: fp32, or bf16 bits where the backend's products read bf16 operands
// (Backend::operand_type()): then it is written once in bf16 and read by the forward
// product and the weight gradient's without a conversion. A float pointer is an fp32
// operand.
struct Operand {
  void* data = nullptr;
  Operands type = Operands::fp32;
  Operand() = default;
  Operand(float* p) : data(p) {}  // NOLINT(google-explicit-constructor): fp32 activations
  Operand(std::uint16_t* p) : data(p), type(Operands::bf16) {}  // NOLINT: bf16 bits
  // The data as the type it has; std::logic_error for the other.
  float* f32() const { return static_cast<float*>(as(Operands::fp32)); }
  std::uint16_t* bf16() const { return static_cast<std::uint16_t*>(as(Operands::bf16)); }
  // f(p), p the data as the type it has (float* or std::uint16_t*).
  template <class F>
  void visit(F&& f) const {
    if (type == Operands::bf16)
      f(static_cast<std::uint16_t*>(data));
    else
      f(static_cast<float*>(data));
  }

 private:
  void* as(Operands t) const {
    if (t != type) throw std::logic_error("an activation is used in the other precision");
    return data;
  }
};
struct ConstOperand {
  const void* data = nullptr;
  Operands type = Operands::fp32;
  ConstOperand() = default;
  ConstOperand(const float* p) : data(p) {}  // NOLINT(google-explicit-constructor)
  ConstOperand(const std::uint16_t* p) : data(p), type(Operands::bf16) {}  // NOLINT
  ConstOperand(const Operand& o) : data(o.data), type(o.type) {}           // NOLINT
  const float* f32() const { return static_cast<const float*>(as(Operands::fp32)); }
  const std::uint16_t* bf16() const {
    return static_cast<const std::uint16_t*>(as(Operands::bf16));
  }

 private:
  const void* as(Operands t) const {
    if (t != type) throw std::logic_error("an activation is used in the other precision");
    return data;
  }
};

// How a linear layer's weight is stored: [in, out] (y = x w, GPT-2's Conv1D) or
// [out, in] (y = x w^T, a Linear, as llama's projections are).
enum class WeightLayout { in_out, out_in };

// Linear layer. x: [rows, in]; y: [rows, out]; w: [in, out] or [out, in] by layout;
// b: [out] or nullptr.
struct LinearShape {
  std::size_t rows = 0, in = 0, out = 0;
  WeightLayout layout = WeightLayout::out_in;
};
// y = x w + b, or y += x w + b with Write::accumulate (a projection writing into the
// residual stream).
template <class T>
void linear_forward(T* y, const T* x, const T* w, const T* b, const LinearShape& s,
                    Write y_write = Write::overwrite);
// dx: [rows, in] (by dx_write; dx may be nullptr); dw += x^T dy; db += sum dy.
template <class T>
void linear_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const LinearShape& s,
                     Write dx_write);

// A normalization over the last axis: rows of d values.
struct NormShape {
  std::size_t rows = 0, d = 0;
};

// LayerNorm over d: y = (x - mean) * rstd * w + b. mean, rstd: [rows] (saved).
// The forwards of norms and activations also write y as bf16 bits (Y = std::uint16_t,
// T = float): the fp32 value rounded to nearest even, as bf16 operands are.
template <class T, class Y = T>
void layernorm_forward(Y* y, T* mean, T* rstd, const T* x, const T* w, const T* b,
                       const NormShape& s, T eps);
// dx += ..., dw += ..., db += ...
template <class T>
void layernorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* mean, const T* rstd,
                        const T* w, const NormShape& s);

// RMSNorm over d: y = x * rstd * w with rstd = 1 / sqrt(mean(x^2) + eps).
template <class T, class Y = T>
void rmsnorm_forward(Y* y, T* rstd, const T* x, const T* w, const NormShape& s, T eps);
// dx += ..., dw += ...
template <class T>
void rmsnorm_backward(T* dx, T* dw, const T* dy, const T* x, const T* rstd, const T* w,
                      const NormShape& s);

// GELU, tanh approximation, elementwise over n values. dx may alias dy.
template <class T, class Y = T>
void gelu_forward(Y* y, const T* x, std::size_t n);
template <class T>
void gelu_backward(T* dx, const T* dy, const T* x, std::size_t n);

// SwiGLU: h: [rows, 2 ff] = gate | up; y: [rows, ff] = silu(gate) * up.
template <class T, class Y = T>
void swiglu_forward(Y* y, const T* h, std::size_t rows, std::size_t ff);
// dh: [rows, 2 ff] (overwritten).
template <class T>
void swiglu_backward(T* dh, const T* dy, const T* h, std::size_t rows, std::size_t ff);

// The heads of a fused q|k|v activation row: n_head query heads, then n_kv key heads,
// then n_kv value heads, hd values each.
struct HeadShape {
  std::size_t n_head = 0, n_kv = 0, hd = 0;
  std::size_t width() const { return (n_head + 2 * n_kv) * hd; }  // the row's length
};

// Rotary position embedding (rotate-half convention) applied in place to the q and k
// heads of a fused qkv activation [rows = batch * seq, heads.width()]; row r has
// position r % seq. cos, sin: [seq, hd / 2] tables from rope_tables.
template <class T>
void rope_tables(T* cos, T* sin, std::size_t seq, std::size_t hd, double theta);
template <class T>
void rope_forward(T* qkv, const T* cos, const T* sin, std::size_t rows, std::size_t seq,
                  const HeadShape& heads);
// The inverse rotation, applied in place to the q and k parts of dqkv.
template <class T>
void rope_backward(T* dqkv, const T* cos, const T* sin, std::size_t rows, std::size_t seq,
                   const HeadShape& heads);

// The same rotation at explicit positions: row r has position positions[r] (inference,
// where rows of different sequences and offsets are packed together). cos, sin cover
// every position used.
template <class T>
void rope_forward_at(T* qkv, const T* cos, const T* sin, std::size_t rows,
                     const std::int32_t* positions, const HeadShape& heads);

// Causal multi-head attention with grouped-query heads, computed in blocks of query
// rows so no seq x seq matrix is kept: the forward saves only the log-sum-exp of each
// row's scores, and the backward recomputes the probabilities from it.
//   qkv: [batch * seq, (n_head + 2 n_kv) * hd]; out: [batch * seq, n_head * hd];
//   lse: [batch, n_head, seq]. Query head h reads kv head h / (n_head / n_kv).
struct AttentionShape {
  std::size_t batch = 0, seq = 0, n_head = 0, n_kv = 0, hd = 0;
  HeadShape heads() const { return {n_head, n_kv, hd}; }
};
// Elements of scratch the attention needs (per call, all threads together).
std::size_t attention_scratch_size(const AttentionShape& s);
// For float on a CPU with AVX-512 and a head size that is a multiple of 16, the
// products run in register-blocked kernels (cpu/attention_avx512.cpp); with
// Operands::bf16 they take bf16 operands where the CPU has AVX512-BF16 (elsewhere
// they stay fp32). Softmax, log-sum-exp and accumulation are fp32 in every case.
template <class T>
void attention_forward(T* out, T* lse, const T* qkv, const AttentionShape& s, T* scratch,
                       Operands operands = Operands::fp32);
// dqkv: overwritten. out and lse are the forward's outputs.
template <class T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse,
                        const AttentionShape& s, T* scratch, Operands operands = Operands::fp32);
// Whether attention_forward/backward<float> run the AVX-512 kernels at shape s, and with
// bf16 products when asked for them (for the tests and `whtlm info`).
bool attention_kernels_used(const AttentionShape& s, Operands operands);

// Attention of packed query rows against a KV cache (inference). The rows come in
// segments: segment i holds rows [row0, row0 + count) of cache slot `slot`, at
// positions pos0 .. pos0 + count - 1; each row attends to cache positions 0 .. its
// own (which must already hold k and v). q: rows of the fused qkv activation (row
// stride q_stride, q heads first); out: [rows, n_head * hd]. Cache layout:
// [slot][kv head][position][hd], max_len positions per (slot, kv head).
struct CachedSegment {
  std::size_t slot = 0, row0 = 0, count = 0, pos0 = 0;
};
struct CacheShape {
  std::size_t n_head = 0, n_kv = 0, hd = 0, max_len = 0;
  HeadShape heads() const { return {n_head, n_kv, hd}; }
};
std::size_t attention_cached_scratch_size(const CacheShape& s);
// Writes the k and v heads of packed qkv rows (row stride qkv_stride) into the caches
// at their segments' slots and positions: row row0 + r of segment g goes to position
// pos0 + r of slot g.slot, for every kv head.
void kv_cache_store(float* k_cache, float* v_cache, const float* qkv, std::size_t qkv_stride,
                    const CachedSegment* segments, std::size_t n_segments, const CacheShape& s);
void attention_cached(float* out, const float* q, std::size_t q_stride, const float* k_cache,
                      const float* v_cache, const CachedSegment* segments, std::size_t n_segments,
                      const CacheShape& s, float* scratch);

// Token (and, when wpe != nullptr, learned position) embedding:
// x[r] = wte[tokens[r]] + wpe[r % seq].
template <class T>
void embedding_forward(T* x, const std::int32_t* tokens, const T* wte, const T* wpe,
                       std::size_t rows, std::size_t seq, std::size_t d);
// The same with explicit positions (inference): x[r] = wte[tokens[r]] + wpe[positions[r]].
void embedding_forward_at(float* x, const std::int32_t* tokens, const float* wte, const float* wpe,
                          std::size_t rows, const std::int32_t* positions, std::size_t d);
// dwte += scattered dx; dwpe += dx summed per position (when dwpe != nullptr).
template <class T>
void embedding_backward(T* dwte, T* dwpe, const T* dx, const std::int32_t* tokens, std::size_t rows,
                        std::size_t seq, std::size_t d);

// Softmax cross-entropy over the vocabulary. losses[r] = -log softmax(logits[r])[target];
// lse[r] = log-sum-exp of the row (saved for the backward).
template <class T>
void cross_entropy_forward(T* losses, T* lse, const T* logits, const std::int32_t* targets,
                           std::size_t rows, std::size_t vocab);
// Overwrites logits with d(scale * sum losses)/d logits = scale * (softmax - onehot),
// one pass using the forward's lse.
template <class T>
void cross_entropy_backward(T* logits, const T* lse, const std::int32_t* targets, std::size_t rows,
                            std::size_t vocab, T scale);

// The Hadamard output projection (n: a size hadamard_supported accepts), per row r:
//   forward:  y[r] += gamma * scale * H x[r] + beta       (beta may be nullptr)
//   backward: with t = scale * H x[r] recomputed (in dx, written last),
//             dgamma += sum_r dy[r] * t, dbeta += sum_r dy[r],
//             dx[r] = scale * H (gamma * dy[r])            (overwritten; no alias of dy, x)
// float runs the fused kernels of src/hadamard; double is the tests' plain reference.
template <class T>
void hadamard_projection_forward(T* y, const T* x, const T* gamma, const T* beta, std::size_t rows,
                                 std::size_t n, T scale);
template <class T>
void hadamard_projection_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x,
                                  const T* gamma, std::size_t rows, std::size_t n, T scale);

// Small vector helpers the model composes with.
template <class T>
void add(T* y, const T* a, const T* b, std::size_t n);  // y = a + b (y may alias a or b)
template <class T>
void column_sum(T* out, const T* x, std::size_t rows, std::size_t cols);  // out += sum rows

}  // namespace whtlm::backend
