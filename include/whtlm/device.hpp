// What this build and machine offer for each Device (see docs/cuda.md).
#pragma once

#include <cstdint>
#include <string>

#include "whtlm/device_type.hpp"

namespace whtlm {

// Whether models can run on `device` here; when not, *why says what is missing (a
// build without the CUDA backend, no driver, no GPU).
bool device_usable(Device device, std::string* why = nullptr);
// One line about the device ("cpu (avx512, 2 threads)", "cuda fp32: NVIDIA H200 (...)");
// std::runtime_error when it is not usable.
std::string device_description(Device device);
// Bytes of memory `device` can still give this process (CPU: MemAvailable plus free
// swap, within the process's rlimits and cgroup; CUDA: the GPU's free memory). What
// plans are checked against before anything is allocated.
std::uint64_t memory_available_bytes(Device device = Device::cpu);
// How the CUDA backend was built ("CUDA 13.0, sm_90 + PTX compute_80"), or "not built".
std::string cuda_build_description();

}  // namespace whtlm
