// Conversion of a dense checkpoint to the Hadamard (or identity) output projection:
// each layer's W_O is folded into a dense matrix [out][in] and fitted by the closest
// diag(gamma) H / sqrt(d) (fold.cpp); every other tensor is copied by name. The result is
// a checkpoint folder like `whtlm init` writes, with the source's tokenizer, that
// evaluates, generates and trains (`whtlm train --init`) like any other.
#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "interop/common.hpp"
#include "whtlm/checkpoint.hpp"
#include "whtlm/interop.hpp"
#include "whtlm/io.hpp"

namespace whtlm::interop {
namespace {

namespace fs = std::filesystem;

// What `convert --out DIR` refuses without --force: a path that is not a folder, a folder
// holding a checkpoint's files, and (even with --force) the source folder itself.
void check_out_folder(const std::string& source, const ConvertOptions& o) {
  if (o.out.empty()) throw std::invalid_argument("--out: the folder to write is needed");
  std::error_code ec;
  if (!fs::exists(o.out, ec)) return;
  if (!fs::is_directory(o.out, ec))
    throw std::invalid_argument("--out " + o.out + ": exists and is not a folder");
  if (fs::equivalent(o.out, source, ec))
    throw std::invalid_argument("--out " + o.out +
                                ": is the source checkpoint itself; choose another folder");
  if (o.force) return;
  for (const char* f : {"model.safetensors", "config.json", "checksums.json"})
    if (fs::exists(fs::path(o.out) / f, ec))
      throw std::invalid_argument("--out " + o.out + ": already holds " + f +
                                  " (a checkpoint?); choose a new folder, or --force to "
                                  "replace it");
}

}  // namespace

ConvertResult convert_model(const std::string& checkpoint, const ConvertOptions& options) {
  if (options.to == Projection::dense)
    throw std::invalid_argument(
        "convert: the target projection must be wht or identity (the source is dense)");
  // The projection is checked before any weight is read.
  const ModelConfig source_config = read_config(checkpoint);
  if (source_config.projection != Projection::dense)
    throw std::invalid_argument(checkpoint + ": its attention output projection is " +
                                projection_name(source_config.projection) +
                                "; convert takes a dense model (export folds wht and identity "
                                "into a dense W_O)");
  check_out_folder(checkpoint, options);
  const SourceModel src = SourceModel::load(checkpoint);
  const std::string tokenizer = checkpoint_tokenizer(checkpoint);

  ConvertResult result;
  result.config = src.config;
  result.config.projection = options.to;
  const ParamLayout layout(result.config);
  std::vector<float> params(layout.total_floats(), 0.0f);

  // Every tensor but the output projection's, by name; the source's own projection
  // tensors are the only ones left over.
  for (const TensorSpec& t : layout.tensors()) {
    if (t.component == Component::attn_out) continue;
    const TensorSpec* s = src.layout.find(t.name);
    if (s == nullptr || s->numel != t.numel)
      throw std::logic_error("convert: the source layout has no tensor " + t.name +
                             " of the same size");
    std::copy_n(src.params.data() + s->offset, t.numel, params.data() + t.offset);
  }

  const std::size_t d = static_cast<std::size_t>(src.config.d_model);
  std::vector<float> w(d * d), bias(d);
  for (int l = 0; l < src.config.n_layer; ++l) {
    const auto b = static_cast<std::size_t>(l);
    fold_projection(src.config, src.params.data() + src.layout.blocks[b].proj, w.data(),
                    bias.data());
    LayerFit fit =
        fit_projection(result.config, w.data(), bias.data(), params.data() + layout.blocks[b].proj);
    fit.layer = l;
    result.layers.push_back(fit);
  }

  Checksums sums = save_model(
      options.out, layout, params.data(),
      {{"whtlm_converted_from", "dense"}, {"whtlm_converted_to", projection_name(options.to)}});
  const fs::path tok_out = fs::path(options.out) / "tokenizer.json";
  if (tokenizer != "byte") {
    sums["tokenizer.json"] = io::write_file_atomic(tok_out.string(), io::read_file(tokenizer));
  } else {
    // With --force, a tokenizer.json left from another model must not be taken for this one's.
    std::error_code ec;
    fs::remove(tok_out, ec);
  }
  write_checksums(options.out, sums);
  return result;
}

}  // namespace whtlm::interop
