// The CUDA implementation of the Backend interface (src/backend/backend.hpp).
#pragma once

#include "backend/backend.hpp"
#include "backend/cuda/kernels.hpp"

namespace whtlm::backend::cuda {

// The backend of device 0; the first call selects the device and creates the stream.
Backend& backend();

}  // namespace whtlm::backend::cuda
