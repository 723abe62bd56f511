// `whtlm import`: argument parsing only; the import is the library's
// (include/whtlm/interop.hpp, docs/interop.md).
#include <cstdio>
#include <memory>
#include <string>

#include "commands.hpp"
#include "whtlm/interop.hpp"

namespace whtlm::cli {
namespace {

struct ImportArgs {
  std::string path, out;
  bool force = false;
};

void run_import(const ImportArgs& a) {
  interop::ImportOptions o;
  o.out = a.out;
  o.force = a.force;
  const interop::ImportResult r = interop::import_model(a.path, o);
  std::fprintf(stderr, "whtlm import: %s (%s) -> %s: %s, tokenizer %s%s\n", a.path.c_str(),
               r.source_format.c_str(), a.out.c_str(), describe(r.config).c_str(),
               r.tokenizer.c_str(),
               r.tied_head_copied ? ", tied head copied into lm_head.weight" : "");
}

}  // namespace

void add_import_command(CLI::App& app) {
  auto a = std::make_shared<ImportArgs>();
  CLI::App* cmd = app.add_subcommand(
      "import",
      "Import a Hugging Face folder (config.json + safetensors) or a GGUF file of a llama or "
      "gpt2 model into a checkpoint folder; a projection whtlm folded on export comes back "
      "(docs/interop.md)");
  cmd->add_option("path", a->path, "Hugging Face folder or .gguf file")->required();
  cmd->add_option("--out", a->out, "Checkpoint folder to write (new or empty)")->required();
  cmd->add_flag("--force", a->force,
                "Write into an --out folder that holds a checkpoint (its config.json, "
                "model.safetensors, tokenizer.json and checksums.json are replaced)");
  cmd->callback([a] { run_import(*a); });
}

}  // namespace whtlm::cli
