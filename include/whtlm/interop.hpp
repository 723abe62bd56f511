// Models in and out of whtlm (docs/interop.md):
//  - export to GGUF (llama.cpp and what is built on it) and to the Hugging Face layout
//    (transformers' LlamaForCausalLM / GPT2LMHeadModel), the wht and identity output
//    projections folded into the dense W_O any runtime knows: W_O = diag(gamma) H / sqrt(d)
//    with bias beta (identity: W_O = I, bias 0);
//  - import from both, into a checkpoint folder that evaluates, generates and trains like
//    any run;
//  - conversion of a dense model to the Hadamard (or identity) projection, fitting each
//    W_O by the closest diag(gamma) H / sqrt(d) in least squares.
// Every error is a std::runtime_error or std::invalid_argument naming the file and the
// field (key, tensor) at fault.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "whtlm/model.hpp"

namespace whtlm::interop {

enum class Format { gguf, hf };
const char* format_name(Format f);
Format parse_format(const std::string& name);  // std::invalid_argument lists the choices

// Element type of the exported matrices. Vectors (norms, biases) stay f32 in GGUF; the
// Hugging Face layout takes f32, f16 and bf16 for every tensor.
enum class TensorType { f32, f16, bf16, q8_0 };
const char* tensor_type_name(TensorType t);  // "f32", "f16", "bf16", "q8_0"
TensorType parse_tensor_type(const std::string& name);

struct ExportOptions {
  Format format = Format::gguf;
  TensorType type = TensorType::f32;
  std::string out;        // gguf: the file; hf: the folder
  bool keep_wht = false;  // hf only: whtlm's own layout (gamma, beta), not folded
  bool force = false;     // replace an existing file / the files of an existing folder
  // hf: tensors are split into shards of at most this many bytes (a larger single
  // tensor gets a shard of its own), with model.safetensors.index.json.
  std::uint64_t max_shard_bytes = std::uint64_t{4} << 30;
};

struct ExportResult {
  std::vector<std::string> files;  // written, in order
  std::uint64_t bytes = 0;         // their total size
  ModelConfig config;              // the source model
  bool folded = false;             // wht or identity folded into a dense W_O
};

// Exports the checkpoint or run folder `checkpoint` (config.json + model.safetensors,
// tokenizer.json when it has one, else the byte tokenizer).
ExportResult export_model(const std::string& checkpoint, const ExportOptions& options);

struct ImportOptions {
  std::string out;  // the checkpoint folder to write
  bool force = false;
};

struct ImportResult {
  ModelConfig config;
  std::string source_format;      // "gguf F32", "hf BF16", ...
  std::string tokenizer;          // "byte", "bpe (N tokens, M merges)"
  bool tied_head_copied = false;  // a tied llama head written as lm_head.weight
};

// Imports a Hugging Face folder (config.json + model.safetensors or sharded with
// model.safetensors.index.json; F32, F16, BF16; tokenizer.json or vocab.json +
// merges.txt) or a GGUF file (llama or gpt2; F32, F16, BF16, Q8_0 dequantised) of a
// dense llama or gpt2 model. A model exported by whtlm with its projection folded
// (config.json "whtlm_fold" / GGUF "whtlm.fold") comes back with that projection.
// Refuses, naming it, what whtlm cannot represent: another architecture, rope scaling,
// biases whtlm's model does not have, a tensor it does not use.
ImportResult import_model(const std::string& path, const ImportOptions& options);

// How well the closest Hadamard projection reproduces one dense W_O.
struct LayerFit {
  int layer = 0;
  // ||W - diag(gamma) H / sqrt(d)||_F / ||W||_F: 0 for a W_O that is exactly of that
  // form, about sqrt(1 - 1/d) for a random one.
  double relative_residual = 0;
  double gamma_mean = 0, gamma_min = 0, gamma_max = 0;
};

struct ConvertOptions {
  Projection to = Projection::wht;
  std::string out;
  bool force = false;
};

struct ConvertResult {
  ModelConfig config;  // the converted model's
  std::vector<LayerFit> layers;
};

// Converts the dense checkpoint `checkpoint` to `options.to`: each layer's W_O becomes
// diag(gamma) H / sqrt(d) with gamma_i = <W_i, H_i> / sqrt(d) (the least-squares fit of
// row i; H's rows are orthogonal, so the rows fit independently) and beta the dense bias
// (0 for llama); identity drops W_O (beta = the bias). Writes a checkpoint folder with
// the source's tokenizer.
ConvertResult convert_model(const std::string& checkpoint, const ConvertOptions& options);

// The dense W_O ([d_out][d_in], row i = output channel) and bias that a projection's
// parameters compute: wht: W[i][j] = gamma_i H[i][j] / sqrt(d), bias beta; identity: I
// and 0; dense: the weight as stored (gpt2's Conv1D [in, out] transposed) and its bias
// (0 for llama). `params` is the projection's block of the parameter buffer.
void fold_projection(const ModelConfig& config, const float* params, float* w_out_in, float* bias);
// The inverse for wht/identity: parameters of `config.projection` (its block) fitted to
// the dense W_O [out][in] and bias; returns the fit.
LayerFit fit_projection(const ModelConfig& config, const float* w_out_in, const float* bias,
                        float* params);

}  // namespace whtlm::interop
