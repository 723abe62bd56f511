// The CUDA implementation of the Backend interface (src/backend/backend.hpp).
#pragma once

#include "backend/backend.hpp"
#include "backend/cuda/kernels.hpp"

namespace whtlm::backend::cuda {

// The backend of device 0 at a precision (the two share the device and the stream);
// the first call selects the device.
Backend& backend(Precision precision);

}  // namespace whtlm::backend::cuda
