// Export of a checkpoint to GGUF (llama.cpp) and to the Hugging Face layout
// (transformers), with the wht and identity projections folded into a dense W_O.
// ../shared/INTEROP.md holds the facts every mapping here rests on; docs/interop.md says
// what a user gets.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/weights.hpp"
#include "interop/common.hpp"
#include "whtlm/checkpoint.hpp"
#include "whtlm/gguf.hpp"
#include "whtlm/interop.hpp"
#include "whtlm/io.hpp"
#include "whtlm/tokenizer.hpp"

namespace whtlm::interop {

const char* format_name(Format f) { return f == Format::gguf ? "gguf" : "hf"; }

Format parse_format(const std::string& name) {
  if (name == "gguf") return Format::gguf;
  if (name == "hf") return Format::hf;
  throw std::invalid_argument("format '" + name + "': expected gguf or hf");
}

const char* tensor_type_name(TensorType t) {
  switch (t) {
    case TensorType::f32:
      return "f32";
    case TensorType::f16:
      return "f16";
    case TensorType::bf16:
      return "bf16";
    case TensorType::q8_0:
      return "q8_0";
  }
  return "?";
}

TensorType parse_tensor_type(const std::string& name) {
  for (TensorType t : {TensorType::f32, TensorType::f16, TensorType::bf16, TensorType::q8_0})
    if (name == tensor_type_name(t)) return t;
  throw std::invalid_argument("type '" + name + "': expected f32, f16, bf16 or q8_0");
}

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A matrix [rows][cols] row-major in fp32 converted to `type`'s bytes (rows = outputs).
std::vector<std::uint8_t> encode_matrix(const std::vector<float>& m, std::size_t rows,
                                        std::size_t cols, TensorType type,
                                        const std::string& name) {
  std::vector<std::uint8_t> bytes;
  switch (type) {
    case TensorType::f32:
      bytes.resize(m.size() * 4);
      std::memcpy(bytes.data(), m.data(), bytes.size());
      break;
    case TensorType::f16: {
      bytes.resize(m.size() * 2);
      auto* h = reinterpret_cast<std::uint16_t*>(bytes.data());
      for (std::size_t i = 0; i < m.size(); ++i) h[i] = backend::fp32_to_fp16(m[i]);
      break;
    }
    case TensorType::bf16:
    case TensorType::q8_0: {
      const WeightFormat f = type == TensorType::bf16 ? WeightFormat::bf16 : WeightFormat::q8_0;
      if (type == TensorType::q8_0 && cols % 32 != 0)
        throw std::invalid_argument("tensor '" + name + "': q8_0 needs rows of a multiple of 32 " +
                                    "values, this one has " + std::to_string(cols));
      bytes.resize(backend::packed_weight_bytes(f, rows, cols));
      backend::pack_weight(bytes.data(), f, m.data(), rows, cols, backend::WeightLayout::out_in);
      break;
    }
  }
  return bytes;
}

io::GgmlType ggml_type(TensorType t) {
  switch (t) {
    case TensorType::f32:
      return io::GgmlType::f32;
    case TensorType::f16:
      return io::GgmlType::f16;
    case TensorType::bf16:
      return io::GgmlType::bf16;
    case TensorType::q8_0:
      return io::GgmlType::q8_0;
  }
  return io::GgmlType::f32;
}

io::DType safetensors_dtype(TensorType t) {
  switch (t) {
    case TensorType::f32:
      return io::DType::f32;
    case TensorType::f16:
      return io::DType::f16;
    case TensorType::bf16:
      return io::DType::bf16;
    case TensorType::q8_0:
      break;
  }
  throw std::invalid_argument(
      "--type q8_0: the Hugging Face layout takes f32, f16 or bf16 (q8_0 is a GGUF type)");
}

// Replaces the file or folder `out` only with --force.
void check_out(const std::string& out, bool folder, bool force) {
  if (out.empty()) throw std::invalid_argument("--out: a path is needed");
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(out, ec);
  if (!fs::exists(st)) return;
  if (folder) {
    if (!fs::is_directory(st))
      throw std::invalid_argument("--out " + out + ": exists and is not a folder");
    if (!fs::is_empty(out, ec) && !force)
      throw std::invalid_argument("--out " + out +
                                  ": the folder holds files; choose a new folder, or --force to "
                                  "replace the exported files in it");
  } else {
    if (!fs::is_regular_file(st))
      throw std::invalid_argument("--out " + out + ": exists and is not a regular file");
    if (!force)
      throw std::invalid_argument("--out " + out + ": the file exists; --force replaces it");
  }
}

// The GGUF tokenizer keys (INTEROP.md 4): "gpt2" byte-level BPE, token strings in GPT-2's
// byte-to-unicode form, merges "left right", special tokens CONTROL. A byte tokenizer is
// the 256 byte tokens with no merges, so that llama.cpp's ids are the bytes.
void add_gguf_tokenizer(io::GgufWriter& w, const tok::Tokenizer& t, int vocab_size) {
  if (t.vocab_size() != vocab_size)
    throw std::invalid_argument("the tokenizer has " + std::to_string(t.vocab_size()) +
                                " tokens but the model's vocabulary is " +
                                std::to_string(vocab_size));
  std::vector<std::string> tokens(static_cast<std::size_t>(vocab_size));
  std::vector<std::int32_t> types(tokens.size(), 1);  // NORMAL
  for (std::int32_t id = 0; id < vocab_size; ++id)
    tokens[static_cast<std::size_t>(id)] = tok::to_unicode_string(t.token_bytes(id));
  for (const tok::SpecialToken& s : t.special_tokens()) {
    tokens[static_cast<std::size_t>(s.id)] = s.content;
    types[static_cast<std::size_t>(s.id)] = 3;  // CONTROL
  }
  std::vector<std::string> sorted = tokens;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
    throw std::invalid_argument(
        "the tokenizer has two tokens with the same text (a special token equal to an "
        "ordinary one?); llama.cpp needs them distinct");
  std::vector<std::string> merges;
  merges.reserve(t.num_merges());
  for (const auto& [a, b] : t.merges())
    merges.push_back(tokens[static_cast<std::size_t>(a)] + " " +
                     tokens[static_cast<std::size_t>(b)]);
  // End of text: <|endoftext|> when there is one, else byte 0 (llama.cpp would otherwise
  // take its gpt2 default, byte 11, as the end of generation).
  const std::int32_t eos = t.eot_id().value_or(0);
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", "gpt-2");
  w.add_string_array("tokenizer.ggml.tokens", tokens);
  w.add_i32_array("tokenizer.ggml.token_type", types);
  w.add_string_array("tokenizer.ggml.merges", merges);
  w.add_u32("tokenizer.ggml.bos_token_id", static_cast<std::uint32_t>(eos));
  w.add_u32("tokenizer.ggml.eos_token_id", static_cast<std::uint32_t>(eos));
  w.add_bool("tokenizer.ggml.add_bos_token", false);
  w.add_bool("tokenizer.ggml.add_eos_token", false);
}

// llama.cpp's LLAMA rope pairs (2i, 2i+1) where whtlm (and Hugging Face) pair (i, i + hd/2):
// GGUF row h hd + 2i is our row h hd + i, GGUF row h hd + 2i + 1 our row h hd + hd/2 + i.
std::vector<float> permute_rope_rows(const std::vector<float>& m, int heads, int hd, int cols) {
  std::vector<float> out(m.size());
  const std::size_t c = static_cast<std::size_t>(cols);
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < hd / 2; ++i)
      for (int odd = 0; odd < 2; ++odd) {
        const std::size_t dst = static_cast<std::size_t>(h * hd + 2 * i + odd);
        const std::size_t src = static_cast<std::size_t>(h * hd + odd * (hd / 2) + i);
        std::copy_n(m.begin() + static_cast<std::ptrdiff_t>(src * c), c,
                    out.begin() + static_cast<std::ptrdiff_t>(dst * c));
      }
  return out;
}

std::uint32_t u32(int v) { return static_cast<std::uint32_t>(v); }

ExportResult export_gguf(const SourceModel& src, const ExportOptions& o) {
  const ModelConfig& c = src.config;
  const bool llama = c.family == Family::llama;
  const std::string arch = llama ? "llama" : "gpt2";
  const int E = c.d_model, V = c.vocab_size, F = c.ff(), hd = c.head_dim();
  io::GgufWriter w;
  w.add_string("general.architecture", arch);
  w.add_string("general.type", "model");
  w.add_string("general.name", std::string("whtlm ") + arch + " " + projection_name(c.projection));
  static constexpr std::uint32_t kFileType[] = {0, 1, 32, 7};  // f32, f16, bf16, q8_0
  w.add_u32("general.file_type", kFileType[static_cast<int>(o.type)]);
  if (o.type == TensorType::q8_0) w.add_u32("general.quantization_version", 2);
  w.add_string("whtlm.projection", projection_name(c.projection));
  w.add_bool("whtlm.folded", c.projection != Projection::dense);
  if (c.projection != Projection::dense) w.add_string("whtlm.fold", fold_description(c.projection));
  w.add_u32(arch + ".context_length", u32(c.max_seq));
  w.add_u32(arch + ".embedding_length", u32(E));
  w.add_u32(arch + ".block_count", u32(c.n_layer));
  w.add_u32(arch + ".feed_forward_length", u32(F));
  w.add_u32(arch + ".attention.head_count", u32(c.n_head));
  if (llama) {
    w.add_u32(arch + ".attention.head_count_kv", u32(c.n_kv_head));
    w.add_f32(arch + ".attention.layer_norm_rms_epsilon", c.norm_eps);
    w.add_f32(arch + ".rope.freq_base", c.rope_theta);
    w.add_u32(arch + ".rope.dimension_count", u32(hd));
    w.add_u32(arch + ".vocab_size", u32(V));
  } else {
    w.add_f32(arch + ".attention.layer_norm_epsilon", c.norm_eps);
  }
  if (!src.tokenizer)
    throw std::invalid_argument(
        src.dir + ": the checkpoint has no tokenizer.json and a vocabulary of " +
        std::to_string(V) +
        ", not the 256 bytes: GGUF needs the tokenizer (llama.cpp tokenizes with it)");
  try {
    add_gguf_tokenizer(w, *src.tokenizer, V);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(src.dir + "/tokenizer.json: " + e.what());
  }

  // Every tensor's bytes, kept until the file is written.
  std::vector<std::vector<std::uint8_t>> keep;
  auto vec = [&](const std::string& name, const std::vector<float>& v) {
    keep.emplace_back(v.size() * 4);
    std::memcpy(keep.back().data(), v.data(), keep.back().size());
    w.add_tensor(name, {v.size()}, io::GgmlType::f32, keep.back().data(), keep.back().size());
  };
  // m is [rows = outputs][cols = inputs]: ggml dims {cols, rows}.
  auto mat = [&](const std::string& name, const std::vector<float>& m, int rows, int cols) {
    keep.push_back(encode_matrix(m, std::size_t(rows), std::size_t(cols), o.type, name));
    w.add_tensor(name, {std::uint64_t(cols), std::uint64_t(rows)}, ggml_type(o.type),
                 keep.back().data(), keep.back().size());
  };
  const std::vector<float> emb =
      src.tensor(llama ? "model.embed_tokens.weight" : "transformer.wte.weight");
  mat("token_embd.weight", emb, V, E);
  if (!llama) mat("position_embd.weight", src.tensor("transformer.wpe.weight"), c.max_seq, E);
  for (int l = 0; l < c.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    const DenseOut out = src.dense_out(l);
    if (llama) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      vec(b + "attn_norm.weight", src.tensor(p + "input_layernorm.weight"));
      mat(b + "attn_q.weight",
          permute_rope_rows(src.tensor(p + "self_attn.q_proj.weight"), c.n_head, hd, E),
          c.n_head * hd, E);
      mat(b + "attn_k.weight",
          permute_rope_rows(src.tensor(p + "self_attn.k_proj.weight"), c.n_kv_head, hd, E),
          c.n_kv_head * hd, E);
      mat(b + "attn_v.weight", src.tensor(p + "self_attn.v_proj.weight"), c.n_kv_head * hd, E);
      mat(b + "attn_output.weight", out.w, E, E);
      if (out.has_bias) vec(b + "attn_output.bias", out.bias);
      vec(b + "ffn_norm.weight", src.tensor(p + "post_attention_layernorm.weight"));
      mat(b + "ffn_gate.weight", src.tensor(p + "mlp.gate_proj.weight"), F, E);
      mat(b + "ffn_up.weight", src.tensor(p + "mlp.up_proj.weight"), F, E);
      mat(b + "ffn_down.weight", src.tensor(p + "mlp.down_proj.weight"), E, F);
    } else {
      const std::string p = "transformer.h." + std::to_string(l) + ".";
      vec(b + "attn_norm.weight", src.tensor(p + "ln_1.weight"));
      vec(b + "attn_norm.bias", src.tensor(p + "ln_1.bias"));
      // Conv1D weights are [in, out]: transposed to ggml's [out][in].
      mat(b + "attn_qkv.weight", transpose(src.tensor(p + "attn.c_attn.weight"), E, 3 * E), 3 * E,
          E);
      vec(b + "attn_qkv.bias", src.tensor(p + "attn.c_attn.bias"));
      mat(b + "attn_output.weight", out.w, E, E);
      vec(b + "attn_output.bias", out.bias);
      vec(b + "ffn_norm.weight", src.tensor(p + "ln_2.weight"));
      vec(b + "ffn_norm.bias", src.tensor(p + "ln_2.bias"));
      mat(b + "ffn_up.weight", transpose(src.tensor(p + "mlp.c_fc.weight"), E, F), F, E);
      vec(b + "ffn_up.bias", src.tensor(p + "mlp.c_fc.bias"));
      mat(b + "ffn_down.weight", transpose(src.tensor(p + "mlp.c_proj.weight"), F, E), E, F);
      vec(b + "ffn_down.bias", src.tensor(p + "mlp.c_proj.bias"));
    }
  }
  if (llama) {
    vec("output_norm.weight", src.tensor("model.norm.weight"));
    mat("output.weight", src.tensor("lm_head.weight"), V, E);
  } else {
    vec("output_norm.weight", src.tensor("transformer.ln_f.weight"));
    vec("output_norm.bias", src.tensor("transformer.ln_f.bias"));
  }  // gpt2's head is tied: llama.cpp reuses token_embd when output.weight is absent
  const io::FileChecksum sum = w.write(o.out);
  ExportResult r;
  r.files = {o.out};
  r.bytes = sum.bytes;
  r.config = c;
  r.folded = c.projection != Projection::dense;
  return r;
}

// config.json for transformers: the family's keys as whtlm writes them, plus what the
// folded projection needs (llama: attention_bias for beta) and a record of the fold.
json hf_config(const ModelConfig& c, const std::optional<tok::Tokenizer>& t, TensorType type,
               bool keep_wht) {
  ModelConfig dense = c;
  if (!keep_wht) dense.projection = Projection::dense;
  json j = json::parse(config_to_json(dense));
  if (!keep_wht) j.erase("attn_output_projection");
  if (t) {
    const std::int32_t eos = t->eot_id().value_or(0);
    j["bos_token_id"] = eos;
    j["eos_token_id"] = eos;
  }
  j["torch_dtype"] = type == TensorType::f32   ? "float32"
                     : type == TensorType::f16 ? "float16"
                                               : "bfloat16";
  if (!keep_wht && c.projection != Projection::dense) {
    if (c.family == Family::llama && c.projection == Projection::wht) j["attention_bias"] = true;
    j["whtlm_fold"] = {{"projection", projection_name(c.projection)},
                       {"formula", fold_description(c.projection)}};
  }
  return j;
}

ExportResult export_hf(const SourceModel& src, const ExportOptions& o) {
  const ModelConfig& c = src.config;
  const io::DType dtype = safetensors_dtype(o.type);
  const bool llama = c.family == Family::llama;
  const bool fold = !o.keep_wht && c.projection != Projection::dense;
  const int E = c.d_model;
  // Tensors in the layout's order, each converted to the dtype.
  struct Out {
    std::string name;
    std::vector<std::int64_t> shape;
    std::vector<std::uint8_t> bytes;
  };
  std::vector<Out> tensors;
  auto add = [&](const std::string& name, std::vector<std::int64_t> shape,
                 const std::vector<float>& v) {
    Out t{name, std::move(shape), {}};
    if (dtype == io::DType::f32) {
      t.bytes.resize(v.size() * 4);
      std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
    } else {
      // A row of numel values: f16 or bf16 elementwise, as for a matrix.
      t.bytes = encode_matrix(v, 1, v.size(), o.type, name);
    }
    tensors.push_back(std::move(t));
  };
  for (const TensorSpec& t : src.layout.tensors()) {
    if (t.component == Component::attn_out && fold) continue;  // written below
    add(t.name, t.shape, src.tensor(t.name));
    if (!fold || t.component != Component::attn_qkv) continue;
    // After a block's q, k, v (llama) or c_attn (gpt2): the folded W_O.
    const bool last_qkv =
        llama ? t.name.ends_with("v_proj.weight") : t.name.ends_with("c_attn.bias");
    if (!last_qkv) continue;
    const DenseOut out = src.dense_out(t.layer);
    const std::string p = llama ? "model.layers." + std::to_string(t.layer) + ".self_attn."
                                : "transformer.h." + std::to_string(t.layer) + ".attn.";
    if (llama) {
      if (c.projection == Projection::wht) {
        // attention_bias puts a bias on q, k, v and o alike: q, k, v get zeros.
        const int kv = c.n_kv_head * c.head_dim();
        add(p + "q_proj.bias", {E}, std::vector<float>(std::size_t(E), 0.0f));
        add(p + "k_proj.bias", {kv}, std::vector<float>(std::size_t(kv), 0.0f));
        add(p + "v_proj.bias", {kv}, std::vector<float>(std::size_t(kv), 0.0f));
      }
      add(p + "o_proj.weight", {E, E}, out.w);
      if (c.projection == Projection::wht) add(p + "o_proj.bias", {E}, out.bias);
    } else {
      add(p + "c_proj.weight", {E, E}, transpose(out.w, E, E));  // Conv1D [in, out]
      add(p + "c_proj.bias", {E}, out.bias);
    }
  }
  // Shards of at most max_shard_bytes (a larger tensor alone in its own).
  std::vector<std::vector<std::size_t>> shards(1);
  std::uint64_t in_shard = 0, total = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::uint64_t n = tensors[i].bytes.size();
    if (!shards.back().empty() && in_shard + n > o.max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(i);
    in_shard += n;
    total += n;
  }
  std::error_code ec;
  fs::create_directories(o.out, ec);
  if (ec) throw std::runtime_error(o.out + ": cannot create folder: " + ec.message());
  ExportResult r;
  r.config = c;
  r.folded = fold;
  const std::map<std::string, std::string> meta{{"format", "pt"}};
  json weight_map = json::object();
  for (std::size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    const std::string file = shards.size() == 1 ? "model.safetensors" : name;
    std::vector<io::TensorToWrite> write;
    for (std::size_t i : shards[s]) {
      write.push_back({tensors[i].name, dtype, tensors[i].shape, tensors[i].bytes.data()});
      weight_map[tensors[i].name] = file;
    }
    const std::string path = (fs::path(o.out) / file).string();
    r.bytes += io::write_safetensors(path, write, meta).bytes;
    r.files.push_back(path);
  }
  auto write_text = [&](const std::string& file, const std::string& text) {
    const std::string path = (fs::path(o.out) / file).string();
    r.bytes += io::write_file_atomic(path, text).bytes;
    r.files.push_back(path);
  };
  if (shards.size() > 1)
    write_text(
        "model.safetensors.index.json",
        json{{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}}.dump(2) + "\n");
  write_text("config.json", hf_config(c, src.tokenizer, o.type, o.keep_wht).dump(2) + "\n");
  if (src.tokenizer) write_text("tokenizer.json", src.tokenizer->to_json());
  // With --force over an earlier export: weights files this export did not write (shards
  // of another count, an index a single file replaced) would mislead a loader.
  for (const fs::directory_entry& e : fs::directory_iterator(o.out, ec)) {
    const std::string name = e.path().filename().string();
    const bool weights = name == "model.safetensors" || name == "model.safetensors.index.json" ||
                         (name.starts_with("model-") && name.ends_with(".safetensors"));
    const bool ours = std::any_of(r.files.begin(), r.files.end(), [&](const std::string& f) {
      return fs::path(f).filename() == e.path().filename();
    });
    if (weights && !ours) fs::remove(e.path(), ec);
  }
  return r;
}

}  // namespace

ExportResult export_model(const std::string& checkpoint, const ExportOptions& o) {
  if (o.format == Format::gguf && o.keep_wht)
    throw std::invalid_argument(
        "--keep-wht: only for --to hf (llama.cpp runs a dense W_O: GGUF is always folded)");
  if (o.format == Format::hf) safetensors_dtype(o.type);  // refuses q8_0 before any work
  if (o.max_shard_bytes == 0) throw std::invalid_argument("--max-shard-bytes: must be at least 1");
  check_out(o.out, o.format == Format::hf, o.force);
  const SourceModel src = SourceModel::load(checkpoint);
  return o.format == Format::gguf ? export_gguf(src, o) : export_hf(src, o);
}

}  // namespace whtlm::interop
