// Inference: a KV cache, prefill of a batch of prompts, decoding one token per
// sequence per step, sampling, and generation built from them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "whtlm/device_type.hpp"
#include "whtlm/model.hpp"
#include "whtlm/transformer.hpp"

namespace whtlm {

// Runs a model's weights (borrowed, laid out by ParamLayout(config)) over up to
// max_batch sequences of up to max_len tokens each. Memory is planned on
// construction: the KV cache (only the kv heads: grouped-query attention stores
// n_kv_head heads) and activations for chunks of at most chunk_rows tokens; long
// prefills run chunk by chunk against the cache.
// Rows per pass of a session unless told otherwise.
inline constexpr int kDefaultChunkRows = 2048;

class InferenceSession {
 public:
  // params: host memory laid out by ParamLayout (the CPU backend runs it). weights: the
  // format the matrix products read (bf16, q8_0: packed copies the session holds, made
  // on construction; CPU only); norms, embeddings and the wht scale stay fp32.
  InferenceSession(const ModelConfig& config, const float* params, int max_batch, int max_len,
                   int chunk_rows = kDefaultChunkRows, WeightFormat weights = WeightFormat::f32);
  // Runs on the model's device with its weights (the model must outlive the session).
  InferenceSession(Transformer& model, int max_batch, int max_len,
                   int chunk_rows = kDefaultChunkRows, WeightFormat weights = WeightFormat::f32);
  ~InferenceSession();
  InferenceSession(const InferenceSession&) = delete;
  InferenceSession& operator=(const InferenceSession&) = delete;

  // Analytic sizes of what the session allocated.
  static std::size_t kv_cache_bytes(const ModelConfig& config, int max_batch, int max_len);
  std::size_t kv_cache_bytes() const;
  std::size_t activation_bytes() const;
  // Bytes of the packed matrix weights (0 for f32, which reads the parameters).
  std::size_t packed_weight_bytes() const;
  WeightFormat weight_format() const;
  int max_batch() const;
  int max_len() const;
  int length(int slot) const;  // tokens in slot's cache

  // Starts every slot over: slot i gets prompts[i] (i < max_batch; 1 <= length <=
  // max_len), all prompts in one packed pass. Returns the logits after each prompt's
  // last token, [prompts.size(), vocab]. With all_logits, also the logits after every
  // prompt position, prompts concatenated ([sum of lengths, vocab]); for tests.
  std::span<const float> prefill(const std::vector<std::vector<std::int32_t>>& prompts,
                                 std::vector<float>* all_logits = nullptr);
  // Appends tokens[i] to slot slots[i] (each slot at most once) and returns the
  // logits after it, [slots.size(), vocab], in the order given.
  std::span<const float> decode(std::span<const int> slots, std::span<const std::int32_t> tokens);
  // Forgets every token of `slot` after its first `length` (1 <= length <= length(slot)):
  // decoding continues from there, so several continuations of one prefilled prompt
  // are scored one after another without prefilling it again.
  void truncate(int slot, int length);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct SamplingOptions {
  float temperature = 1.0f;         // 0: greedy (argmax)
  int top_k = 0;                    // 0: off
  float top_p = 1.0f;               // 1: off
  float repetition_penalty = 1.0f;  // 1: off; > 1 discourages tokens already present
  std::uint64_t seed = 1;
};

// Picks the next token from logits (modified in place). `history` is the sequence
// so far (for the repetition penalty); `draw` counts the sampler's uses for this
// sequence, so a given (seed, sequence, draw) always gives the same choice.
std::int32_t sample_token(std::span<float> logits, std::span<const std::int32_t> history,
                          const SamplingOptions& options, std::uint64_t sequence,
                          std::uint64_t draw);

struct GenerateOptions {
  int max_new_tokens = 128;
  WeightFormat weights = WeightFormat::f32;  // what the session's products read
  SamplingOptions sampling;
  int eos_token = -1;  // stop a sequence when it produces this token; -1: none
  // The sampler's sequence number of the first prompt (prompt i draws as sequence
  // first_sequence + i), so prompts generated in several groups sample as in one.
  std::uint64_t first_sequence = 0;
};
struct Generation {
  std::vector<std::int32_t> tokens;  // generated, without the prompt
  bool stopped_at_eos = false;
  bool hit_context = false;  // stopped because the context was full
};
struct GenerateStats {
  double prefill_seconds = 0, decode_seconds = 0;
  std::size_t prefill_tokens = 0, decode_tokens = 0, decode_steps = 0;
};
// Generates for a batch of prompts together: one prefill, then one decode step for
// every unfinished sequence per step. on_token(sequence, token) is called as tokens
// are chosen. Throws std::invalid_argument for an empty prompt or one longer than
// the model's context, naming which.
std::vector<Generation> generate(const ModelConfig& config, const float* params,
                                 const std::vector<std::vector<std::int32_t>>& prompts,
                                 const GenerateOptions& options, GenerateStats* stats = nullptr,
                                 const std::function<void(int, std::int32_t)>& on_token = {});
// The same on the model's device (the forward passes there; sampling on the host from
// the logits each step returns).
std::vector<Generation> generate(Transformer& model,
                                 const std::vector<std::vector<std::int32_t>>& prompts,
                                 const GenerateOptions& options, GenerateStats* stats = nullptr,
                                 const std::function<void(int, std::int32_t)>& on_token = {});

}  // namespace whtlm
