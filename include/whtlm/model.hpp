// The model: a decoder-only transformer language model in two families (gpt2,
// llama) whose attention output projection is one switch (dense, wht, identity).
// This header holds what describes a model without running it: its configuration,
// the presets, the parameter layout (every tensor, its Hugging Face name, its place
// in the one parameter buffer) and the analytic cost (FLOPs and bytes) per token.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace whtlm {

enum class Family { gpt2, llama };
enum class Projection { dense, wht, identity };

const char* family_name(Family f);
const char* projection_name(Projection p);
// Parse a name; std::invalid_argument listing the choices when unknown.
Family parse_family(std::string_view name);
Projection parse_projection(std::string_view name);

// A model config field that is out of range or inconsistent: which field (ModelConfig's
// own name: n_layer, d_model, n_head, n_kv_head, d_ff, vocab_size, max_seq, norm_eps,
// rope_theta) and why, so that each source names it its own way (a config.json key, a
// command-line option, a plan field). what() is "model config: FIELD: WHY".
struct ConfigError : std::invalid_argument {
  ConfigError(const std::string& field_name, const std::string& reason)
      : std::invalid_argument("model config: " + field_name + ": " + reason),
        field(field_name),
        why(reason) {}
  std::string field, why;
};

// "FIELD: WHY" of a ConfigError with ModelConfig's field names replaced wherever they
// appear by the source's own (a config.json key, a command-line option): e.g.
// {{"d_model", "--d-model"}, {"n_head", "--heads"}} gives "--heads: --d-model = 65 is not
// divisible by --heads = 2".
std::string renamed(const ConfigError& e,
                    const std::vector<std::pair<std::string, std::string>>& names);

struct ModelConfig {
  Family family = Family::llama;
  Projection projection = Projection::dense;
  int n_layer = 4;
  int d_model = 256;
  int n_head = 4;
  int n_kv_head = 4;  // grouped-query attention (llama); equal to n_head for gpt2
  int d_ff = 0;       // MLP hidden width; 0 means the family default (default_d_ff)
  int vocab_size = 256;
  int max_seq = 256;  // longest context: learned positions (gpt2), training context
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;  // llama only

  int head_dim() const { return d_model / n_head; }
  // Width of the fused q|k|v activation: (n_head + 2 n_kv_head) * head_dim.
  int qkv_dim() const { return (n_head + 2 * n_kv_head) * head_dim(); }
  int ff() const;  // d_ff or the family default
  bool has_bias() const { return family == Family::gpt2; }
  bool tied_embeddings() const { return family == Family::gpt2; }
  // Throws ConfigError naming the first field out of its bound (whtlm/limits.hpp) or
  // inconsistent with the others.
  void validate() const;
  bool operator==(const ModelConfig&) const = default;
};

// gpt2: 4d. llama: 8d/3 rounded up to a multiple of 256 (as LLaMA does).
int default_d_ff(Family family, int d_model);

// Named shapes: tiny, small, base, gpt2-124m, gpt2-350m and llama/gpt2 counterparts.
// Vocabulary 256 (byte-level) unless changed afterwards.
ModelConfig preset(std::string_view name);
std::vector<std::string> preset_names();
// One line describing a preset's shape, for --help and `whtlm params`.
std::string describe(const ModelConfig& c);

// Where a parameter belongs, for counts by component.
enum class Component { embedding, position, attn_qkv, attn_out, mlp, norm, head };
const char* component_name(Component c);
inline constexpr int kNumComponents = 7;

// How a tensor starts (GPT-2's scheme, used for both families): normal(0, 0.02);
// the projections that write into the residual stream at 0.02 / sqrt(2 n_layer);
// norm weights at 1; biases at 0; the wht scale as ScaleInit says.
enum class TensorInit { normal, residual_normal, zeros, ones, wht_scale };

// How wht's per-channel scale gamma starts. `one`: gamma = 1, the branch passes the
// attention output at full scale. `matched`: gamma = 0.02 / sqrt(2 n_layer) * sqrt(d),
// so that each output coordinate of the branch starts with the spread a dense W_O
// (residual_normal) gives it: W x has per-coordinate std 0.02 / sqrt(2 n_layer) * |x|,
// gamma H x / sqrt(d) has gamma * |x| / sqrt(d). Chosen by the experiment (docs/model.md).
enum class ScaleInit { one, matched };
inline constexpr ScaleInit kDefaultScaleInit = ScaleInit::matched;
const char* scale_init_name(ScaleInit s);
ScaleInit parse_scale_init(std::string_view name);  // std::invalid_argument lists the choices
// The value every channel of gamma starts at.
double initial_wht_scale(const ModelConfig& c, ScaleInit s);

// One tensor of the parameter buffer. Shapes and names are Hugging Face's: llama
// Linear weights are [out, in]; gpt2 Conv1D weights are [in, out].
struct TensorSpec {
  std::string name;
  std::vector<std::int64_t> shape;
  std::size_t offset = 0;  // in floats, into the parameter buffer
  std::size_t numel = 0;
  Component component = Component::embedding;
  int layer = -1;      // -1 for tensors outside the blocks
  bool decay = false;  // AdamW weight decay applies (matrices; not norms, biases, gamma, beta)
  TensorInit init = TensorInit::zeros;
};

// Offsets (in floats) of the tensors the model code reads, per block.
struct BlockOffsets {
  std::size_t norm1_w = 0, norm1_b = 0;  // *_b only in gpt2
  std::size_t qkv_w = 0, qkv_b = 0;      // llama: q, k, v weights adjacent = one [qkv_dim, d]
  std::size_t proj = 0;                  // the output projection's own block of parameters
  std::size_t norm2_w = 0, norm2_b = 0;
  std::size_t fc_w = 0, fc_b = 0;  // llama: gate and up adjacent = one [2 ff, d]
  std::size_t down_w = 0, down_b = 0;
};

// The parameter layout the model allocates: one contiguous float buffer, each
// tensor at a 64-byte aligned offset except where two tensors must be adjacent to
// act as one fused matrix.
class ParamLayout {
 public:
  explicit ParamLayout(const ModelConfig& config);

  const ModelConfig& config() const { return config_; }
  const std::vector<TensorSpec>& tensors() const { return tensors_; }
  std::size_t total_floats() const { return total_; }  // buffer size, padding included
  std::size_t count() const;                           // parameters, padding excluded
  std::size_t count(Component c) const;
  std::size_t count_layer(int layer) const;
  const TensorSpec* find(std::string_view name) const;  // nullptr when absent

  std::size_t wte = 0, wpe = 0, norm_f_w = 0, norm_f_b = 0, head = 0;  // head == wte when tied
  std::vector<BlockOffsets> blocks;

 private:
  std::size_t add(std::string name, std::vector<std::int64_t> shape, Component c, int layer,
                  TensorInit init, bool align = true);
  ModelConfig config_;
  std::vector<TensorSpec> tensors_;
  std::size_t total_ = 0;
};

// Analytic cost per token at a training context of `seq` tokens (causal: token t
// attends to t + 1 positions, so the mean is (seq + 1) / 2). Multiply-adds count 2.
// Backward counts the work of the gradients (2x forward for matmuls), not the
// recomputation our attention does to save memory. docs/model.md has the rules.
struct ComponentCost {
  double params = 0;          // parameters
  double weight_bytes = 0;    // fp32 bytes of those parameters
  double flops_forward = 0;   // per token
  double flops_backward = 0;  // per token
};
struct ModelCost {
  ComponentCost by_component[kNumComponents];
  ComponentCost attention_scores;  // q k^T and the weighted sum of v (no parameters)
  ComponentCost total;
  double flops_train_per_token() const { return total.flops_forward + total.flops_backward; }
};
ModelCost model_cost(const ModelConfig& config, int seq);

}  // namespace whtlm
