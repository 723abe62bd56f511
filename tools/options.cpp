// Shared options (tools/options.hpp).
#include "options.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <string>

#include "whtlm/threads.hpp"

namespace whtlm::cli {

CLI::Validator bounded(const Bound& b) {
  return CLI::Validator(
      [b](std::string& text) -> std::string {
        double v = 0;
        try {
          v = parse_bounded(b, text, "");
        } catch (const std::invalid_argument& e) {
          std::string why = e.what();
          return why.rfind(": ", 0) == 0 ? why.substr(2) : why;
        }
        // CLI11 converts integers from plain digits only: pass 1e6 on as 1000000.
        if (b.integer && text.find_first_not_of("+-0123456789") != std::string::npos) {
          char buf[32];
          std::snprintf(buf, sizeof buf, "%.0f", v);
          text = buf;
        }
        return std::string();
      },
      describe(b));
}

CLI::Option* add_threads_option(CLI::App* cmd, int* threads, const std::string& help) {
  return cmd->add_option("--threads", *threads, help)->check(bounded(limits::threads));
}

void use_threads(int threads) {
  check_bound(limits::threads, threads, "--threads");
  set_num_threads(threads > 0 ? threads : available_cores());
}

void add_device_options(CLI::App* cmd, std::string* device, std::string* precision) {
  cmd->add_option("--device", *device, "Where the model runs: cpu, or cuda (an NVIDIA GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--precision", *precision,
                  "Matrix products in fp32, or bf16 with fp32 accumulation (cuda only)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
}

void check_new_file(const std::string& option, const std::string& path, bool force) {
  std::error_code ec;
  const auto st = std::filesystem::symlink_status(path, ec);
  if (!std::filesystem::exists(st)) return;
  if (std::filesystem::is_directory(st))
    throw std::invalid_argument(option + " " + path + ": is a folder; name a file to write");
  if (!force)
    throw std::invalid_argument(option + " " + path +
                                ": exists; give --force to replace it (nothing was written)");
}

std::unique_ptr<std::ofstream> open_json(const std::string& path, bool force, std::ostream*& json) {
  std::unique_ptr<std::ofstream> file;
  json = nullptr;
  if (path.empty()) return file;
  if (path == "-") {
    json = &std::cout;
    return file;
  }
  check_new_file("--json", path, force);
  file = std::make_unique<std::ofstream>(path);
  if (!*file) throw std::runtime_error("--json: cannot open '" + path + "' for writing");
  json = file.get();
  return file;
}

}  // namespace whtlm::cli
