// The block's layers (block.hpp): the only code that tells the families apart.
#include "model/block.hpp"

namespace whtlm::model {

using backend::Backend;
using backend::WeightLayout;
using backend::Write;

FamilyTraits FamilyTraits::of(Family family) {
  FamilyTraits t;
  if (family == Family::gpt2) {
    // GPT-2: LayerNorm, GELU, biases everywhere, Conv1D weights stored [in, out],
    // learned positions.
    t.norm = NormKind::layernorm;
    t.activation = MlpActivation::gelu;
    t.bias = true;
    t.layout = WeightLayout::in_out;
    t.learned_positions = true;
    t.fc_width_factor = 1;
  } else {
    // LLaMA: RMSNorm, SwiGLU (gate | up in one fc), no biases, Linear weights stored
    // [out, in], rotary positions.
    t.norm = NormKind::rmsnorm;
    t.activation = MlpActivation::swiglu;
    t.bias = false;
    t.layout = WeightLayout::out_in;
    t.rope = true;
    t.fc_width_factor = 2;
  }
  return t;
}

void Norm::forward(Backend& be, backend::Operand y, NormStats st, const float* x, const float* P,
                   std::size_t rows) const {
  if (kind == NormKind::layernorm)
    be.layernorm_forward(y, st.mean, st.rstd, x, P + w, P + b, {rows, d}, eps);
  else
    be.rmsnorm_forward(y, st.rstd, x, P + w, {rows, d}, eps);
}

void Norm::backward(Backend& be, float* dx, float* G, const float* dy, const float* x, NormStats st,
                    const float* P, std::size_t rows) const {
  if (kind == NormKind::layernorm)
    be.layernorm_backward(dx, G + w, G + b, dy, x, st.mean, st.rstd, P + w, {rows, d});
  else
    be.rmsnorm_backward(dx, G + w, dy, x, st.rstd, P + w, {rows, d});
}

void Linear::forward(Backend& be, float* y, backend::ConstOperand x, const float* P,
                     std::size_t rows, Write y_write, const PackedWeights* packed) const {
  if (packed != nullptr)
    if (const auto it = packed->find(w); it != packed->end()) {
      be.linear_forward_packed(y, x.f32(), it->second, bias ? P + b : nullptr, rows, y_write);
      return;
    }
  be.linear_forward(y, x, P + w, bias ? P + b : nullptr, shape(rows), y_write);
}

void Linear::backward(Backend& be, float* dx, float* G, const float* dy, backend::ConstOperand x,
                      const float* P, std::size_t rows) const {
  be.linear_backward(dx, G + w, bias ? G + b : nullptr, dy, x, P + w, shape(rows),
                     Write::overwrite);
}

namespace {

Norm make_norm(const FamilyTraits& t, const ModelConfig& c, std::size_t w, std::size_t b) {
  return {t.norm, w, b, static_cast<std::size_t>(c.d_model), c.norm_eps};
}

Linear make_linear(const FamilyTraits& t, std::size_t w, std::size_t b, std::size_t in,
                   std::size_t out) {
  return {w, b, t.bias, in, out, t.layout};
}

}  // namespace

Block::Block(const ModelConfig& c, const BlockOffsets& o, const OutputProjection& proj)
    : d_(static_cast<std::size_t>(c.d_model)),
      ff_(static_cast<std::size_t>(c.ff())),
      proj_(&proj),
      proj_offset_(o.proj) {
  const FamilyTraits t = FamilyTraits::of(c.family);
  activation_ = t.activation;
  layout_ = t.layout;
  norm1_ = make_norm(t, c, o.norm1_w, o.norm1_b);
  norm2_ = make_norm(t, c, o.norm2_w, o.norm2_b);
  qkv_ = make_linear(t, o.qkv_w, o.qkv_b, d_, static_cast<std::size_t>(c.qkv_dim()));
  fc_ = make_linear(t, o.fc_w, o.fc_b, d_, ff_ * static_cast<std::size_t>(t.fc_width_factor));
  down_ = make_linear(t, o.down_w, o.down_b, ff_, d_);
}

std::vector<MatrixRef> Block::matrices() const {
  std::vector<MatrixRef> m{qkv_.matrix(), fc_.matrix(), down_.matrix()};
  if (proj_->kind() == Projection::dense) m.push_back({proj_offset_, d_, d_, layout_});
  return m;
}

void Block::activation_forward(Backend& be, backend::Operand hid, const float* fc,
                               std::size_t rows) const {
  if (activation_ == MlpActivation::gelu)
    be.gelu_forward(hid, fc, rows * ff_);
  else
    be.swiglu_forward(hid, fc, rows, ff_);
}

void Block::activation_backward(Backend& be, float* dfc, const float* dhid, const float* fc,
                                std::size_t rows) const {
  if (activation_ == MlpActivation::gelu)
    be.gelu_backward(dfc, dhid, fc, rows * ff_);
  else
    be.swiglu_backward(dfc, dhid, fc, rows, ff_);
}

Stack::Stack(const ParamLayout& layout, const OutputProjection& proj)
    : traits(FamilyTraits::of(layout.config().family)), wte(layout.wte), wpe_(layout.wpe) {
  const ModelConfig& c = layout.config();
  blocks.reserve(layout.blocks.size());
  for (const BlockOffsets& o : layout.blocks) blocks.emplace_back(c, o, proj);
  norm_f = make_norm(traits, c, layout.norm_f_w, layout.norm_f_b);
  // The head has no bias in either family; its weight is [vocab, d] (y = x W^T).
  head = {layout.head,
          0,
          false,
          static_cast<std::size_t>(c.d_model),
          static_cast<std::size_t>(c.vocab_size),
          WeightLayout::out_in};
}

}  // namespace whtlm::model
