// Tests of the training data layer: tokenizer, llm.c shards, corpus loading, the
// train/validation split, batch sampling, evaluation windows and the built-in KJV corpus.
#include "whtlm/data.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "whtlm/tokenizer.hpp"

namespace whtlm::data {
namespace {

namespace fs = std::filesystem;

// A fresh folder under the system temp folder, removed with its contents at scope exit.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("whtlm_data_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

// Sets an environment variable for the current scope, restoring the old value after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes(static_cast<std::size_t>(fs::file_size(path)), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return bytes;
}

// A raw shard with arbitrary header fields and payload.
std::string shard_bytes(std::int32_t magic, std::int32_t version, std::int32_t count,
                        std::size_t payload_tokens) {
  std::string bytes(kLlmcHeaderBytes + 2 * payload_tokens, '\0');
  const std::int32_t fields[3] = {magic, version, count};
  for (int f = 0; f < 3; ++f) {
    for (int b = 0; b < 4; ++b) {
      bytes[static_cast<std::size_t>(4 * f + b)] =
          static_cast<char>(static_cast<std::uint32_t>(fields[f]) >> (8 * b));
    }
  }
  return bytes;
}

std::vector<std::int32_t> iota_tokens(std::size_t n, std::int32_t start = 0) {
  std::vector<std::int32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

// The message of the std::exception `f` throws; fails the test if it throws none.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  ADD_FAILURE() << "no exception thrown";
  return "";
}

// ---- Byte tokenizer ----

TEST(ByteTokenizer, EncodeThenDecodeRoundTripsEveryByte) {
  std::string text;
  for (int b = 0; b < 256; ++b) text.push_back(static_cast<char>(b));
  text += "In the beginning";
  const ByteTokenizer tok;
  const std::vector<std::int32_t> ids = tok.encode(text);
  ASSERT_EQ(ids.size(), text.size());
  for (int b = 0; b < 256; ++b) EXPECT_EQ(ids[static_cast<std::size_t>(b)], b);
  EXPECT_EQ(tok.decode(ids), text);
}

TEST(ByteTokenizer, DecodeRejectsIdsOutsideZeroTo255NamingPositionAndId) {
  const ByteTokenizer tok;
  const std::vector<std::int32_t> high = {65, 256};
  const std::string msg = error_of([&] { (void)tok.decode(high); });
  EXPECT_NE(msg.find("256"), std::string::npos) << msg;
  EXPECT_NE(msg.find("position 1"), std::string::npos) << msg;
  const std::vector<std::int32_t> negative = {-1};
  EXPECT_THROW((void)tok.decode(negative), std::out_of_range);
}

// ---- llm.c shards ----

TEST(LlmcShard, WriteThenReadRoundTripsAndLeavesNoTempFile) {
  TempDir dir;
  const std::string path = dir / "x.bin";
  std::vector<std::int32_t> tokens = {0, 1, 255, 256, 50256, 65535};
  for (int i = 0; i < 1000; ++i) tokens.push_back((i * 7919) % 65536);
  write_llmc_shard(path, tokens);
  EXPECT_EQ(fs::file_size(path), kLlmcHeaderBytes + 2 * tokens.size());
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_EQ(read_llmc_shard(path), tokens);

  write_llmc_shard(path, {});
  EXPECT_TRUE(read_llmc_shard(path).empty());
}

TEST(LlmcShard, HeaderIsLittleEndianMagicVersionCount) {
  TempDir dir;
  const std::string path = dir / "x.bin";
  write_llmc_shard(path, std::vector<std::int32_t>{0x1234, 7});
  const std::string bytes = read_bytes(path);
  EXPECT_EQ(bytes, [] {
    std::string b = shard_bytes(kLlmcMagic, 1, 2, 2);
    b[kLlmcHeaderBytes + 0] = 0x34;
    b[kLlmcHeaderBytes + 1] = 0x12;
    b[kLlmcHeaderBytes + 2] = 7;
    return b;
  }());
}

TEST(LlmcShard, ReadRejectsBadMagicNamingFileAndField) {
  TempDir dir;
  const std::string path = dir / "x.bin";
  write_bytes(path, shard_bytes(12345, 1, 0, 0));
  const std::string msg = error_of([&] { read_llmc_shard(path); });
  EXPECT_EQ(msg, path + ": bad magic 12345 (expected 20240520): not an llm.c token shard");
}

TEST(LlmcShard, ReadRejectsBadVersionNamingFileAndField) {
  TempDir dir;
  const std::string path = dir / "x.bin";
  write_bytes(path, shard_bytes(kLlmcMagic, 2, 3, 3));
  const std::string msg = error_of([&] { read_llmc_shard(path); });
  EXPECT_EQ(msg.rfind(path + ": bad version 2", 0), 0u) << msg;
}

TEST(LlmcShard, ReadRejectsFileShorterThanHeader) {
  TempDir dir;
  const std::string path = dir / "x.bin";
  write_bytes(path, shard_bytes(kLlmcMagic, 1, 0, 0).substr(0, 100));
  const std::string msg = error_of([&] { read_llmc_shard(path); });
  EXPECT_EQ(msg.rfind(path + ": truncated: 100 bytes", 0), 0u) << msg;
}

TEST(LlmcShard, ReadRejectsTruncatedTokens) {
  TempDir dir;
  const std::string path = dir / "x.bin";
  write_bytes(path, shard_bytes(kLlmcMagic, 1, 10, 9));
  const std::string msg = error_of([&] { read_llmc_shard(path); });
  EXPECT_EQ(msg.rfind(path + ": truncated", 0), 0u) << msg;
  EXPECT_NE(msg.find("token count 10"), std::string::npos) << msg;
}

TEST(LlmcShard, ReadRejectsSizeMismatchWithExtraBytes) {
  TempDir dir;
  const std::string path = dir / "x.bin";
  write_bytes(path, shard_bytes(kLlmcMagic, 1, 4, 5));
  const std::string msg = error_of([&] { read_llmc_shard(path); });
  EXPECT_EQ(msg.rfind(path + ": size mismatch", 0), 0u) << msg;
  EXPECT_NE(msg.find("token count 4"), std::string::npos) << msg;
}

TEST(LlmcShard, WriteRejectsTokenAbove65535NamingFileAndWritesNothing) {
  TempDir dir;
  const std::string path = dir / "x.bin";
  const std::vector<std::int32_t> tokens = {1, 2, 65536};
  const std::string msg = error_of([&] { write_llmc_shard(path, tokens); });
  EXPECT_EQ(msg.rfind(path + ": token 65536 at position 2", 0), 0u) << msg;
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_THROW(write_llmc_shard(path, std::vector<std::int32_t>{-1}), std::runtime_error);
}

TEST(LlmcShard, LooksLikeShardByExtensionOrMagic) {
  TempDir dir;
  write_bytes(dir / "a.bin", "whatever");
  write_bytes(dir / "b.dat", shard_bytes(kLlmcMagic, 1, 0, 0));
  write_bytes(dir / "c.txt", "In the beginning");
  EXPECT_TRUE(looks_like_llmc_shard(dir / "a.bin"));
  EXPECT_TRUE(looks_like_llmc_shard(dir / "b.dat"));
  EXPECT_FALSE(looks_like_llmc_shard(dir / "c.txt"));
  EXPECT_FALSE(looks_like_llmc_shard(dir.str()));
  EXPECT_FALSE(looks_like_llmc_shard(dir / "missing.bin"));
}

// ---- Loading data paths ----

TEST(LoadData, TextFileLoadsAsByteTokens) {
  TempDir dir;
  write_bytes(dir / "t.txt", "abc\xff");
  const TokenStream s = read_token_stream(dir / "t.txt", 256);
  EXPECT_EQ(s.tokens, (std::vector<std::int32_t>{'a', 'b', 'c', 255}));
  EXPECT_TRUE(s.bytes);
  EXPECT_EQ(s.name, "t.txt");
}

TEST(LoadData, FolderLoadsEveryFileRecursivelyInSortedPathOrderJoinedByNewline) {
  TempDir dir;
  write_bytes(dir / "b.txt", "B");
  write_bytes(dir / "a/z.txt", "AZ");
  write_bytes(dir / "a/b/c.md", "ABC");
  write_bytes(dir / "c", "C");
  const TokenStream s = read_token_stream(dir.str(), 256);
  EXPECT_EQ(ByteTokenizer().decode(s.tokens), "ABC\nAZ\nB\nC");
  EXPECT_EQ(s.files, 4u);
  EXPECT_TRUE(s.bytes);
}

TEST(LoadData, FolderOfShardsConcatenatesInSortedOrder) {
  TempDir dir;
  write_llmc_shard(dir / "s2.bin", std::vector<std::int32_t>{30, 31});
  write_llmc_shard(dir / "s0.bin", std::vector<std::int32_t>{10});
  write_llmc_shard(dir / "s1.bin", std::vector<std::int32_t>{20, 21, 22});
  const TokenStream s = read_token_stream(dir.str(), 50257);
  EXPECT_EQ(s.tokens, (std::vector<std::int32_t>{10, 20, 21, 22, 30, 31}));
  EXPECT_FALSE(s.bytes);
}

TEST(LoadData, FolderMixingShardsAndTextIsAnError) {
  TempDir dir;
  write_llmc_shard(dir / "s.bin", std::vector<std::int32_t>{1});
  write_bytes(dir / "notes.txt", "hello");
  const std::string msg = error_of([&] { read_token_stream(dir.str(), 50257); });
  EXPECT_NE(msg.find("mixes"), std::string::npos) << msg;
}

TEST(LoadData, OutOfVocabTokenErrorNamesFilePositionAndId) {
  TempDir dir;
  const std::string path = dir / "s.bin";
  write_llmc_shard(path, std::vector<std::int32_t>{5, 99, 300, 7});
  const std::string msg = error_of([&] { read_token_stream(path, 256); });
  EXPECT_EQ(msg.rfind(path + ": token id 300 at position 2", 0), 0u) << msg;
  DataOptions options;
  options.path = dir.str();
  options.vocab_size = 100;
  const std::string folder_msg = error_of([&] { load_tokens(options); });
  EXPECT_EQ(folder_msg.rfind(path + ": token id 300 at position 2", 0), 0u) << folder_msg;
}

TEST(LoadData, TextNeedsVocabOfAtLeast256) {
  TempDir dir;
  write_bytes(dir / "t.txt", "abc");
  EXPECT_THROW(read_token_stream(dir / "t.txt", 100), std::invalid_argument);
}

TEST(LoadData, MissingPathAndEmptyDataAreErrors) {
  TempDir dir;
  DataOptions options;
  options.path = dir / "missing.txt";
  const std::string msg = error_of([&] { load_tokens(options); });
  EXPECT_NE(msg.find("missing.txt does not exist"), std::string::npos) << msg;

  write_bytes(dir / "empty.txt", "");
  options.path = dir / "empty.txt";
  EXPECT_NE(error_of([&] { load_tokens(options); }).find("no data"), std::string::npos);

  fs::create_directories(dir / "nothing");
  options.path = dir / "nothing";
  EXPECT_NE(error_of([&] { load_tokens(options); }).find("no regular files"), std::string::npos);
}

// ---- Train/validation split ----

TEST(Split, ChunksAreInterleavedInOrderEveryKthToValidation) {
  // 10 chunks of 4 (the last one of 2), val_fraction 0.25 -> k = 4: chunks 3 and 7 to val.
  const std::vector<std::int32_t> tokens = iota_tokens(38);
  const TokenSplit s = split_tokens(tokens, 0.25, 4);
  std::vector<std::int32_t> val = iota_tokens(4, 12);
  const std::vector<std::int32_t> val2 = iota_tokens(4, 28);
  val.insert(val.end(), val2.begin(), val2.end());
  EXPECT_EQ(s.val.to_vector(), val);
  std::vector<std::int32_t> train;
  for (std::int32_t t : tokens) {
    if (!((t >= 12 && t < 16) || (t >= 28 && t < 32))) train.push_back(t);
  }
  EXPECT_EQ(s.train.to_vector(), train);
}

TEST(Split, IsDeterministicAndProportionsFollowValFraction) {
  const std::vector<std::int32_t> tokens = iota_tokens(1'000'000);
  const TokenSplit a = split_tokens(tokens, 0.05, 1000);
  const TokenSplit b = split_tokens(tokens, 0.05, 1000);
  EXPECT_EQ(a.train.to_vector(), b.train.to_vector());
  EXPECT_EQ(a.val.to_vector(), b.val.to_vector());
  EXPECT_EQ(a.train.size() + a.val.size(), tokens.size());
  EXPECT_EQ(a.val.size(), 50'000u);  // 1000 chunks, every 20th
  // Validation samples the whole corpus: its first chunk is early, its last is late.
  EXPECT_EQ(a.val[0], 19'000);
  EXPECT_EQ(a.val[a.val.size() - 1], 999'999);
}

TEST(Split, RejectsValFractionOutsideZeroToHalf) {
  const std::vector<std::int32_t> tokens = iota_tokens(100);
  for (const double f : {0.0, -0.1, 0.51, 1.0}) {
    EXPECT_THROW(split_tokens(tokens, f, 1), std::invalid_argument) << f;
  }
  EXPECT_NO_THROW(split_tokens(tokens, 0.5, 1));
}

TEST(Split, TooLittleDataForBothPartsIsAnErrorNamingTheFile) {
  TempDir dir;
  write_bytes(dir / "small.txt", std::string(1000, 'x'));
  DataOptions options;
  options.path = dir / "small.txt";  // default: chunks of 16384, k = 20
  const std::string msg = error_of([&] { load_tokens(options); });
  EXPECT_EQ(msg.rfind(options.path + ": 1000 tokens are too few", 0), 0u) << msg;
  options.chunk_tokens = 10;  // 100 chunks: 5 to validation
  const TokenSplit s = load_tokens(options);
  EXPECT_EQ(s.val.size(), 50u);
  EXPECT_EQ(s.train.size(), 950u);
  EXPECT_EQ(s.description, "small.txt: 0.00 M byte tokens (train 0.00 M, val 0.00 M)");
}

TEST(Split, SeparateValPathIsUsedWholeWithoutSplitting) {
  TempDir dir;
  write_bytes(dir / "train.txt", "abcdef");
  write_llmc_shard(dir / "val.bin", std::vector<std::int32_t>{1, 2, 3});
  DataOptions options;
  options.path = dir / "train.txt";
  options.val_path = dir / "val.bin";
  const TokenSplit s = load_tokens(options);
  EXPECT_EQ(s.train.to_vector(), ByteTokenizer().encode("abcdef"));
  EXPECT_EQ(s.val.to_vector(), (std::vector<std::int32_t>{1, 2, 3}));
  EXPECT_NE(s.description.find("val.bin"), std::string::npos) << s.description;
}

// ---- Batch sampling ----

TEST(BatchSampler, SameArgumentsGiveTheSameBatchAcrossInstances) {
  const std::vector<std::int32_t> tokens = iota_tokens(10'000);
  const int batch = 4, seq = 16;
  std::vector<std::int32_t> in1(batch * seq), tg1(batch * seq), in2(batch * seq), tg2(batch * seq);
  BatchSampler(tokens, batch, seq, 42).fill(7, 1, in1.data(), tg1.data());
  const BatchSampler other(tokens, batch, seq, 42);
  other.fill(3, 0, in2.data(), tg2.data());  // an unrelated call in between changes nothing
  other.fill(7, 1, in2.data(), tg2.data());
  EXPECT_EQ(in1, in2);
  EXPECT_EQ(tg1, tg2);
}

TEST(BatchSampler, DifferentStepMicroOrSeedGivesDifferentBatches) {
  const std::vector<std::int32_t> tokens = iota_tokens(1'000'000);
  const int batch = 8, seq = 4;
  const BatchSampler a(tokens, batch, seq, 1), b(tokens, batch, seq, 2);
  auto batch_of = [&](const BatchSampler& s, std::uint64_t step, int micro) {
    std::vector<std::int32_t> in(batch * seq), tg(batch * seq);
    s.fill(step, micro, in.data(), tg.data());
    return in;
  };
  const auto base = batch_of(a, 0, 0);
  EXPECT_NE(base, batch_of(a, 1, 0));
  EXPECT_NE(base, batch_of(a, 0, 1));
  EXPECT_NE(base, batch_of(b, 0, 0));
  // Rows within one batch differ too.
  std::set<std::size_t> offsets;
  for (int r = 0; r < batch; ++r) offsets.insert(a.offset(0, 0, r));
  EXPECT_EQ(offsets.size(), static_cast<std::size_t>(batch));
}

TEST(BatchSampler, RowsAreContiguousWindowsAndTargetsAreInputsShiftedByOne) {
  const std::vector<std::int32_t> tokens = iota_tokens(5000, 100);
  const int batch = 3, seq = 8;
  const BatchSampler s(tokens, batch, seq, 9);
  std::vector<std::int32_t> in(batch * seq), tg(batch * seq);
  s.fill(123, 2, in.data(), tg.data());
  for (int r = 0; r < batch; ++r) {
    const auto off = static_cast<std::int32_t>(s.offset(123, 2, r));
    for (int t = 0; t < seq; ++t) {
      EXPECT_EQ(in[static_cast<std::size_t>(r * seq + t)], 100 + off + t);
      EXPECT_EQ(tg[static_cast<std::size_t>(r * seq + t)], 100 + off + t + 1);
    }
  }
}

TEST(BatchSampler, OffsetsAreUniformOverEveryValidStart) {
  const int seq = 4;
  const std::vector<std::int32_t> tokens = iota_tokens(seq + 5);  // starts 0..4
  const BatchSampler s(tokens, 1, seq, 3);
  std::vector<int> counts(5, 0);
  const int draws = 20'000;
  for (int step = 0; step < draws; ++step) {
    const std::size_t off = s.offset(static_cast<std::uint64_t>(step), 0, 0);
    ASSERT_LT(off, counts.size());
    ++counts[off];
  }
  for (const int c : counts) EXPECT_NEAR(c, draws / 5, draws / 50);

  const std::vector<std::int32_t> exact = iota_tokens(seq + 1);
  EXPECT_EQ(BatchSampler(exact, 2, seq, 0).offset(5, 0, 1), 0u);
}

TEST(BatchSampler, RejectsTooFewTokensAndNonPositiveShapes) {
  const std::vector<std::int32_t> tokens = iota_tokens(10);
  EXPECT_THROW(BatchSampler(tokens, 1, 10, 0), std::invalid_argument);
  EXPECT_THROW(BatchSampler(tokens, 0, 4, 0), std::invalid_argument);
  EXPECT_THROW(BatchSampler(tokens, 1, 0, 0), std::invalid_argument);
  EXPECT_NO_THROW(BatchSampler(tokens, 1, 9, 0));
}

// ---- Evaluation windows ----

TEST(EvalWindows, PredictEveryTokenAfterTheFirstExactlyOnceDroppingThePartialTail) {
  const int seq = 7;
  for (const std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{8},
                              std::size_t{15}, std::size_t{100}}) {
    const std::vector<std::int32_t> tokens = iota_tokens(n);
    const std::size_t windows = num_eval_windows(n, seq);
    EXPECT_EQ(windows, n == 0 ? 0 : (n - 1) / seq) << n;
    std::vector<std::int32_t> predicted;
    std::vector<std::int32_t> in(seq), tg(seq);
    for (std::size_t w = 0; w < windows; ++w) {
      fill_eval_window(tokens, seq, w, in.data(), tg.data());
      for (int t = 0; t < seq; ++t) EXPECT_EQ(tg[static_cast<std::size_t>(t)], in[t] + 1);
      predicted.insert(predicted.end(), tg.begin(), tg.end());
    }
    // Targets are tokens 1, 2, ..., each once; fewer than seq tokens are left over.
    EXPECT_EQ(predicted, iota_tokens(windows * seq, 1)) << n;
    if (n > 0) {
      EXPECT_LT(n - 1 - predicted.size(), static_cast<std::size_t>(seq)) << n;
    }
    EXPECT_THROW(fill_eval_window(tokens, seq, windows, in.data(), tg.data()), std::out_of_range);
  }
}

// ---- The built-in KJV corpus ----

bool bible_installed() { return std::system("command -v bible >/dev/null 2>&1") == 0; }

TEST(KjvCorpus, IsPreparedOnceAsPlainVerseTextWithoutReferences) {
  if (!bible_installed()) GTEST_SKIP() << "the `bible` program (bible-kjv) is not installed";
  TempDir cache;
  const ScopedEnv xdg("XDG_CACHE_HOME", cache.str());
  const std::string path = default_corpus_path();
  EXPECT_EQ(path, cache / "whtlm/kjv.txt");
  const std::string text = read_bytes(path);
  EXPECT_GT(text.size(), 4'000'000u);
  EXPECT_EQ(text.rfind("In the beginning God created the heaven and the earth.\n", 0), 0u)
      << text.substr(0, 80);
  const std::string tail = text.substr(text.size() - 200);
  EXPECT_NE(tail.find("Amen."), std::string::npos) << tail;
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(text.find("Ge1:1"), std::string::npos);
  EXPECT_EQ(text.find("Rev22:21"), std::string::npos);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 31102);
  for (const auto& entry : fs::directory_iterator(cache / "whtlm")) {
    EXPECT_EQ(entry.path().filename().string(), "kjv.txt") << "temp file left behind";
  }

  // The second call reuses the cache: the file is untouched and `bible` is not needed.
  const auto mtime = fs::last_write_time(path);
  {
    const ScopedEnv no_path("PATH", cache / "empty-path");
    EXPECT_EQ(default_corpus_path(), path);
  }
  EXPECT_EQ(fs::last_write_time(path), mtime);

  DataOptions options;  // empty path: the built-in corpus
  const TokenSplit split = load_tokens(options);
  EXPECT_EQ(split.train.size() + split.val.size(), text.size());
  EXPECT_EQ(split.description.rfind("kjv.txt: 4.", 0), 0u) << split.description;
}

TEST(KjvCorpus, WithoutBibleTheErrorNamesThePackageAndInstallScript) {
  TempDir cache;
  const ScopedEnv xdg("XDG_CACHE_HOME", cache.str());
  const ScopedEnv no_path("PATH", cache / "empty-path");
  const std::string msg = error_of([] { default_corpus_path(); });
  EXPECT_NE(msg.find("bible-kjv"), std::string::npos) << msg;
  EXPECT_NE(msg.find("scripts/install-deps"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(cache / "whtlm/kjv.txt"));
}

// ---- Memory-mapped shards, sequential batches, prepared folders ----

TEST(TokenSource, MappedShardsReadLikeTheirConcatenationAcrossBoundaries) {
  TempDir dir;
  const std::vector<std::int32_t> a = iota_tokens(1000, 7), b = iota_tokens(3, 60000),
                                  c = iota_tokens(500, 100);
  write_llmc_shard(dir / "a.bin", a);
  write_llmc_shard(dir / "b.bin", b);
  write_llmc_shard(dir / "empty.bin", std::vector<std::int32_t>{});
  write_llmc_shard(dir / "c.bin", c);
  const TokenSource t =
      TokenSource::map_shards({dir / "a.bin", dir / "b.bin", dir / "empty.bin", dir / "c.bin"});
  std::vector<std::int32_t> all = a;
  all.insert(all.end(), b.begin(), b.end());
  all.insert(all.end(), c.begin(), c.end());
  ASSERT_EQ(t.size(), all.size());
  EXPECT_TRUE(t.mapped());
  EXPECT_EQ(t.to_vector(), all);
  std::vector<std::int32_t> window(10);
  t.read(995, 10, window.data());  // spans a, b and c
  EXPECT_EQ(window, std::vector<std::int32_t>(all.begin() + 995, all.begin() + 1005));
  EXPECT_THROW(t.read(all.size() - 3, 4, window.data()), std::out_of_range);
}

TEST(TokenSource, MappingATruncatedShardNamesTheFile) {
  TempDir dir;
  write_bytes(dir / "t.bin", shard_bytes(kLlmcMagic, kLlmcVersion, 10, 4));
  const std::string msg = error_of([&] { TokenSource::map_shards({dir / "t.bin"}); });
  EXPECT_NE(msg.find("t.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

TEST(BatchSampler, SequentialOrderWalksTheTokensWindowByWindowAndWraps) {
  const std::vector<std::int32_t> tokens = iota_tokens(1000);
  const int batch = 3, seq = 10, micro = 2;
  const BatchSampler s(tokens, batch, seq, 1, BatchSampler::Order::sequential, micro);
  std::size_t expected = 0;
  for (std::uint64_t step = 1; step <= 40; ++step)
    for (int m = 0; m < micro; ++m)
      for (int r = 0; r < batch; ++r) {
        EXPECT_EQ(s.offset(step, m, r), expected % 990) << step << " " << m << " " << r;
        expected += seq;
      }
  // A fresh sampler (a resumed run) gives the same batch for the same step.
  std::vector<std::int32_t> in1(batch * seq), tg1(in1.size()), in2(in1.size()), tg2(in1.size());
  s.fill(17, 1, in1.data(), tg1.data());
  BatchSampler(tokens, batch, seq, 99, BatchSampler::Order::sequential, micro)
      .fill(17, 1, in2.data(), tg2.data());
  EXPECT_EQ(in1, in2);
  EXPECT_EQ(tg1, tg2);
  EXPECT_EQ(tg1[0], in1[0] + 1);
}

TEST(Prepare, ShardsHoldTheSplitTokensAndTrainingReadsThemInOrder) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 3000; ++i) text += "line " + std::to_string(i) + " of the text\n";
  write_bytes(dir / "corpus/a.txt", text);
  write_bytes(dir / "corpus/b.txt", "second document\n");
  PrepareOptions o;
  o.data = dir / "corpus";
  o.out = dir / "prepared";
  o.chunk_tokens = 1000;
  o.shard_tokens = 20000;
  int reports = 0;
  o.progress = [&](double) { ++reports; };
  o.block_bytes = 4096;
  const PrepareResult r = prepare_shards(o);
  EXPECT_EQ(r.documents, 2u);
  EXPECT_EQ(r.bytes, text.size() + 16);
  EXPECT_GT(reports, 10);
  EXPECT_EQ(r.train_shards, (r.train_tokens + 19999) / 20000);
  EXPECT_TRUE(fs::exists(dir / "prepared/tokenizer.json"));
  EXPECT_TRUE(fs::exists(dir / "prepared/prepare.json"));
  // The byte tokenizer has no <|endoftext|>: the documents are simply concatenated.
  std::vector<std::int32_t> bytes = ByteTokenizer().encode(text + "second document\n");
  const TokenSplit want = split_tokens(bytes, 0.05, 1000);
  DataOptions d;
  d.path = dir / "prepared";
  const TokenSplit got = load_tokens(d);
  EXPECT_TRUE(got.sequential);
  EXPECT_TRUE(got.train.mapped());
  EXPECT_EQ(got.train.to_vector(), want.train.to_vector());
  EXPECT_EQ(got.val.to_vector(), want.val.to_vector());
  // A second prepare into the same folder is refused.
  EXPECT_NE(error_of([&] { prepare_shards(o); }).find("not empty"), std::string::npos);
}

TEST(Prepare, EncodingInBlocksEqualsEncodingTheWholeText) {
  TempDir dir;
  // Lines with leading spaces, blank lines, tabs, punctuation, digits and non-ASCII:
  // the cut points must never change a pre-token.
  std::string text;
  for (int i = 0; i < 400; ++i)
    text += (i % 3 == 0 ? "  indented" : "Word") + std::to_string(i) + " it's \t" +
            (i % 5 == 0 ? "\n\n" : "\n") + (i % 7 == 0 ? "\xc3\xa9t\xc3\xa9 " : "") + ".;\n";
  write_bytes(dir / "t.txt", text);
  tok::BpeTrainOptions bo;
  bo.vocab_size = 300;
  const tok::Tokenizer t = tok::train_bpe(text, bo);
  t.save(dir / "tok.json");
  PrepareOptions o;
  o.data = dir / "t.txt";
  o.tokenizer = dir / "tok.json";
  o.out = dir / "p";
  o.chunk_tokens = 100;
  o.block_bytes = 37;  // many cuts
  prepare_shards(o);
  const std::vector<std::int32_t> whole = t.encode(text);
  const TokenSplit want = split_tokens(whole, 0.05, 100);
  DataOptions d;
  d.path = dir / "p";
  d.vocab_size = t.vocab_size();
  const TokenSplit got = load_tokens(d);
  EXPECT_EQ(got.train.to_vector(), want.train.to_vector());
  EXPECT_EQ(got.val.to_vector(), want.val.to_vector());
  // The model's vocabulary must hold the shards' ids.
  d.vocab_size = 256;
  EXPECT_NE(error_of([&] { load_tokens(d); }).find("outside the vocabulary"), std::string::npos);
}

}  // namespace
}  // namespace whtlm::data
