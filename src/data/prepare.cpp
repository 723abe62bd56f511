// `whtlm data prepare`: text tokenized once, in parallel, into llm.c train/val shards.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "whtlm/data.hpp"
#include "whtlm/io.hpp"
#include "whtlm/tokenizer.hpp"

namespace whtlm::data {
namespace {

namespace fs = std::filesystem;

bool ascii_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// The first position p >= from where the text can be cut without changing its
// encoding: a lone '\n' between two ASCII non-space characters ("x\nY", cut before Y).
// GPT-2's pattern has no look-behind, "\n" there is a pre-token of its own whether or
// not "Y" follows (\s+(?!\S) fails before Y and \s+ takes it; at the end of the text
// \s+(?!\S) takes it), and the scan restarts at Y either way. Returns text.size() when
// there is none.
std::size_t safe_cut(std::string_view text, std::size_t from) {
  for (std::size_t p = std::max<std::size_t>(from, 2); p < text.size(); ++p) {
    const auto y = static_cast<unsigned char>(text[p]);
    const auto x = static_cast<unsigned char>(text[p - 2]);
    if (text[p - 1] == '\n' && y < 0x80 && !ascii_space(y) && x < 0x80 && !ascii_space(x)) return p;
  }
  return text.size();
}

std::vector<fs::path> text_files(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return {fs::path(path)};
  if (!fs::is_directory(path, ec))
    throw std::runtime_error("data path " + path + " does not exist or is not a file or folder");
  std::vector<fs::path> files;
  for (const std::string& f : io::list_files(path)) files.emplace_back(f);
  return files;
}

// Writes tokens as shards PREFIX_000000.bin, ... of at most shard_tokens each.
std::size_t write_shards(const std::string& dir, const std::string& prefix,
                         const std::vector<std::int32_t>& tokens, std::size_t shard_tokens) {
  std::size_t n = 0, at = 0;
  do {
    char name[64];
    std::snprintf(name, sizeof name, "%s_%06zu.bin", prefix.c_str(), n);
    const std::size_t len = std::min(shard_tokens, tokens.size() - at);
    write_llmc_shard((fs::path(dir) / name).string(),
                     std::span<const std::int32_t>(tokens.data() + at, len));
    at += len;
    ++n;
  } while (at < tokens.size());
  return n;
}

}  // namespace

PrepareResult prepare_shards(const PrepareOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  if (o.out.empty()) throw std::invalid_argument("data prepare: --out is required");
  if (o.shard_tokens < 1) throw std::invalid_argument("--shard-tokens must be at least 1");
  const tok::Tokenizer t = tok::load_tokenizer(o.tokenizer);
  if (t.vocab_size() > 65536)
    throw std::invalid_argument(o.tokenizer + ": " + std::to_string(t.vocab_size()) +
                                " tokens do not fit the uint16 ids of an llm.c shard (at most "
                                "65536)");
  std::error_code ec;
  if (fs::exists(o.out, ec) && !fs::is_empty(o.out, ec))
    throw std::invalid_argument(o.out + ": exists and is not empty; choose a new folder");
  const std::string path = o.data.empty() ? default_corpus_path() : o.data;
  const std::vector<fs::path> files = text_files(path);

  PrepareResult r;
  for (const fs::path& f : files) r.bytes += fs::file_size(f);
  std::vector<std::int32_t> all;
  std::size_t done = 0;
  const std::size_t block = std::max<std::size_t>(o.block_bytes, 1);
  for (const fs::path& f : files) {
    const std::string text = io::read_file(f.string(), io::kNoLimit);
    if (r.documents > 0 && t.eot_id()) all.push_back(*t.eot_id());  // between documents
    ++r.documents;
    for (std::size_t at = 0; at < text.size();) {
      const std::size_t end = std::min(text.size(), safe_cut(text, at + block));
      const std::vector<std::int32_t> ids =
          t.encode_parallel(std::string_view(text).substr(at, end - at));
      all.insert(all.end(), ids.begin(), ids.end());
      done += end - at;
      at = end;
      if (o.progress) o.progress(double(done) / double(std::max<std::size_t>(r.bytes, 1)));
    }
  }
  if (all.empty()) throw std::runtime_error(path + ": no text to tokenize");
  TokenSplit split;
  try {
    split = split_tokens(all, o.val_fraction, o.chunk_tokens);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
  fs::create_directories(o.out);
  const std::vector<std::int32_t> train = split.train.to_vector(), val = split.val.to_vector();
  r.train_tokens = train.size();
  r.val_tokens = val.size();
  r.train_shards = write_shards(o.out, "train", train, o.shard_tokens);
  r.val_shards = write_shards(o.out, "val", val, o.shard_tokens);
  t.save((fs::path(o.out) / "tokenizer.json").string());
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const nlohmann::json summary{{"data", path},
                               {"tokenizer", o.tokenizer},
                               {"vocab_size", t.vocab_size()},
                               {"documents", r.documents},
                               {"bytes", r.bytes},
                               {"tokens", r.train_tokens + r.val_tokens},
                               {"train_tokens", r.train_tokens},
                               {"val_tokens", r.val_tokens},
                               {"train_shards", r.train_shards},
                               {"val_shards", r.val_shards},
                               {"val_fraction", o.val_fraction},
                               {"chunk_tokens", o.chunk_tokens},
                               {"seconds", r.seconds}};
  io::write_file_atomic((fs::path(o.out) / "prepare.json").string(), summary.dump(2) + "\n");
  return r;
}

}  // namespace whtlm::data
