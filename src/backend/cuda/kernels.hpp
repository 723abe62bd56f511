// The CUDA kernels, as plain C++ declarations (no CUDA types), so that host code
// compiled by the C++ compiler can call them. Every pointer is a device pointer
// unless its comment says "host"; every call is enqueued on stream() and returns
// without waiting, except the ones documented as returning a value. Shapes,
// layouts and semantics are exactly those of the float ops in src/backend/ops.hpp;
// the GPU tests compare each of these with that CPU op on random inputs.
//
// bf16 values are stored as std::uint16_t (the upper half of an IEEE float).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "backend/ops.hpp"

namespace whtlm::backend::cuda {

// --- device, stream, errors (runtime.cu) ---------------------------------------------
// Number of usable CUDA devices (0 when the driver or a device is missing; never throws).
int device_count();
// "NVIDIA H200 (sm_90, 139.8 GiB)"-style description of device 0; throws when none.
std::string device_description();
// The stream every kernel runs on (a cudaStream_t, returned opaque).
void* stream();
// Waits for all work on stream(); throws std::runtime_error naming the first error.
void synchronize();
// Throws std::runtime_error("CUDA: <what>: <error string>") if the last launch failed.
void check_launch(const char* what);

// --- GEMM through cuBLASLt (blas.cu) -------------------------------------------------
// Row-major C[m x n] = alpha op(A) op(B) + beta C, fp32 (TF32 tensor cores are not used,
// so results match the CPU to fp32 rounding).
void gemm(Trans ta, Trans tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
          const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
          std::size_t ldc);
// The same with bf16 A and B, fp32 accumulation and an fp32 C.
void gemm_bf16(Trans ta, Trans tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
               const std::uint16_t* a, std::size_t lda, const std::uint16_t* b, std::size_t ldb,
               float beta, float* c, std::size_t ldc);
void linear_forward(float* y, const float* x, const float* w, const float* b, std::size_t rows,
                    std::size_t in, std::size_t out, bool w_in_out, bool accumulate);
void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, std::size_t rows, std::size_t in, std::size_t out,
                     bool w_in_out, bool dx_accumulate);
// Mixed precision: the same layers with the products' operands rounded to bf16 (into
// scratch, linear_bf16_scratch(rows, in, out) elements) and fp32 accumulation and
// outputs. Inputs, outputs and gradients stay fp32.
std::size_t linear_bf16_scratch(std::size_t rows, std::size_t in, std::size_t out);
void linear_forward_bf16(float* y, const float* x, const float* w, const float* b, std::size_t rows,
                         std::size_t in, std::size_t out, bool w_in_out, bool accumulate,
                         std::uint16_t* scratch);
void linear_backward_bf16(float* dx, float* dw, float* db, const float* dy, const float* x,
                          const float* w, std::size_t rows, std::size_t in, std::size_t out,
                          bool w_in_out, bool dx_accumulate, std::uint16_t* scratch);

// --- norm.cu, activation.cu, rope.cu, embedding.cu, cross_entropy.cu, vector.cu ---------
void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* w,
                       const float* b, std::size_t rows, std::size_t d, float eps);
void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                        const float* mean, const float* rstd, const float* w, std::size_t rows,
                        std::size_t d);
void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, std::size_t rows,
                     std::size_t d, float eps);
void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* rstd,
                      const float* w, std::size_t rows, std::size_t d);
void gelu_forward(float* y, const float* x, std::size_t n);
void gelu_backward(float* dx, const float* dy, const float* x, std::size_t n);
void swiglu_forward(float* y, const float* h, std::size_t rows, std::size_t ff);
void swiglu_backward(float* dh, const float* dy, const float* h, std::size_t rows, std::size_t ff);
void rope_forward(float* qkv, const float* cos, const float* sin, std::size_t rows, std::size_t seq,
                  std::size_t n_head, std::size_t n_kv, std::size_t hd);
void rope_backward(float* dqkv, const float* cos, const float* sin, std::size_t rows,
                   std::size_t seq, std::size_t n_head, std::size_t n_kv, std::size_t hd);
void rope_forward_at(float* qkv, const float* cos, const float* sin, std::size_t rows,
                     const std::int32_t* positions, std::size_t n_head, std::size_t n_kv,
                     std::size_t hd);
void embedding_forward(float* x, const std::int32_t* tokens, const float* wte, const float* wpe,
                       std::size_t rows, std::size_t seq, std::size_t d);
void embedding_forward_at(float* x, const std::int32_t* tokens, const float* wte, const float* wpe,
                          std::size_t rows, const std::int32_t* positions, std::size_t d);
void embedding_backward(float* dwte, float* dwpe, const float* dx, const std::int32_t* tokens,
                        std::size_t rows, std::size_t seq, std::size_t d);
void cross_entropy_forward(float* losses, float* lse, const float* logits,
                           const std::int32_t* targets, std::size_t rows, std::size_t vocab);
void cross_entropy_backward(float* logits, const float* lse, const std::int32_t* targets,
                            std::size_t rows, std::size_t vocab, float scale);
void add(float* y, const float* a, const float* b, std::size_t n);
void column_sum(float* out, const float* x, std::size_t rows, std::size_t cols);
void scale(float* x, float s, std::size_t n);
// Sum of squares of x[0..n) in double; waits for the result (host return).
double sum_squares(const float* x, std::size_t n);
void to_bf16(std::uint16_t* dst, const float* src, std::size_t n);
void from_bf16(float* dst, const std::uint16_t* src, std::size_t n);

// --- AdamW (adamw.cu) -----------------------------------------------------------------
// Per element: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
//              p = p * shrink - lr * (m c1) / (sqrt(v c2) + eps).
void adamw(float* p, const float* g, float* m, float* v, std::size_t n, float lr, float b1,
           float b2, float eps, float c1, float c2, float shrink);

// --- attention (attention.cu, attention_cached.cu): fused, flash-style, causal, GQA ----
// Same layouts as backend::attention_forward/backward; no scratch. lse is in natural log.
void attention_forward(float* out, float* lse, const float* qkv, const AttentionShape& s);
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                        const float* lse, const AttentionShape& s);
// segments: host array of n_segments entries.
void kv_cache_store(float* k_cache, float* v_cache, const float* qkv, std::size_t qkv_stride,
                    const CachedSegment* segments, std::size_t n_segments, const CacheShape& s);
void attention_cached(float* out, const float* q, std::size_t q_stride, const float* k_cache,
                      const float* v_cache, const CachedSegment* segments, std::size_t n_segments,
                      const CacheShape& s);

// --- the Hadamard projection (hadamard.cu) --------------------------------------------
// n: any size hadamard_supported(n) accepts (K * 2^m, K in {1, 12, 20, 28}); the K x K
// factor is uploaded once per K inside. One fused pass per row:
//   y[r][i] += gamma[i] * scale * (H x_r)[i] + beta[i]
void hadamard_projection_forward(float* y, const float* x, const float* gamma, const float* beta,
                                 std::size_t rows, std::size_t n, float scale);
// The same reading a bf16 x (mixed precision), y stays fp32.
void hadamard_projection_forward_bf16(float* y, const std::uint16_t* x, const float* gamma,
                                      const float* beta, std::size_t rows, std::size_t n,
                                      float scale);
// With t = scale * H x recomputed in registers:
//   dgamma[i] += sum_r dy[r][i] t[r][i];  dbeta[i] += sum_r dy[r][i];
//   dx[r] = scale * H (gamma * dy[r])     (overwritten)
void hadamard_projection_backward(float* dx, float* dgamma, float* dbeta, const float* dy,
                                  const float* x, const float* gamma, std::size_t rows,
                                  std::size_t n, float scale);
// The plain transform in place (x = scale * H x per row), for tests and benchmarks.
void fwht(float* x, std::size_t rows, std::size_t n, float scale);

}  // namespace whtlm::backend::cuda
