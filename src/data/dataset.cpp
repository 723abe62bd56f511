// From a token stream to training data: the deterministic train/validation split, random
// training windows drawn by a stateless counter-based generator, and evaluation windows.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>

#include "whtlm/data.hpp"

namespace whtlm::data {
namespace {

// "4.14 M"
std::string millions(std::size_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f M", static_cast<double>(n) / 1e6);
  return buf;
}

// splitmix64's finalizer: a bijective mix of 64 bits with good avalanche.
std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

constexpr std::uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

}  // namespace

TokenSplit split_tokens(std::span<const std::int32_t> tokens, double val_fraction,
                        std::size_t chunk_tokens) {
  if (!(val_fraction > 0.0 && val_fraction <= 0.5)) {
    throw std::invalid_argument("val_fraction must be in (0, 0.5] (got " +
                                std::to_string(val_fraction) + ")");
  }
  if (chunk_tokens == 0) throw std::invalid_argument("chunk_tokens must be positive");
  const auto k = static_cast<std::size_t>(std::llround(1.0 / val_fraction));  // >= 2
  const std::size_t chunks = (tokens.size() + chunk_tokens - 1) / chunk_tokens;
  if (chunks < k) {
    throw std::runtime_error(
        std::to_string(tokens.size()) + " tokens are too few to split into train and validation " +
        "with chunks of " + std::to_string(chunk_tokens) + " tokens and val_fraction " +
        std::to_string(val_fraction) + " (needs more than " +
        std::to_string((k - 1) * chunk_tokens) +
        " tokens): use a smaller chunk size, a larger val_fraction or a separate validation set");
  }

  TokenSplit split;
  split.val.reserve(tokens.size() / k + chunk_tokens);
  split.train.reserve(tokens.size() - tokens.size() / k);
  for (std::size_t i = 0; i < chunks; ++i) {
    const std::size_t begin = i * chunk_tokens;
    const std::size_t end = std::min(tokens.size(), begin + chunk_tokens);
    auto& part = (i % k == k - 1) ? split.val : split.train;
    part.insert(part.end(), tokens.begin() + static_cast<std::ptrdiff_t>(begin),
                tokens.begin() + static_cast<std::ptrdiff_t>(end));
  }
  return split;
}

TokenSplit load_tokens(const DataOptions& options) {
  const std::string path = options.path.empty() ? default_corpus_path() : options.path;
  TokenStream stream = read_token_stream(path, options.vocab_size);
  if (stream.tokens.empty()) throw std::runtime_error(path + ": no data (zero tokens)");
  const std::string unit = stream.bytes ? " byte tokens" : " tokens";

  if (!options.val_path.empty()) {
    TokenStream val = read_token_stream(options.val_path, options.vocab_size);
    if (val.tokens.empty()) {
      throw std::runtime_error(options.val_path + ": no validation data (zero tokens)");
    }
    TokenSplit split;
    split.description = stream.name + ": " + millions(stream.tokens.size()) + unit + " (train); " +
                        val.name + ": " + millions(val.tokens.size()) +
                        (val.bytes ? " byte tokens" : " tokens") + " (val)";
    split.train = std::move(stream.tokens);
    split.val = std::move(val.tokens);
    return split;
  }

  TokenSplit split;
  try {
    split = split_tokens(stream.tokens, options.val_fraction, options.chunk_tokens);
  } catch (const std::runtime_error& e) {  // too little data: name the file
    throw std::runtime_error(path + ": " + e.what());
  }
  split.description = stream.name + ": " + millions(stream.tokens.size()) + unit + " (train " +
                      millions(split.train.size()) + ", val " + millions(split.val.size()) + ")";
  if (stream.files > 1) {
    split.description += ", " + std::to_string(stream.files) + " files";
  }
  return split;
}

BatchSampler::BatchSampler(std::span<const std::int32_t> tokens, int batch, int seq,
                           std::uint64_t seed)
    : tokens_(tokens), batch_(batch), seq_(seq), seed_(seed) {
  if (batch < 1)
    throw std::invalid_argument("batch must be at least 1 (got " + std::to_string(batch) + ")");
  if (seq < 1)
    throw std::invalid_argument("seq must be at least 1 (got " + std::to_string(seq) + ")");
  if (tokens.size() < static_cast<std::size_t>(seq) + 1) {
    throw std::invalid_argument(std::to_string(tokens.size()) +
                                " tokens are too few for one training window of seq + 1 = " +
                                std::to_string(seq + 1) + " tokens");
  }
}

std::size_t BatchSampler::offset(std::uint64_t step, int micro, int row) const {
  // A counter-based generator: the key hashes (seed, step, micro, row) in a fixed chain of
  // mixes, and draws are mix64(key + j * golden) for j = 1, 2, ... -- no state survives a call.
  std::uint64_t key = mix64(seed_ + kGolden);
  key = mix64(key ^ step);
  key = mix64(key ^ static_cast<std::uint64_t>(static_cast<std::int64_t>(micro)));
  key = mix64(key ^ static_cast<std::uint64_t>(static_cast<std::int64_t>(row)));
  // Uniform in [0, range) without modulo bias: reject the draws below 2^64 mod range.
  const std::uint64_t range = tokens_.size() - static_cast<std::size_t>(seq_);
  const std::uint64_t threshold = (0 - range) % range;
  for (std::uint64_t j = 1;; ++j) {
    const std::uint64_t x = mix64(key + j * kGolden);
    if (x >= threshold) return static_cast<std::size_t>(x % range);
  }
}

void BatchSampler::fill(std::uint64_t step, int micro, std::int32_t* inputs,
                        std::int32_t* targets) const {
  const auto seq = static_cast<std::size_t>(seq_);
  for (int row = 0; row < batch_; ++row) {
    const std::int32_t* window = tokens_.data() + offset(step, micro, row);
    std::int32_t* in = inputs + static_cast<std::size_t>(row) * seq;
    std::int32_t* out = targets + static_cast<std::size_t>(row) * seq;
    for (std::size_t t = 0; t < seq; ++t) {
      in[t] = window[t];
      out[t] = window[t + 1];
    }
  }
}

std::size_t num_eval_windows(std::size_t n_tokens, int seq) {
  if (seq < 1)
    throw std::invalid_argument("seq must be at least 1 (got " + std::to_string(seq) + ")");
  // Window i covers tokens [i * seq, i * seq + seq], so it fits when i * seq + seq < n.
  return n_tokens == 0 ? 0 : (n_tokens - 1) / static_cast<std::size_t>(seq);
}

void fill_eval_window(std::span<const std::int32_t> tokens, int seq, std::size_t index,
                      std::int32_t* inputs, std::int32_t* targets) {
  const std::size_t windows = num_eval_windows(tokens.size(), seq);
  if (index >= windows) {
    throw std::out_of_range("evaluation window " + std::to_string(index) + " out of range (" +
                            std::to_string(windows) + " windows)");
  }
  const auto s = static_cast<std::size_t>(seq);
  const std::int32_t* window = tokens.data() + index * s;
  for (std::size_t t = 0; t < s; ++t) {
    inputs[t] = window[t];
    targets[t] = window[t + 1];
  }
}

}  // namespace whtlm::data
