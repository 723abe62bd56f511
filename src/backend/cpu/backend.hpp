// The CPU implementation of the Backend interface (src/backend/backend.hpp).
#pragma once

#include "backend/backend.hpp"

namespace whtlm::backend::cpu {

// One instance per precision: fp32, or bf16 products (bf16.hpp).
Backend& backend(Precision precision = Precision::fp32);

}  // namespace whtlm::backend::cpu
