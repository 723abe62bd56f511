// `whtlm init`: argument parsing only; a freshly initialised model written as a
// checkpoint folder by the library (include/whtlm/checkpoint.hpp).
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include "commands.hpp"
#include "whtlm/checkpoint.hpp"
#include "whtlm/transformer.hpp"

namespace whtlm::cli {
namespace {

struct InitArgs {
  ModelOptions model;
  std::uint64_t seed = 1;
  std::string out;
  bool force = false;
};

void run_init(const InitArgs& a) {
  const ModelConfig config = model_from(a.model, true);
  std::error_code ec;
  if (std::filesystem::exists(a.out, ec) && !a.force) {
    if (!std::filesystem::is_directory(a.out, ec))
      throw std::invalid_argument("--out " + a.out + ": exists and is not a folder");
    for (const char* f : {"model.safetensors", "config.json", "checksums.json"})
      if (std::filesystem::exists(std::filesystem::path(a.out) / f, ec))
        throw std::invalid_argument("--out " + a.out + ": already holds " + f +
                                    " (a checkpoint?); choose a new folder, or --force to "
                                    "replace it");
  }
  Transformer model(config);
  model.init_weights(a.seed, parse_scale_init(a.model.scale_init));
  write_checksums(a.out, save_model(a.out, model.layout(), model.params().data()));
  std::fprintf(stderr, "whtlm init: %s -> %s\n", describe(model.config()).c_str(), a.out.c_str());
}

}  // namespace

void add_init_command(CLI::App& app) {
  auto a = std::make_shared<InitArgs>();
  CLI::App* cmd = app.add_subcommand(
      "init",
      "Write a freshly initialised model as a checkpoint folder (config.json + "
      "model.safetensors), e.g. for benchmarks or to compare with other runtimes");
  add_model_options(cmd, &a->model);
  cmd->add_option("--seq", a->model.seq, "Context length (default: the preset's)")
      ->check(bounded(limits::context));
  cmd->add_option("--seed", a->seed, "Seed of the weights")
      ->check(bounded(limits::seed))
      ->capture_default_str();
  cmd->add_option("--out", a->out, "Checkpoint folder to write (new or empty)")->required();
  cmd->add_flag("--force", a->force,
                "Write into an --out folder that holds files (its config.json, "
                "model.safetensors and checksums.json are replaced)");
  cmd->callback([a] { run_init(*a); });
}

}  // namespace whtlm::cli
