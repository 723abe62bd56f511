// Model checkpoints in the Hugging Face layout: a folder with config.json (Hugging
// Face keys plus "attn_output_projection") and model.safetensors (Hugging Face
// tensor names; gpt2 weights in Conv1D [in, out] layout). docs/checkpoints.md lists
// the names, including the wht projection's scale and bias.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <stdexcept>
#include <string>

#include "whtlm/io.hpp"
#include "whtlm/model.hpp"
#include "whtlm/transformer.hpp"

namespace whtlm {

// config.json text for a model.
std::string config_to_json(const ModelConfig& config);
// Parses config.json text; `source` (a path) is named in every error, with the field.
ModelConfig config_from_json(const std::string& text, const std::string& source);
// Reads and validates dir/config.json.
ModelConfig read_config(const std::string& dir);

// Writes dir/config.json and dir/model.safetensors, each atomically (temp file and
// rename), creating dir when needed. metadata goes into the safetensors header.
// Returns the two files' checksums.
std::map<std::string, io::FileChecksum> save_model(
    const std::string& dir, const ParamLayout& layout, const float* params,
    const std::map<std::string, std::string>& metadata = {});
// Fills params (laid out by `layout`) from a safetensors file: every tensor must be
// present with dtype F32 and the layout's shape; tensors the layout does not know
// are an error (so a dense checkpoint does not load into a wht model), as are a NaN
// or infinite weight (naming the tensor) and, for gpt2, an lm_head.weight that is
// not wte's (an untied head). Returns the file's metadata.
std::map<std::string, std::string> load_weights(const std::string& path, const ParamLayout& layout,
                                                float* params);
// The same checks of the file's header alone: every tensor of `layout` present with
// its dtype and shape. Reads no weights, so it runs before any is allocated.
void check_weights_file(const std::string& path, const ParamLayout& layout);
// A model from a checkpoint folder (config.json + model.safetensors), on a device:
// config.json's sizes are checked against the weights file, and the files against
// the folder's checksums.json (if it has one) before the model is allocated.
std::unique_ptr<Transformer> load_model(const std::string& dir, Device device = Device::cpu,
                                        Precision precision = Precision::fp32);

// Checksums of a checkpoint's files: each file's size and CRC-32C, by file name.
// Training writes them into every checkpoint folder (checksums.json, beside the files)
// and into train_state.json.
using Checksums = std::map<std::string, io::FileChecksum>;
inline constexpr const char* kChecksumsFile = "checksums.json";
// A file that is not as its checkpoint recorded it.
struct ChecksumError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
nlohmann::json checksums_to_json(const Checksums& sums);
// `files` is the JSON object of file name -> {"bytes": N, "crc32c": "hex"}; errors name
// source and field.
Checksums checksums_from_json(const nlohmann::json& files, const std::string& source,
                              const std::string& field);
void write_checksums(const std::string& dir, const Checksums& sums);
// Recomputes each listed file's checksum; ChecksumError names the first file that
// differs (size or CRC) and says how.
void verify_files(const std::string& dir, const Checksums& sums);
// verify_files against dir/checksums.json when the folder has one.
void verify_checkpoint_files(const std::string& dir);
// The tokenizer spec of a checkpoint folder: its tokenizer.json when there is one
// (training writes it), else "byte" (checkpoints from before tokenizers, `init`).
std::string checkpoint_tokenizer(const std::string& dir);

}  // namespace whtlm
