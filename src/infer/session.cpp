// The inference pass: the same blocks as the training forward (src/model), run over
// packed rows of several sequences at their own positions, with keys and values
// kept in a cache instead of recomputed. Nothing is kept for a backward pass.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "backend/backend.hpp"
#include "model/block.hpp"
#include "model/memory.hpp"
#include "model/projection.hpp"
#include "whtlm/infer.hpp"
#include "whtlm/transformer.hpp"

namespace whtlm {

using backend::CachedSegment;
using backend::CacheShape;
using backend::DeviceArray;

struct InferenceSession::Impl {
  backend::Backend& be;
  ModelConfig c;
  ParamLayout layout;
  const float* P;  // on be's device
  std::unique_ptr<model::OutputProjection> proj;
  std::unique_ptr<model::Stack> net;  // the layers, resolved from the layout
  int max_batch, max_len;
  std::size_t chunk;  // rows per pass
  std::size_t d, ff, V, qkvd, hd, fc_width;
  CacheShape cache_shape;
  std::size_t cache_layer;  // floats per layer of the K (or V) cache
  DeviceArray<float> k_cache, v_cache;
  // Activations for one chunk of rows (on the device).
  DeviceArray<float> x, h, qkv, att, fc, act, stats, att_scratch, head_logits;
  backend::RopeTables rope;              // llama only
  DeviceArray<std::int32_t> device_ids;  // tokens then positions of the rows in flight
  FloatBuffer logits;                    // [max_batch, V], host
  std::vector<int> lengths;
  std::vector<std::int32_t> tokens, positions;
  // The matrix weights in the session's format (none for f32: the parameters are read).
  WeightFormat format;
  model::PackedWeights packed;
  std::vector<DeviceArray<std::uint8_t>> packed_storage;
  std::size_t packed_bytes = 0;

  Impl(backend::Backend& backend, const ModelConfig& config, const float* params, int batch,
       int len, int chunk_rows, WeightFormat weights)
      : be(backend),
        c(config),
        layout(config),
        P(params),
        max_batch(batch),
        max_len(len),
        format(weights) {
    if (batch < 1) throw std::invalid_argument("inference batch must be at least 1");
    if (len < 1 || len > c.max_seq)
      throw std::invalid_argument("inference length " + std::to_string(len) +
                                  " outside 1..context = " + std::to_string(c.max_seq));
    if (chunk_rows < 1) throw std::invalid_argument("chunk rows must be at least 1");
    proj = model::make_output_projection(c);
    net = std::make_unique<model::Stack>(layout, *proj);
    d = c.d_model;
    ff = c.ff();
    V = c.vocab_size;
    qkvd = c.qkv_dim();
    hd = c.head_dim();
    fc_width = ff * static_cast<std::size_t>(net->traits.fc_width_factor);
    chunk = std::max<std::size_t>(
        std::size_t(batch),
        std::min<std::size_t>(std::size_t(chunk_rows), std::size_t(batch) * len));
    cache_shape = {std::size_t(c.n_head), std::size_t(c.n_kv_head), hd, std::size_t(len)};
    // Planned before anything is allocated, in double (no overflow at absurd shapes).
    const double kv = 2.0 * 4 * c.n_layer * double(batch) * c.n_kv_head * double(len) * double(hd);
    const double activations =
        4.0 * double(chunk) * (3.0 * double(d) + double(qkvd) + double(fc_width) + double(ff) + 4) +
        4.0 * double(batch) * double(V) * 2;
    const std::vector<model::MatrixRef> matrices = matrix_weights();
    double packing = 0;
    for (const model::MatrixRef& m : matrices)
      packing += double(backend::packed_weight_bytes(format, m.out, m.in));
    const double per_sequence = kv / batch + 8.0 * double(V);
    const double room = double(be.memory_available()) - activations;
    const double fit = room > 0 ? std::floor(room / per_sequence) : 0;
    model::require_memory(
        be, "inference at batch " + std::to_string(batch) + " x " + std::to_string(len) + " tokens",
        {{"KV cache", kv},
         {"activations and logits", activations},
         {std::string(weight_format_name(format)) + " weights", packing}},
        fit >= 1 ? "at this length, batch " +
                       std::to_string(static_cast<long long>(std::min(fit, 65536.0))) + " would fit"
                 : "a shorter context (--max-new-tokens, prompt) would fit");
    cache_layer = std::size_t(batch) * c.n_kv_head * std::size_t(len) * hd;
    k_cache = DeviceArray<float>(be, cache_layer * c.n_layer);
    v_cache = DeviceArray<float>(be, cache_layer * c.n_layer);
    x = DeviceArray<float>(be, chunk * d);
    h = DeviceArray<float>(be, chunk * d);
    qkv = DeviceArray<float>(be, chunk * qkvd);
    att = DeviceArray<float>(be, chunk * d);
    fc = DeviceArray<float>(be, chunk * fc_width);
    act = DeviceArray<float>(be, chunk * ff);
    stats = DeviceArray<float>(be, 2 * chunk);
    att_scratch = DeviceArray<float>(be, be.attention_cached_scratch_floats(cache_shape));
    device_ids = DeviceArray<std::int32_t>(be, 2 * chunk);
    logits = FloatBuffer(std::size_t(batch) * V);
    if (net->traits.rope)
      rope = whtlm::backend::make_rope_tables(be, std::size_t(len), hd, c.rope_theta);
    lengths.assign(std::size_t(batch), 0);
    pack(matrices);
  }

  // The matrices to pack: every block's, and the head's (a tied head shares the token
  // table, which the embedding still reads in fp32 from the parameters). None for f32.
  std::vector<model::MatrixRef> matrix_weights() const {
    std::vector<model::MatrixRef> all;
    if (format == WeightFormat::f32) return all;
    for (const model::Block& b : net->blocks)
      for (const model::MatrixRef& m : b.matrices()) all.push_back(m);
    all.push_back(net->head.matrix());
    return all;
  }
  void pack(const std::vector<model::MatrixRef>& matrices) {
    if (matrices.empty()) return;
    if (be.device() != Device::cpu)
      throw std::invalid_argument(std::string("--weights ") + weight_format_name(format) +
                                  " runs on the CPU only (--device cpu)");
    for (const model::MatrixRef& m : matrices) {
      const std::size_t bytes = backend::packed_weight_bytes(format, m.out, m.in);
      packed_storage.emplace_back(be, bytes);
      backend::pack_weight(packed_storage.back().data(), format, P + m.offset, m.out, m.in,
                           m.layout);
      packed[m.offset] = {format, packed_storage.back().data(), m.out, m.in};
      packed_bytes += bytes;
    }
  }
  const model::PackedWeights* packed_weights() const { return packed.empty() ? nullptr : &packed; }

  // Runs n rows (tokens/positions filled, segments describing them) through the
  // blocks; x holds the final residual stream afterwards.
  void blocks(std::size_t n, const std::vector<CachedSegment>& segs) {
    const std::int32_t* dev_tokens = device_ids.data();
    const std::int32_t* dev_positions = device_ids.data() + chunk;
    be.upload(device_ids.data(), tokens.data(), n * sizeof(std::int32_t));
    be.upload(device_ids.data() + chunk, positions.data(), n * sizeof(std::int32_t));
    be.embedding_forward_at(x.data(), dev_tokens, P + net->wte, net->wpe(P), n, dev_positions, d);
    // One chunk's buffers serve every block; the residual stream is updated in place.
    model::BlockActivations a;
    a.x = a.mid = a.y = x.data();
    a.h1 = a.h2 = h.data();
    a.norm1 = a.norm2 = {stats.data(), stats.data() + n};
    a.qkv = qkv.data();
    a.att = att.data();
    a.fc = fc.data();
    a.hid = act.data();
    for (std::size_t l = 0; l < net->blocks.size(); ++l) {
      float* kc = k_cache.data() + l * cache_layer;
      float* vc = v_cache.data() + l * cache_layer;
      // Inference attends against the cache, after storing these rows' keys and values
      // in it at their positions.
      auto attend = [&](const model::BlockActivations& b) {
        if (net->traits.rope)
          be.rope_forward_at(b.qkv, rope.cos.data(), rope.sin.data(), n, dev_positions,
                             cache_shape.heads());
        be.kv_cache_store(kc, vc, b.qkv, qkvd, segs.data(), segs.size(), cache_shape);
        be.attention_cached(b.att, b.qkv, qkvd, kc, vc, segs.data(), segs.size(), cache_shape,
                            att_scratch.data());
      };
      net->blocks[l].forward(be, P, a, n, attend, packed_weights());
    }
  }

  // Final norm and head for the chosen rows of x, logits to host dst ([rows.size(), V]),
  // in groups of at most chunk rows.
  void head(const std::vector<std::size_t>& rows, float* dst) {
    for (std::size_t first = 0; first < rows.size(); first += chunk) {
      const std::size_t n = std::min(chunk, rows.size() - first);
      for (std::size_t i = 0; i < n; ++i)
        be.copy(att.data() + i * d, x.data() + rows[first + i] * d, d * sizeof(float));
      net->norm_f.forward(be, h.data(), {stats.data(), stats.data() + n}, att.data(), P, n);
      if (head_logits.size() < n * V) head_logits = DeviceArray<float>(be, n * V);
      net->head.forward(be, head_logits.data(), h.data(), P, n, backend::Write::overwrite,
                        packed_weights());
      be.download(dst + first * V, head_logits.data(), n * V * sizeof(float));
    }
  }

  void check_token(std::int32_t t, const std::string& where) const {
    if (t < 0 || std::size_t(t) >= V)
      throw std::out_of_range(where + ": token " + std::to_string(t) +
                              " outside the vocabulary 0.." + std::to_string(V - 1));
  }
};

InferenceSession::InferenceSession(const ModelConfig& config, const float* params, int max_batch,
                                   int max_len, int chunk_rows, WeightFormat weights)
    : impl_(std::make_unique<Impl>(backend::cpu_backend(), config, params, max_batch, max_len,
                                   chunk_rows, weights)) {}
InferenceSession::InferenceSession(Transformer& model, int max_batch, int max_len, int chunk_rows,
                                   WeightFormat weights)
    : impl_(std::make_unique<Impl>(model.backend(), model.config(), model.device_params(),
                                   max_batch, max_len, chunk_rows, weights)) {}
InferenceSession::~InferenceSession() = default;

std::size_t InferenceSession::kv_cache_bytes(const ModelConfig& c, int max_batch, int max_len) {
  return 2 * sizeof(float) * std::size_t(c.n_layer) * std::size_t(max_batch) *
         std::size_t(c.n_kv_head) * std::size_t(max_len) * std::size_t(c.head_dim());
}
std::size_t InferenceSession::kv_cache_bytes() const {
  return kv_cache_bytes(impl_->c, impl_->max_batch, impl_->max_len);
}
std::size_t InferenceSession::activation_bytes() const {
  const Impl& m = *impl_;
  return sizeof(float) *
             (m.x.size() + m.h.size() + m.qkv.size() + m.att.size() + m.fc.size() + m.act.size() +
              m.stats.size() + m.att_scratch.size() + m.logits.size() + m.head_logits.size()) +
         sizeof(std::int32_t) * m.device_ids.size();
}
std::size_t InferenceSession::packed_weight_bytes() const { return impl_->packed_bytes; }
WeightFormat InferenceSession::weight_format() const { return impl_->format; }
int InferenceSession::max_batch() const { return impl_->max_batch; }
int InferenceSession::max_len() const { return impl_->max_len; }
int InferenceSession::length(int slot) const { return impl_->lengths.at(std::size_t(slot)); }

std::span<const float> InferenceSession::prefill(
    const std::vector<std::vector<std::int32_t>>& prompts, std::vector<float>* all_logits) {
  Impl& m = *impl_;
  if (prompts.empty() || prompts.size() > std::size_t(m.max_batch))
    throw std::invalid_argument("prefill: " + std::to_string(prompts.size()) +
                                " prompts for a session of batch " + std::to_string(m.max_batch));
  std::size_t total = 0;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty())
      throw std::invalid_argument("prompt " + std::to_string(i) + " is empty");
    if (prompts[i].size() > std::size_t(m.max_len))
      throw std::invalid_argument(
          "prompt " + std::to_string(i) + " has " + std::to_string(prompts[i].size()) +
          " tokens, more than the session's length " + std::to_string(m.max_len));
    for (std::int32_t t : prompts[i]) m.check_token(t, "prompt " + std::to_string(i));
    total += prompts[i].size();
  }
  std::fill(m.lengths.begin(), m.lengths.end(), 0);
  if (all_logits != nullptr) all_logits->assign(total * m.V, 0.0f);
  // Walk the prompts in chunks of at most m.chunk rows.
  std::size_t seq = 0, pos = 0, done = 0;
  while (seq < prompts.size()) {
    std::vector<CachedSegment> segs;
    std::vector<std::size_t> last_rows, last_seqs;
    m.tokens.clear();
    m.positions.clear();
    std::size_t rows = 0;
    while (seq < prompts.size() && rows < m.chunk) {
      const std::size_t take = std::min(prompts[seq].size() - pos, m.chunk - rows);
      segs.push_back({seq, rows, take, pos});
      for (std::size_t r = 0; r < take; ++r) {
        m.tokens.push_back(prompts[seq][pos + r]);
        m.positions.push_back(static_cast<std::int32_t>(pos + r));
      }
      rows += take;
      pos += take;
      if (pos == prompts[seq].size()) {
        last_rows.push_back(rows - 1);
        last_seqs.push_back(seq);
        m.lengths[seq] = static_cast<int>(pos);
        ++seq;
        pos = 0;
      }
    }
    m.blocks(rows, segs);
    std::vector<float> tmp(last_rows.size() * m.V);
    m.head(last_rows, tmp.data());
    for (std::size_t i = 0; i < last_seqs.size(); ++i)
      std::memcpy(m.logits.data() + last_seqs[i] * m.V, tmp.data() + i * m.V, m.V * sizeof(float));
    if (all_logits != nullptr) {
      std::vector<std::size_t> every(rows);
      for (std::size_t r = 0; r < rows; ++r) every[r] = r;
      m.head(every, all_logits->data() + done * m.V);
    }
    done += rows;
  }
  return {m.logits.data(), prompts.size() * m.V};
}

std::span<const float> InferenceSession::decode(std::span<const int> slots,
                                                std::span<const std::int32_t> tokens) {
  Impl& m = *impl_;
  if (slots.size() != tokens.size() || slots.empty() || slots.size() > std::size_t(m.max_batch))
    throw std::invalid_argument("decode: needs one token per slot, 1.." +
                                std::to_string(m.max_batch) + " slots");
  std::vector<CachedSegment> segs;
  m.tokens.assign(tokens.begin(), tokens.end());
  m.positions.clear();
  std::vector<bool> seen(std::size_t(m.max_batch), false);
  for (std::size_t i = 0; i < slots.size(); ++i) {
    const int s = slots[i];
    if (s < 0 || s >= m.max_batch || seen[std::size_t(s)])
      throw std::invalid_argument("decode: slot " + std::to_string(s) + " invalid or repeated");
    seen[std::size_t(s)] = true;
    const int len = m.lengths[std::size_t(s)];
    if (len == 0) throw std::logic_error("decode: slot " + std::to_string(s) + " has no prompt");
    if (len >= m.max_len)
      throw std::invalid_argument("decode: slot " + std::to_string(s) + " is full (" +
                                  std::to_string(m.max_len) + " tokens)");
    m.check_token(tokens[i], "decode");
    segs.push_back({std::size_t(s), i, 1, std::size_t(len)});
    m.positions.push_back(len);
  }
  m.blocks(slots.size(), segs);
  std::vector<std::size_t> rows(slots.size());
  for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = i;
  m.head(rows, m.logits.data());
  for (int s : slots) ++m.lengths[std::size_t(s)];
  return {m.logits.data(), slots.size() * m.V};
}

void InferenceSession::truncate(int slot, int length) {
  Impl& m = *impl_;
  if (slot < 0 || slot >= m.max_batch)
    throw std::invalid_argument("truncate: slot " + std::to_string(slot) + " outside 0.." +
                                std::to_string(m.max_batch - 1));
  const int have = m.lengths[std::size_t(slot)];
  if (length < 1 || length > have)
    throw std::invalid_argument("truncate: length " + std::to_string(length) + " outside 1.." +
                                std::to_string(have) + " (slot " + std::to_string(slot) + ")");
  // Positions from `length` on are overwritten by the next decode; attention reads only
  // the positions before each row's own.
  m.lengths[std::size_t(slot)] = length;
}

}  // namespace whtlm
