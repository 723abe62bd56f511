// Which backend serves a device: the CPU always, CUDA where the build has it and a
// device is present.
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cpu/backend.hpp"
#include "backend/cpu/bf16.hpp"
#include "whtlm/device.hpp"
#if WHTLM_HAVE_CUDA
#include "backend/cuda/backend.hpp"
#endif

namespace whtlm::backend {

Backend& cpu_backend() { return cpu::backend(); }

bool cuda_usable(std::string* why) {
#if WHTLM_HAVE_CUDA
  if (cuda::device_count() > 0) return true;
  if (why != nullptr) *why = "no CUDA device is visible (no GPU, or no NVIDIA driver)";
  return false;
#else
  if (why != nullptr)
    *why =
        "this build has no CUDA backend (configure where nvcc is installed, with "
        "-DWHTLM_CUDA=ON, the default)";
  return false;
#endif
}

RopeTables make_rope_tables(Backend& be, std::size_t positions, std::size_t hd, double theta) {
  const std::size_t n = positions * (hd / 2);
  std::vector<float> cos(n), sin(n);
  rope_tables(cos.data(), sin.data(), positions, hd, theta);
  RopeTables t{DeviceArray<float>(be, n), DeviceArray<float>(be, n)};
  be.upload(t.cos.data(), cos.data(), n * sizeof(float));
  be.upload(t.sin.data(), sin.data(), n * sizeof(float));
  return t;
}

Backend& get(Device device, Precision precision) {
  if (device == Device::cpu) {
    if (precision == Precision::bf16) {
      std::string why;
      if (cpu::bf16_support(&why).empty())
        throw std::invalid_argument("--precision bf16 cannot run on this CPU: " + why +
                                    "; use --precision fp32");
    }
    return cpu::backend(precision);
  }
  std::string why;
  if (!cuda_usable(&why)) throw std::runtime_error("--device cuda: " + why);
#if WHTLM_HAVE_CUDA
  return cuda::backend(precision);
#else
  throw std::logic_error("unreachable");
#endif
}

}  // namespace whtlm::backend

namespace whtlm {

bool device_usable(Device device, std::string* why) {
  return device == Device::cpu || backend::cuda_usable(why);
}

std::string device_description(Device device) { return backend::get(device).description(); }

std::uint64_t memory_available_bytes(Device device) {
  return backend::get(device).memory_available();
}

std::string cuda_build_description() {
#if WHTLM_HAVE_CUDA
  return "CUDA " WHTLM_CUDA_VERSION ", architectures " WHTLM_CUDA_ARCHITECTURES;
#else
  return "not built";
#endif
}

}  // namespace whtlm
