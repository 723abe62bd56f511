// Internal: the kernel families behind backend/weights.hpp. weights.cpp holds the
// scalar family, the scratch buffers, the threading and the run-time choice;
// weights_avx512.cpp the AVX-512 families (compiled for AVX-512, called only after a
// cpuid check). A family works on raw pointers only, so that the AVX-512 translation
// unit instantiates no template that another unit could share (and a machine without
// AVX-512 run).
//
// Every family computes an output from the same exactly known values (fp32 x times the
// dequantized weights, or for q8_0 the exact int32 block dot products of the quantized
// activations and weights); families differ only in the order of the fp32 sums. The
// two AVX-512 families give bit-identical results (the same lanes, the same int32 lane
// sums: dpbusd and maddubs + madd compute the same integers).
#pragma once

#include <cstddef>
#include <cstdint>

#include "whtlm/device_type.hpp"

namespace whtlm::backend::weights_detail {

constexpr std::size_t kQ8Block = 32;       // values per q8_0 block
constexpr std::size_t kQ8BlockBytes = 34;  // fp16 d + 32 int8

// One call of the decode product: outputs [j0, j0 + nj) of every row.
struct GemvArgs {
  WeightFormat format = WeightFormat::f32;
  float* y = nullptr;
  const float* x = nullptr;    // [rows, in]
  const void* prep = nullptr;  // the activations as the family prepared them
  const void* w = nullptr;     // packed [out, in]
  const float* b = nullptr;    // [out] or nullptr
  std::size_t rows = 0, out = 0, in = 0;
  bool accumulate = false;
};

struct Family {
  const char* name;
  // Bytes of prepared activations for rows x in of format f (0: none needed).
  std::size_t (*prep_bytes)(WeightFormat f, std::size_t rows, std::size_t in);
  // Prepares them into prep (prep_bytes bytes; any alignment).
  void (*prepare)(WeightFormat f, void* prep, const float* x, std::size_t rows, std::size_t in);
  // Outputs [j0, j0 + nj) of every row.
  void (*gemv)(const GemvArgs& a, std::size_t j0, std::size_t nj);
  // Quantizes nblocks * 32 values of src into nblocks q8_0 blocks at dst (34 bytes each),
  // bit-exact with ggml's quantize_row_q8_0_ref.
  void (*quantize_q8_0)(void* dst, const float* src, std::size_t nblocks);
};

const Family& scalar_family();
#if defined(WHTLM_HAVE_X86_KERNELS)
// AVX-512 F+BW+VL (+F16C); with vnni, the int8 dot products by VPDPBUSD.
const Family& avx512_family(bool vnni);
#endif

// The family packed_gemv and pack_weight use: the widest this CPU supports, narrowed by
// WHTLM_ISA as whtlm::detected_isa() is (anything below avx512 runs the scalar family).
const Family& best_family();
// Every family this CPU can run, scalar first (for the tests).
std::size_t available_families(const Family** out, std::size_t max);

// packed_gemv and pack_weight with a given family.
void packed_gemv_with(const Family& fam, float* y, const float* x, WeightFormat format,
                      const void* w, std::size_t out, std::size_t in, const float* b,
                      std::size_t rows, bool accumulate);
void pack_weight_with(const Family& fam, void* dst, WeightFormat f, const float* w, std::size_t out,
                      std::size_t in, bool w_in_out);

// Exact q8_0 activation quantization shared by the families (roundf of x * id, as the
// weights): qs [rows, in] int8, d [rows, in / 32] fp32 scales.
void quantize_activations_q8(std::int8_t* qs, float* d, const float* x, std::size_t rows,
                             std::size_t in);

}  // namespace whtlm::backend::weights_detail
