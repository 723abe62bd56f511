// `whtlm export`: argument parsing only; the export is the library's
// (include/whtlm/interop.hpp, docs/interop.md).
#include <cstdint>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>

#include "commands.hpp"
#include "whtlm/interop.hpp"

namespace whtlm::cli {
namespace {

struct ExportArgs {
  std::string checkpoint, to, type = "f32", out;
  bool keep_wht = false, force = false;
  double max_shard_gib = 4;
};

void run_export(const ExportArgs& a) {
  interop::ExportOptions o;
  o.format = interop::parse_format(a.to);
  o.type = interop::parse_tensor_type(a.type);
  o.out = a.out;
  o.keep_wht = a.keep_wht;
  o.force = a.force;
  if (!(a.max_shard_gib > 0)) throw std::invalid_argument("--max-shard-gib: must be above 0");
  o.max_shard_bytes = static_cast<std::uint64_t>(a.max_shard_gib * double(1ull << 30));
  const interop::ExportResult r = interop::export_model(a.checkpoint, o);
  std::fprintf(stderr, "whtlm export: %s (%s%s) -> %s %s, %zu file%s, %.2f MiB\n",
               a.checkpoint.c_str(), describe(r.config).c_str(),
               r.folded ? ", folded into a dense W_O" : "", interop::format_name(o.format),
               interop::tensor_type_name(o.type), r.files.size(), r.files.size() == 1 ? "" : "s",
               double(r.bytes) / double(1 << 20));
  for (const std::string& f : r.files) std::printf("%s\n", f.c_str());
}

}  // namespace

void add_export_command(CLI::App& app) {
  auto a = std::make_shared<ExportArgs>();
  CLI::App* cmd = app.add_subcommand(
      "export",
      "Export a checkpoint to GGUF (llama.cpp) or the Hugging Face layout (transformers); "
      "wht and identity projections are folded into a dense W_O (docs/interop.md)");
  cmd->add_option("checkpoint", a->checkpoint, "Checkpoint or run folder")->required();
  cmd->add_option("--to", a->to,
                  "gguf: one .gguf file; hf: a folder (config.json, "
                  "model.safetensors, tokenizer.json)")
      ->required()
      ->check(CLI::IsMember({"gguf", "hf"}));
  cmd->add_option("--type", a->type,
                  "Matrix element type: f32, f16, bf16, q8_0 (GGUF only); GGUF keeps vectors f32")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0"}))
      ->capture_default_str();
  cmd->add_option("--out", a->out, "The .gguf file (gguf) or the folder (hf) to write")->required();
  cmd->add_flag("--keep-wht", a->keep_wht,
                "hf only: keep whtlm's own layout (the wht scale and bias, config.json "
                "attn_output_projection) instead of folding; loads back into whtlm, not into "
                "plain transformers");
  cmd->add_option("--max-shard-gib", a->max_shard_gib,
                  "hf: split the weights into files of at most this many GiB, with "
                  "model.safetensors.index.json")
      ->capture_default_str();
  cmd->add_flag("--force", a->force,
                "Replace an existing --out file, or the files in --out folder");
  cmd->callback([a] { run_export(*a); });
}

}  // namespace whtlm::cli
