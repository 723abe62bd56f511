// `whtlm convert`: argument parsing only; the conversion of a dense checkpoint to the
// Hadamard (or identity) output projection is the library's (include/whtlm/interop.hpp).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "commands.hpp"
#include "whtlm/interop.hpp"

namespace whtlm::cli {
namespace {

struct ConvertArgs {
  std::string checkpoint, proj = "wht", out;
  bool force = false;
};

void run_convert(const ConvertArgs& a) {
  interop::ConvertOptions o;
  o.to = parse_projection(a.proj);
  o.out = a.out;
  o.force = a.force;
  const interop::ConvertResult r = interop::convert_model(a.checkpoint, o);
  const bool wht = r.config.projection == Projection::wht;
  std::printf("layer  relative residual%s\n", wht ? "  gamma min      mean       max" : "");
  double worst = 0, mean = 0;
  for (const interop::LayerFit& f : r.layers) {
    if (wht)
      std::printf("%5d  %17.6f  %9.4g  %9.4g  %9.4g\n", f.layer, f.relative_residual, f.gamma_min,
                  f.gamma_mean, f.gamma_max);
    else
      std::printf("%5d  %17.6f\n", f.layer, f.relative_residual);
    worst = std::max(worst, f.relative_residual);
    mean += f.relative_residual / double(r.layers.size());
  }
  std::printf(
      "whtlm convert: %s dense -> %s: %zu layers, relative residual ||W_O - fit||_F / "
      "||W_O||_F mean %.6f, worst %.6f",
      a.checkpoint.c_str(), projection_name(r.config.projection), r.layers.size(), mean, worst);
  if (wht)
    std::printf(
        " (0: W_O is exactly diag(gamma) H / sqrt(d); a random W_O gives about "
        "sqrt(1 - 1/d) = %.4f)",
        std::sqrt(1.0 - 1.0 / r.config.d_model));
  std::error_code ec;
  const bool tokenizer =
      std::filesystem::exists(std::filesystem::path(a.out) / "tokenizer.json", ec);
  std::printf("\n  checkpoint: %s (config.json, model.safetensors, checksums.json%s)\n",
              a.out.c_str(), tokenizer ? ", the source's tokenizer.json" : "; byte tokenizer");
}

}  // namespace

void add_convert_command(CLI::App& app) {
  auto a = std::make_shared<ConvertArgs>();
  CLI::App* cmd = app.add_subcommand(
      "convert",
      "Convert a dense checkpoint to the Hadamard (or identity) attention output projection: "
      "each layer's W_O becomes its least-squares fit diag(gamma) H / sqrt(d) with beta the "
      "dense bias (identity: W_O dropped); everything else is copied. Prints each layer's "
      "relative residual. Fine-tune the result with `whtlm train --init`");
  cmd->add_option("checkpoint", a->checkpoint,
                  "Dense checkpoint or run folder (config.json + model.safetensors)")
      ->required();
  cmd->add_option("--proj", a->proj, "Target output projection")
      ->check(CLI::IsMember({"wht", "identity"}))
      ->capture_default_str();
  cmd->add_option("--out", a->out, "Checkpoint folder to write (new or empty)")->required();
  cmd->add_flag("--force", a->force,
                "Write into an --out folder that holds a checkpoint (its config.json, "
                "model.safetensors, checksums.json and tokenizer.json are replaced)");
  cmd->callback([a] { run_convert(*a); });
}

}  // namespace whtlm::cli
