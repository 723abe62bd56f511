// The CUDA runtime side of the backend: device discovery, the one stream, errors.
#include <cstdio>

#include "backend/cuda/common.cuh"

namespace whtlm::backend::cuda {

void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(err));
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

std::string device_description() {
  if (device_count() == 0) throw std::runtime_error("CUDA: no device");
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
  char buf[640];
  std::snprintf(buf, sizeof buf, "%s (sm_%d%d, %.1f GiB, %d SMs)", p.name, p.major, p.minor,
                static_cast<double>(p.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0),
                p.multiProcessorCount);
  return buf;
}

void* stream() {
  // One non-blocking stream for the process, created on first use.
  static cudaStream_t s = [] {
    cudaStream_t created = nullptr;
    check(cudaStreamCreateWithFlags(&created, cudaStreamNonBlocking), "cudaStreamCreate");
    return created;
  }();
  return s;
}

void synchronize() { check(cudaStreamSynchronize(cu_stream()), "cudaStreamSynchronize"); }

void check_launch(const char* what) { check(cudaGetLastError(), what); }

}  // namespace whtlm::backend::cuda
