// Model checkpoints in the Hugging Face layout: a folder with config.json (Hugging
// Face keys plus "attn_output_projection") and model.safetensors (Hugging Face
// tensor names; gpt2 weights in Conv1D [in, out] layout). docs/checkpoints.md lists
// the names, including the wht projection's scale and bias.
#pragma once

#include <map>
#include <memory>
#include <string>

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
void save_model(const std::string& dir, const ParamLayout& layout, const float* params,
                const std::map<std::string, std::string>& metadata = {});
// Fills params (laid out by `layout`) from a safetensors file: every tensor must be
// present with dtype F32 and the layout's shape; tensors the layout does not know
// are an error (so a dense checkpoint does not load into a wht model). Returns the
// file's metadata.
std::map<std::string, std::string> load_weights(const std::string& path, const ParamLayout& layout,
                                                float* params);
// A model from a checkpoint folder (config.json + model.safetensors), on a device.
std::unique_ptr<Transformer> load_model(const std::string& dir, Device device = Device::cpu,
                                        Precision precision = Precision::fp32);
// The tokenizer spec of a checkpoint folder: its tokenizer.json when there is one
// (training writes it), else "byte" (checkpoints from before tokenizers, `init`).
std::string checkpoint_tokenizer(const std::string& dir);

}  // namespace whtlm
