// The parameter layout (every tensor's Hugging Face name, shape and offset in the one
// parameter buffer) and the analytic cost per token derived from the same shapes.
#include <stdexcept>
#include <string>

#include "model/projection.hpp"
#include "whtlm/model.hpp"

namespace whtlm {

const char* component_name(Component c) {
  switch (c) {
    case Component::embedding:
      return "embedding";
    case Component::position:
      return "position";
    case Component::attn_qkv:
      return "attn_qkv";
    case Component::attn_out:
      return "attn_out";
    case Component::mlp:
      return "mlp";
    case Component::norm:
      return "norm";
    case Component::head:
      return "head";
  }
  return "?";
}

std::size_t ParamLayout::add(std::string name, std::vector<std::int64_t> shape, Component c,
                             int layer, TensorInit init, bool align) {
  constexpr std::size_t kAlign = 16;  // floats: 64 bytes
  if (align) total_ = (total_ + kAlign - 1) / kAlign * kAlign;
  std::size_t numel = 1;
  for (std::int64_t s : shape) numel *= static_cast<std::size_t>(s);
  // Matrices decay; vectors (norm weights, biases, the wht scale and bias) do not.
  const bool decay = shape.size() >= 2;
  TensorSpec t{std::move(name), std::move(shape), total_, numel, c, layer, decay, init};
  total_ += numel;
  tensors_.push_back(std::move(t));
  return tensors_.back().offset;
}

ParamLayout::ParamLayout(const ModelConfig& config) : config_(config) {
  config_.validate();
  const ModelConfig& c = config_;
  const std::int64_t d = c.d_model, V = c.vocab_size, ff = c.ff(), hd = c.head_dim();
  const bool gpt2 = c.family == Family::gpt2;
  const auto proj = model::make_output_projection(c);
  auto add_projection = [&](const std::string& prefix, int l) {
    bool first = true;
    std::size_t start = total_;
    for (const model::ProjectionParam& p : proj->parameters()) {
      // Aligned at its start, then packed: the block is contiguous.
      const std::size_t off =
          add(prefix + p.suffix, p.shape, Component::attn_out, l, p.init, first);
      if (first) start = off;
      first = false;
    }
    return start;
  };

  blocks.resize(static_cast<std::size_t>(c.n_layer));
  if (gpt2) {
    wte = add("transformer.wte.weight", {V, d}, Component::embedding, -1, TensorInit::normal);
    wpe =
        add("transformer.wpe.weight", {c.max_seq, d}, Component::position, -1, TensorInit::normal);
    for (int l = 0; l < c.n_layer; ++l) {
      const std::string p = "transformer.h." + std::to_string(l) + ".";
      BlockOffsets& b = blocks[static_cast<std::size_t>(l)];
      b.norm1_w = add(p + "ln_1.weight", {d}, Component::norm, l, TensorInit::ones);
      b.norm1_b = add(p + "ln_1.bias", {d}, Component::norm, l, TensorInit::zeros);
      b.qkv_w =
          add(p + "attn.c_attn.weight", {d, 3 * d}, Component::attn_qkv, l, TensorInit::normal);
      b.qkv_b = add(p + "attn.c_attn.bias", {3 * d}, Component::attn_qkv, l, TensorInit::zeros);
      b.proj = add_projection(p + "attn.c_proj.", l);
      b.norm2_w = add(p + "ln_2.weight", {d}, Component::norm, l, TensorInit::ones);
      b.norm2_b = add(p + "ln_2.bias", {d}, Component::norm, l, TensorInit::zeros);
      b.fc_w = add(p + "mlp.c_fc.weight", {d, ff}, Component::mlp, l, TensorInit::normal);
      b.fc_b = add(p + "mlp.c_fc.bias", {ff}, Component::mlp, l, TensorInit::zeros);
      b.down_w =
          add(p + "mlp.c_proj.weight", {ff, d}, Component::mlp, l, TensorInit::residual_normal);
      b.down_b = add(p + "mlp.c_proj.bias", {d}, Component::mlp, l, TensorInit::zeros);
    }
    norm_f_w = add("transformer.ln_f.weight", {d}, Component::norm, -1, TensorInit::ones);
    norm_f_b = add("transformer.ln_f.bias", {d}, Component::norm, -1, TensorInit::zeros);
    head = wte;  // tied
  } else {
    wte = add("model.embed_tokens.weight", {V, d}, Component::embedding, -1, TensorInit::normal);
    const std::int64_t qd = c.n_head * hd, kvd = c.n_kv_head * hd;
    for (int l = 0; l < c.n_layer; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      BlockOffsets& b = blocks[static_cast<std::size_t>(l)];
      b.norm1_w = add(p + "input_layernorm.weight", {d}, Component::norm, l, TensorInit::ones);
      // q, k and v adjacent: one [qkv_dim, d] matrix for one matmul.
      b.qkv_w =
          add(p + "self_attn.q_proj.weight", {qd, d}, Component::attn_qkv, l, TensorInit::normal);
      add(p + "self_attn.k_proj.weight", {kvd, d}, Component::attn_qkv, l, TensorInit::normal,
          false);
      add(p + "self_attn.v_proj.weight", {kvd, d}, Component::attn_qkv, l, TensorInit::normal,
          false);
      b.proj = add_projection(p + "self_attn.o_proj.", l);
      b.norm2_w =
          add(p + "post_attention_layernorm.weight", {d}, Component::norm, l, TensorInit::ones);
      // gate and up adjacent: one [2 ff, d] matrix.
      b.fc_w = add(p + "mlp.gate_proj.weight", {ff, d}, Component::mlp, l, TensorInit::normal);
      add(p + "mlp.up_proj.weight", {ff, d}, Component::mlp, l, TensorInit::normal, false);
      b.down_w =
          add(p + "mlp.down_proj.weight", {d, ff}, Component::mlp, l, TensorInit::residual_normal);
    }
    norm_f_w = add("model.norm.weight", {d}, Component::norm, -1, TensorInit::ones);
    head = add("lm_head.weight", {V, d}, Component::head, -1, TensorInit::normal);
  }
  total_ = (total_ + 15) / 16 * 16;
}

std::size_t ParamLayout::count() const {
  std::size_t n = 0;
  for (const TensorSpec& t : tensors_) n += t.numel;
  return n;
}

std::size_t ParamLayout::count(Component c) const {
  std::size_t n = 0;
  for (const TensorSpec& t : tensors_)
    if (t.component == c) n += t.numel;
  return n;
}

std::size_t ParamLayout::count_layer(int layer) const {
  std::size_t n = 0;
  for (const TensorSpec& t : tensors_)
    if (t.layer == layer) n += t.numel;
  return n;
}

const TensorSpec* ParamLayout::find(std::string_view name) const {
  for (const TensorSpec& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

ModelCost model_cost(const ModelConfig& config, int seq) {
  if (seq < 1 || seq > config.max_seq)
    throw std::invalid_argument("sequence length " + std::to_string(seq) +
                                " outside 1..max_seq = " + std::to_string(config.max_seq));
  const ParamLayout layout(config);
  const ModelConfig& c = layout.config();
  const double d = c.d_model, L = c.n_layer, ff = c.ff(), V = c.vocab_size, qkv = c.qkv_dim();
  const bool gpt2 = c.family == Family::gpt2;
  const auto proj = model::make_output_projection(c);

  ModelCost cost;
  for (int i = 0; i < kNumComponents; ++i) {
    ComponentCost& cc = cost.by_component[i];
    cc.params = static_cast<double>(layout.count(static_cast<Component>(i)));
    cc.weight_bytes = 4.0 * cc.params;
  }
  auto matmul = [](ComponentCost& cc, double in, double out, double bias) {
    cc.flops_forward += 2 * in * out + bias;
    cc.flops_backward += 4 * in * out + bias;  // d input and d weight; d bias
  };
  ComponentCost& qkvc = cost.by_component[int(Component::attn_qkv)];
  matmul(qkvc, d, qkv, gpt2 ? qkv : 0);
  qkvc.flops_forward *= L;
  qkvc.flops_backward *= L;
  ComponentCost& out = cost.by_component[int(Component::attn_out)];
  out.flops_forward = L * proj->flops_forward();
  out.flops_backward = L * proj->flops_backward();
  ComponentCost& mlp = cost.by_component[int(Component::mlp)];
  if (gpt2) {
    matmul(mlp, d, ff, ff);
    matmul(mlp, ff, d, d);
  } else {
    matmul(mlp, d, 2 * ff, 0);
    matmul(mlp, ff, d, 0);
  }
  mlp.flops_forward *= L;
  mlp.flops_backward *= L;
  // The head: its own matrix (llama) or the tied embedding (gpt2); either way a
  // d x V product per token.
  ComponentCost& head = cost.by_component[int(Component::head)];
  head.flops_forward = 2 * d * V;
  head.flops_backward = 4 * d * V;
  // Scores and weighted values: 2 products of n_head * hd = d per attended key.
  const double keys = (seq + 1) / 2.0;
  cost.attention_scores.flops_forward = L * 4 * d * keys;
  cost.attention_scores.flops_backward = L * 8 * d * keys;

  for (int i = 0; i < kNumComponents; ++i) {
    const ComponentCost& cc = cost.by_component[i];
    cost.total.params += cc.params;
    cost.total.weight_bytes += cc.weight_bytes;
    cost.total.flops_forward += cc.flops_forward;
    cost.total.flops_backward += cc.flops_backward;
  }
  cost.total.flops_forward += cost.attention_scores.flops_forward;
  cost.total.flops_backward += cost.attention_scores.flops_backward;
  return cost;
}

}  // namespace whtlm
