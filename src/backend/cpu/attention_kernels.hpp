// Internal: the AVX-512 causal attention behind attention.cpp's float path. attention.cpp
// keeps the portable blocked version (products through gemm) for double, for CPUs
// without AVX-512 and for head sizes the kernels do not take; attention_avx512.cpp,
// compiled for AVX-512 and called only after a cpuid check, holds these.
//
// Same algorithm and same blocks as attention.cpp (see there): per query block of 64
// rows, S = Q K^T / sqrt(hd) over the keys the block can see, the causal softmax, and
// O = P V; the backward recomputes P from the saved log-sum-exp. What differs is the
// products: one register-blocked kernel (rows x 16-float vectors, a broadcast of A
// times rows of B) replaces the BLAS calls, which cost more to set up than these
// 64 x 256 x 64 products take; K^T and V^T are laid out once per work item so that
// every product reads rows of B.
#pragma once

#include <cstddef>

#include "backend/ops.hpp"

namespace whtlm::backend::attention_detail {

// Whether the kernels take this shape (head size a multiple of 16) on this CPU
// (AVX-512F, and detected_isa() not narrowed below avx512 by WHTLM_ISA).
bool avx512_usable(const AttentionShape& s);

#if defined(WHTLM_HAVE_X86_KERNELS)
// Floats of scratch forward_avx512 / backward_avx512 need for s with `threads` threads.
std::size_t avx512_scratch_floats(const AttentionShape& s, std::size_t threads);
// attention_forward / attention_backward (ops.hpp) for float, where avx512_usable(s).
// With bf16 operands every product's inputs are rounded to bf16 (round to nearest
// even) and accumulate in fp32; on a CPU with AVX512-BF16 the products run as
// bf16 dot products (VDPBF16PS).
void forward_avx512(float* out, float* lse, const float* qkv, const AttentionShape& s,
                    float* scratch, Operands operands);
void backward_avx512(float* dqkv, const float* dout, const float* qkv, const float* out,
                     const float* lse, const AttentionShape& s, float* scratch, Operands operands);
#endif

}  // namespace whtlm::backend::attention_detail
