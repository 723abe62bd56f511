// `whtlm info`: what this build and machine offer.
#include <cstdio>
#include <string>

#include "commands.hpp"
#include "whtlm/device.hpp"
#include "whtlm/hadamard.hpp"
#include "whtlm/matmul.hpp"
#include "whtlm/threads.hpp"

namespace whtlm::cli {

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
    const PrecisionSupport ps = precision_support();
    std::printf("bf16 products: %s (%s)%s\n", ps.bf16.c_str(), ps.bf16_impl.c_str(),
                ps.bf16_native()    ? ""
                : ps.bf16 == "none" ? "; --precision bf16 is refused"
                                    : "; --precision bf16 runs, without a speed-up");
    std::printf("int8 dot products: %s\n", ps.int8.c_str());
    std::printf("threads: %d (cores available: %d)\n", num_threads(), available_cores());
    std::printf("memory available: %.2f GiB (what plans are checked against before allocating)\n",
                double(memory_available_bytes()) / (1024.0 * 1024 * 1024));
    std::printf("cuda backend: %s\n", cuda_build_description().c_str());
    std::string why;
    if (device_usable(Device::cuda, &why))
      std::printf("cuda device: %s\n", device_description(Device::cuda).c_str());
    else
      std::printf("cuda device: none usable (%s)\n", why.c_str());
  });
}

}  // namespace whtlm::cli
