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
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace whtlm::tok {
class Tokenizer;
}

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
  bool bytes = false;  // true: text tokenized as bytes; false: shards or another tokenizer
  std::size_t files = 1;
};
// Loads a text file, a folder of text files (every regular file under it, recursively,
// in sorted path order, joined with "\n"), an llm.c shard, or a folder whose files are
// all shards (concatenated in sorted path order). Text is tokenized by `tokenizer`
// ("byte", or a spec for tok::load_tokenizer). Every id must be < vocab_size, else the
// error names the file, the position in it and the id (or the tokenizer's size).
TokenStream read_token_stream(const std::string& path, int vocab_size,
                              const std::string& tokenizer = "byte");

struct DataOptions {
  std::string path;                  // empty: the built-in corpus (default_corpus_path())
  std::string val_path;              // optional separate validation data; then no split
  double val_fraction = 0.05;        // of the tokens, used when val_path is empty
  std::size_t chunk_tokens = 16384;  // split granularity
  int vocab_size = 256;              // every id must be < vocab_size (>= 256 for text)
  // How text is tokenized: "byte", a tokenizer.json, or a folder with GPT-2's files
  // (tok::load_tokenizer). Token shards are already tokenized and ignore it.
  std::string tokenizer = "byte";
};

// A read-only sequence of token ids, either in memory or llm.c shards read from disk
// by offset as needed (io::InputFile: shards larger than memory work, and a shard
// truncated while in use is a std::runtime_error naming it, not a SIGBUS).
// Copies share the data.
class TokenSource {
 public:
  TokenSource() = default;
  TokenSource(std::vector<std::int32_t> tokens);  // NOLINT: implicit, in memory
  // The shards in the order given, as one sequence; each is checked as read_llmc_shard
  // checks it (magic, version, size), errors naming the file.
  static TokenSource map_shards(const std::vector<std::string>& paths);

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Copies tokens [offset, offset + n) to out; std::out_of_range past the end.
  void read(std::size_t offset, std::size_t n, std::int32_t* out) const;
  std::int32_t operator[](std::size_t i) const;
  std::vector<std::int32_t> to_vector() const;
  bool mapped() const { return mapped_ != nullptr; }

 private:
  struct Mapped;
  std::shared_ptr<const std::vector<std::int32_t>> memory_;
  std::shared_ptr<const Mapped> mapped_;
  std::size_t size_ = 0;
};

struct TokenSplit {
  TokenSource train, val;
  std::string description;  // e.g. "kjv.txt: 4.14 M byte tokens (train 3.93 M, val 0.21 M)"
  // Batches read the training tokens in order (a prepared shard folder: every token
  // once per epoch) rather than at random offsets.
  bool sequential = false;
};

// Deterministic split of one stream: cut into chunks of chunk_tokens (the last may be
// shorter); chunk i goes to val when i % k == k - 1 with k = round(1 / val_fraction),
// the rest to train, order preserved. Throws std::invalid_argument for val_fraction
// outside (0, 0.5] or chunk_tokens == 0, and std::runtime_error when either part
// would be empty.
TokenSplit split_tokens(std::span<const std::int32_t> tokens, double val_fraction,
                        std::size_t chunk_tokens);

// Loads options.path (and options.val_path, if set) and splits it as above. A folder
// written by `whtlm data prepare` (train_*.bin and val_*.bin) is not split: its shards
// are mapped and read in order.
TokenSplit load_tokens(const DataOptions& options);

// The tokenizer of a data source: options.tokenizer unless it is "byte"; else the
// tokenizer.json in a prepared shard folder; else bytes.
tok::Tokenizer data_tokenizer(const DataOptions& options);

// Tokenizes text once into a folder of llm.c shards for training: train_000000.bin, ...
// and val_000000.bin, ... (the same chunk-interleaved split as training on text),
// tokenizer.json and prepare.json (the summary). Files are documents; the tokenizer's
// <|endoftext|>, if it has one, separates them. Refuses a vocabulary larger than uint16
// ids hold and a non-empty output folder.
struct PrepareOptions {
  std::string data;  // a text file or a folder of text files (empty: the built-in corpus)
  std::string tokenizer = "byte";
  std::string out;
  double val_fraction = 0.05;
  std::size_t chunk_tokens = 16384;
  std::size_t shard_tokens = 100'000'000;  // tokens per shard at most
  // Text encoded per step (one progress report each), cut only where the encoding
  // cannot change; the result is the same for any value.
  std::size_t block_bytes = std::size_t{4} << 20;
  std::function<void(double fraction_done)> progress;  // may be empty
};
struct PrepareResult {
  std::size_t documents = 0, bytes = 0, train_tokens = 0, val_tokens = 0;
  std::size_t train_shards = 0, val_shards = 0;
  double seconds = 0;
};
PrepareResult prepare_shards(const PrepareOptions& options);

// Training windows, a pure function of (seed, step, micro): a resumed run draws exactly
// the batches an uninterrupted one would. Each of the `batch` rows is a window of
// seq + 1 tokens. Random order: at an offset drawn uniformly from
// [0, tokens.size() - seq - 1] by a counter-based generator. Sequential order: row r
// of micro-batch m of step s (from 1) is window number ((s - 1) * micro_batches + m) *
// batch + r, at offset window * seq modulo tokens.size() - seq (so an epoch reads every
// token once, then the next begins); the seed is unused.
class BatchSampler {
 public:
  enum class Order { random, sequential };
  // Throws std::invalid_argument if tokens.size() < seq + 1, batch < 1, seq < 1 or
  // micro_batches < 1.
  BatchSampler(TokenSource tokens, int batch, int seq, std::uint64_t seed,
               Order order = Order::random, int micro_batches = 1);

  // inputs and targets: batch x seq, row-major; targets are inputs shifted by one.
  void fill(std::uint64_t step, int micro, std::int32_t* inputs, std::int32_t* targets) const;
  // The start of row `row`'s window for (step, micro).
  std::size_t offset(std::uint64_t step, int micro, int row) const;

  int batch() const { return batch_; }
  int seq() const { return seq_; }

 private:
  TokenSource tokens_;
  int batch_ = 0, seq_ = 0;
  std::uint64_t seed_ = 0;
  Order order_ = Order::random;
  int micro_batches_ = 1;
};

// Evaluation windows: consecutive non-overlapping windows of seq + 1 tokens (stride
// seq), so every token after the first is predicted once; a last partial window is
// dropped. inputs and targets hold seq tokens each.
std::size_t num_eval_windows(std::size_t n_tokens, int seq);
void fill_eval_window(const TokenSource& tokens, int seq, std::size_t index, std::int32_t* inputs,
                      std::int32_t* targets);

}  // namespace whtlm::data
