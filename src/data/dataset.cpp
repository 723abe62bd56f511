// From a token stream to training data: the deterministic train/validation split, random
// training windows drawn by a stateless counter-based generator, and evaluation windows.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "whtlm/data.hpp"
#include "whtlm/tokenizer.hpp"

namespace whtlm::data {
namespace {

namespace fs = std::filesystem;

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
        " tokens): use a smaller --chunk-tokens, a larger --val-fraction or --val-data");
  }

  std::vector<std::int32_t> train, val;
  val.reserve(tokens.size() / k + chunk_tokens);
  train.reserve(tokens.size() - tokens.size() / k);
  for (std::size_t i = 0; i < chunks; ++i) {
    const std::size_t begin = i * chunk_tokens;
    const std::size_t end = std::min(tokens.size(), begin + chunk_tokens);
    auto& part = (i % k == k - 1) ? val : train;
    part.insert(part.end(), tokens.begin() + static_cast<std::ptrdiff_t>(begin),
                tokens.begin() + static_cast<std::ptrdiff_t>(end));
  }
  TokenSplit split;
  split.train = std::move(train);
  split.val = std::move(val);
  return split;
}

// A folder written by `whtlm data prepare`: train_*.bin and val_*.bin at its top level.
// Returns false (and leaves the lists empty) for anything else.
bool prepared_shards(const std::string& path, std::vector<std::string>& train,
                     std::vector<std::string>& val) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return false;
  for (const fs::directory_entry& e : fs::directory_iterator(path, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || e.path().extension() != ".bin") continue;
    if (name.rfind("train_", 0) == 0) train.push_back(e.path().string());
    if (name.rfind("val_", 0) == 0) val.push_back(e.path().string());
  }
  std::sort(train.begin(), train.end());
  std::sort(val.begin(), val.end());
  if (!train.empty() && !val.empty()) return true;
  if (!train.empty() || !val.empty())
    throw std::runtime_error(path +
                             ": prepared shards need train_*.bin and val_*.bin; the folder "
                             "has " +
                             (train.empty() ? "val" : "train") + " shards only (no " +
                             (train.empty() ? "train" : "val") + "_*.bin)");
  train.clear();
  val.clear();
  return false;
}

// Every id of `t` below vocab_size, read in blocks; the error names the shards.
void check_source_vocab(const TokenSource& t, int vocab_size, const std::string& what) {
  std::vector<std::int32_t> block(std::size_t{1} << 20);
  for (std::size_t at = 0; at < t.size(); at += block.size()) {
    const std::size_t n = std::min(block.size(), t.size() - at);
    t.read(at, n, block.data());
    for (std::size_t i = 0; i < n; ++i)
      if (block[i] < 0 || block[i] >= vocab_size)
        throw std::runtime_error(what + ": token " + std::to_string(block[i]) + " at position " +
                                 std::to_string(at + i) + " is outside the vocabulary of " +
                                 std::to_string(vocab_size) + " (set --vocab)");
  }
}

tok::Tokenizer data_tokenizer(const DataOptions& options) {
  if (options.tokenizer != "byte") return tok::load_tokenizer(options.tokenizer);
  const fs::path beside = fs::path(options.path) / "tokenizer.json";
  std::error_code ec;
  if (!options.path.empty() && fs::is_regular_file(beside, ec))
    return tok::load_tokenizer(beside.string());
  return tok::Tokenizer::bytes();
}

TokenSplit load_tokens(const DataOptions& options) {
  const std::string path = options.path.empty() ? default_corpus_path() : options.path;
  std::vector<std::string> train_files, val_files;
  if (options.val_path.empty() && prepared_shards(path, train_files, val_files)) {
    // Streamed: read from disk in order, never loaded whole.
    TokenSplit split;
    split.train = TokenSource::map_shards(train_files);
    split.val = TokenSource::map_shards(val_files);
    split.sequential = true;
    // Without tokenizer.json the folder's vocabulary is unknown: say so where it matters.
    std::error_code ec;
    const std::string hint = fs::exists(fs::path(path) / "tokenizer.json", ec)
                                 ? ""
                                 : "; the folder has no tokenizer.json to give the vocabulary";
    check_source_vocab(split.train, options.vocab_size, path + " (train shards" + hint + ")");
    check_source_vocab(split.val, options.vocab_size, path + " (val shards" + hint + ")");
    if (split.train.size() == 0 || split.val.size() == 0)
      throw std::runtime_error(path + ": the train or val shards hold no tokens");
    split.description = path + ": prepared shards, " + millions(split.train.size()) +
                        " tokens in " + std::to_string(train_files.size()) + " train shard(s), " +
                        millions(split.val.size()) + " in " + std::to_string(val_files.size()) +
                        " val shard(s), read in order from disk";
    return split;
  }
  TokenStream stream = read_token_stream(path, options.vocab_size, options.tokenizer);
  if (stream.tokens.empty()) throw std::runtime_error(path + ": no data (zero tokens)");
  const std::string unit = stream.bytes ? " byte tokens" : " tokens";

  if (!options.val_path.empty()) {
    TokenStream val = read_token_stream(options.val_path, options.vocab_size, options.tokenizer);
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

BatchSampler::BatchSampler(TokenSource tokens, int batch, int seq, std::uint64_t seed, Order order,
                           int micro_batches)
    : tokens_(std::move(tokens)),
      batch_(batch),
      seq_(seq),
      seed_(seed),
      order_(order),
      micro_batches_(micro_batches) {
  if (batch < 1)
    throw std::invalid_argument("batch must be at least 1 (got " + std::to_string(batch) + ")");
  if (seq < 1)
    throw std::invalid_argument("seq must be at least 1 (got " + std::to_string(seq) + ")");
  if (micro_batches < 1)
    throw std::invalid_argument("micro_batches must be at least 1 (got " +
                                std::to_string(micro_batches) + ")");
  if (tokens_.size() < static_cast<std::size_t>(seq) + 1) {
    throw std::invalid_argument(std::to_string(tokens_.size()) +
                                " tokens are too few for one training window of seq + 1 = " +
                                std::to_string(seq + 1) + " tokens");
  }
}

std::size_t BatchSampler::offset(std::uint64_t step, int micro, int row) const {
  const std::uint64_t range = tokens_.size() - static_cast<std::size_t>(seq_);
  if (order_ == Order::sequential) {
    const std::uint64_t window =
        ((step - 1) * std::uint64_t(micro_batches_) + std::uint64_t(micro)) *
            std::uint64_t(batch_) +
        std::uint64_t(row);
    // window * seq modulo range (exact while range * seq < 2^64: 2.8e14 tokens at seq 65536).
    return static_cast<std::size_t>((window % range) * std::uint64_t(seq_) % range);
  }
  // A counter-based generator: the key hashes (seed, step, micro, row) in a fixed chain of
  // mixes, and draws are mix64(key + j * golden) for j = 1, 2, ... -- no state survives a call.
  std::uint64_t key = mix64(seed_ + kGolden);
  key = mix64(key ^ step);
  key = mix64(key ^ static_cast<std::uint64_t>(static_cast<std::int64_t>(micro)));
  key = mix64(key ^ static_cast<std::uint64_t>(static_cast<std::int64_t>(row)));
  // Uniform in [0, range) without modulo bias: reject the draws below 2^64 mod range.
  const std::uint64_t threshold = (0 - range) % range;
  for (std::uint64_t j = 1;; ++j) {
    const std::uint64_t x = mix64(key + j * kGolden);
    if (x >= threshold) return static_cast<std::size_t>(x % range);
  }
}

void BatchSampler::fill(std::uint64_t step, int micro, std::int32_t* inputs,
                        std::int32_t* targets) const {
  const auto seq = static_cast<std::size_t>(seq_);
  std::vector<std::int32_t> window(seq + 1);
  for (int row = 0; row < batch_; ++row) {
    tokens_.read(offset(step, micro, row), seq + 1, window.data());
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

void fill_eval_window(const TokenSource& tokens, int seq, std::size_t index, std::int32_t* inputs,
                      std::int32_t* targets) {
  const std::size_t windows = num_eval_windows(tokens.size(), seq);
  if (index >= windows) {
    throw std::out_of_range("evaluation window " + std::to_string(index) + " out of range (" +
                            std::to_string(windows) + " windows)");
  }
  const auto s = static_cast<std::size_t>(seq);
  std::vector<std::int32_t> window(s + 1);
  tokens.read(index * s, s + 1, window.data());
  for (std::size_t t = 0; t < s; ++t) {
    inputs[t] = window[t];
    targets[t] = window[t + 1];
  }
}

}  // namespace whtlm::data
