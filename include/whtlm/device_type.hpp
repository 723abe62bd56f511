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

const char* device_name(Device d);
// Parse a name; std::invalid_argument listing the choices when unknown.
Device parse_device(std::string_view name);
const char* precision_name(Precision p);
Precision parse_precision(std::string_view name);

}  // namespace whtlm
