// `whtlm info`: what this build and machine offer.
#include <cstdio>
#include <string>

#include "commands.hpp"
#include "whtlm/device.hpp"
#include "whtlm/hadamard.hpp"
#include "whtlm/matmul.hpp"
#include "whtlm/threads.hpp"

namespace whtlm::cli {

void add_device_options(CLI::App* cmd, std::string* device, std::string* precision) {
  cmd->add_option("--device", *device, "Where the model runs: cpu, or cuda (an NVIDIA GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--precision", *precision,
                  "Matrix products in fp32, or bf16 with fp32 accumulation (cuda only)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
}

void add_info_command(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("info", "Show the kernels, BLAS, threads and GPU this machine uses");
  cmd->callback([] {
    std::printf("whtlm %s\n", WHTLM_VERSION);
    std::printf("hadamard kernels: %s (available:", isa_name(detected_isa()));
    for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512})
      if (isa_available(isa)) std::printf(" %s", isa_name(isa));
    std::printf(")\n");
    std::printf("blas: %s\n", blas_description().c_str());
    std::printf("threads: %d (cores available: %d)\n", num_threads(), available_cores());
    std::printf("cuda backend: %s\n", cuda_build_description().c_str());
    std::string why;
    if (device_usable(Device::cuda, &why))
      std::printf("cuda device: %s\n", device_description(Device::cuda).c_str());
    else
      std::printf("cuda device: none usable (%s)\n", why.c_str());
  });
}

}  // namespace whtlm::cli
