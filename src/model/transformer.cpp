// The whole model, one training step readable top to bottom: forward through the
// blocks, then the backward pass in reverse. Layers are the ops in
// src/backend/ops.hpp; the output projection is the seam in model/projection.hpp.
#include "whtlm/transformer.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "model/block.hpp"
#include "model/memory.hpp"
#include "model/projection.hpp"

namespace whtlm {

using backend::AttentionShape;
using backend::Backend;
using backend::DeviceArray;

void FloatBuffer::Free::operator()(float* p) const { std::free(p); }

FloatBuffer::FloatBuffer(std::size_t n) : size_(n) {
  if (n == 0) return;
  const std::size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  data_.reset(static_cast<float*>(p));
}

namespace {

// The attention of `batch` sequences of `seq` tokens of model c.
AttentionShape attention_shape(const ModelConfig& c, int batch, int seq) {
  return {static_cast<std::size_t>(batch), static_cast<std::size_t>(seq),
          static_cast<std::size_t>(c.n_head), static_cast<std::size_t>(c.n_kv_head),
          static_cast<std::size_t>(c.head_dim())};
}

// Where each activation lives in the arena, in floats. Per block l the forward keeps
// what its backward reads; the backward's scratch is shared by all blocks. The
// activations that only feed products (the norms' outputs, the MLP activation's) take
// half the room where they are stored in bf16 (Backend::operand_type()).
struct ArenaPlan {
  std::size_t n = 0;  // rows = batch * seq
  backend::Operands operands = backend::Operands::fp32;
  // per block, stride given by the *_stride fields
  std::size_t resid = 0, resid_mid = 0, norm1 = 0, norm2 = 0, stats = 0, qkv = 0, att = 0, lse = 0,
              fc = 0, act = 0;
  std::size_t resid_stride = 0, qkv_stride = 0, lse_stride = 0, fc_stride = 0, act_stride = 0,
              stats_stride = 0, norm_stride = 0;
  // whole-model buffers
  std::size_t norm_f = 0, norm_f_stats = 0, logits = 0, losses = 0;
  // backward scratch
  std::size_t d_resid = 0, d_x = 0, d_qkv = 0, d_fc = 0, d_act = 0, att_scratch = 0;
  std::size_t total = 0;

  // Block l's activations (block.hpp names each); its output is block l + 1's input.
  model::BlockActivations block(float* arena, std::size_t l) const {
    float* st = arena + stats + l * stats_stride;  // mean1, rstd1, mean2, rstd2: [n] each
    model::BlockActivations b;
    b.x = residual(arena, l);
    b.h1 = operand(arena + norm1 + l * norm_stride);
    b.norm1 = {st, st + n};
    b.qkv = arena + qkv + l * qkv_stride;
    b.att = arena + att + l * resid_stride;
    b.lse = arena + lse + l * lse_stride;
    b.mid = arena + resid_mid + l * resid_stride;
    b.h2 = operand(arena + norm2 + l * norm_stride);
    b.norm2 = {st + 2 * n, st + 3 * n};
    b.fc = arena + fc + l * fc_stride;
    b.hid = operand(arena + act + l * act_stride);
    b.y = b.x + resid_stride;
    return b;
  }
  // Room at p for a product operand: fp32, or bf16 bits.
  backend::Operand operand(float* p) const {
    if (operands == backend::Operands::bf16) return reinterpret_cast<std::uint16_t*>(p);
    return p;
  }
  // Floats that hold `values` product operands (bf16: two a float), a multiple of 16.
  std::size_t operand_floats(std::size_t values) const {
    if (operands == backend::Operands::fp32) return values;
    return ((values + 1) / 2 + 15) / 16 * 16;
  }
  // The residual stream entering block l (l = n_layer: the last block's output).
  float* residual(float* arena, std::size_t l) const { return arena + resid + l * resid_stride; }
  // The backward's scratch, shared by all blocks.
  model::BlockGradients gradients(float* a) const {
    return {a + d_resid, a + d_x, a + d_qkv, a + d_fc, a + d_act};
  }

  // scratch: floats of attention scratch the backend needs at this shape.
  ArenaPlan(const ModelConfig& c, int batch, int seq,
            const std::function<std::size_t(const AttentionShape&)>& scratch,
            backend::Operands product_operands) {
    operands = product_operands;
    n = static_cast<std::size_t>(batch) * static_cast<std::size_t>(seq);
    const std::size_t d = c.d_model, L = c.n_layer, ff = c.ff(), V = c.vocab_size;
    const std::size_t fc_width =
        ff * std::size_t(model::FamilyTraits::of(c.family).fc_width_factor);
    auto take = [&](std::size_t floats) {
      const std::size_t at = total;
      total += (floats + 15) / 16 * 16;
      return at;
    };
    resid_stride = n * d;
    qkv_stride = n * static_cast<std::size_t>(c.qkv_dim());
    lse_stride = static_cast<std::size_t>(batch) * c.n_head * seq;
    fc_stride = n * fc_width;
    act_stride = operand_floats(n * ff);
    norm_stride = operand_floats(n * d);
    stats_stride = 4 * n;  // mean and rstd of both norms
    resid = take((L + 1) * resid_stride);
    resid_mid = take(L * resid_stride);
    norm1 = take(L * norm_stride);
    norm2 = take(L * norm_stride);
    stats = take(L * stats_stride);
    qkv = take(L * qkv_stride);
    att = take(L * resid_stride);
    lse = take(L * lse_stride);
    fc = take(L * fc_stride);
    act = take(L * act_stride);
    norm_f = take(norm_stride);
    norm_f_stats = take(2 * n);
    logits = take(n * V);
    losses = take(2 * n);  // per-row loss, then per-row log-sum-exp
    d_resid = take(n * d);
    d_x = take(n * d);
    d_qkv = take(qkv_stride);
    d_fc = take(fc_stride);
    d_act = take(n * ff);
    att_scratch = take(scratch(attention_shape(c, batch, seq)));
  }
};

// Counter-based normal numbers (splitmix64 + Box-Muller): the same weights for a
// seed on every platform and thread count.
struct NormalStream {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53; }
  double normal() {
    const double u1 = uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
};

// An upper estimate of ArenaPlan's total, in floats, computed in double: a shape so
// large that the exact size_t sums could overflow is refused on this figure instead.
double activation_floats_bound(const ModelConfig& c, int batch, int seq) {
  const double n = double(batch) * double(seq), d = c.d_model, L = c.n_layer, ff = c.ff();
  const double widths = 6 * d + double(c.qkv_dim()) + 3 * ff + 8;
  return n * ((L + 1) * widths + double(c.vocab_size) + 2 * double(c.qkv_dim()) + 6 * ff + 8) +
         L * double(batch) * c.n_head * seq + 512.0 * (320.0 + 8.0 * d) * (seq + 48.0) +
         16.0 * 40 * (L + 2);
}

// Activations beyond this are refused without computing the exact plan (4 EiB).
constexpr double kMaxPlanBytes = 4.0 * 1024 * 1024 * 1024 * 1024 * 1024 * 1024;

// "--batch 16, --seq 256", the options that set the shape.
std::string shape_text(int batch, int seq) {
  return "--batch " + std::to_string(batch) + ", --seq " + std::to_string(seq);
}

}  // namespace

std::size_t activation_floats(const ModelConfig& config, int batch, int seq, Precision precision) {
  return ArenaPlan(config, batch, seq, backend::attention_scratch_size,
                   precision == Precision::bf16 ? backend::Operands::bf16 : backend::Operands::fp32)
      .total;
}

struct Transformer::Impl {
  Backend& be;
  ParamLayout layout;
  std::unique_ptr<model::OutputProjection> proj;
  model::Stack stack;  // the layers, resolved from the layout
  DeviceArray<float> params, grads;
  DeviceArray<float> arena;
  whtlm::backend::RopeTables rope;   // llama only
  DeviceArray<std::int32_t> tokens;  // inputs then targets of the last forward
  // Host copies on a GPU (unused on the CPU, where the device buffers are host memory).
  FloatBuffer host_params;
  mutable FloatBuffer host_view;  // grads() and logits()
  std::vector<float> losses;
  ArenaPlan plan;
  int batch = 0, seq = 0;  // the last forward's shape
  int cap_batch = 0, cap_seq = 0;
  bool logits_valid = false, can_backward = false;

  std::size_t scratch_floats(const AttentionShape& s) const {
    return be.attention_scratch_floats(s);
  }
  ArenaPlan make_plan(int b, int t) const {
    return ArenaPlan(
        layout.config(), b, t, [this](const AttentionShape& s) { return scratch_floats(s); },
        be.operand_type());
  }
  bool on_host() const { return be.device() == Device::cpu; }

  // The weights are planned before they are allocated.
  static const ParamLayout& checked(const ParamLayout& layout, const Backend& be) {
    model::require_memory(be, "the model (" + describe(layout.config()) + ")",
                          {{"weights", 4.0 * double(layout.total_floats())}});
    return layout;
  }

  Impl(const ModelConfig& c, Device device, Precision precision)
      : be(whtlm::backend::get(device, precision)),
        layout(c),
        proj(model::make_output_projection(c)),
        stack(layout, *proj),
        params(be, checked(layout, be).total_floats()),
        plan(make_plan(0, 0)) {
    if (!on_host()) host_params = FloatBuffer(layout.total_floats());
    if (stack.traits.rope)
      rope = whtlm::backend::make_rope_tables(be, static_cast<std::size_t>(c.max_seq),
                                              static_cast<std::size_t>(c.head_dim()), c.rope_theta);
  }
  float* host_params_data() { return on_host() ? params.data() : host_params.data(); }
  // Reads n floats of device memory into host memory the caller may keep reading
  // until the next call (on the CPU, the memory itself).
  std::span<const float> view(const float* src, std::size_t n) const {
    if (on_host()) return {src, n};
    if (host_view.size() < n) host_view = FloatBuffer(n);
    be.download(host_view.data(), src, n * sizeof(float));
    return {host_view.data(), n};
  }
  void ensure_grads() {
    if (grads.size() == 0) grads = DeviceArray<float>(be, layout.total_floats());
  }
};

Transformer::Transformer(const ModelConfig& config, Device device, Precision precision)
    : impl_(std::make_unique<Impl>(config, device, precision)) {}
Transformer::~Transformer() = default;

const ModelConfig& Transformer::config() const { return impl_->layout.config(); }
const ParamLayout& Transformer::layout() const { return impl_->layout; }
Device Transformer::device() const { return impl_->be.device(); }
backend::Backend& Transformer::backend() const { return impl_->be; }
std::span<float> Transformer::params() {
  // The caller may write the weights through this view: copies of them the backend
  // keeps (the CPU's bf16 weights) are made again on their next use.
  impl_->be.parameters_changed();
  return {impl_->host_params_data(), impl_->layout.total_floats()};
}
std::span<const float> Transformer::params() const {
  return {const_cast<Impl&>(*impl_).host_params_data(), impl_->layout.total_floats()};
}
void Transformer::download_params() {
  Impl& m = *impl_;
  if (!m.on_host())
    m.be.download(m.host_params.data(), m.params.data(), m.params.size() * sizeof(float));
}
void Transformer::upload_params() {
  Impl& m = *impl_;
  m.be.parameters_changed();
  if (!m.on_host())
    m.be.upload(m.params.data(), m.host_params.data(), m.params.size() * sizeof(float));
}
float* Transformer::device_params() { return impl_->params.data(); }
// The gradient buffer is allocated on first use, so a model that only runs
// inference holds its weights once.
float* Transformer::device_grads() {
  impl_->ensure_grads();
  return impl_->grads.data();
}
std::span<const float> Transformer::grads() {
  return impl_->view(device_grads(), impl_->layout.total_floats());
}
void Transformer::zero_grads() {
  impl_->be.zero(device_grads(), impl_->grads.size() * sizeof(float));
}
double Transformer::grad_norm() {
  return std::sqrt(impl_->be.sum_squares(device_grads(), impl_->grads.size()));
}
void Transformer::scale_grads(float s) { impl_->be.scale(device_grads(), s, impl_->grads.size()); }
std::size_t Transformer::activation_bytes() const { return impl_->arena.size() * sizeof(float); }

std::vector<model::MemoryPart> Transformer::activation_memory(int batch, int seq) const {
  const double bound = activation_floats_bound(config(), batch, seq);
  const double bytes =
      4.0 * bound > kMaxPlanBytes ? 4.0 * bound : 4.0 * double(impl_->make_plan(batch, seq).total);
  return {{"activations", bytes}, {"token ids", 8.0 * double(batch) * double(seq)}};
}

std::string Transformer::fitting_batch_hint(int seq, double other_bytes) const {
  const double room = double(impl_->be.memory_available()) - other_bytes;
  const double per_batch = model::total_bytes(activation_memory(1, seq));
  const double fit = room > 0 ? std::floor(room / per_batch) : 0;
  if (fit >= 1)
    return "at seq " + std::to_string(seq) + ", batch " +
           std::to_string(static_cast<long long>(std::min(fit, 65536.0))) + " would fit";
  return "not even batch 1 fits at seq " + std::to_string(seq) +
         "; a smaller model or a shorter "
         "seq would";
}

void Transformer::check_training_memory(int batch, int seq, int optimizer_floats_per_param) {
  Impl& m = *impl_;
  const double n = double(m.layout.total_floats());
  std::vector<model::MemoryPart> parts;
  if (m.grads.size() == 0) parts.push_back({"gradients", 4.0 * n});
  parts.push_back({"optimizer state", 4.0 * n * optimizer_floats_per_param});
  const double fixed = model::total_bytes(parts);
  for (const model::MemoryPart& p : activation_memory(batch, seq)) parts.push_back(p);
  model::require_memory(
      m.be,
      "training " + describe(config()) + " at " + shape_text(batch, seq) + ", beyond its weights,",
      parts, fitting_batch_hint(seq, fixed));
}

void Transformer::init_weights(std::uint64_t seed, ScaleInit scale) {
  const ModelConfig& c = config();
  const double std_dev = 0.02;
  const double resid_std = 0.02 / std::sqrt(2.0 * c.n_layer);
  float* p = impl_->host_params_data();
  std::memset(p, 0, impl_->params.size() * sizeof(float));
  std::uint64_t tensor_index = 0;
  for (const TensorSpec& t : layout().tensors()) {
    // Each tensor has its own stream, so adding a tensor does not shift the others.
    NormalStream rng{seed * 0x100000001B3ull + (++tensor_index) * 0x9E3779B97F4A7C15ull};
    float* w = p + t.offset;
    switch (t.init) {
      case TensorInit::normal:
      case TensorInit::residual_normal: {
        const double s = t.init == TensorInit::normal ? std_dev : resid_std;
        for (std::size_t i = 0; i < t.numel; ++i) w[i] = static_cast<float>(s * rng.normal());
        break;
      }
      case TensorInit::ones:
        for (std::size_t i = 0; i < t.numel; ++i) w[i] = 1.0f;
        break;
      case TensorInit::wht_scale:
        std::fill_n(w, t.numel, static_cast<float>(initial_wht_scale(c, scale)));
        break;
      case TensorInit::zeros:
        break;
    }
  }
  upload_params();
}

void Transformer::reserve(int batch, int seq) {
  Impl& m = *impl_;
  if (batch < 1)
    throw std::invalid_argument("batch must be at least 1, got " + std::to_string(batch));
  if (seq < 1 || seq > config().max_seq)
    throw std::invalid_argument("sequence length " + std::to_string(seq) +
                                " outside 1..max_seq = " + std::to_string(config().max_seq));
  if (batch == m.cap_batch && seq == m.cap_seq) return;
  // The plan follows the shape; the buffer only grows, so a smaller batch (the last
  // evaluation batch) does not reallocate. A plan that cannot fit is refused first.
  const std::vector<model::MemoryPart> need = activation_memory(batch, seq);
  if (need[0].bytes > 4.0 * double(m.arena.size()))
    model::require_memory(m.be, "activations at " + shape_text(batch, seq), need,
                          fitting_batch_hint(seq, 0));
  m.plan = m.make_plan(batch, seq);
  if (m.plan.total > m.arena.size()) {
    m.arena.reset();  // the old arena goes first, so peak memory holds one
    m.arena = DeviceArray<float>(m.be, m.plan.total);
  }
  if (m.tokens.size() < 2 * m.plan.n) m.tokens = DeviceArray<std::int32_t>(m.be, 2 * m.plan.n);
  m.cap_batch = batch;
  m.cap_seq = seq;
  m.logits_valid = m.can_backward = false;
}

std::span<const float> Transformer::logits() const {
  const Impl& m = *impl_;
  if (!m.logits_valid) throw std::logic_error("logits: no forward pass since the last backward");
  const std::size_t n = static_cast<std::size_t>(m.batch) * m.seq;
  return m.view(m.arena.data() + m.plan.logits, n * static_cast<std::size_t>(config().vocab_size));
}

double Transformer::forward(const std::int32_t* tokens, const std::int32_t* targets, int batch,
                            int seq) {
  Impl& m = *impl_;
  const ModelConfig& c = config();
  reserve(batch, seq);
  const ArenaPlan& a = m.plan;
  const model::Stack& net = m.stack;
  const std::size_t n = a.n, V = c.vocab_size;
  for (std::size_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || static_cast<std::size_t>(tokens[i]) >= V)
      throw std::out_of_range("token " + std::to_string(tokens[i]) + " at position " +
                              std::to_string(i) + " is outside the vocabulary 0.." +
                              std::to_string(V - 1));
    if (targets != nullptr && (targets[i] < 0 || static_cast<std::size_t>(targets[i]) >= V))
      throw std::out_of_range("target " + std::to_string(targets[i]) + " at position " +
                              std::to_string(i) + " is outside the vocabulary 0.." +
                              std::to_string(V - 1));
  }
  m.batch = batch;
  m.seq = seq;
  Backend& be = m.be;
  be.upload(m.tokens.data(), tokens, n * sizeof(std::int32_t));
  if (targets != nullptr) be.upload(m.tokens.data() + n, targets, n * sizeof(std::int32_t));
  tokens = m.tokens.data();
  targets = targets != nullptr ? m.tokens.data() + n : nullptr;
  float* act = m.arena.data();
  const float* P = m.params.data();
  const AttentionShape shape = attention_shape(c, batch, seq);
  // Training attends within each sequence and keeps the log-sum-exp for the backward.
  auto attend = [&](const model::BlockActivations& b) {
    if (net.traits.rope)
      be.rope_forward(b.qkv, m.rope.cos.data(), m.rope.sin.data(), n, shape.seq, shape.heads());
    be.attention_forward(b.att, b.lse, b.qkv, shape, act + a.att_scratch);
  };

  // x = wte[tokens] (+ wpe[positions])
  be.embedding_forward(act + a.resid, tokens, P + net.wte, net.wpe(P), n,
                       static_cast<std::size_t>(seq), static_cast<std::size_t>(c.d_model));
  for (std::size_t l = 0; l < net.blocks.size(); ++l)
    net.blocks[l].forward(be, P, a.block(act, l), n, attend);
  const float* xf = a.residual(act, net.blocks.size());  // the last block's output
  float* stf = act + a.norm_f_stats;
  net.norm_f.forward(be, a.operand(act + a.norm_f), {stf, stf + n}, xf, P, n);
  float* logits = act + a.logits;
  net.head.forward(be, logits, a.operand(act + a.norm_f), P, n);
  m.logits_valid = true;
  m.can_backward = targets != nullptr;
  if (targets == nullptr) return 0.0;
  float* losses = act + a.losses;
  be.cross_entropy_forward(losses, losses + n, logits, targets, n, V);
  m.losses.resize(n);
  be.download(m.losses.data(), losses, n * sizeof(float));
  double sum = 0;
  for (float l : m.losses) sum += l;
  return sum / static_cast<double>(n);
}

void Transformer::backward(float loss_scale) {
  Impl& m = *impl_;
  if (!m.can_backward) throw std::logic_error("backward: needs a forward pass with targets first");
  const ModelConfig& c = config();
  const ArenaPlan& a = m.plan;
  const model::Stack& net = m.stack;
  const std::size_t n = a.n, V = c.vocab_size;
  const std::size_t seq = static_cast<std::size_t>(m.seq);
  Backend& be = m.be;
  float* act = m.arena.data();
  const float* P = m.params.data();
  float* G = device_grads();
  const std::int32_t* targets = m.tokens.data() + n;
  const AttentionShape shape = attention_shape(c, m.batch, m.seq);
  const model::BlockGradients g = a.gradients(act);
  auto attend_backward = [&](float* dqkv, const float* datt, const model::BlockActivations& b) {
    be.attention_backward(dqkv, datt, b.qkv, b.att, b.lse, shape, act + a.att_scratch);
    if (net.traits.rope)
      be.rope_backward(dqkv, m.rope.cos.data(), m.rope.sin.data(), n, seq, shape.heads());
  };

  // logits -> d logits in place; then the head and the final norm.
  float* logits = act + a.logits;
  be.cross_entropy_backward(logits, act + a.losses + n, targets, n, V,
                            loss_scale / static_cast<float>(n));
  m.logits_valid = m.can_backward = false;
  float* stf = act + a.norm_f_stats;
  net.head.backward(be, g.dx, G, logits, a.operand(act + a.norm_f), P, n);
  be.zero(g.dres, n * static_cast<std::size_t>(c.d_model) * sizeof(float));
  const float* xf = a.residual(act, net.blocks.size());
  net.norm_f.backward(be, g.dres, G, g.dx, xf, {stf, stf + n}, P, n);
  for (std::size_t l = net.blocks.size(); l-- > 0;)
    net.blocks[l].backward(be, P, G, a.block(act, l), g, n, attend_backward);
  be.embedding_backward(G + net.wte, net.wpe(G), g.dres, m.tokens.data(), n, seq,
                        static_cast<std::size_t>(c.d_model));
}

}  // namespace whtlm
