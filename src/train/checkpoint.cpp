// Checkpoint folders: config.json with Hugging Face keys, model.safetensors with
// Hugging Face tensor names.
#include "whtlm/checkpoint.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

#include "io/json_read.hpp"
#include "whtlm/io.hpp"
#include "whtlm/limits.hpp"

namespace whtlm {
namespace {

using nlohmann::json;

}  // namespace

std::string config_to_json(const ModelConfig& c) {
  c.validate();
  json j;
  if (c.family == Family::llama) {
    j = {{"architectures", {"LlamaForCausalLM"}},
         {"model_type", "llama"},
         {"vocab_size", c.vocab_size},
         {"hidden_size", c.d_model},
         {"intermediate_size", c.ff()},
         {"num_hidden_layers", c.n_layer},
         {"num_attention_heads", c.n_head},
         {"num_key_value_heads", c.n_kv_head},
         {"head_dim", c.head_dim()},
         {"max_position_embeddings", c.max_seq},
         {"rms_norm_eps", c.norm_eps},
         {"rope_theta", c.rope_theta},
         {"tie_word_embeddings", false},
         {"hidden_act", "silu"},
         {"attention_bias", false},
         {"mlp_bias", false},
         {"torch_dtype", "float32"}};
  } else {
    j = {{"architectures", {"GPT2LMHeadModel"}},
         {"model_type", "gpt2"},
         {"vocab_size", c.vocab_size},
         {"n_embd", c.d_model},
         {"n_layer", c.n_layer},
         {"n_head", c.n_head},
         {"n_positions", c.max_seq},
         {"n_ctx", c.max_seq},
         {"n_inner", c.ff()},
         {"activation_function", "gelu_new"},
         {"layer_norm_epsilon", c.norm_eps},
         {"tie_word_embeddings", true},
         {"torch_dtype", "float32"}};
  }
  j["attn_output_projection"] = projection_name(c.projection);
  return j.dump(2) + "\n";
}

ModelConfig config_from_json(const std::string& text, const std::string& source) {
  const json doc = io::parse_json(text, source);
  const io::JsonObject j(doc, source);
  const std::string type = j.string("model_type");
  auto size = [&](const char* field, const Bound& b) { return j.integer<int>(field, b); };
  // A field that would change the model's meaning if ignored must hold the value whtlm
  // implements; anything else is refused rather than silently run differently.
  auto must_be = [&](const char* field, const json& expected, const std::string& why) {
    if (j.has(field) && j.at(field) != expected)
      j.fail(field, "found " + j.at(field).dump() + ", but " + why);
  };
  ModelConfig c;
  if (type == "llama") {
    c.family = Family::llama;
    c.d_model = size("hidden_size", limits::d_model);
    c.d_ff = size("intermediate_size", limits::d_ff);
    c.n_layer = size("num_hidden_layers", limits::n_layer);
    c.n_head = size("num_attention_heads", limits::n_head);
    c.n_kv_head =
        j.has("num_key_value_heads") ? size("num_key_value_heads", limits::n_head) : c.n_head;
    c.max_seq = size("max_position_embeddings", limits::context);
    c.norm_eps = static_cast<float>(j.number("rms_norm_eps", limits::norm_eps, 1e-6));
    c.rope_theta = static_cast<float>(j.number("rope_theta", limits::rope_theta, 10000.0));
    must_be("tie_word_embeddings", false, "tied llama embeddings are not supported");
    if (j.has("head_dim") && size("head_dim", limits::d_model) * c.n_head != c.d_model)
      j.fail("head_dim", "must equal hidden_size / num_attention_heads = " +
                             std::to_string(c.d_model / c.n_head));
    if (j.has("rope_scaling")) j.fail("rope_scaling", "not supported (expected null)");
    must_be("hidden_act", "silu", "whtlm's llama MLP is SwiGLU with SiLU (\"silu\")");
    must_be("attention_bias", false, "whtlm's llama attention has no biases");
    must_be("mlp_bias", false, "whtlm's llama MLP has no biases");
  } else if (type == "gpt2") {
    c.family = Family::gpt2;
    c.d_model = size("n_embd", limits::d_model);
    c.n_layer = size("n_layer", limits::n_layer);
    c.n_head = size("n_head", limits::n_head);
    c.n_kv_head = c.n_head;
    c.max_seq = size("n_positions", limits::context);
    c.d_ff = j.has("n_inner") ? size("n_inner", limits::d_ff) : 0;
    c.norm_eps = static_cast<float>(j.number("layer_norm_epsilon", limits::norm_eps, 1e-5));
    if (j.has("activation_function")) {
      const std::string a = j.string("activation_function");
      if (a != "gelu_new" && a != "gelu_pytorch_tanh")
        j.fail("activation_function",
               "only the tanh GELU (gelu_new) is supported, found \"" + a + "\"");
    }
    must_be("tie_word_embeddings", true, "whtlm's gpt2 ties lm_head to wte");
    must_be("scale_attn_weights", true, "whtlm scales attention scores by 1/sqrt(head_dim)");
    must_be("scale_attn_by_inverse_layer_idx", false,
            "whtlm does not scale attention by the layer index");
  } else {
    j.fail("model_type", "expected \"llama\" or \"gpt2\", found \"" + type + "\"");
  }
  c.vocab_size = size("vocab_size", limits::vocab_size);
  if (j.has("attn_output_projection")) {
    try {
      c.projection = parse_projection(j.string("attn_output_projection"));
    } catch (const std::invalid_argument& e) {
      j.fail("attn_output_projection", e.what());
    }
  }  // absent: a plain Hugging Face checkpoint, dense
  try {
    c.validate();
  } catch (const ConfigError& e) {
    // The fields as config.json spells them for this family.
    const bool llama = c.family == Family::llama;
    const std::string named =
        renamed(e, {{"n_layer", llama ? "num_hidden_layers" : "n_layer"},
                    {"d_model", llama ? "hidden_size" : "n_embd"},
                    {"n_head", llama ? "num_attention_heads" : "n_head"},
                    {"n_kv_head", llama ? "num_key_value_heads" : "n_head"},
                    {"d_ff", llama ? "intermediate_size" : "n_inner"},
                    {"max_seq", llama ? "max_position_embeddings" : "n_positions"},
                    {"norm_eps", llama ? "rms_norm_eps" : "layer_norm_epsilon"}});
    const std::size_t colon = named.find(": ");
    j.fail(named.substr(0, colon), named.substr(colon + 2));
  }
  return c;
}

ModelConfig read_config(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "config.json").string();
  return config_from_json(io::read_file(path), path);
}

std::map<std::string, io::FileChecksum> save_model(
    const std::string& dir, const ParamLayout& layout, const float* params,
    const std::map<std::string, std::string>& metadata) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error(dir + ": cannot create folder: " + ec.message());
  std::vector<io::TensorToWrite> tensors;
  for (const TensorSpec& t : layout.tensors())
    tensors.push_back({t.name, io::DType::f32, t.shape, params + t.offset});
  std::map<std::string, std::string> meta = metadata;
  meta["format"] = "pt";
  std::map<std::string, io::FileChecksum> sums;
  sums["model.safetensors"] = io::write_safetensors(
      (std::filesystem::path(dir) / "model.safetensors").string(), tensors, meta);
  sums["config.json"] = io::write_file_atomic((std::filesystem::path(dir) / "config.json").string(),
                                              config_to_json(layout.config()));
  return sums;
}

namespace {

// Every tensor the layout needs, present with its shape; nothing the layout does not
// know but GPT-2's tied head (checked against wte once read) and attention buffers.
// Runs on the header alone, before any weight memory is allocated.
void check_tensors(const io::SafetensorsReader& file, const ParamLayout& layout) {
  const std::string& path = file.path();
  const bool gpt2 = layout.config().family == Family::gpt2;
  for (const std::string& name : file.names()) {
    if (layout.find(name) != nullptr) continue;
    // Hugging Face GPT-2 files may carry the tied head and the attention mask buffers.
    const bool known_extra = gpt2 && (name == "lm_head.weight" || name.ends_with(".attn.bias") ||
                                      name.ends_with(".attn.masked_bias"));
    if (!known_extra)
      throw std::runtime_error(path + ": tensor '" + name + "' does not belong to a " +
                               family_name(layout.config().family) + " model with the " +
                               projection_name(layout.config().projection) +
                               " output projection (does config.json match the weights?)");
  }
  for (const TensorSpec& t : layout.tensors()) {
    if (!file.contains(t.name))
      throw std::runtime_error(
          path + ": missing tensor '" + t.name + "' " + io::shape_string(t.shape) + " (the " +
          projection_name(layout.config().projection) + " output projection needs it)");
    const io::TensorInfo& info = file.info(t.name);
    if (info.dtype != io::DType::f32 || info.shape != t.shape)
      throw std::runtime_error(path + ": tensor '" + t.name + "': expected F32 " +
                               io::shape_string(t.shape) + ", found " + io::dtype_name(info.dtype) +
                               " " + io::shape_string(info.shape));
  }
}

// A weight that is NaN or infinite would run, and generate garbage, without a word.
void check_finite(const std::string& path, const TensorSpec& t, const float* w) {
  for (std::size_t i = 0; i < t.numel; ++i)
    if (!std::isfinite(w[i]))
      throw std::runtime_error(path + ": tensor '" + t.name + "' holds " +
                               (std::isnan(w[i]) ? "NaN" : "an infinite value") + " at element " +
                               std::to_string(i) + " of " + std::to_string(t.numel) +
                               ": the weights are damaged");
}

// GPT-2 ties lm_head to wte; a file whose lm_head.weight differs is an untied model,
// which whtlm would otherwise run with the wrong head.
void check_tied_head(const io::SafetensorsReader& file, const ParamLayout& layout,
                     const float* params) {
  if (layout.config().family != Family::gpt2 || !file.contains("lm_head.weight")) return;
  const TensorSpec& wte = *layout.find("transformer.wte.weight");
  const io::TensorInfo& head = file.info("lm_head.weight");
  if (head.dtype != io::DType::f32 || head.shape != wte.shape)
    throw std::runtime_error(file.path() + ": tensor 'lm_head.weight' is " +
                             io::dtype_name(head.dtype) + " " + io::shape_string(head.shape) +
                             ", but gpt2 ties it to transformer.wte.weight (F32 " +
                             io::shape_string(wte.shape) + ")");
  std::vector<float> w(head.numel());
  file.read_f32("lm_head.weight", head.shape, w.data());
  if (std::memcmp(w.data(), params + wte.offset, w.size() * sizeof(float)) != 0)
    throw std::runtime_error(file.path() +
                             ": tensor 'lm_head.weight' differs from transformer.wte.weight: an "
                             "untied GPT-2 head, which whtlm's gpt2 (tied) cannot represent");
}

}  // namespace

void check_weights_file(const std::string& path, const ParamLayout& layout) {
  check_tensors(io::SafetensorsReader(path), layout);
}

std::map<std::string, std::string> load_weights(const std::string& path, const ParamLayout& layout,
                                                float* params) {
  const io::SafetensorsReader file(path);
  check_tensors(file, layout);
  for (const TensorSpec& t : layout.tensors()) {
    file.read_f32(t.name, t.shape, params + t.offset);
    check_finite(path, t, params + t.offset);
  }
  check_tied_head(file, layout, params);
  return file.metadata();
}

std::unique_ptr<Transformer> load_model(const std::string& dir, Device device,
                                        Precision precision) {
  const ModelConfig config = read_config(dir);
  const std::string weights = (std::filesystem::path(dir) / "model.safetensors").string();
  // The sizes config.json claims are checked against the weights file before the
  // model's memory is allocated: a config of a billion layers meets a file that holds
  // four, not a bad_alloc.
  check_weights_file(weights, ParamLayout(config));
  verify_checkpoint_files(dir);
  auto model = std::make_unique<Transformer>(config, device, precision);
  load_weights(weights, model->layout(), model->params().data());
  model->upload_params();
  return model;
}

nlohmann::json checksums_to_json(const Checksums& sums) {
  json files = json::object();
  for (const auto& [name, c] : sums) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "%08x", c.crc32c);
    files[name] = {{"bytes", c.bytes}, {"crc32c", hex}};
  }
  return files;
}

Checksums checksums_from_json(const nlohmann::json& files, const std::string& source,
                              const std::string& field) {
  const io::JsonObject o(files, source, field);
  Checksums sums;
  for (const auto& [name, entry] : files.items()) {
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
      o.fail(name, "not a file name of a checkpoint folder");
    const io::JsonObject e(entry, source, field + "." + name);
    io::FileChecksum c;
    c.bytes = e.integer<std::uint64_t>("bytes", limits::file_bytes);
    const std::string hex = e.string("crc32c");
    char* end = nullptr;
    const unsigned long v = std::strtoul(hex.c_str(), &end, 16);
    if (hex.empty() || hex.size() > 8 || *end != '\0')
      e.fail("crc32c", "expected 8 hexadecimal digits, found \"" + hex + "\"");
    c.crc32c = static_cast<std::uint32_t>(v);
    sums[name] = c;
  }
  return sums;
}

void write_checksums(const std::string& dir, const Checksums& sums) {
  const json doc{{"kind", "whtlm checksums"}, {"files", checksums_to_json(sums)}};
  io::write_file_atomic((std::filesystem::path(dir) / kChecksumsFile).string(), doc.dump(2) + "\n");
}

void verify_files(const std::string& dir, const Checksums& sums) {
  for (const auto& [name, want] : sums) {
    const std::string path = (std::filesystem::path(dir) / name).string();
    const io::FileChecksum got = io::file_checksum(path);
    if (got.bytes != want.bytes)
      throw ChecksumError(path + ": " + std::to_string(got.bytes) +
                          " bytes, but the checkpoint "
                          "recorded " +
                          std::to_string(want.bytes) +
                          ": the file was changed or "
                          "damaged after it was written");
    if (got.crc32c != want.crc32c)
      throw ChecksumError(path + ": checksum mismatch (" + io::describe(got) +
                          ", the checkpoint "
                          "recorded " +
                          io::describe(want) + "): the file is damaged");
  }
}

void verify_checkpoint_files(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / kChecksumsFile).string();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return;  // a folder whtlm did not checksum
  const json doc = io::parse_json(io::read_file(path), path);
  const io::JsonObject o(doc, path);
  try {
    verify_files(dir, checksums_from_json(o.at("files"), path, "files"));
  } catch (const ChecksumError& e) {
    throw ChecksumError(std::string(e.what()) + " (if you changed it on purpose, delete " + path +
                        ")");
  }
}

std::string checkpoint_tokenizer(const std::string& dir) {
  const std::filesystem::path p = std::filesystem::path(dir) / "tokenizer.json";
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::symlink_status(p, ec)))
    return "byte";  // checkpoints from before tokenizers, `init`
  // One that is there but cannot be read is an error, not a silent fall back to bytes.
  if (!std::filesystem::is_regular_file(p, ec))
    throw std::runtime_error(p.string() +
                             ": the checkpoint's tokenizer is not a regular file "
                             "(give --tokenizer to use another)");
  return p.string();
}

}  // namespace whtlm
