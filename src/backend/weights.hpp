// Matrix weights packed for inference (whtlm::WeightFormat): the byte layouts, packing
// from the fp32 training weights, unpacking, and the decode product against a packed
// weight. The layouts are exactly those of ggml (llama.cpp), so a packed weight can be
// written into a GGUF file unchanged:
//   f32:  float, [out, in] row-major.
//   bf16: uint16, [out, in]: the upper half of the fp32 value, rounded to nearest even
//         (NaN kept a quiet NaN), ggml's GGML_TYPE_BF16.
//   q8_0: per output row, in / 32 blocks of {uint16 d (IEEE fp16 scale); int8 qs[32]}
//         = 34 bytes (ggml's block_q8_0, no padding); value j of a block is qs[j] * d.
//         Quantized as ggml's quantize_row_q8_0_ref: amax = max |x| over the block,
//         d = amax / 127, id = d ? 1 / d : 0, d stored as fp16 (round to nearest even),
//         qs[j] = roundf(x[j] * id) (half away from zero).
// Implemented by the CPU backend (src/backend/cpu/weights.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/ops.hpp"
#include "whtlm/device_type.hpp"

namespace whtlm::backend {

// A matrix weight packed for inference: always [out, in] row-major (a row of `in`
// values per output), whatever the training layout was. `data` is not owned.
struct PackedWeight {
  WeightFormat format = WeightFormat::f32;
  const void* data = nullptr;
  std::size_t out = 0, in = 0;
};

// IEEE binary16 <-> binary32, round to nearest even (subnormals kept, overflow to inf,
// NaN kept a quiet NaN). Bit-exact with F16C's vcvtps2ph (imm 0) / vcvtph2ps.
std::uint16_t fp32_to_fp16(float f);
float fp16_to_fp32(std::uint16_t h);

// Bytes of a packed [out, in] weight. Throws std::invalid_argument for q8_0 when
// in % 32 != 0 (the message names in).
std::size_t packed_weight_bytes(WeightFormat f, std::size_t out, std::size_t in);
// Packs w (fp32, stored [in, out] or [out, in] per layout) into dst, which holds
// packed_weight_bytes(f, out, in) bytes. Threaded; the bytes do not depend on the
// thread count or the instruction set.
void pack_weight(void* dst, WeightFormat f, const float* w, std::size_t out, std::size_t in,
                 WeightLayout layout);
// Output rows row0 .. row0 + rows - 1 of w, dequantized: to fp32 [rows, in] (exact for
// every format), or to bf16 bits [rows, in] (exact for bf16; f32 and q8_0 values are
// rounded to nearest even). Prefill converts a weight once per call this way.
void unpack_weight_f32(float* dst, const PackedWeight& w, std::size_t row0, std::size_t rows);
void unpack_weight_bf16(std::uint16_t* dst, const PackedWeight& w, std::size_t row0,
                        std::size_t rows);

// The decode product: y[rows, out] = x[rows, in] W^T (+ b), or y += ... with
// Write::accumulate; b: [out] or nullptr. Each weight row is streamed from memory once
// for all rows (built for rows <= 16; correct for any). Threads split the outputs, and
// each output is computed the same way whatever the thread count and whatever `rows`
// is: row r of y depends only on row r of x (and y's old value), bit for bit.
//   f32, bf16: fp32 products of the fp32 activations with the exactly dequantized
//     weights, summed in fp32 (bf16 adds no error beyond the weights' rounding).
//   q8_0: the activations are quantized too, per row in blocks of 32 along `in` as
//     llama.cpp's Q8_0 vec_dot does (but with an fp32 scale d_x = amax / 127, not
//     fp16): the int8 dot product of each block is exact, then scaled by d_w * d_x in
//     fp32. The activation quantization adds an error of at most about
//     d_x / 2 = amax_block(x) / 254 per input value, so at most
//     sum over blocks of amax_block(x) / 254 * sum_block |w| per output (plus fp32
//     rounding), a relative error of the order 0.4% / sqrt(32) for random inputs.
void packed_gemv(float* y, const float* x, const PackedWeight& w, const float* b, std::size_t rows,
                 Write y_write = Write::overwrite);

}  // namespace whtlm::backend
