// One transformer block, described once for every path that runs it: the training
// forward and backward (model/transformer.cpp) and the cached inference pass
// (infer/session.cpp). What differs between the families (gpt2, llama) is stated
// here once, in FamilyTraits; the block's layers resolve their weights, biases and
// layouts from it, so the paths above never branch on the family.
//
//   x ─ norm1 ─ qkv ─ [rope] ─ attention ─ proj ─(+x)─ mid ─ norm2 ─ fc ─ act ─ down ─(+mid)─ y
//
// The attention step is the one place the paths differ (training attends within each
// sequence and saves the log-sum-exp for its backward; inference attends against the
// KV cache), so the block takes it as a function.
#pragma once

#include <cstddef>
#include <unordered_map>
#include <vector>

#include "backend/backend.hpp"
#include "model/projection.hpp"
#include "whtlm/model.hpp"

namespace whtlm::model {

enum class NormKind { layernorm, rmsnorm };
enum class MlpActivation { gelu, swiglu };

// Everything that tells the families apart.
struct FamilyTraits {
  NormKind norm = NormKind::rmsnorm;
  MlpActivation activation = MlpActivation::swiglu;
  bool bias = false;               // linear layers and norms have biases (gpt2)
  backend::WeightLayout layout{};  // of the block's linear weights
  bool rope = false;               // rotary positions in attention (llama)
  bool learned_positions = false;  // a position embedding table wpe (gpt2)
  int fc_width_factor = 1;         // fc's output: 1 x ff (gelu) or 2 x ff (gate | up)

  static FamilyTraits of(Family family);
};

// Mean and 1/std of each row, saved by a norm's forward for its backward ([rows]
// each; rmsnorm keeps only rstd).
struct NormStats {
  float* mean = nullptr;
  float* rstd = nullptr;
};

// A norm with its parameters' offsets in the parameter buffer.
struct Norm {
  NormKind kind = NormKind::rmsnorm;
  std::size_t w = 0, b = 0;  // b only for layernorm
  std::size_t d = 0;
  float eps = 0;

  // y = norm(x): [rows, d] (an operand of the products that follow).
  void forward(backend::Backend& be, backend::Operand y, NormStats st, const float* x,
               const float* P, std::size_t rows) const;
  // dx += d loss / dx for the gradient dy at y; the parameters' gradients into G.
  void backward(backend::Backend& be, float* dx, float* G, const float* dy, const float* x,
                NormStats st, const float* P, std::size_t rows) const;
};

// Packed copies of matrix weights for inference (backend/weights.hpp), by the offset
// of the fp32 weight in the parameter buffer. A layer whose weight is here reads the
// packed copy; every other layer reads the parameters.
using PackedWeights = std::unordered_map<std::size_t, backend::PackedWeight>;

// A matrix weight of the model: where it is and its shape (what packing needs).
struct MatrixRef {
  std::size_t offset = 0, in = 0, out = 0;
  backend::WeightLayout layout{};
};

// A linear layer with its weight layout and bias resolved.
struct Linear {
  std::size_t w = 0, b = 0;
  bool bias = false;
  std::size_t in = 0, out = 0;
  backend::WeightLayout layout{};

  backend::LinearShape shape(std::size_t rows) const { return {rows, in, out, layout}; }
  MatrixRef matrix() const { return {w, in, out, layout}; }
  // y = x w (+ b), or y += ... with Write::accumulate. x: [rows, in], y: [rows, out].
  // With packed weights that hold this layer's, reads the packed copy (x fp32).
  void forward(backend::Backend& be, float* y, backend::ConstOperand x, const float* P,
               std::size_t rows, backend::Write y_write = backend::Write::overwrite,
               const PackedWeights* packed = nullptr) const;
  // dx = dy w^T (overwritten); the weight's (and bias's) gradients added into G.
  void backward(backend::Backend& be, float* dx, float* G, const float* dy, backend::ConstOperand x,
                const float* P, std::size_t rows) const;
};

// The activations of one block over `rows` rows (shapes in rows). In training each
// block has its own, kept for the backward; in inference one chunk's buffers serve
// every block and the residual stream is updated in place (mid == y == x). h1, h2 and
// hid only feed products: they are stored as the backend's products read them
// (Backend::operand_type(): bf16 for the CPU's bf16 training), the rest in fp32.
struct BlockActivations {
  float* x = nullptr;    // [rows, d]  the block's input: the residual stream
  backend::Operand h1;   // [rows, d]  norm1(x)
  NormStats norm1;       // [rows]
  float* qkv = nullptr;  // [rows, qkv_dim]  q | k | v heads (rotated by rope in llama)
  float* att = nullptr;  // [rows, d]  attention output, before the output projection
  float* lse = nullptr;  // [batch, n_head, seq]  attention log-sum-exp (training only)
  float* mid = nullptr;  // [rows, d]  x + proj(att)
  backend::Operand h2;   // [rows, d]  norm2(mid)
  NormStats norm2;       // [rows]
  float* fc = nullptr;   // [rows, ff] (gpt2) or [rows, 2 ff] (llama: gate | up)
  backend::Operand hid;  // [rows, ff]  activation(fc)
  float* y = nullptr;    // [rows, d]  the block's output: mid + down(hid)
};

// Scratch of the backward pass, shared by all blocks.
struct BlockGradients {
  float* dres = nullptr;  // [rows, d]  gradient along the residual stream (in: d y, out: d x)
  float* dx = nullptr;    // [rows, d]  at a norm's output or the attention output
  float* dqkv = nullptr;  // [rows, qkv_dim]
  float* dfc = nullptr;   // [rows, fc width]
  float* dhid = nullptr;  // [rows, ff]
};

// One block's layers, resolved from the config and its parameter offsets.
class Block {
 public:
  Block(const ModelConfig& c, const BlockOffsets& offsets, const OutputProjection& proj);

  // Runs the block forward. attend(a) fills a.att (and a.lse in training) from a.qkv.
  // packed: inference's packed matrix weights, or nullptr.
  template <class Attend>
  void forward(backend::Backend& be, const float* P, const BlockActivations& a, std::size_t rows,
               Attend&& attend, const PackedWeights* packed = nullptr) const {
    using backend::Write;
    norm1_.forward(be, a.h1, a.norm1, a.x, P, rows);
    qkv_.forward(be, a.qkv, a.h1, P, rows, Write::overwrite, packed);
    attend(a);
    if (a.mid != a.x) be.copy(a.mid, a.x, rows * d_ * sizeof(float));
    proj_->forward(be, a.mid, a.att, P + proj_offset_, rows,
                   find(packed, proj_offset_));  // mid += proj(att)
    norm2_.forward(be, a.h2, a.norm2, a.mid, P, rows);
    fc_.forward(be, a.fc, a.h2, P, rows, Write::overwrite, packed);
    activation_forward(be, a.hid, a.fc, rows);
    if (a.y != a.mid) be.copy(a.y, a.mid, rows * d_ * sizeof(float));
    down_.forward(be, a.y, a.hid, P, rows, Write::accumulate, packed);  // y += down(hid)
  }

  // The block's matrix weights (qkv, the dense output projection's, fc, down).
  std::vector<MatrixRef> matrices() const;

  // The backward of forward: g.dres holds d y on entry and d x on return; parameter
  // gradients are added into G. attend_backward(g.dqkv, g.dx, a) turns the gradient
  // at the attention output (g.dx) into the gradient at a.qkv.
  template <class AttendBackward>
  void backward(backend::Backend& be, const float* P, float* G, const BlockActivations& a,
                const BlockGradients& g, std::size_t rows, AttendBackward&& attend_backward) const {
    // MLP: y = mid + down(act(fc(norm2(mid)))).
    down_.backward(be, g.dhid, G, g.dres, a.hid, P, rows);
    activation_backward(be, g.dfc, g.dhid, a.fc, rows);
    fc_.backward(be, g.dx, G, g.dfc, a.h2, P, rows);
    norm2_.backward(be, g.dres, G, g.dx, a.mid, a.norm2, P, rows);
    // Attention: mid = x + proj(attention(qkv(norm1(x)))); dres holds d mid.
    proj_->backward(be, g.dx, G + proj_offset_, g.dres, a.att, P + proj_offset_, rows);
    attend_backward(g.dqkv, g.dx, a);
    qkv_.backward(be, g.dx, G, g.dqkv, a.h1, P, rows);
    norm1_.backward(be, g.dres, G, g.dx, a.x, a.norm1, P, rows);
  }

 private:
  static const backend::PackedWeight* find(const PackedWeights* packed, std::size_t offset) {
    if (packed == nullptr) return nullptr;
    const auto it = packed->find(offset);
    return it == packed->end() ? nullptr : &it->second;
  }
  void activation_forward(backend::Backend& be, backend::Operand hid, const float* fc,
                          std::size_t rows) const;
  void activation_backward(backend::Backend& be, float* dfc, const float* dhid, const float* fc,
                           std::size_t rows) const;

  MlpActivation activation_;
  std::size_t d_, ff_;
  Norm norm1_, norm2_;
  Linear qkv_, fc_, down_;
  const OutputProjection* proj_;
  std::size_t proj_offset_;
  backend::WeightLayout layout_{};  // of the dense output projection's weight
};

// The whole stack: embeddings, the blocks, the final norm and the head, resolved from
// a parameter layout. Both the training model and the inference session hold one.
struct Stack {
  Stack(const ParamLayout& layout, const OutputProjection& proj);

  FamilyTraits traits;
  std::size_t wte = 0;
  const float* wpe(const float* P) const { return traits.learned_positions ? P + wpe_ : nullptr; }
  float* wpe(float* P) const { return traits.learned_positions ? P + wpe_ : nullptr; }
  std::vector<Block> blocks;
  Norm norm_f;
  Linear head;  // [vocab, d], no bias; tied to wte in gpt2

 private:
  std::size_t wpe_ = 0;
};

}  // namespace whtlm::model
