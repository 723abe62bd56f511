// Sampling and batched generation on top of InferenceSession.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

#include "whtlm/infer.hpp"
#include "whtlm/limits.hpp"

namespace whtlm {
namespace {

std::uint64_t mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A uniform number in [0, 1) fixed by (seed, sequence, draw).
double uniform(std::uint64_t seed, std::uint64_t sequence, std::uint64_t draw) {
  std::uint64_t z = mix(seed + 0x9E3779B97F4A7C15ull);
  z = mix(z ^ (sequence + 0x632BE59BD9B4E019ull));
  z = mix(z ^ (draw + 0x85157AF5ull));
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

}  // namespace

std::int32_t sample_token(std::span<float> logits, std::span<const std::int32_t> history,
                          const SamplingOptions& o, std::uint64_t sequence, std::uint64_t draw) {
  const std::size_t V = logits.size();
  // A NaN temperature or logit would order the candidates arbitrarily (NaN compares
  // false), and sampling would quietly pick nonsense.
  check_bound(limits::temperature, o.temperature, "temperature");
  check_bound(limits::top_p, o.top_p, "top_p");
  check_bound(limits::repetition_penalty, o.repetition_penalty, "repetition_penalty");
  for (std::size_t i = 0; i < V; ++i)
    if (std::isnan(logits[i]))
      throw std::runtime_error("sequence " + std::to_string(sequence) + ", token " +
                               std::to_string(draw + 1) + ": the model produced a NaN logit (id " +
                               std::to_string(i) + "); its weights or activations overflowed");
  if (o.repetition_penalty != 1.0f) {
    // Hugging Face's rule: a logit of a token already present is divided by the
    // penalty when positive, multiplied when negative.
    std::vector<bool> present(V, false);
    for (std::int32_t t : history)
      if (t >= 0 && std::size_t(t) < V) present[std::size_t(t)] = true;
    for (std::size_t i = 0; i < V; ++i)
      if (present[i])
        logits[i] =
            logits[i] > 0 ? logits[i] / o.repetition_penalty : logits[i] * o.repetition_penalty;
  }
  if (o.temperature <= 0.0f)
    return static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) -
                                     logits.begin());
  // Candidates in decreasing order of logit (ties by id), cut by top-k.
  std::vector<std::int32_t> ids(V);
  std::iota(ids.begin(), ids.end(), 0);
  std::size_t keep = V;
  if (o.top_k > 0 && std::size_t(o.top_k) < V) keep = std::size_t(o.top_k);
  auto better = [&](std::int32_t a, std::int32_t b) {
    return logits[std::size_t(a)] > logits[std::size_t(b)] ||
           (logits[std::size_t(a)] == logits[std::size_t(b)] && a < b);
  };
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(keep), ids.end(),
                    better);
  ids.resize(keep);
  std::vector<double> p(keep);
  const double top = logits[std::size_t(ids[0])];
  double sum = 0;
  for (std::size_t i = 0; i < keep; ++i)
    sum += p[i] = std::exp((logits[std::size_t(ids[i])] - top) / double(o.temperature));
  // Top-p: the smallest prefix whose probability reaches top_p.
  if (o.top_p < 1.0f) {
    double acc = 0;
    std::size_t cut = keep;
    for (std::size_t i = 0; i < keep; ++i) {
      acc += p[i] / sum;
      if (acc >= double(o.top_p)) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
    sum = std::accumulate(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(keep), 0.0);
  }
  const double u = uniform(o.seed, sequence, draw) * sum;
  double acc = 0;
  for (std::size_t i = 0; i < keep; ++i) {
    acc += p[i];
    if (u < acc) return ids[i];
  }
  return ids[keep - 1];
}

namespace {

using SessionFactory = std::function<std::unique_ptr<InferenceSession>(int batch, int len)>;

std::vector<Generation> run_generation(const ModelConfig& config, const SessionFactory& make,
                                       const std::vector<std::vector<std::int32_t>>& prompts,
                                       const GenerateOptions& o, GenerateStats* stats,
                                       const std::function<void(int, std::int32_t)>& on_token) {
  if (prompts.empty()) throw std::invalid_argument("no prompts");
  check_bound(limits::max_new_tokens, o.max_new_tokens, "--max-new-tokens");
  check_bound(limits::top_p, o.sampling.top_p, "--top-p");
  check_bound(limits::top_k, o.sampling.top_k, "--top-k");
  check_bound(limits::temperature, o.sampling.temperature, "--temperature");
  check_bound(limits::repetition_penalty, o.sampling.repetition_penalty, "--repetition-penalty");
  if (o.eos_token < -1 || o.eos_token >= config.vocab_size)
    throw std::invalid_argument("--eos " + std::to_string(o.eos_token) +
                                " is outside the vocabulary of " +
                                std::to_string(config.vocab_size) + " tokens (-1: none)");
  std::size_t longest = 0;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty())
      throw std::invalid_argument("prompt " + std::to_string(i + 1) + " is empty");
    if (prompts[i].size() > std::size_t(config.max_seq))
      throw std::invalid_argument(
          "prompt " + std::to_string(i + 1) + " has " + std::to_string(prompts[i].size()) +
          " tokens, longer than the model's context of " + std::to_string(config.max_seq));
    longest = std::max(longest, prompts[i].size());
  }
  const int max_len = static_cast<int>(
      std::min<std::size_t>(std::size_t(config.max_seq), longest + std::size_t(o.max_new_tokens)));
  const std::unique_ptr<InferenceSession> owned = make(static_cast<int>(prompts.size()), max_len);
  InferenceSession& session = *owned;
  std::vector<Generation> out(prompts.size());
  std::vector<std::vector<std::int32_t>> history = prompts;
  GenerateStats st;
  using Clock = std::chrono::steady_clock;
  const std::size_t V = static_cast<std::size_t>(config.vocab_size);

  auto t0 = Clock::now();
  std::span<const float> logits = session.prefill(prompts);
  st.prefill_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  for (const auto& p : prompts) st.prefill_tokens += p.size();

  std::vector<int> active(prompts.size());
  std::iota(active.begin(), active.end(), 0);
  std::vector<float> row(V);
  std::vector<int> next_slots;
  std::vector<std::int32_t> next_tokens;
  t0 = Clock::now();
  for (int step = 0; step < o.max_new_tokens && !active.empty(); ++step) {
    next_slots.clear();
    next_tokens.clear();
    for (std::size_t i = 0; i < active.size(); ++i) {
      const int s = active[i];
      std::copy_n(logits.begin() + static_cast<std::ptrdiff_t>(i * V), V, row.begin());
      const std::int32_t t = sample_token(row, history[std::size_t(s)], o.sampling,
                                          o.first_sequence + std::uint64_t(s), std::uint64_t(step));
      Generation& g = out[std::size_t(s)];
      g.tokens.push_back(t);
      history[std::size_t(s)].push_back(t);
      if (on_token) on_token(s, t);
      if (t == o.eos_token) {
        g.stopped_at_eos = true;
        continue;
      }
      if (session.length(s) >= session.max_len()) {
        g.hit_context = step + 1 < o.max_new_tokens;
        continue;
      }
      if (step + 1 < o.max_new_tokens) {
        next_slots.push_back(s);
        next_tokens.push_back(t);
      }
    }
    active = next_slots;
    if (active.empty()) break;
    logits = session.decode(next_slots, next_tokens);
    st.decode_tokens += next_slots.size();
    ++st.decode_steps;
  }
  st.decode_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (stats != nullptr) *stats = st;
  return out;
}

}  // namespace

std::vector<Generation> generate(const ModelConfig& config, const float* params,
                                 const std::vector<std::vector<std::int32_t>>& prompts,
                                 const GenerateOptions& o, GenerateStats* stats,
                                 const std::function<void(int, std::int32_t)>& on_token) {
  const SessionFactory make = [&](int batch, int len) {
    return std::make_unique<InferenceSession>(config, params, batch, len, kDefaultChunkRows,
                                              o.weights);
  };
  return run_generation(config, make, prompts, o, stats, on_token);
}

std::vector<Generation> generate(Transformer& model,
                                 const std::vector<std::vector<std::int32_t>>& prompts,
                                 const GenerateOptions& o, GenerateStats* stats,
                                 const std::function<void(int, std::int32_t)>& on_token) {
  const SessionFactory make = [&](int batch, int len) {
    return std::make_unique<InferenceSession>(model, batch, len, kDefaultChunkRows, o.weights);
  };
  return run_generation(model.config(), make, prompts, o, stats, on_token);
}

}  // namespace whtlm
