// Checkpoint folders: config.json with Hugging Face keys, model.safetensors with
// Hugging Face tensor names.
#include "whtlm/checkpoint.hpp"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

#include "whtlm/io.hpp"

namespace whtlm {
namespace {

using nlohmann::json;

std::runtime_error config_error(const std::string& source, const std::string& field,
                                const std::string& why) {
  return std::runtime_error(source + ": field \"" + field + "\": " + why);
}

// Reads an integer field; missing or not an integer is an error naming the field.
int get_int(const json& j, const std::string& source, const char* field) {
  if (!j.contains(field)) throw config_error(source, field, "missing");
  const json& v = j.at(field);
  if (!v.is_number_integer())
    throw config_error(source, field, "expected an integer, found " + v.dump());
  const auto x = v.get<long long>();
  if (x < 1 || x > (1ll << 30)) throw config_error(source, field, "out of range: " + v.dump());
  return static_cast<int>(x);
}

double get_number(const json& j, const std::string& source, const char* field, double fallback) {
  if (!j.contains(field) || j.at(field).is_null()) return fallback;
  const json& v = j.at(field);
  if (!v.is_number()) throw config_error(source, field, "expected a number, found " + v.dump());
  return v.get<double>();
}

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
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw std::runtime_error(source + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw std::runtime_error(source + ": expected a JSON object");
  if (!j.contains("model_type")) throw config_error(source, "model_type", "missing");
  if (!j.at("model_type").is_string())
    throw config_error(source, "model_type", "expected a string");
  const std::string type = j.at("model_type").get<std::string>();
  ModelConfig c;
  if (type == "llama") {
    c.family = Family::llama;
    c.d_model = get_int(j, source, "hidden_size");
    c.d_ff = get_int(j, source, "intermediate_size");
    c.n_layer = get_int(j, source, "num_hidden_layers");
    c.n_head = get_int(j, source, "num_attention_heads");
    c.n_kv_head =
        j.contains("num_key_value_heads") ? get_int(j, source, "num_key_value_heads") : c.n_head;
    c.max_seq = get_int(j, source, "max_position_embeddings");
    c.norm_eps = static_cast<float>(get_number(j, source, "rms_norm_eps", 1e-6));
    c.rope_theta = static_cast<float>(get_number(j, source, "rope_theta", 10000.0));
    if (j.contains("tie_word_embeddings") && j.at("tie_word_embeddings") == true)
      throw config_error(source, "tie_word_embeddings", "tied llama embeddings are not supported");
    if (j.contains("head_dim") && !j.at("head_dim").is_null() &&
        get_int(j, source, "head_dim") * c.n_head != c.d_model)
      throw config_error(source, "head_dim", "must equal hidden_size / num_attention_heads");
    if (j.contains("rope_scaling") && !j.at("rope_scaling").is_null())
      throw config_error(source, "rope_scaling", "not supported");
  } else if (type == "gpt2") {
    c.family = Family::gpt2;
    c.d_model = get_int(j, source, "n_embd");
    c.n_layer = get_int(j, source, "n_layer");
    c.n_head = get_int(j, source, "n_head");
    c.n_kv_head = c.n_head;
    c.max_seq = get_int(j, source, "n_positions");
    c.d_ff =
        j.contains("n_inner") && !j.at("n_inner").is_null() ? get_int(j, source, "n_inner") : 0;
    c.norm_eps = static_cast<float>(get_number(j, source, "layer_norm_epsilon", 1e-5));
    if (j.contains("activation_function")) {
      const json& a = j.at("activation_function");
      if (a != "gelu_new" && a != "gelu_pytorch_tanh")
        throw config_error(source, "activation_function",
                           "only the tanh GELU (gelu_new) is supported, found " + a.dump());
    }
  } else {
    throw config_error(source, "model_type",
                       "expected \"llama\" or \"gpt2\", found \"" + type + "\"");
  }
  c.vocab_size = get_int(j, source, "vocab_size");
  if (j.contains("attn_output_projection")) {
    const json& p = j.at("attn_output_projection");
    if (!p.is_string()) throw config_error(source, "attn_output_projection", "expected a string");
    try {
      c.projection = parse_projection(p.get<std::string>());
    } catch (const std::invalid_argument& e) {
      throw config_error(source, "attn_output_projection", e.what());
    }
  }  // absent: a plain Hugging Face checkpoint, dense
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(source + ": " + e.what());
  }
  return c;
}

ModelConfig read_config(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "config.json").string();
  return config_from_json(io::read_file(path), path);
}

void save_model(const std::string& dir, const ParamLayout& layout, const float* params,
                const std::map<std::string, std::string>& metadata) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error(dir + ": cannot create folder: " + ec.message());
  std::vector<io::TensorToWrite> tensors;
  for (const TensorSpec& t : layout.tensors())
    tensors.push_back({t.name, io::DType::f32, t.shape, params + t.offset});
  std::map<std::string, std::string> meta = metadata;
  meta["format"] = "pt";
  io::write_safetensors((std::filesystem::path(dir) / "model.safetensors").string(), tensors, meta);
  io::write_file_atomic((std::filesystem::path(dir) / "config.json").string(),
                        config_to_json(layout.config()));
}

std::map<std::string, std::string> load_weights(const std::string& path, const ParamLayout& layout,
                                                float* params) {
  const io::SafetensorsReader file(path);
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
    file.read_f32(t.name, t.shape, params + t.offset);
  }
  return file.metadata();
}

std::unique_ptr<Transformer> load_model(const std::string& dir, Device device,
                                        Precision precision) {
  auto model = std::make_unique<Transformer>(read_config(dir), device, precision);
  load_weights((std::filesystem::path(dir) / "model.safetensors").string(), model->layout(),
               model->params().data());
  model->upload_params();
  return model;
}

std::string checkpoint_tokenizer(const std::string& dir) {
  const std::filesystem::path p = std::filesystem::path(dir) / "tokenizer.json";
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec) ? p.string() : std::string("byte");
}

}  // namespace whtlm
