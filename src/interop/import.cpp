// Import of a Hugging Face folder or a GGUF file into a whtlm checkpoint folder.
// ../shared/INTEROP.md holds the facts every mapping here rests on; docs/interop.md says
// what a user gets.
//
// Both sources are first turned into one form: tensors under their Hugging Face names in
// Hugging Face layout (gpt2 Conv1D [in, out], llama nn.Linear [out, in] with rotate_half
// Q/K rows), read on demand as f32. One routine then fills the parameter buffer from
// them, so both sources accept and refuse the same things:
//  - every tensor of the model is needed, with its shape; any tensor whtlm does not use is
//    refused by name (never dropped), except biases that are exactly zero (llama's q, k,
//    v, o and MLP biases: whtlm's llama has none), GPT-2's tied head when it equals wte,
//    and GPT-2's attention mask buffers (Hugging Face files only);
//  - a folded projection (config.json "whtlm_fold", GGUF "whtlm.projection" with
//    "whtlm.folded") is fitted back from the dense W_O and bias: wht to diag(gamma) H /
//    sqrt(d) + beta, identity checked to be I with no bias;
//  - a tied llama head (tie_word_embeddings, or a GGUF without output.weight) is copied
//    into lm_head.weight.
// A source without a tokenizer imports only with a vocabulary of 256 (the byte tokenizer);
// otherwise it is refused, since a checkpoint without its tokenizer would silently run as
// bytes. A tokenizer smaller than the model's vocabulary is accepted (padded embeddings,
// as many Hugging Face models have) and said in the summary; a larger one is refused.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "backend/weights.hpp"
#include "interop/common.hpp"
#include "io/json_read.hpp"
#include "whtlm/checkpoint.hpp"
#include "whtlm/gguf.hpp"
#include "whtlm/interop.hpp"
#include "whtlm/io.hpp"
#include "whtlm/tokenizer.hpp"

namespace whtlm::interop {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// ---------------------------------------------------------------------------------------
// The common form of a source.

// One tensor of the source under its Hugging Face name.
struct SrcTensor {
  std::string file;                  // the file that holds it (for messages)
  std::string name;                  // its name in that file
  std::string dtype;                 // "F32", "BF16", "Q8_0", ...
  std::vector<std::int64_t> shape;   // Hugging Face shape (after any transposition)
  std::string shape_text;            // its shape as the file states it
  std::function<void(float*)> read;  // numel floats in Hugging Face layout
  std::size_t numel() const {
    std::size_t n = 1;
    for (std::int64_t s : shape) n *= static_cast<std::size_t>(s);
    return n;
  }
  std::string where() const { return file + ": tensor '" + name + "'"; }
};

struct Source {
  std::string kind;         // "hf" or "gguf"
  std::string path;         // folder or file, for messages
  ModelConfig config;       // the model to build (its projection: the folded one when folded)
  bool folded = false;      // W_O (+ bias) to be fitted to config.projection
  bool tied_llama = false;  // llama head tied to the embedding: copied into lm_head
  std::map<std::string, SrcTensor> tensors;  // by Hugging Face name
  // The name in the source of a Hugging Face name (for a tensor that is missing).
  std::function<std::string(const std::string&)> file_name;
  // How the source states a Hugging Face shape (for a shape that differs).
  std::function<std::string(const std::string&, const std::vector<std::int64_t>&)> shape_text;
  std::optional<tok::Tokenizer> tokenizer;
  std::string tokenizer_origin;  // the file it came from, for messages
};

std::string dtypes_text(const Source& s) {
  std::set<std::string> d;
  for (const auto& [name, t] : s.tensors) d.insert(t.dtype);
  std::string out;
  for (const std::string& x : d) out += (out.empty() ? "" : "+") + x;
  return out;
}

std::string num(double v) {
  std::ostringstream o;
  o.precision(9);
  o << v;
  return o.str();
}

void check_finite(const SrcTensor& t, const float* v, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(v[i]))
      throw std::runtime_error(t.where() + " holds " +
                               (std::isnan(v[i]) ? "NaN" : "an infinite value") + " at element " +
                               std::to_string(i) + ": the weights are damaged");
}

std::vector<float> read_all(const SrcTensor& t) {
  std::vector<float> v(t.numel());
  t.read(v.data());
  check_finite(t, v.data(), v.size());
  return v;
}

// What an extra tensor (one the layout does not hold as such) is for.
enum class Role { fold_weight, fold_bias, zero_bias, tied_head, ignored };
struct Extra {
  Role role;
  std::vector<std::int64_t> shape;  // expected (none for ignored)
  std::string why;                  // zero_bias: what whtlm lacks
};

// The tensors whtlm takes besides the layout's own, by Hugging Face name.
std::map<std::string, Extra> extra_tensors(const Source& s, bool hf) {
  const ModelConfig& c = s.config;
  std::map<std::string, Extra> x;
  const bool llama = c.family == Family::llama;
  const std::int64_t E = c.d_model, V = c.vocab_size, F = c.ff(),
                     kv = std::int64_t(c.n_kv_head) * c.head_dim();
  if (!llama || s.tied_llama) x["lm_head.weight"] = {Role::tied_head, {V, E}, ""};
  for (int l = 0; l < c.n_layer; ++l) {
    if (llama) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      const std::string no_qkv = "whtlm's llama attention has no q, k, v biases";
      const std::string no_mlp = "whtlm's llama MLP has no biases";
      x[p + "self_attn.q_proj.bias"] = {Role::zero_bias, {E}, no_qkv};
      x[p + "self_attn.k_proj.bias"] = {Role::zero_bias, {kv}, no_qkv};
      x[p + "self_attn.v_proj.bias"] = {Role::zero_bias, {kv}, no_qkv};
      x[p + "mlp.gate_proj.bias"] = {Role::zero_bias, {F}, no_mlp};
      x[p + "mlp.up_proj.bias"] = {Role::zero_bias, {F}, no_mlp};
      x[p + "mlp.down_proj.bias"] = {Role::zero_bias, {E}, no_mlp};
      if (s.folded) {
        x[p + "self_attn.o_proj.weight"] = {Role::fold_weight, {E, E}, ""};
        x[p + "self_attn.o_proj.bias"] = {Role::fold_bias, {E}, ""};
      } else if (c.projection == Projection::dense) {
        x[p + "self_attn.o_proj.bias"] = {
            Role::zero_bias,
            {E},
            "whtlm's dense llama has no output bias (a model whtlm exported with its projection "
            "folded says so: config.json \"whtlm_fold\", GGUF \"whtlm.projection\")"};
      }
    } else {
      const std::string p = "transformer.h." + std::to_string(l) + ".";
      if (s.folded) {
        x[p + "attn.c_proj.weight"] = {Role::fold_weight, {E, E}, ""};
        x[p + "attn.c_proj.bias"] = {Role::fold_bias, {E}, ""};
      }
      if (hf) {  // attention mask buffers of older transformers versions
        x[p + "attn.bias"] = {Role::ignored, {}, ""};
        x[p + "attn.masked_bias"] = {Role::ignored, {}, ""};
      }
    }
  }
  return x;
}

// The parameter buffer from the source. Everything that needs only the names and shapes
// is checked before any weight is read.
std::vector<float> build_params(const Source& s, const ParamLayout& layout, bool* tied_copied) {
  const ModelConfig& c = layout.config();
  const bool llama = c.family == Family::llama;
  const bool hf = s.kind == "hf";
  const std::map<std::string, Extra> extras = extra_tensors(s, hf);
  auto skip_layout = [&](const TensorSpec& t) {
    return (s.folded && t.component == Component::attn_out) ||
           (s.tied_llama && t.name == "lm_head.weight");
  };
  // 1. Every tensor of the source has a use.
  for (const auto& [name, t] : s.tensors) {
    const TensorSpec* spec = layout.find(name);
    if (spec != nullptr && !skip_layout(*spec)) continue;
    if (extras.count(name) != 0) continue;
    const std::string why = "whtlm's " + std::string(family_name(c.family)) + " model with the " +
                            projection_name(c.projection) +
                            " output projection has no such tensor" +
                            (hf ? " (does config.json match the weights?)" : "");
    throw std::runtime_error(t.where() + " " + t.shape_text + " is not used: " + why +
                             "; refusing rather than dropping it");
  }
  // 2. Every tensor the model needs is there, with its shape.
  auto expect = [&](const std::string& name,
                    const std::vector<std::int64_t>& shape) -> const SrcTensor& {
    auto it = s.tensors.find(name);
    if (it == s.tensors.end())
      throw std::runtime_error(s.path + ": missing tensor '" + s.file_name(name) + "' " +
                               s.shape_text(name, shape));
    if (it->second.shape != shape)
      throw std::runtime_error(it->second.where() + ": expected shape " +
                               s.shape_text(name, shape) + ", found " + it->second.shape_text);
    return it->second;
  };
  for (const TensorSpec& t : layout.tensors())
    if (!skip_layout(t)) expect(t.name, t.shape);
  const std::int64_t E = c.d_model;
  auto out_prefix = [&](int l) {
    return llama ? "model.layers." + std::to_string(l) + ".self_attn.o_proj."
                 : "transformer.h." + std::to_string(l) + ".attn.c_proj.";
  };
  if (s.folded)
    for (int l = 0; l < c.n_layer; ++l) expect(out_prefix(l) + "weight", {E, E});
  for (const auto& [name, x] : extras)
    if (x.role != Role::ignored && s.tensors.count(name) != 0) expect(name, x.shape);
  // 3. The weights.
  std::vector<float> params(layout.total_floats(), 0.0f);
  for (const TensorSpec& t : layout.tensors()) {
    if (skip_layout(t)) continue;
    const SrcTensor& src = s.tensors.at(t.name);
    src.read(params.data() + t.offset);
    check_finite(src, params.data() + t.offset, t.numel);
  }
  const TensorSpec& emb =
      *layout.find(llama ? "model.embed_tokens.weight" : "transformer.wte.weight");
  for (const auto& [name, x] : extras) {
    auto it = s.tensors.find(name);
    if (it == s.tensors.end()) continue;
    const SrcTensor& t = it->second;
    if (x.role == Role::zero_bias) {
      const std::vector<float> v = read_all(t);
      for (std::size_t i = 0; i < v.size(); ++i)
        if (v[i] != 0.0f)
          throw std::runtime_error(t.where() + " is not zero (element " + std::to_string(i) +
                                   " = " + num(v[i]) + "): " + x.why);
    } else if (x.role == Role::tied_head) {
      const std::vector<float> v = read_all(t);
      if (std::memcmp(v.data(), params.data() + emb.offset, v.size() * sizeof(float)) != 0)
        throw std::runtime_error(t.where() + " differs from the token embedding '" +
                                 s.file_name(emb.name) + "': an untied head, which " +
                                 (llama ? "a llama with tie_word_embeddings cannot have"
                                        : "whtlm's gpt2 (lm_head tied to wte) cannot represent"));
    }
  }
  // 4. Folded projections back to their own parameters.
  if (s.folded) {
    const std::size_t d = static_cast<std::size_t>(E);
    for (int l = 0; l < c.n_layer; ++l) {
      const SrcTensor& wt = s.tensors.at(out_prefix(l) + "weight");
      std::vector<float> w = read_all(wt);
      if (!llama) w = transpose(w, c.d_model, c.d_model);  // Conv1D [in, out] -> [out][in]
      std::vector<float> bias(d, 0.0f);
      auto bt = s.tensors.find(out_prefix(l) + "bias");
      if (bt != s.tensors.end()) bias = read_all(bt->second);
      float* block = params.data() + layout.blocks[static_cast<std::size_t>(l)].proj;
      const LayerFit fit = fit_projection(c, w.data(), bias.data(), block);
      // A genuine fold has every row +-(gamma_i / sqrt(d)) rounded alike, whatever the
      // element type, so it fits to rounding error; anything else is not a whtlm fold.
      const double tol = 1e-4;
      if (!(fit.relative_residual <= tol))
        throw std::runtime_error(wt.where() + " is not " + fold_description(c.projection) +
                                 " (relative residual " + num(fit.relative_residual) +
                                 " of the closest such matrix): not the fold of whtlm's " +
                                 projection_name(c.projection) + " projection the metadata claims");
      if (c.projection == Projection::identity)
        for (std::size_t i = 0; i < d; ++i)
          if (bias[i] != 0.0f)
            throw std::runtime_error(bt->second.where() + " is not zero (element " +
                                     std::to_string(i) + " = " + num(bias[i]) +
                                     "): the identity projection has no bias");
    }
  }
  if (s.tied_llama) {
    const TensorSpec& head = *layout.find("lm_head.weight");
    std::copy_n(params.data() + emb.offset, emb.numel, params.data() + head.offset);
    *tied_copied = true;
  }
  return params;
}

// The tokenizer's place in the model: its vocabulary may not exceed the model's.
std::string tokenizer_summary(const Source& s) {
  const int V = s.config.vocab_size;
  if (!s.tokenizer) return "none";
  const tok::Tokenizer& t = *s.tokenizer;
  if (t.vocab_size() > V)
    throw std::runtime_error(s.tokenizer_origin + ": the tokenizer has " +
                             std::to_string(t.vocab_size()) +
                             " tokens, more than the model's vocabulary of " + std::to_string(V));
  std::string out = t.is_bytes() ? "byte"
                                 : "bpe (" + std::to_string(t.vocab_size()) + " tokens, " +
                                       std::to_string(t.num_merges()) + " merges)";
  if (t.vocab_size() < V)
    out += "; the model's vocabulary is " + std::to_string(V) + ": ids " +
           std::to_string(t.vocab_size()) + ".." + std::to_string(V - 1) +
           " are never produced by the tokenizer";
  return out;
}

// ---------------------------------------------------------------------------------------
// Hugging Face folders.

std::string bracket_shape(const std::vector<std::int64_t>& s) { return io::shape_string(s); }

void to_f32(io::DType dt, const std::vector<std::uint8_t>& raw, float* dst, std::size_t n) {
  switch (dt) {
    case io::DType::f32:
      std::memcpy(dst, raw.data(), n * 4);
      return;
    case io::DType::f16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, raw.data() + 2 * i, 2);
        dst[i] = backend::fp16_to_fp32(h);
      }
      return;
    case io::DType::bf16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, raw.data() + 2 * i, 2);
        const std::uint32_t bits = std::uint32_t{h} << 16;
        std::memcpy(dst + i, &bits, 4);
      }
      return;
    default:
      break;
  }
  throw std::logic_error("to_f32: unsupported dtype");
}

// A shard's file name from the index: a plain relative path inside the folder.
void check_shard_path(const std::string& index, const std::string& tensor,
                      const std::string& file) {
  const fs::path p(file);
  bool bad = file.empty() || p.is_absolute() || p.has_root_name() || p.has_root_directory();
  for (const fs::path& part : p)
    if (part == "..") bad = true;
  if (bad)
    throw std::runtime_error(index + ": weight_map \"" + tensor + "\": shard path \"" + file +
                             "\" leaves the folder (absolute or with '..'): refused");
}

void open_hf_weights(const std::string& dir, Source& s,
                     std::vector<std::unique_ptr<io::SafetensorsReader>>& readers) {
  const fs::path d(dir);
  std::error_code ec;
  const fs::path single = d / "model.safetensors", index = d / "model.safetensors.index.json";
  std::map<std::string, std::string> weight_map;  // tensor -> shard file
  std::vector<std::string> files;
  if (fs::exists(single, ec)) {
    files.push_back("model.safetensors");
  } else if (fs::exists(index, ec)) {
    const std::string ipath = index.string();
    const json doc = io::parse_json(io::read_file(ipath), ipath);
    if (!doc.is_object() || !doc.contains("weight_map") || !doc["weight_map"].is_object())
      throw std::runtime_error(
          ipath + ": field \"weight_map\": expected an object of tensor name -> shard file");
    for (const auto& [name, file] : doc["weight_map"].items()) {
      if (!file.is_string())
        throw std::runtime_error(ipath + ": weight_map \"" + name +
                                 "\": expected a file name string");
      const std::string f = file.get<std::string>();
      check_shard_path(ipath, name, f);
      weight_map[name] = f;
      if (std::find(files.begin(), files.end(), f) == files.end()) files.push_back(f);
    }
    if (files.empty()) throw std::runtime_error(ipath + ": weight_map is empty");
  } else {
    throw std::runtime_error(dir +
                             ": no model.safetensors or model.safetensors.index.json "
                             "(whtlm reads safetensors only; pytorch_model.bin is not read)");
  }
  for (const std::string& f : files) {
    readers.push_back(std::make_unique<io::SafetensorsReader>((d / f).string()));
    const io::SafetensorsReader& r = *readers.back();
    for (const std::string& name : r.names()) {
      if (!weight_map.empty()) {
        auto it = weight_map.find(name);
        if (it == weight_map.end() || it->second != f)
          throw std::runtime_error(r.path() + ": tensor '" + name + "' is " +
                                   (it == weight_map.end()
                                        ? "not in the index's weight_map"
                                        : "mapped to " + it->second + " by the index") +
                                   " (model.safetensors.index.json does not match the shards)");
      }
      const io::TensorInfo& info = r.info(name);
      if (info.dtype != io::DType::f32 && info.dtype != io::DType::f16 &&
          info.dtype != io::DType::bf16)
        throw std::runtime_error(r.path() + ": tensor '" + name + "' has dtype " +
                                 io::dtype_name(info.dtype) +
                                 ": whtlm imports F32, F16 and BF16 weights");
      SrcTensor t;
      t.file = r.path();
      t.name = name;
      t.dtype = io::dtype_name(info.dtype);
      t.shape = info.shape;
      t.shape_text = bracket_shape(info.shape);
      const io::SafetensorsReader* rp = &r;
      const io::DType dt = info.dtype;
      const std::size_t n = info.numel(), nbytes = info.nbytes;
      t.read = [rp, name, dt, n, nbytes](float* dst) {
        std::vector<std::uint8_t> raw(nbytes);
        rp->read_bytes(name, raw.data());
        to_f32(dt, raw, dst, n);
      };
      s.tensors.emplace(name, std::move(t));
    }
  }
  for (const auto& [name, f] : weight_map)
    if (s.tensors.count(name) == 0)
      throw std::runtime_error(index.string() + ": weight_map \"" + name + "\": shard " + f +
                               " has no such tensor");
}

// config.json: the fields config_from_json does not take (tied llama heads, zero biases,
// whtlm's fold record, v5 rope_parameters) are checked and recorded here, then set to
// what it takes; it reads the rest, so its messages stay the same as for checkpoints.
void read_hf_config(const std::string& dir, Source& s) {
  const std::string path = (fs::path(dir) / "config.json").string();
  json j = io::parse_json(io::read_file(path), path);
  if (!j.is_object()) throw std::runtime_error(path + ": expected a JSON object");
  auto fail = [&](const std::string& field, const std::string& why) -> void {
    throw std::runtime_error(io::field_where(path, field) + ": " + why);
  };
  auto flag = [&](const char* field) {
    if (!j.contains(field) || j[field].is_null()) return false;
    if (!j[field].is_boolean()) fail(field, "expected true or false, found " + j[field].dump());
    const bool v = j[field].get<bool>();
    j.erase(field);
    return v;
  };
  const bool llama = j.contains("model_type") && j["model_type"] == "llama";
  if (llama) {
    s.tied_llama = flag("tie_word_embeddings");
    flag("attention_bias");  // biases, when present, must be zero (or a fold's o_proj.bias)
    flag("mlp_bias");
    if (j.contains("pretraining_tp") && !j["pretraining_tp"].is_null() && j["pretraining_tp"] != 1)
      fail("pretraining_tp", "found " + j["pretraining_tp"].dump() + ", but whtlm supports only 1");
    if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) {
      const json& rp = j["rope_parameters"];
      if (!rp.is_object()) fail("rope_parameters", "expected an object");
      for (const char* k : {"rope_type", "type"})  // first: it says what the others mean
        if (rp.contains(k) && rp[k] != "default")
          fail(std::string("rope_parameters.") + k,
               "found " + rp[k].dump() + ": rope scaling is not supported (expected \"default\")");
      for (const auto& [k, v] : rp.items()) {
        if (k == "rope_type" || k == "type") {
          continue;
        } else if (k == "rope_theta") {
          if (!v.is_number()) fail("rope_parameters.rope_theta", "expected a number");
          if (j.contains("rope_theta") && !j["rope_theta"].is_null() && j["rope_theta"] != v)
            fail("rope_parameters.rope_theta",
                 "found " + v.dump() + ", but rope_theta is " + j["rope_theta"].dump());
        } else {
          fail("rope_parameters." + k,
               "not supported (whtlm's rope takes rope_type \"default\" and rope_theta)");
        }
      }
      if (rp.contains("rope_theta") && (!j.contains("rope_theta") || j["rope_theta"].is_null()))
        j["rope_theta"] = rp["rope_theta"];
      j.erase("rope_parameters");
    }
  }
  std::optional<Projection> fold;
  if (j.contains("whtlm_fold") && !j["whtlm_fold"].is_null()) {
    const json& f = j["whtlm_fold"];
    if (!f.is_object() || !f.contains("projection") || !f["projection"].is_string())
      fail("whtlm_fold", "expected an object with \"projection\": \"wht\" or \"identity\"");
    const std::string p = f["projection"].get<std::string>();
    if (p != "wht" && p != "identity")
      fail("whtlm_fold.projection", "found \"" + p + "\", expected \"wht\" or \"identity\"");
    if (j.contains("attn_output_projection"))
      fail("whtlm_fold",
           "present together with attn_output_projection: a folded export has a "
           "dense W_O, an unfolded one (--keep-wht) its own tensors, not both");
    fold = parse_projection(p);
    j.erase("whtlm_fold");
  }
  s.config = config_from_json(j.dump(), path);
  if (fold) {
    s.folded = true;
    s.config.projection = *fold;
    try {
      s.config.validate();
    } catch (const ConfigError& e) {
      fail("whtlm_fold",
           std::string("the ") + projection_name(*fold) + " projection does not fit: " + e.what());
    }
  }
}

void read_hf_tokenizer(const std::string& dir, Source& s) {
  const fs::path d(dir);
  std::error_code ec;
  auto has = [&](const char* f) { return fs::exists(d / f, ec); };
  if (has("tokenizer.json") || (has("encoder.json") && has("vocab.bpe")) ||
      (has("vocab.json") && has("merges.txt"))) {
    s.tokenizer_origin = has("tokenizer.json") ? (d / "tokenizer.json").string() : dir;
    s.tokenizer = tok::load_tokenizer(dir);
    return;
  }
  if (s.config.vocab_size == 256) {
    s.tokenizer = tok::Tokenizer::bytes();
    s.tokenizer_origin = dir;
    return;
  }
  throw std::runtime_error(dir +
                           ": no tokenizer (tokenizer.json, or vocab.json + merges.txt) and a "
                           "vocabulary of " +
                           std::to_string(s.config.vocab_size) +
                           ", not the 256 bytes: whtlm needs the tokenizer to use the model; put "
                           "it into the folder");
}

// ---------------------------------------------------------------------------------------
// GGUF files.

std::string ggml_dims_text(const std::vector<std::uint64_t>& dims) {
  std::string out = "{";
  for (std::size_t i = 0; i < dims.size(); ++i) out += (i ? ", " : "") + std::to_string(dims[i]);
  return out + "}";
}

enum class Transform { none, transpose, unpermute_q, unpermute_k };

struct GgufName {
  std::string gguf;
  std::vector<std::uint64_t> dims;  // expected, ggml order
  Transform transform = Transform::none;
};

// The f32 values of a GGUF tensor in its stored order ([ne1][ne0] row-major).
void gguf_values(const io::GgufReader& g, const io::GgufTensorInfo& info, float* dst) {
  std::vector<std::uint8_t> raw(static_cast<std::size_t>(info.nbytes));
  g.read_bytes(info.name, raw.data());
  const std::size_t n = static_cast<std::size_t>(info.numel());
  switch (static_cast<io::GgmlType>(info.type)) {
    case io::GgmlType::f32:
      std::memcpy(dst, raw.data(), n * 4);
      return;
    case io::GgmlType::f16:
      to_f32(io::DType::f16, raw, dst, n);
      return;
    case io::GgmlType::bf16:
      to_f32(io::DType::bf16, raw, dst, n);
      return;
    case io::GgmlType::q8_0: {
      const std::size_t in = static_cast<std::size_t>(info.dims[0]);
      backend::PackedWeight w;
      w.format = WeightFormat::q8_0;
      w.data = raw.data();
      w.in = in;
      w.out = n / in;
      backend::unpack_weight_f32(dst, w, 0, w.out);
      return;
    }
  }
  throw std::runtime_error(g.path() + ": tensor '" + info.name + "' has type " +
                           io::ggml_type_name(info.type));
}

int hparam(const io::GgufReader& g, const std::string& key) {
  const std::uint32_t v = g.get_u32(key);
  if (v > static_cast<std::uint32_t>(INT_MAX))
    throw std::runtime_error(g.path() + ": metadata " + key + ": " + std::to_string(v) +
                             " is too large");
  return static_cast<int>(v);
}

void read_gguf_config(const io::GgufReader& g, Source& s) {
  const std::string& path = g.path();
  const std::string arch = g.get_string("general.architecture");
  if (arch != "llama" && arch != "gpt2")
    throw std::runtime_error(path + ": metadata general.architecture: \"" + arch +
                             "\" is not supported (whtlm imports \"llama\" and \"gpt2\")");
  const bool llama = arch == "llama";
  const std::string a = arch + ".";
  ModelConfig c;
  c.family = llama ? Family::llama : Family::gpt2;
  c.max_seq = hparam(g, a + "context_length");
  c.d_model = hparam(g, a + "embedding_length");
  c.n_layer = hparam(g, a + "block_count");
  c.d_ff = hparam(g, a + "feed_forward_length");
  c.n_head = hparam(g, a + "attention.head_count");
  c.n_kv_head =
      g.has(a + "attention.head_count_kv") ? hparam(g, a + "attention.head_count_kv") : c.n_head;
  auto fail = [&](const std::string& key, const std::string& why) -> void {
    throw std::runtime_error(path + ": metadata " + key + ": " + why);
  };
  if (llama) {
    c.norm_eps = g.get_f32(a + "attention.layer_norm_rms_epsilon");
    c.rope_theta = g.has(a + "rope.freq_base") ? g.get_f32(a + "rope.freq_base") : 10000.0f;
  } else {
    c.norm_eps = g.get_f32(a + "attention.layer_norm_epsilon");
    if (c.n_kv_head != c.n_head)
      fail(a + "attention.head_count_kv",
           std::to_string(c.n_kv_head) +
               ", but whtlm's gpt2 has no grouped-query attention (head_count " +
               std::to_string(c.n_head) + ")");
  }
  // The vocabulary is the tokenizer's, as in llama.cpp.
  if (!g.has("tokenizer.ggml.tokens"))
    fail("tokenizer.ggml.tokens",
         "missing (whtlm needs the tokenizer; llama.cpp takes the vocabulary from it)");
  c.vocab_size = static_cast<int>(
      std::min<std::size_t>(g.get_string_array("tokenizer.ggml.tokens").size(), INT_MAX));
  // Projection: whtlm's exporter records what it folded.
  if (g.has("whtlm.projection")) {
    const std::string p = g.get_string("whtlm.projection");
    Projection proj;
    try {
      proj = parse_projection(p);
    } catch (const std::invalid_argument& e) {
      fail("whtlm.projection", e.what());
    }
    const bool folded = g.has("whtlm.folded") && g.get_bool("whtlm.folded");
    if (proj != Projection::dense) {
      if (!folded)
        fail("whtlm.folded",
             "whtlm.projection is \"" + p +
                 "\" but the file does not say it is folded; a GGUF always holds a dense W_O");
      c.projection = proj;
      s.folded = true;
    }
  }
  try {
    c.validate();
  } catch (const ConfigError& e) {
    const std::string named =
        renamed(e, {{"n_layer", a + "block_count"},
                    {"d_model", a + "embedding_length"},
                    {"n_head", a + "attention.head_count"},
                    {"n_kv_head", a + "attention.head_count_kv"},
                    {"d_ff", a + "feed_forward_length"},
                    {"max_seq", a + "context_length"},
                    {"norm_eps", llama ? a + "attention.layer_norm_rms_epsilon"
                                       : a + "attention.layer_norm_epsilon"},
                    {"rope_theta", a + "rope.freq_base"},
                    {"vocab_size", "tokenizer.ggml.tokens (vocabulary size)"},
                    {"projection", "whtlm.projection"}});
    throw std::runtime_error(path + ": metadata " + named);
  }
  const int hd = c.head_dim();
  if (llama) {
    if (g.has(a + "rope.dimension_count") && hparam(g, a + "rope.dimension_count") != hd)
      fail(a + "rope.dimension_count",
           std::to_string(hparam(g, a + "rope.dimension_count")) +
               ", but whtlm ropes the whole head: expected head_dim = " + std::to_string(hd));
    for (const char* k : {"attention.key_length", "attention.value_length"})
      if (g.has(a + k) && hparam(g, a + k) != hd)
        fail(a + k,
             std::to_string(hparam(g, a + k)) +
                 ", expected head_dim = embedding_length / head_count = " + std::to_string(hd));
    if (g.has(a + "rope.scaling.type") && g.get_string(a + "rope.scaling.type") != "none")
      fail(a + "rope.scaling.type",
           "\"" + g.get_string(a + "rope.scaling.type") + "\": rope scaling is not supported");
    if (g.has(a + "rope.scale_linear") && g.get_f32(a + "rope.scale_linear") != 1.0f)
      fail(a + "rope.scale_linear",
           num(g.get_f32(a + "rope.scale_linear")) + ": rope scaling is not supported");
    if (g.has(a + "vocab_size") && hparam(g, a + "vocab_size") != c.vocab_size)
      fail(a + "vocab_size", std::to_string(hparam(g, a + "vocab_size")) +
                                 ", but tokenizer.ggml.tokens holds " +
                                 std::to_string(c.vocab_size));
  }
  if (g.has(a + "attention.scale")) {
    const double want = 1.0 / std::sqrt(double(hd)), got = g.get_f32(a + "attention.scale");
    if (std::abs(got - want) > 1e-6 * want)
      fail(a + "attention.scale",
           num(got) + ", but whtlm scales attention scores by 1/sqrt(head_dim) = " + num(want));
  }
  s.config = c;
}

// GGUF names (with expected dims and transform) by Hugging Face name.
std::map<std::string, GgufName> gguf_names(const ModelConfig& c) {
  std::map<std::string, GgufName> m;
  using D = std::vector<std::uint64_t>;
  const std::uint64_t E = std::uint64_t(c.d_model), V = std::uint64_t(c.vocab_size),
                      F = std::uint64_t(c.ff());
  const std::uint64_t hd = std::uint64_t(c.head_dim()), Hq = std::uint64_t(c.n_head) * hd,
                      Hkv = std::uint64_t(c.n_kv_head) * hd;
  if (c.family == Family::llama) {
    m["model.embed_tokens.weight"] = {"token_embd.weight", D{E, V}, Transform::none};
    m["model.norm.weight"] = {"output_norm.weight", D{E}, Transform::none};
    m["lm_head.weight"] = {"output.weight", D{E, V}, Transform::none};
    for (int l = 0; l < c.n_layer; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".",
                        p = "model.layers." + std::to_string(l) + ".";
      m[p + "input_layernorm.weight"] = {b + "attn_norm.weight", D{E}, Transform::none};
      m[p + "self_attn.q_proj.weight"] = {b + "attn_q.weight", D{E, Hq}, Transform::unpermute_q};
      m[p + "self_attn.k_proj.weight"] = {b + "attn_k.weight", D{E, Hkv}, Transform::unpermute_k};
      m[p + "self_attn.v_proj.weight"] = {b + "attn_v.weight", D{E, Hkv}, Transform::none};
      m[p + "self_attn.q_proj.bias"] = {b + "attn_q.bias", D{Hq}, Transform::unpermute_q};
      m[p + "self_attn.k_proj.bias"] = {b + "attn_k.bias", D{Hkv}, Transform::unpermute_k};
      m[p + "self_attn.v_proj.bias"] = {b + "attn_v.bias", D{Hkv}, Transform::none};
      m[p + "self_attn.o_proj.weight"] = {b + "attn_output.weight", D{Hq, E}, Transform::none};
      m[p + "self_attn.o_proj.bias"] = {b + "attn_output.bias", D{E}, Transform::none};
      m[p + "post_attention_layernorm.weight"] = {b + "ffn_norm.weight", D{E}, Transform::none};
      m[p + "mlp.gate_proj.weight"] = {b + "ffn_gate.weight", D{E, F}, Transform::none};
      m[p + "mlp.up_proj.weight"] = {b + "ffn_up.weight", D{E, F}, Transform::none};
      m[p + "mlp.down_proj.weight"] = {b + "ffn_down.weight", D{F, E}, Transform::none};
      m[p + "mlp.gate_proj.bias"] = {b + "ffn_gate.bias", D{F}, Transform::none};
      m[p + "mlp.up_proj.bias"] = {b + "ffn_up.bias", D{F}, Transform::none};
      m[p + "mlp.down_proj.bias"] = {b + "ffn_down.bias", D{E}, Transform::none};
    }
  } else {
    m["transformer.wte.weight"] = {"token_embd.weight", D{E, V}, Transform::none};
    m["transformer.wpe.weight"] = {"position_embd.weight", D{E, std::uint64_t(c.max_seq)},
                                   Transform::none};
    m["transformer.ln_f.weight"] = {"output_norm.weight", D{E}, Transform::none};
    m["transformer.ln_f.bias"] = {"output_norm.bias", D{E}, Transform::none};
    m["lm_head.weight"] = {"output.weight", D{E, V}, Transform::none};
    for (int l = 0; l < c.n_layer; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".",
                        p = "transformer.h." + std::to_string(l) + ".";
      m[p + "ln_1.weight"] = {b + "attn_norm.weight", D{E}, Transform::none};
      m[p + "ln_1.bias"] = {b + "attn_norm.bias", D{E}, Transform::none};
      // GGUF holds [out][in] (ggml {in, out}); Conv1D wants [in, out].
      m[p + "attn.c_attn.weight"] = {b + "attn_qkv.weight", D{E, 3 * E}, Transform::transpose};
      m[p + "attn.c_attn.bias"] = {b + "attn_qkv.bias", D{3 * E}, Transform::none};
      m[p + "attn.c_proj.weight"] = {b + "attn_output.weight", D{E, E}, Transform::transpose};
      m[p + "attn.c_proj.bias"] = {b + "attn_output.bias", D{E}, Transform::none};
      m[p + "ln_2.weight"] = {b + "ffn_norm.weight", D{E}, Transform::none};
      m[p + "ln_2.bias"] = {b + "ffn_norm.bias", D{E}, Transform::none};
      m[p + "mlp.c_fc.weight"] = {b + "ffn_up.weight", D{E, F}, Transform::transpose};
      m[p + "mlp.c_fc.bias"] = {b + "ffn_up.bias", D{F}, Transform::none};
      m[p + "mlp.c_proj.weight"] = {b + "ffn_down.weight", D{F, E}, Transform::transpose};
      m[p + "mlp.c_proj.bias"] = {b + "ffn_down.bias", D{E}, Transform::none};
    }
  }
  return m;
}

// The Hugging Face shape of a tensor of ggml dims under a transform.
std::vector<std::int64_t> hf_shape(const std::vector<std::uint64_t>& dims, Transform t) {
  std::vector<std::int64_t> s;
  for (std::uint64_t d : dims) s.push_back(static_cast<std::int64_t>(d));
  if (t != Transform::transpose) std::reverse(s.begin(), s.end());
  return s;
}

void open_gguf_weights(const io::GgufReader& g, Source& s) {
  const ModelConfig& c = s.config;
  const std::map<std::string, GgufName> names = gguf_names(c);
  std::map<std::string, std::string> hf_of;  // GGUF name -> Hugging Face name
  for (const auto& [hf, n] : names) hf_of[n.gguf] = hf;
  s.file_name = [names](const std::string& hf) {
    auto it = names.find(hf);
    return it == names.end() ? hf : it->second.gguf;
  };
  s.shape_text = [names](const std::string& hf, const std::vector<std::int64_t>& shape) {
    auto it = names.find(hf);
    std::vector<std::uint64_t> dims;
    for (std::int64_t v : shape) dims.push_back(static_cast<std::uint64_t>(v));
    if (it == names.end() || it->second.transform != Transform::transpose)
      std::reverse(dims.begin(), dims.end());
    return ggml_dims_text(dims);
  };
  const int hd = c.head_dim();
  for (const io::GgufTensorInfo& info : g.tensors()) {
    auto h = hf_of.find(info.name);
    const std::string where = g.path() + ": tensor '" + info.name + "'";
    if (h == hf_of.end())
      throw std::runtime_error(where + " " + ggml_dims_text(info.dims) + " is not used: whtlm's " +
                               family_name(c.family) +
                               " model has no such tensor; refusing rather than dropping it");
    const GgufName& n = names.at(h->second);
    if (info.dims != n.dims)
      throw std::runtime_error(where + ": expected dims " + ggml_dims_text(n.dims) +
                               " (ggml order), found " + ggml_dims_text(info.dims));
    if (!io::ggml_type_known(info.type))
      throw std::runtime_error(where + " has type " + io::ggml_type_name(info.type) +
                               ": whtlm imports F32, F16, BF16 and Q8_0");
    SrcTensor t;
    t.file = g.path();
    t.name = info.name;
    t.dtype = io::ggml_type_name(info.type);
    t.shape = hf_shape(info.dims, n.transform);
    t.shape_text = ggml_dims_text(info.dims);
    const io::GgufReader* gp = &g;
    const Transform tr = n.transform;
    const int heads = tr == Transform::unpermute_q ? c.n_head : c.n_kv_head;
    t.read = [gp, info, tr, heads, hd](float* dst) {
      const std::size_t cols = static_cast<std::size_t>(info.dims[0]);
      const std::size_t rows = static_cast<std::size_t>(info.numel()) / cols;
      if (tr == Transform::none) {
        gguf_values(*gp, info, dst);
        return;
      }
      std::vector<float> v(static_cast<std::size_t>(info.numel()));
      gguf_values(*gp, info, v.data());
      if (tr == Transform::transpose) {
        for (std::size_t i = 0; i < rows; ++i)
          for (std::size_t j = 0; j < cols; ++j) dst[j * rows + i] = v[i * cols + j];
        return;
      }
      // GGUF row h hd + 2i + odd is Hugging Face row h hd + odd hd/2 + i (INTEROP.md 2.3);
      // a bias is one column of such rows.
      const std::size_t width = info.dims.size() == 1 ? 1 : cols;
      for (int hh = 0; hh < heads; ++hh)
        for (int i = 0; i < hd / 2; ++i)
          for (int odd = 0; odd < 2; ++odd) {
            const std::size_t from = static_cast<std::size_t>(hh * hd + 2 * i + odd);
            const std::size_t to = static_cast<std::size_t>(hh * hd + odd * (hd / 2) + i);
            std::copy_n(v.begin() + static_cast<std::ptrdiff_t>(from * width), width,
                        dst + to * width);
          }
    };
    s.tensors.emplace(h->second, std::move(t));
  }
  // No output.weight: the head is tied, as llama.cpp reads it.
  if (c.family == Family::llama && s.tensors.count("lm_head.weight") == 0) s.tied_llama = true;
}

void read_gguf_tokenizer(const io::GgufReader& g, Source& s) {
  const std::string& path = g.path();
  s.tokenizer_origin = path;
  auto fail = [&](const std::string& key, const std::string& why) -> void {
    throw std::runtime_error(path + ": metadata " + key + ": " + why);
  };
  if (!g.has("tokenizer.ggml.model"))
    fail("tokenizer.ggml.model", "missing (whtlm imports the \"gpt2\" byte-level BPE tokenizer)");
  const std::string model = g.get_string("tokenizer.ggml.model");
  if (model != "gpt2")
    fail("tokenizer.ggml.model", "\"" + model + "\": whtlm imports only \"gpt2\" (byte-level BPE)");
  const std::vector<std::string> strings = g.get_string_array("tokenizer.ggml.tokens");
  std::vector<std::int32_t> types(strings.size(), 1);
  if (g.has("tokenizer.ggml.token_type")) {
    types = g.get_i32_array("tokenizer.ggml.token_type");
    if (types.size() != strings.size())
      fail("tokenizer.ggml.token_type", std::to_string(types.size()) + " entries for " +
                                            std::to_string(strings.size()) + " tokens");
  }
  const std::vector<std::string> merge_strings = g.has("tokenizer.ggml.merges")
                                                     ? g.get_string_array("tokenizer.ggml.merges")
                                                     : std::vector<std::string>{};
  if (!merge_strings.empty() && g.has("tokenizer.ggml.pre")) {
    const std::string pre = g.get_string("tokenizer.ggml.pre");
    if (pre != "gpt-2")
      fail("tokenizer.ggml.pre",
           "\"" + pre + "\": whtlm pre-tokenizes with GPT-2's pattern (\"gpt-2\") only");
  }
  std::vector<std::string> tokens(strings.size());
  std::vector<tok::SpecialToken> specials;
  std::map<std::string, std::int32_t> id_of;  // GPT-2 unicode string -> id (ordinary tokens)
  for (std::size_t i = 0; i < strings.size(); ++i) {
    const std::int32_t id = static_cast<std::int32_t>(i);
    const std::int32_t type = types[i];
    if (type == 3 || type == 4) {  // CONTROL, USER_DEFINED: special tokens, taken as they are
      tokens[i] = strings[i];
      specials.push_back({strings[i], id});
    } else if (type == 1) {
      const std::optional<std::string> bytes = tok::from_unicode_string(strings[i]);
      if (!bytes)
        fail("tokenizer.ggml.tokens[" + std::to_string(i) + "]",
             "\"" + strings[i] + "\" is not in GPT-2's byte-to-unicode form");
      tokens[i] = *bytes;
      id_of.emplace(strings[i], id);
    } else {
      fail("tokenizer.ggml.token_type[" + std::to_string(i) + "]",
           std::to_string(type) + " (token \"" + strings[i] +
               "\"): whtlm imports NORMAL (1), CONTROL (3) and USER_DEFINED (4) tokens");
    }
  }
  std::vector<std::pair<std::int32_t, std::int32_t>> merges;
  merges.reserve(merge_strings.size());
  for (std::size_t i = 0; i < merge_strings.size(); ++i) {
    const std::string& m = merge_strings[i];
    const std::size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
    const std::string key = "tokenizer.ggml.merges[" + std::to_string(i) + "]";
    if (sp == std::string::npos) fail(key, "\"" + m + "\" is not \"left right\"");
    const auto a = id_of.find(m.substr(0, sp)), b = id_of.find(m.substr(sp + 1));
    if (a == id_of.end() || b == id_of.end())
      fail(key, "\"" + m + "\": \"" + (a == id_of.end() ? m.substr(0, sp) : m.substr(sp + 1)) +
                    "\" is not a token of tokenizer.ggml.tokens");
    merges.emplace_back(a->second, b->second);
  }
  s.tokenizer =
      tok::Tokenizer::from_parts(std::move(tokens), std::move(merges), std::move(specials), path);
}

// ---------------------------------------------------------------------------------------

// A folder that holds a checkpoint is replaced only with --force.
void check_out(const std::string& out, bool force) {
  if (out.empty()) throw std::invalid_argument("--out: a folder is needed");
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(out, ec);
  if (!fs::exists(st)) return;
  if (!fs::is_directory(st))
    throw std::invalid_argument("--out " + out + ": exists and is not a folder");
  if (force) return;
  for (const char* f : {"model.safetensors", "config.json", "checksums.json", "tokenizer.json"})
    if (fs::exists(fs::path(out) / f, ec))
      throw std::invalid_argument(
          "--out " + out + ": already holds " + f +
          " (a checkpoint?); choose a new folder, or --force to replace it");
}

}  // namespace

ImportResult import_model(const std::string& path, const ImportOptions& options) {
  check_out(options.out, options.force);
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) throw std::runtime_error(path + ": no such file or folder");
  Source s;
  s.path = path;
  s.file_name = [](const std::string& n) { return n; };
  s.shape_text = [](const std::string&, const std::vector<std::int64_t>& shape) {
    return bracket_shape(shape);
  };
  std::vector<std::unique_ptr<io::SafetensorsReader>> readers;
  std::unique_ptr<io::GgufReader> gguf;
  if (fs::is_directory(st)) {
    if (fs::exists(options.out, ec) && fs::equivalent(path, options.out, ec))
      throw std::invalid_argument("--out " + options.out +
                                  ": is the folder being imported; choose another");
    s.kind = "hf";
    read_hf_config(path, s);
    open_hf_weights(path, s, readers);
    read_hf_tokenizer(path, s);
  } else {
    s.kind = "gguf";
    gguf = std::make_unique<io::GgufReader>(path);
    read_gguf_config(*gguf, s);
    read_gguf_tokenizer(*gguf, s);
    open_gguf_weights(*gguf, s);
  }
  ImportResult r;
  r.config = s.config;
  r.source_format = s.kind + " " + dtypes_text(s);
  r.tokenizer = tokenizer_summary(s);
  const ParamLayout layout(s.config);
  const std::vector<float> params = build_params(s, layout, &r.tied_head_copied);

  const std::map<std::string, std::string> meta{{"whtlm_import", r.source_format}};
  Checksums sums = save_model(options.out, layout, params.data(), meta);
  const fs::path tok_path = fs::path(options.out) / "tokenizer.json";
  if (s.tokenizer && !s.tokenizer->is_bytes()) {
    sums["tokenizer.json"] = io::write_file_atomic(tok_path.string(), s.tokenizer->to_json());
  } else if (fs::exists(fs::symlink_status(tok_path, ec))) {
    // --force over a checkpoint with a tokenizer: the byte model must not pick it up.
    fs::remove(tok_path, ec);
    if (ec) throw std::runtime_error(tok_path.string() + ": cannot remove: " + ec.message());
  }
  write_checksums(options.out, sums);
  return r;
}

}  // namespace whtlm::interop
