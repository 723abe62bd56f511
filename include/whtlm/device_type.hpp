// Where a model's buffers live and its kernels run, and the arithmetic of its matrix
// products: the two words every layer above the backend passes down to it. Kept apart
// from the model's description (whtlm/model.hpp), which the backend does not know.
#pragma once

#include <string_view>

namespace whtlm {

// Where a model's buffers live and its kernels run (src/backend/).
enum class Device { cpu, cuda };
// The arithmetic of the matrix products: fp32, or bf16 operands with fp32 accumulation
// (mixed precision: weights, gradients, optimizer state and activations stay fp32).
enum class Precision { fp32, bf16 };
// How an inference session stores the weights of its matrix products: fp32, bf16, or
// q8_0 (blocks of 32 int8 values along the input axis with one fp16 scale each, the
// layout of llama.cpp's Q8_0). Norms, embeddings and the wht projection's gamma and
// beta stay fp32 in every format.
enum class WeightFormat { f32, bf16, q8_0 };

const char* device_name(Device d);
// Parse a name; std::invalid_argument listing the choices when unknown.
Device parse_device(std::string_view name);
const char* precision_name(Precision p);
Precision parse_precision(std::string_view name);
const char* weight_format_name(WeightFormat f);
WeightFormat parse_weight_format(std::string_view name);

}  // namespace whtlm
