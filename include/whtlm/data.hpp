// Training data: the byte tokenizer, text corpora and llm.c token shards, the built-in
// King James Bible corpus, the deterministic train/validation split, and the samplers
// that turn a token stream into training batches and evaluation windows.
//
// Errors: problems with files or their contents throw std::runtime_error naming the
// file; bad arguments throw std::invalid_argument; indices out of range throw
// std::out_of_range.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace whtlm::data {

// Byte-level tokenizer: token id = byte value, vocab 256.
struct ByteTokenizer {
  static constexpr int kVocabSize = 256;
  std::vector<std::int32_t> encode(std::string_view text) const;
  // Throws std::out_of_range (naming the position and the id) on an id outside 0..255.
  std::string decode(std::span<const std::int32_t> tokens) const;
};

// llm.c token shard (.bin): a header of 256 little-endian int32 -- [0] = kLlmcMagic,
// [1] = version (1: uint16 tokens), [2] = number of tokens -- then that many
// little-endian uint16 tokens.
inline constexpr std::int32_t kLlmcMagic = 20240520;
inline constexpr std::int32_t kLlmcVersion = 1;
inline constexpr std::size_t kLlmcHeaderBytes = 256 * 4;

// Reads a shard, checking the magic, the version and that the file is exactly
// header + 2 * count bytes. Errors name the file and the field.
std::vector<std::int32_t> read_llmc_shard(const std::string& path);
// Writes a shard (ids must be 0..65535) to path + ".tmp", then renames it into place.
void write_llmc_shard(const std::string& path, std::span<const std::int32_t> tokens);
// True for a regular file whose name ends in .bin or that starts with the shard magic.
bool looks_like_llmc_shard(const std::string& path);

// The built-in default corpus: the King James Bible from Debian's bible-kjv package,
// one verse per line without its reference. Prepared on first use into
// ${XDG_CACHE_HOME:-$HOME/.cache}/whtlm/kjv.txt (atomically: temp file, then rename)
// and reused afterwards. Returns the cache path.
std::string default_corpus_path();

// The token stream of one data path, before any split.
struct TokenStream {
  std::vector<std::int32_t> tokens;
  std::string name;    // file or folder name, for messages ("kjv.txt", "shards/")
  bool bytes = false;  // true: text tokenized as bytes; false: llm.c shard tokens
  std::size_t files = 1;
};
// Loads a text file, a folder of text files (every regular file under it, recursively,
// in sorted path order, joined with "\n"), an llm.c shard, or a folder whose files are
// all shards (concatenated in sorted path order). Every id must be < vocab_size, else
// the error names the file, the position in it and the id.
TokenStream read_token_stream(const std::string& path, int vocab_size);

struct DataOptions {
  std::string path;                  // empty: the built-in corpus (default_corpus_path())
  std::string val_path;              // optional separate validation data; then no split
  double val_fraction = 0.05;        // of the tokens, used when val_path is empty
  std::size_t chunk_tokens = 16384;  // split granularity
  int vocab_size = 256;              // every id must be < vocab_size (>= 256 for text)
};

struct TokenSplit {
  std::vector<std::int32_t> train, val;
  std::string description;  // e.g. "kjv.txt: 4.14 M byte tokens (train 3.93 M, val 0.21 M)"
};

// Deterministic split of one stream: cut into chunks of chunk_tokens (the last may be
// shorter); chunk i goes to val when i % k == k - 1 with k = round(1 / val_fraction),
// the rest to train, order preserved. Throws std::invalid_argument for val_fraction
// outside (0, 0.5] or chunk_tokens == 0, and std::runtime_error when either part
// would be empty.
TokenSplit split_tokens(std::span<const std::int32_t> tokens, double val_fraction,
                        std::size_t chunk_tokens);

// Loads options.path (and options.val_path, if set) and splits it as above.
TokenSplit load_tokens(const DataOptions& options);

// Random training windows, a pure function of (seed, step, micro): a resumed run draws
// exactly the batches an uninterrupted one would. Each of the `batch` rows is a window
// of seq + 1 tokens at an offset drawn uniformly from [0, tokens.size() - seq - 1] by a
// counter-based generator. The sampler keeps a view of `tokens`: they must outlive it.
class BatchSampler {
 public:
  // Throws std::invalid_argument if tokens.size() < seq + 1, batch < 1 or seq < 1.
  BatchSampler(std::span<const std::int32_t> tokens, int batch, int seq, std::uint64_t seed);

  // inputs and targets: batch x seq, row-major; targets are inputs shifted by one.
  void fill(std::uint64_t step, int micro, std::int32_t* inputs, std::int32_t* targets) const;
  // The start of row `row`'s window for (step, micro).
  std::size_t offset(std::uint64_t step, int micro, int row) const;

  int batch() const { return batch_; }
  int seq() const { return seq_; }

 private:
  std::span<const std::int32_t> tokens_;
  int batch_ = 0, seq_ = 0;
  std::uint64_t seed_ = 0;
};

// Evaluation windows: consecutive non-overlapping windows of seq + 1 tokens (stride
// seq), so every token after the first is predicted once; a last partial window is
// dropped. inputs and targets hold seq tokens each.
std::size_t num_eval_windows(std::size_t n_tokens, int seq);
void fill_eval_window(std::span<const std::int32_t> tokens, int seq, std::size_t index,
                      std::int32_t* inputs, std::int32_t* targets);

}  // namespace whtlm::data
