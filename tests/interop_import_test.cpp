// whtlm import (interop::import_model): Hugging Face folders and GGUF files built here
// tensor by tensor, imported, and the checkpoint's weights compared with what was
// written; and the refusals, each naming the tensor or key at fault.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backend/weights.hpp"
#include "random_values.hpp"
#include "whtlm/checkpoint.hpp"
#include "whtlm/gguf.hpp"
#include "whtlm/hadamard.hpp"
#include "whtlm/interop.hpp"
#include "whtlm/io.hpp"
#include "whtlm/model.hpp"
#include "whtlm/tokenizer.hpp"

namespace whtlm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class InteropImport : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "whtlm_import_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }
  std::string dir_;
};

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

ModelConfig tiny(Family f, Projection p = Projection::dense) {
  ModelConfig c;
  c.family = f;
  c.projection = p;
  c.n_layer = 2;
  c.d_model = 32;
  c.n_head = 4;
  c.n_kv_head = f == Family::llama ? 2 : 4;
  c.d_ff = 64;
  c.vocab_size = 256;
  c.max_seq = 16;
  c.validate();
  return c;
}

std::vector<float> random_params(const ParamLayout& layout, std::uint32_t seed) {
  std::vector<float> p(layout.total_floats(), 0.0f);
  const std::vector<float> r = test::random_normal(layout.total_floats(), seed, 0.5f);
  for (const TensorSpec& t : layout.tensors())
    std::copy_n(r.begin() + static_cast<std::ptrdiff_t>(t.offset), t.numel,
                p.begin() + static_cast<std::ptrdiff_t>(t.offset));
  return p;
}

std::vector<float> tensor(const ParamLayout& l, const std::vector<float>& p,
                          const std::string& name) {
  const TensorSpec* t = l.find(name);
  EXPECT_NE(t, nullptr) << name;
  if (t == nullptr) return {};
  return std::vector<float>(p.begin() + static_cast<std::ptrdiff_t>(t->offset),
                            p.begin() + static_cast<std::ptrdiff_t>(t->offset + t->numel));
}

float via_f16(float x) { return backend::fp16_to_fp32(backend::fp32_to_fp16(x)); }
std::uint16_t bf16_bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return static_cast<std::uint16_t>(u >> 16);
}
float via_bf16(float x) {
  const std::uint32_t u = std::uint32_t{bf16_bits(x)} << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// One tensor to write in a safetensors file.
struct T {
  std::string name;
  std::vector<std::int64_t> shape;
  io::DType dtype = io::DType::f32;
  std::vector<float> v;
};

void write_st(const std::string& file, const std::vector<T>& ts) {
  std::vector<std::vector<std::uint8_t>> keep;
  std::vector<io::TensorToWrite> w;
  for (const T& t : ts) {
    std::vector<std::uint8_t> b;
    if (t.dtype == io::DType::f32) {
      b.resize(t.v.size() * 4);
      std::memcpy(b.data(), t.v.data(), b.size());
    } else if (t.dtype == io::DType::i32) {
      b.resize(t.v.size() * 4);
      for (std::size_t i = 0; i < t.v.size(); ++i) {
        const std::int32_t x = static_cast<std::int32_t>(t.v[i]);
        std::memcpy(b.data() + 4 * i, &x, 4);
      }
    } else {
      b.resize(t.v.size() * 2);
      for (std::size_t i = 0; i < t.v.size(); ++i) {
        const std::uint16_t h =
            t.dtype == io::DType::f16 ? backend::fp32_to_fp16(t.v[i]) : bf16_bits(t.v[i]);
        std::memcpy(b.data() + 2 * i, &h, 2);
      }
    }
    keep.push_back(std::move(b));
    w.push_back({t.name, t.dtype, t.shape, keep.back().data()});
  }
  io::write_safetensors(file, w, {{"format", "pt"}});
}

// The layout's tensors (matrices in `matrix`, vectors in `vector` dtype).
std::vector<T> layout_tensors(const ParamLayout& l, const std::vector<float>& p,
                              io::DType matrix = io::DType::f32,
                              io::DType vector = io::DType::f32) {
  std::vector<T> out;
  for (const TensorSpec& t : l.tensors())
    out.push_back({t.name, t.shape, t.shape.size() >= 2 ? matrix : vector, tensor(l, p, t.name)});
  return out;
}

json config_json(const ModelConfig& c) { return json::parse(config_to_json(c)); }

void write_hf(const std::string& dir, const json& config, const std::vector<T>& ts) {
  fs::create_directories(dir);
  io::write_file_atomic((fs::path(dir) / "config.json").string(), config.dump(2));
  write_st((fs::path(dir) / "model.safetensors").string(), ts);
}

void drop(std::vector<T>& ts, const std::string& name) {
  std::erase_if(ts, [&](const T& t) { return t.name == name; });
}
T& named(std::vector<T>& ts, const std::string& name) {
  for (T& t : ts)
    if (t.name == name) return t;
  throw std::logic_error("no tensor " + name);
}

struct Loaded {
  ModelConfig config;
  ParamLayout layout;
  std::vector<float> params;
  std::vector<float> get(const std::string& name) const { return tensor(layout, params, name); }
};

Loaded load(const std::string& dir) {
  verify_checkpoint_files(dir);
  const ModelConfig c = read_config(dir);
  Loaded m{c, ParamLayout(c), {}};
  m.params.assign(m.layout.total_floats(), 0.0f);
  load_weights((fs::path(dir) / "model.safetensors").string(), m.layout, m.params.data());
  return m;
}

interop::ImportResult import(const std::string& src, const std::string& out, bool force = false) {
  interop::ImportOptions o;
  o.out = out;
  o.force = force;
  return interop::import_model(src, o);
}

std::vector<float> round_each(const std::vector<float>& v, const std::function<float(float)>& f) {
  std::vector<float> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = f(v[i]);
  return out;
}

// ---------------------------------------------------------------------------------------
// Hugging Face folders.

TEST_F(InteropImport, LlamaF16Bf16WithTiedHeadKeepsTheRoundedWeightsAndCopiesTheHead) {
  const ModelConfig c = tiny(Family::llama);
  const ParamLayout l(c);
  const std::vector<float> p = random_params(l, 1);
  std::vector<T> ts = layout_tensors(l, p, io::DType::f16, io::DType::bf16);
  drop(ts, "lm_head.weight");
  json cfg = config_json(c);
  cfg.erase("attn_output_projection");
  cfg["tie_word_embeddings"] = true;
  write_hf(path("hf"), cfg, ts);
  const interop::ImportResult r = import(path("hf"), path("out"));
  EXPECT_TRUE(r.tied_head_copied);
  EXPECT_EQ(r.source_format, "hf BF16+F16");
  EXPECT_EQ(r.tokenizer, "byte");
  EXPECT_EQ(r.config, c);
  EXPECT_FALSE(fs::exists(path("out/tokenizer.json")));
  const Loaded m = load(path("out"));
  EXPECT_EQ(m.config, c);
  for (const TensorSpec& t : l.tensors()) {
    if (t.name == "lm_head.weight") continue;
    const auto round = t.shape.size() >= 2 ? via_f16 : via_bf16;
    EXPECT_EQ(m.get(t.name), round_each(tensor(l, p, t.name), round)) << t.name;
  }
  EXPECT_EQ(m.get("lm_head.weight"), m.get("model.embed_tokens.weight"));
}

TEST_F(InteropImport, ShardedFolderIsReadThroughTheIndex) {
  const ModelConfig c = tiny(Family::llama);
  const ParamLayout l(c);
  const std::vector<float> p = random_params(l, 2);
  std::vector<T> ts = layout_tensors(l, p);
  const std::string hf = path("hf");
  fs::create_directories(hf + "/sub");
  json cfg = config_json(c);
  cfg.erase("attn_output_projection");
  io::write_file_atomic(hf + "/config.json", cfg.dump());
  std::vector<T> a(ts.begin(), ts.begin() + 5), b(ts.begin() + 5, ts.end());
  write_st(hf + "/model-00001-of-00002.safetensors", a);
  write_st(hf + "/sub/model-00002-of-00002.safetensors", b);
  json map = json::object();
  for (const T& t : a) map[t.name] = "model-00001-of-00002.safetensors";
  for (const T& t : b) map[t.name] = "sub/model-00002-of-00002.safetensors";
  io::write_file_atomic(hf + "/model.safetensors.index.json",
                        json{{"metadata", {{"total_size", 0}}}, {"weight_map", map}}.dump());
  const interop::ImportResult r = import(hf, path("out"));
  EXPECT_FALSE(r.tied_head_copied);
  EXPECT_EQ(r.source_format, "hf F32");
  const Loaded m = load(path("out"));
  for (const TensorSpec& t : l.tensors()) EXPECT_EQ(m.get(t.name), tensor(l, p, t.name)) << t.name;

  // A shard path that leaves the folder is refused, however the rest looks.
  for (const std::string bad : {"../x.safetensors", "/etc/passwd", "sub/../../x.safetensors"}) {
    json m2 = map;
    m2[b.front().name] = bad;
    io::write_file_atomic(hf + "/model.safetensors.index.json", json{{"weight_map", m2}}.dump());
    const std::string e = error_of([&] { import(hf, path("out2")); });
    EXPECT_NE(e.find("leaves the folder"), std::string::npos) << e;
    EXPECT_NE(e.find(bad), std::string::npos) << e;
  }
  EXPECT_FALSE(fs::exists(path("out2")));
}

TEST_F(InteropImport, Gpt2TakesATiedHeadAndMaskBuffersButRefusesAnUntiedHead) {
  const ModelConfig c = tiny(Family::gpt2);
  const ParamLayout l(c);
  const std::vector<float> p = random_params(l, 3);
  std::vector<T> ts = layout_tensors(l, p);
  ts.push_back({"lm_head.weight",
                {c.vocab_size, c.d_model},
                io::DType::f32,
                tensor(l, p, "transformer.wte.weight")});
  ts.push_back(
      {"transformer.h.0.attn.bias", {1, 1, 16, 16}, io::DType::f32, std::vector<float>(256, 1.0f)});
  const json cfg = config_json(c);
  write_hf(path("hf"), cfg, ts);
  const interop::ImportResult r = import(path("hf"), path("out"));
  EXPECT_EQ(r.config, c);
  const Loaded m = load(path("out"));
  for (const TensorSpec& t : l.tensors()) EXPECT_EQ(m.get(t.name), tensor(l, p, t.name)) << t.name;

  named(ts, "lm_head.weight").v[7] += 1.0f;
  write_hf(path("hf2"), cfg, ts);
  const std::string e = error_of([&] { import(path("hf2"), path("out2")); });
  EXPECT_NE(e.find("'lm_head.weight'"), std::string::npos) << e;
  EXPECT_NE(e.find("untied"), std::string::npos) << e;
}

TEST_F(InteropImport, RefusalsNameTheTensorOrKey) {
  const ModelConfig c = tiny(Family::llama);
  const ParamLayout l(c);
  const std::vector<float> p = random_params(l, 4);
  json cfg = config_json(c);
  cfg.erase("attn_output_projection");
  auto expect_refused = [&](const std::string& name, const json& j, const std::vector<T>& ts,
                            const std::vector<std::string>& words) {
    const std::string dir = path(name);
    write_hf(dir, j, ts);
    const std::string e = error_of([&] { import(dir, path(name + "_out")); });
    for (const std::string& w : words) EXPECT_NE(e.find(w), std::string::npos) << name << ": " << e;
    EXPECT_FALSE(fs::exists(path(name + "_out"))) << name;
  };
  const std::int64_t E = c.d_model, kv = c.n_kv_head * c.head_dim();
  {  // attention_bias with zero q, k, v biases: accepted; a nonzero q bias: refused.
    json j = cfg;
    j["attention_bias"] = true;
    std::vector<T> ts = layout_tensors(l, p);
    ts.push_back({"model.layers.1.self_attn.q_proj.bias",
                  {E},
                  io::DType::f32,
                  std::vector<float>(std::size_t(E), 0.0f)});
    ts.push_back({"model.layers.1.self_attn.k_proj.bias",
                  {kv},
                  io::DType::f32,
                  std::vector<float>(std::size_t(kv), 0.0f)});
    ts.push_back({"model.layers.1.self_attn.v_proj.bias",
                  {kv},
                  io::DType::f32,
                  std::vector<float>(std::size_t(kv), 0.0f)});
    write_hf(path("zero_bias"), j, ts);
    EXPECT_NO_THROW(import(path("zero_bias"), path("zero_bias_out")));
    named(ts, "model.layers.1.self_attn.q_proj.bias").v[3] = 0.5f;
    expect_refused("q_bias", j, ts,
                   {"'model.layers.1.self_attn.q_proj.bias'", "not zero", "no q, k, v biases"});
  }
  {  // A dense llama with an output bias.
    std::vector<T> ts = layout_tensors(l, p);
    ts.push_back({"model.layers.0.self_attn.o_proj.bias",
                  {E},
                  io::DType::f32,
                  std::vector<float>(std::size_t(E), 0.25f)});
    json j = cfg;
    j["attention_bias"] = true;
    expect_refused("o_bias", j, ts,
                   {"'model.layers.0.self_attn.o_proj.bias'", "no output bias", "whtlm_fold"});
  }
  {
    json j = cfg;
    j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
    expect_refused("rope", j, layout_tensors(l, p), {"rope_scaling"});
  }
  {
    json j = cfg;
    j["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
    expect_refused("rope5", j, layout_tensors(l, p), {"rope_parameters.rope_type", "yarn"});
  }
  {
    std::vector<T> ts = layout_tensors(l, p);
    ts.push_back(
        {"model.layers.0.self_attn.rotary_emb.inv_freq", {4}, io::DType::f32, {1, 2, 3, 4}});
    expect_refused("unknown", cfg, ts,
                   {"'model.layers.0.self_attn.rotary_emb.inv_freq'", "not used"});
  }
  {
    std::vector<T> ts = layout_tensors(l, p);
    named(ts, "model.norm.weight").dtype = io::DType::i32;
    expect_refused("dtype", cfg, ts, {"'model.norm.weight'", "I32", "F32, F16 and BF16"});
  }
  {
    std::vector<T> ts = layout_tensors(l, p);
    drop(ts, "model.layers.1.mlp.up_proj.weight");
    expect_refused("missing", cfg, ts, {"missing tensor 'model.layers.1.mlp.up_proj.weight'"});
  }
  {
    std::vector<T> ts = layout_tensors(l, p);
    T& t = named(ts, "model.layers.0.mlp.down_proj.weight");
    t.shape = {t.shape[1], t.shape[0]};
    expect_refused("shape", cfg, ts,
                   {"'model.layers.0.mlp.down_proj.weight'", "expected shape [32, 64]"});
  }
  {  // A tied llama head that differs from the embedding.
    json j = cfg;
    j["tie_word_embeddings"] = true;
    expect_refused("tied_differs", j, layout_tensors(l, p), {"'lm_head.weight'", "differs"});
  }
  {  // No tokenizer and a vocabulary that is not the bytes.
    ModelConfig c2 = c;
    c2.vocab_size = 300;
    const ParamLayout l2(c2);
    json j = config_json(c2);
    j.erase("attn_output_projection");
    expect_refused("no_tokenizer", j, layout_tensors(l2, random_params(l2, 5)),
                   {"no tokenizer", "300"});
  }
}

// The model's folded W_O and bias for a projection's parameters.
void fold(const ModelConfig& c, const float* params, std::vector<float>& w, std::vector<float>& b) {
  w.assign(std::size_t(c.d_model) * std::size_t(c.d_model), 0.0f);
  b.assign(std::size_t(c.d_model), 0.0f);
  interop::fold_projection(c, params, w.data(), b.data());
}

TEST_F(InteropImport, FoldedProjectionsComeBack) {
  {  // llama wht folded into o_proj (+ bias, with zero q, k, v biases as transformers needs).
    const ModelConfig c = tiny(Family::llama, Projection::wht);
    const ParamLayout l(c);
    const std::vector<float> p = random_params(l, 6);
    ModelConfig dense = c;
    dense.projection = Projection::dense;
    const ParamLayout ld(dense);
    std::vector<T> ts;
    const std::int64_t E = c.d_model, kv = c.n_kv_head * c.head_dim();
    for (const TensorSpec& t : l.tensors()) {
      if (t.component == Component::attn_out) continue;
      ts.push_back({t.name, t.shape, io::DType::bf16, tensor(l, p, t.name)});
    }
    for (int layer = 0; layer < c.n_layer; ++layer) {
      std::vector<float> w, b;
      fold(c, p.data() + l.blocks[std::size_t(layer)].proj, w, b);
      const std::string pre = "model.layers." + std::to_string(layer) + ".self_attn.";
      ts.push_back({pre + "o_proj.weight", {E, E}, io::DType::bf16, w});
      ts.push_back({pre + "o_proj.bias", {E}, io::DType::f32, b});
      ts.push_back(
          {pre + "q_proj.bias", {E}, io::DType::bf16, std::vector<float>(std::size_t(E), 0.0f)});
      ts.push_back(
          {pre + "k_proj.bias", {kv}, io::DType::bf16, std::vector<float>(std::size_t(kv), 0.0f)});
      ts.push_back(
          {pre + "v_proj.bias", {kv}, io::DType::bf16, std::vector<float>(std::size_t(kv), 0.0f)});
    }
    json j = config_json(dense);
    j.erase("attn_output_projection");
    j["attention_bias"] = true;
    j["whtlm_fold"] = {{"projection", "wht"}, {"formula", "W_O = diag(gamma) H / sqrt(d)"}};
    write_hf(path("wht"), j, ts);
    const interop::ImportResult r = import(path("wht"), path("wht_out"));
    EXPECT_EQ(r.config, c);
    const Loaded m = load(path("wht_out"));
    for (int layer = 0; layer < c.n_layer; ++layer) {
      const std::string pre = "model.layers." + std::to_string(layer) + ".self_attn.o_proj.";
      const std::vector<float> g = m.get(pre + "scale"), want = tensor(l, p, pre + "scale");
      // The folded entries +-gamma/sqrt(d) were rounded to bf16: gamma comes back so rounded.
      for (std::size_t i = 0; i < g.size(); ++i)
        EXPECT_NEAR(g[i], want[i], std::abs(want[i]) * 1e-2f + 1e-6f) << pre << i;
      EXPECT_EQ(m.get(pre + "bias"), tensor(l, p, pre + "bias"));
    }

    // A W_O that is not such a fold is refused.
    named(ts, "model.layers.1.self_attn.o_proj.weight").v[5] += 0.5f;
    write_hf(path("wht_bad"), j, ts);
    const std::string e = error_of([&] { import(path("wht_bad"), path("wht_bad_out")); });
    EXPECT_NE(e.find("'model.layers.1.self_attn.o_proj.weight'"), std::string::npos) << e;
    EXPECT_NE(e.find("relative residual"), std::string::npos) << e;
  }
  {  // gpt2 identity: c_proj = I (Conv1D), bias 0.
    const ModelConfig c = tiny(Family::gpt2, Projection::identity);
    const ParamLayout l(c);
    const std::vector<float> p = random_params(l, 7);
    std::vector<T> ts = layout_tensors(l, p);
    const std::int64_t E = c.d_model;
    std::vector<float> eye(std::size_t(E * E), 0.0f);
    for (std::int64_t i = 0; i < E; ++i) eye[std::size_t(i * E + i)] = 1.0f;
    for (int layer = 0; layer < c.n_layer; ++layer) {
      const std::string pre = "transformer.h." + std::to_string(layer) + ".attn.c_proj.";
      ts.push_back({pre + "weight", {E, E}, io::DType::f16, eye});
      ts.push_back({pre + "bias", {E}, io::DType::f16, std::vector<float>(std::size_t(E), 0.0f)});
    }
    ModelConfig dense = c;
    dense.projection = Projection::dense;
    json j = config_json(dense);
    j.erase("attn_output_projection");
    j["whtlm_fold"] = {{"projection", "identity"}};
    write_hf(path("id"), j, ts);
    EXPECT_EQ(import(path("id"), path("id_out")).config, c);
    const Loaded m = load(path("id_out"));
    for (const TensorSpec& t : l.tensors())
      EXPECT_EQ(m.get(t.name), tensor(l, p, t.name)) << t.name;
  }
  {  // whtlm's own --keep-wht layout: attn_output_projection with the scale and bias.
    const ModelConfig c = tiny(Family::gpt2, Projection::wht);
    const ParamLayout l(c);
    const std::vector<float> p = random_params(l, 8);
    write_hf(path("keep"), config_json(c), layout_tensors(l, p));
    EXPECT_EQ(import(path("keep"), path("keep_out")).config, c);
    const Loaded m = load(path("keep_out"));
    for (const TensorSpec& t : l.tensors())
      EXPECT_EQ(m.get(t.name), tensor(l, p, t.name)) << t.name;
  }
}

TEST_F(InteropImport, OutputFolderAndTokenizer) {
  // A BPE tokenizer with a special token, and a model whose vocabulary matches it.
  tok::BpeTrainOptions o;
  o.vocab_size = 270;
  o.special_tokens = {"<|endoftext|>"};
  o.min_frequency = 1;
  const tok::Tokenizer t = tok::train_bpe("the theme then there the these those the them", o);
  ModelConfig c = tiny(Family::gpt2);
  c.vocab_size = t.vocab_size();
  const ParamLayout l(c);
  const std::vector<float> p = random_params(l, 9);
  write_hf(path("hf"), config_json(c), layout_tensors(l, p));
  t.save(path("hf/tokenizer.json"));
  const interop::ImportResult r = import(path("hf"), path("out"));
  EXPECT_NE(r.tokenizer.find("bpe (" + std::to_string(t.vocab_size()) + " tokens"),
            std::string::npos)
      << r.tokenizer;
  const tok::Tokenizer back = tok::load_tokenizer(path("out/tokenizer.json"));
  EXPECT_EQ(back.merges(), t.merges());
  EXPECT_EQ(back.eot_id(), t.eot_id());
  EXPECT_NO_THROW(load(path("out")));  // checksums.json covers tokenizer.json

  // A folder holding a checkpoint is replaced only with force; a byte model written over
  // it removes the old tokenizer.json.
  const std::string e = error_of([&] { import(path("hf"), path("out")); });
  EXPECT_NE(e.find("--force"), std::string::npos) << e;
  const ModelConfig cb = tiny(Family::gpt2);
  const ParamLayout lb(cb);
  write_hf(path("hfb"), config_json(cb), layout_tensors(lb, random_params(lb, 10)));
  EXPECT_EQ(import(path("hfb"), path("out"), true).tokenizer, "byte");
  EXPECT_FALSE(fs::exists(path("out/tokenizer.json")));
  EXPECT_EQ(load(path("out")).config, cb);
  EXPECT_EQ(checkpoint_tokenizer(path("out")), "byte");

  // A tokenizer larger than the model's vocabulary is refused; a smaller one is said.
  ModelConfig big = c;
  big.vocab_size = t.vocab_size() + 6;
  const ParamLayout lbig(big);
  write_hf(path("hf_pad"), config_json(big), layout_tensors(lbig, random_params(lbig, 11)));
  t.save(path("hf_pad/tokenizer.json"));
  EXPECT_NE(import(path("hf_pad"), path("out_pad")).tokenizer.find("never produced"),
            std::string::npos);
  ModelConfig small = c;
  small.vocab_size = t.vocab_size() - 1;
  const ParamLayout ls(small);
  write_hf(path("hf_small"), config_json(small), layout_tensors(ls, random_params(ls, 12)));
  t.save(path("hf_small/tokenizer.json"));
  const std::string e2 = error_of([&] { import(path("hf_small"), path("out_small")); });
  EXPECT_NE(e2.find("more than the model's vocabulary"), std::string::npos) << e2;
}

// ---------------------------------------------------------------------------------------
// GGUF files.

// HF row order -> llama.cpp's (INTEROP.md 2.3): GGUF row h hd + 2i + odd = HF row
// h hd + odd hd/2 + i.
std::vector<float> permute_rows(const std::vector<float>& m, int heads, int hd, int cols) {
  std::vector<float> out(m.size());
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < hd / 2; ++i)
      for (int odd = 0; odd < 2; ++odd)
        std::copy_n(m.begin() + (h * hd + odd * (hd / 2) + i) * cols, cols,
                    out.begin() + (h * hd + 2 * i + odd) * cols);
  return out;
}

std::vector<float> transposed(const std::vector<float>& m, int rows, int cols) {
  std::vector<float> t(m.size());
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) t[std::size_t(j * rows + i)] = m[std::size_t(i * cols + j)];
  return t;
}

// Builds a GGUF file; tensor bytes are kept alive here.
struct Gguf {
  io::GgufWriter w;
  std::vector<std::vector<std::uint8_t>> keep;
  // m is [rows][cols] (rows = outputs): ggml dims {cols, rows}; 1-D when rows == 0.
  void add(const std::string& name, const std::vector<float>& m, std::uint64_t rows,
           std::uint64_t cols, io::GgmlType type = io::GgmlType::f32) {
    std::vector<std::uint8_t> b;
    const std::size_t out = rows == 0 ? 1 : rows;
    switch (type) {
      case io::GgmlType::f32:
        b.resize(m.size() * 4);
        std::memcpy(b.data(), m.data(), b.size());
        break;
      case io::GgmlType::f16:
      case io::GgmlType::bf16:
        b.resize(m.size() * 2);
        for (std::size_t i = 0; i < m.size(); ++i) {
          const std::uint16_t h =
              type == io::GgmlType::f16 ? backend::fp32_to_fp16(m[i]) : bf16_bits(m[i]);
          std::memcpy(b.data() + 2 * i, &h, 2);
        }
        break;
      case io::GgmlType::q8_0:
        b.resize(backend::packed_weight_bytes(WeightFormat::q8_0, out, cols));
        backend::pack_weight(b.data(), WeightFormat::q8_0, m.data(), out, cols,
                             backend::WeightLayout::out_in);
        break;
    }
    keep.push_back(std::move(b));
    const std::vector<std::uint64_t> dims =
        rows == 0 ? std::vector<std::uint64_t>{cols} : std::vector<std::uint64_t>{cols, rows};
    w.add_tensor(name, dims, type, keep.back().data(), keep.back().size());
  }
  void byte_tokenizer() {
    std::vector<std::string> tokens;
    for (int b = 0; b < 256; ++b) tokens.push_back(tok::to_unicode_string(std::string(1, char(b))));
    w.add_string("tokenizer.ggml.model", "gpt2");
    w.add_string("tokenizer.ggml.pre", "gpt-2");
    w.add_string_array("tokenizer.ggml.tokens", tokens);
    w.add_i32_array("tokenizer.ggml.token_type", std::vector<std::int32_t>(256, 1));
    w.add_string_array("tokenizer.ggml.merges", {});
  }
};

std::vector<float> q8_0_values(const std::vector<float>& m, std::size_t rows, std::size_t cols) {
  std::vector<std::uint8_t> b(backend::packed_weight_bytes(WeightFormat::q8_0, rows, cols));
  backend::pack_weight(b.data(), WeightFormat::q8_0, m.data(), rows, cols,
                       backend::WeightLayout::out_in);
  std::vector<float> out(m.size());
  backend::PackedWeight w;
  w.format = WeightFormat::q8_0;
  w.data = b.data();
  w.out = rows;
  w.in = cols;
  backend::unpack_weight_f32(out.data(), w, 0, rows);
  return out;
}

// A llama GGUF of the model's parameters: Q and K permuted, mixed types, tied head.
void llama_gguf(Gguf& g, const ModelConfig& c, const ParamLayout& l, const std::vector<float>& p) {
  const int E = c.d_model, F = c.ff(), hd = c.head_dim(), kv = c.n_kv_head * hd;
  g.w.add_string("general.architecture", "llama");
  g.w.add_u32("llama.context_length", std::uint32_t(c.max_seq));
  g.w.add_u32("llama.embedding_length", std::uint32_t(E));
  g.w.add_u32("llama.block_count", std::uint32_t(c.n_layer));
  g.w.add_u32("llama.feed_forward_length", std::uint32_t(F));
  g.w.add_u32("llama.attention.head_count", std::uint32_t(c.n_head));
  g.w.add_u32("llama.attention.head_count_kv", std::uint32_t(c.n_kv_head));
  g.w.add_f32("llama.attention.layer_norm_rms_epsilon", c.norm_eps);
  g.w.add_f32("llama.rope.freq_base", c.rope_theta);
  g.w.add_u32("llama.rope.dimension_count", std::uint32_t(hd));
  g.byte_tokenizer();
  auto t = [&](const std::string& n) { return tensor(l, p, n); };
  const std::uint64_t uE = std::uint64_t(E), uF = std::uint64_t(F), ukv = std::uint64_t(kv);
  g.add("token_embd.weight", t("model.embed_tokens.weight"), std::uint64_t(c.vocab_size), uE);
  for (int layer = 0; layer < c.n_layer; ++layer) {
    const std::string b = "blk." + std::to_string(layer) + ".",
                      pre = "model.layers." + std::to_string(layer) + ".";
    g.add(b + "attn_norm.weight", t(pre + "input_layernorm.weight"), 0, uE);
    g.add(b + "attn_q.weight", permute_rows(t(pre + "self_attn.q_proj.weight"), c.n_head, hd, E),
          uE, uE);
    g.add(b + "attn_k.weight", permute_rows(t(pre + "self_attn.k_proj.weight"), c.n_kv_head, hd, E),
          ukv, uE, io::GgmlType::bf16);
    g.add(b + "attn_v.weight", t(pre + "self_attn.v_proj.weight"), ukv, uE, io::GgmlType::f16);
    g.add(b + "attn_output.weight", t(pre + "self_attn.o_proj.weight"), uE, uE);
    g.add(b + "ffn_norm.weight", t(pre + "post_attention_layernorm.weight"), 0, uE);
    g.add(b + "ffn_gate.weight", t(pre + "mlp.gate_proj.weight"), uF, uE);
    g.add(b + "ffn_up.weight", t(pre + "mlp.up_proj.weight"), uF, uE, io::GgmlType::q8_0);
    g.add(b + "ffn_down.weight", t(pre + "mlp.down_proj.weight"), uE, uF, io::GgmlType::q8_0);
  }
  g.add("output_norm.weight", t("model.norm.weight"), 0, uE);
}

TEST_F(InteropImport, GgufLlamaIsUnpermutedDequantisedAndTied) {
  const ModelConfig c = tiny(Family::llama);
  const ParamLayout l(c);
  const std::vector<float> p = random_params(l, 20);
  Gguf g;
  llama_gguf(g, c, l, p);
  g.w.write(path("m.gguf"));
  const interop::ImportResult r = import(path("m.gguf"), path("out"));
  EXPECT_EQ(r.config, c);
  EXPECT_TRUE(r.tied_head_copied);
  EXPECT_EQ(r.source_format, "gguf BF16+F16+F32+Q8_0");
  EXPECT_EQ(r.tokenizer, "byte");
  EXPECT_FALSE(fs::exists(path("out/tokenizer.json")));
  const Loaded m = load(path("out"));
  const std::size_t E = std::size_t(c.d_model), F = std::size_t(c.ff());
  for (int layer = 0; layer < c.n_layer; ++layer) {
    const std::string pre = "model.layers." + std::to_string(layer) + ".";
    for (const char* n : {"self_attn.q_proj.weight", "self_attn.o_proj.weight",
                          "mlp.gate_proj.weight", "input_layernorm.weight"})
      EXPECT_EQ(m.get(pre + n), tensor(l, p, pre + n)) << pre << n;
    EXPECT_EQ(m.get(pre + "self_attn.k_proj.weight"),
              round_each(tensor(l, p, pre + "self_attn.k_proj.weight"), via_bf16));
    EXPECT_EQ(m.get(pre + "self_attn.v_proj.weight"),
              round_each(tensor(l, p, pre + "self_attn.v_proj.weight"), via_f16));
    EXPECT_EQ(m.get(pre + "mlp.up_proj.weight"),
              q8_0_values(tensor(l, p, pre + "mlp.up_proj.weight"), F, E));
    EXPECT_EQ(m.get(pre + "mlp.down_proj.weight"),
              q8_0_values(tensor(l, p, pre + "mlp.down_proj.weight"), E, F));
  }
  EXPECT_EQ(m.get("lm_head.weight"), tensor(l, p, "model.embed_tokens.weight"));
}

TEST_F(InteropImport, GgufGpt2WithFoldedWhtAndBpeTokenizer) {
  const ModelConfig c = tiny(Family::gpt2, Projection::wht);
  const int E = c.d_model, F = c.ff();
  const std::uint64_t uE = std::uint64_t(E), uF = std::uint64_t(F);
  Gguf g;
  g.w.add_string("general.architecture", "gpt2");
  g.w.add_string("whtlm.projection", "wht");
  g.w.add_bool("whtlm.folded", true);
  g.w.add_u32("gpt2.context_length", std::uint32_t(c.max_seq));
  g.w.add_u32("gpt2.embedding_length", uE);
  g.w.add_u32("gpt2.block_count", std::uint32_t(c.n_layer));
  g.w.add_u32("gpt2.feed_forward_length", uF);
  g.w.add_u32("gpt2.attention.head_count", std::uint32_t(c.n_head));
  g.w.add_f32("gpt2.attention.layer_norm_epsilon", c.norm_eps);
  // 256 byte tokens, a merge "Ġ t" -> "Ġt", then <|endoftext|> (CONTROL).
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.push_back(tok::to_unicode_string(std::string(1, char(b))));
  tokens.push_back(tok::to_unicode_string(" t"));
  tokens.push_back("<|endoftext|>");
  ASSERT_EQ(tokens.size(), std::size_t(c.vocab_size) + 2);
  std::vector<std::int32_t> types(tokens.size(), 1);
  types.back() = 3;
  g.w.add_string("tokenizer.ggml.model", "gpt2");
  g.w.add_string("tokenizer.ggml.pre", "gpt-2");
  g.w.add_string_array("tokenizer.ggml.tokens", tokens);
  g.w.add_i32_array("tokenizer.ggml.token_type", types);
  g.w.add_string_array("tokenizer.ggml.merges", {tok::to_unicode_string(" ") + " t"});
  ModelConfig c2 = c;
  c2.vocab_size = 258;
  const ParamLayout l2(c2);
  const std::vector<float> p2 = random_params(l2, 22);
  auto t = [&](const std::string& n) { return tensor(l2, p2, n); };
  g.add("token_embd.weight", t("transformer.wte.weight"), 258, uE, io::GgmlType::f16);
  g.add("position_embd.weight", t("transformer.wpe.weight"), std::uint64_t(c.max_seq), uE);
  for (int layer = 0; layer < c.n_layer; ++layer) {
    const std::string b = "blk." + std::to_string(layer) + ".",
                      pre = "transformer.h." + std::to_string(layer) + ".";
    g.add(b + "attn_norm.weight", t(pre + "ln_1.weight"), 0, uE);
    g.add(b + "attn_norm.bias", t(pre + "ln_1.bias"), 0, uE);
    g.add(b + "attn_qkv.weight", transposed(t(pre + "attn.c_attn.weight"), E, 3 * E), 3 * uE, uE,
          io::GgmlType::q8_0);
    g.add(b + "attn_qkv.bias", t(pre + "attn.c_attn.bias"), 0, 3 * uE);
    std::vector<float> w, bias;
    fold(c2, p2.data() + l2.blocks[std::size_t(layer)].proj, w, bias);
    g.add(b + "attn_output.weight", w, uE, uE);
    g.add(b + "attn_output.bias", bias, 0, uE);
    g.add(b + "ffn_norm.weight", t(pre + "ln_2.weight"), 0, uE);
    g.add(b + "ffn_norm.bias", t(pre + "ln_2.bias"), 0, uE);
    g.add(b + "ffn_up.weight", transposed(t(pre + "mlp.c_fc.weight"), E, F), uF, uE);
    g.add(b + "ffn_up.bias", t(pre + "mlp.c_fc.bias"), 0, uF);
    g.add(b + "ffn_down.weight", transposed(t(pre + "mlp.c_proj.weight"), F, E), uE, uF);
    g.add(b + "ffn_down.bias", t(pre + "mlp.c_proj.bias"), 0, uE);
  }
  g.add("output_norm.weight", t("transformer.ln_f.weight"), 0, uE);
  g.add("output_norm.bias", t("transformer.ln_f.bias"), 0, uE);
  g.w.write(path("g.gguf"));
  const interop::ImportResult r = import(path("g.gguf"), path("out"));
  EXPECT_EQ(r.config, c2);
  EXPECT_FALSE(r.tied_head_copied);
  const Loaded m = load(path("out"));
  for (int layer = 0; layer < c.n_layer; ++layer) {
    const std::string pre = "transformer.h." + std::to_string(layer) + ".";
    for (const char* n : {"mlp.c_fc.weight", "mlp.c_proj.weight", "ln_1.bias", "attn.c_attn.bias"})
      EXPECT_EQ(m.get(pre + n), t(pre + n)) << pre << n;
    const std::vector<float> qkv =
        transposed(q8_0_values(transposed(t(pre + "attn.c_attn.weight"), E, 3 * E),
                               3 * std::size_t(E), std::size_t(E)),
                   3 * E, E);
    EXPECT_EQ(m.get(pre + "attn.c_attn.weight"), qkv);
    const std::vector<float> gamma = m.get(pre + "attn.c_proj.scale"),
                             want = t(pre + "attn.c_proj.scale");
    for (std::size_t i = 0; i < gamma.size(); ++i)
      EXPECT_NEAR(gamma[i], want[i], std::abs(want[i]) * 1e-6f) << i;
    EXPECT_EQ(m.get(pre + "attn.c_proj.bias"), t(pre + "attn.c_proj.bias"));
  }
  EXPECT_EQ(m.get("transformer.wte.weight"), round_each(t("transformer.wte.weight"), via_f16));
  const tok::Tokenizer tk = tok::load_tokenizer(path("out/tokenizer.json"));
  EXPECT_EQ(tk.vocab_size(), 258);
  EXPECT_EQ(tk.num_merges(), 1u);
  EXPECT_EQ(tk.eot_id(), std::optional<std::int32_t>(257));
  EXPECT_EQ(tk.encode(" t"), (std::vector<std::int32_t>{256}));
}

TEST_F(InteropImport, GgufRefusalsNameTheKeyOrTensor) {
  const ModelConfig c = tiny(Family::llama);
  const ParamLayout l(c);
  const std::vector<float> p = random_params(l, 23);
  int n = 0;
  auto refused = [&](const std::function<void(Gguf&)>& change,
                     const std::vector<std::string>& words) {
    Gguf g;
    llama_gguf(g, c, l, p);
    change(g);
    const std::string file = path("r" + std::to_string(++n) + ".gguf");
    g.w.write(file);
    const std::string e = error_of([&] { import(file, path("out" + std::to_string(n))); });
    for (const std::string& w : words) EXPECT_NE(e.find(w), std::string::npos) << n << ": " << e;
  };
  const std::uint64_t E = std::uint64_t(c.d_model);
  refused([&](Gguf& g) { g.add("rope_freqs.weight", std::vector<float>(4, 1.0f), 0, 4); },
          {"'rope_freqs.weight'", "not used"});
  refused(
      [&](Gguf& g) {
        std::vector<float> b(E, 0.0f);
        b[1] = 1.0f;
        g.add("blk.0.attn_q.bias", b, 0, E);
      },
      {"'blk.0.attn_q.bias'", "not zero"});
  refused([&](Gguf& g) { g.add("blk.1.attn_output.bias", std::vector<float>(E, 0.5f), 0, E); },
          {"'blk.1.attn_output.bias'", "no output bias"});
  refused([&](Gguf& g) { g.w.add_string("llama.rope.scaling.type", "linear"); },
          {"llama.rope.scaling.type", "linear"});
  refused([&](Gguf& g) { g.add("output.weight", std::vector<float>(E * 7, 0.0f), 7, E); },
          {"'output.weight'", "expected dims {32, 256}", "{32, 7}"});
  // Zero q, k, v biases and an explicit head are fine.
  Gguf ok;
  llama_gguf(ok, c, l, p);
  ok.add("blk.0.attn_q.bias", std::vector<float>(E, 0.0f), 0, E);
  ok.add("output.weight", tensor(l, p, "lm_head.weight"), std::uint64_t(c.vocab_size), E);
  ok.w.write(path("ok.gguf"));
  const interop::ImportResult r = import(path("ok.gguf"), path("ok_out"));
  EXPECT_FALSE(r.tied_head_copied);
  EXPECT_EQ(load(path("ok_out")).get("lm_head.weight"), tensor(l, p, "lm_head.weight"));

  Gguf falcon;
  falcon.w.add_string("general.architecture", "falcon");
  falcon.w.write(path("falcon.gguf"));
  const std::string e = error_of([&] { import(path("falcon.gguf"), path("falcon_out")); });
  EXPECT_NE(e.find("general.architecture"), std::string::npos) << e;
  EXPECT_NE(e.find("falcon"), std::string::npos) << e;
}

// Export and import are inverses: a dense llama exactly, a wht model to rounding.
TEST_F(InteropImport, ExportThenImportGivesTheModelBack) {
  for (const Family f : {Family::llama, Family::gpt2})
    for (const Projection proj : {Projection::dense, Projection::wht, Projection::identity}) {
      const ModelConfig c = tiny(f, proj);
      const ParamLayout l(c);
      const std::vector<float> p = random_params(l, 30);
      const std::string tag = std::string(family_name(f)) + "_" + projection_name(proj);
      const std::string ck = path("ck_" + tag);
      write_checksums(ck, save_model(ck, l, p.data()));
      for (const interop::Format fmt : {interop::Format::hf, interop::Format::gguf}) {
        interop::ExportOptions o;
        o.format = fmt;
        o.out = path(std::string("x_") + tag + (fmt == interop::Format::hf ? "_hf" : ".gguf"));
        interop::export_model(ck, o);
        const std::string back = path("back_" + tag + interop::format_name(fmt));
        const interop::ImportResult r = import(o.out, back);
        EXPECT_EQ(r.config, c) << tag;
        const Loaded m = load(back);
        for (const TensorSpec& t : l.tensors()) {
          const std::vector<float> got = m.get(t.name), want = tensor(l, p, t.name);
          if (t.name.ends_with(".scale")) {
            for (std::size_t i = 0; i < got.size(); ++i)
              EXPECT_NEAR(got[i], want[i], std::abs(want[i]) * 1e-6f) << tag << " " << t.name;
          } else {
            EXPECT_EQ(got, want) << tag << " " << interop::format_name(fmt) << " " << t.name;
          }
        }
      }
    }
}

}  // namespace
}  // namespace whtlm
