// Byte-level BPE training: count the pre-tokens of the text once (in parallel), then
// learn merges of the most frequent adjacent pair, keeping pair counts up to date
// incrementally: each merge touches only the words that hold its pair.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <queue>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "data/tokenizer/pretokenize.hpp"
#include "data/tokenizer/tokenizer_impl.hpp"
#include "whtlm/threads.hpp"
#include "whtlm/tokenizer.hpp"

namespace whtlm::tok {
namespace {

struct BytesHash {
  std::size_t operator()(std::string_view s) const {
    return static_cast<std::size_t>(
        detail::hash_bytes(reinterpret_cast<const unsigned char*>(s.data()), s.size()));
  }
};
using WordCounts = std::unordered_map<std::string_view, std::uint64_t, BytesHash>;

std::uint64_t pair_key(std::int32_t a, std::int32_t b) {
  return std::uint64_t{static_cast<std::uint32_t>(a)} << 32 | static_cast<std::uint32_t>(b);
}
std::int32_t left_of(std::uint64_t key) { return static_cast<std::int32_t>(key >> 32); }
std::int32_t right_of(std::uint64_t key) { return static_cast<std::int32_t>(key & 0xFFFFFFFFu); }

// Pre-token counts of the text outside special tokens, over num_threads() threads.
WordCounts count_words(std::string_view text, const detail::SpecialMatcher& matcher) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const int threads = num_threads();
  const std::size_t chunk_bytes =
      std::max<std::size_t>(std::size_t{1} << 20, text.size() / (4 * threads) + 1);
  const std::vector<detail::Chunk> chunks =
      detail::make_chunks(s, detail::split_specials(matcher, text, true), chunk_bytes);
  std::vector<WordCounts> partial(chunks.size());
  const auto n = static_cast<std::ptrdiff_t>(chunks.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (std::ptrdiff_t i = 0; i < n; ++i) {
    const detail::Chunk& c = chunks[i];
    if (c.special >= 0) continue;
    for (std::size_t p = c.begin; p < c.stop;) {
      const std::size_t q = detail::pretoken_end(s, p, c.end);
      if (q - p > 1) ++partial[i][text.substr(p, q - p)];  // one byte: no pair to count
      p = q;
    }
  }
  WordCounts all;
  for (WordCounts& part : partial) {
    if (all.empty()) {
      all.swap(part);
      continue;
    }
    for (const auto& [word, count] : part) all[word] += count;
    WordCounts().swap(part);
  }
  return all;
}

struct Word {
  std::vector<std::int32_t> symbols;
  std::int64_t count = 0;
};

// A candidate merge in the max-heap: more frequent first, then the smaller (left, right).
struct Candidate {
  std::int64_t count;
  std::uint64_t pair;
  bool operator<(const Candidate& o) const {
    return count != o.count ? count < o.count : pair > o.pair;
  }
};

}  // namespace

Tokenizer train_bpe(std::string_view text, const BpeTrainOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  const std::size_t n_special = options.special_tokens.size();
  if (options.vocab_size < 256 || static_cast<std::size_t>(options.vocab_size) < 256 + n_special)
    throw std::invalid_argument("vocab_size " + std::to_string(options.vocab_size) +
                                " is too small: it must hold the 256 byte tokens and the " +
                                std::to_string(n_special) + " special token(s)");
  std::vector<SpecialToken> specials;
  for (std::size_t i = 0; i < n_special; ++i) {
    const std::string& content = options.special_tokens[i];
    if (content.empty()) throw std::invalid_argument("a special token is empty");
    for (std::size_t k = 0; k < i; ++k)
      if (options.special_tokens[k] == content)
        throw std::invalid_argument("special token '" + content + "' is given twice");
    specials.push_back({content, static_cast<std::int32_t>(i)});  // final ids come last
  }
  detail::SpecialMatcher matcher;
  matcher.build(specials);

  BpeTrainProgress progress;
  progress.text_bytes = text.size();
  const std::size_t target_tokens = static_cast<std::size_t>(options.vocab_size) - n_special;
  progress.target = target_tokens;

  // Words, in byte order for a deterministic layout.
  const WordCounts counts = count_words(text, matcher);
  std::vector<std::pair<std::string_view, std::uint64_t>> sorted(counts.begin(), counts.end());
  std::sort(sorted.begin(), sorted.end());
  progress.unique_words = sorted.size();
  std::vector<Word> words(sorted.size());
  for (std::size_t w = 0; w < sorted.size(); ++w) {
    words[w].count = static_cast<std::int64_t>(sorted[w].second);
    for (const char c : sorted[w].first) words[w].symbols.push_back(static_cast<unsigned char>(c));
  }

  // Pair counts (weighted by word counts), and the words each pair occurs in (a word
  // may be listed more than once, or no longer hold the pair: both are checked).
  std::unordered_map<std::uint64_t, std::int64_t> pair_count;
  std::unordered_map<std::uint64_t, std::vector<std::uint32_t>> where;
  for (std::uint32_t w = 0; w < words.size(); ++w) {
    const auto& sym = words[w].symbols;
    for (std::size_t i = 0; i + 1 < sym.size(); ++i) {
      const std::uint64_t key = pair_key(sym[i], sym[i + 1]);
      pair_count[key] += words[w].count;
      auto& list = where[key];
      if (list.empty() || list.back() != w) list.push_back(w);
    }
  }
  std::priority_queue<Candidate> heap;
  for (const auto& [key, count] : pair_count) heap.push({count, key});

  std::vector<std::string> tokens(256);
  for (int b = 0; b < 256; ++b) tokens[b] = std::string(1, static_cast<char>(b));
  std::unordered_map<std::string, std::int32_t> token_ids;
  for (int b = 0; b < 256; ++b) token_ids.emplace(tokens[b], b);
  std::vector<std::pair<std::int32_t, std::int32_t>> merges;

  std::vector<std::uint32_t> seen(words.size(), 0);  // merge number + 1 that last visited
  std::vector<std::pair<std::uint64_t, std::int64_t>> delta;
  std::vector<std::int32_t> merged_symbols;
  auto report = [&](bool finished) {
    if (!options.progress) return;
    progress.merges = merges.size();
    progress.tokens = tokens.size();
    progress.seconds = seconds();
    progress.finished = finished;
    options.progress(progress);
  };
  report(false);

  while (tokens.size() < target_tokens && !heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    const auto it = pair_count.find(top.pair);
    const std::int64_t actual = it == pair_count.end() ? 0 : it->second;
    if (actual != top.count) {  // stale: the pair's count fell since this entry
      if (actual > 0) heap.push({actual, top.pair});
      continue;
    }
    if (static_cast<std::uint64_t>(actual) < std::max<std::uint64_t>(options.min_frequency, 1))
      break;
    const std::int32_t a = left_of(top.pair), b = right_of(top.pair);
    std::string bytes = tokens[a] + tokens[b];
    std::int32_t id;
    if (const auto found = token_ids.find(bytes); found != token_ids.end()) {
      id = found->second;  // the same bytes, reached by another pair before
    } else {
      id = static_cast<std::int32_t>(tokens.size());
      token_ids.emplace(bytes, id);
      tokens.push_back(std::move(bytes));
    }
    merges.emplace_back(a, b);
    const auto stamp = static_cast<std::uint32_t>(merges.size());

    // Merge in every word holding (a, b); pair counts change by (new pairs - old pairs).
    delta.clear();
    const std::vector<std::uint32_t> holders = std::move(where[top.pair]);
    where.erase(top.pair);
    for (const std::uint32_t w : holders) {
      if (seen[w] == stamp) continue;
      seen[w] = stamp;
      Word& word = words[w];
      auto& sym = word.symbols;
      merged_symbols.clear();
      bool changed = false;
      for (std::size_t i = 0; i < sym.size(); ++i) {
        if (i + 1 < sym.size() && sym[i] == a && sym[i + 1] == b) {
          merged_symbols.push_back(id);
          ++i;
          changed = true;
        } else {
          merged_symbols.push_back(sym[i]);
        }
      }
      if (!changed) continue;
      for (std::size_t i = 0; i + 1 < sym.size(); ++i)
        delta.emplace_back(pair_key(sym[i], sym[i + 1]), -word.count);
      for (std::size_t i = 0; i + 1 < merged_symbols.size(); ++i) {
        const std::uint64_t key = pair_key(merged_symbols[i], merged_symbols[i + 1]);
        delta.emplace_back(key, word.count);
        if (merged_symbols[i] == id || merged_symbols[i + 1] == id) {
          auto& list = where[key];
          if (list.empty() || list.back() != w) list.push_back(w);
        }
      }
      sym.swap(merged_symbols);
    }
    std::sort(delta.begin(), delta.end());
    for (std::size_t i = 0; i < delta.size();) {
      const std::uint64_t key = delta[i].first;
      std::int64_t d = 0;
      for (; i < delta.size() && delta[i].first == key; ++i) d += delta[i].second;
      if (d == 0) continue;
      std::int64_t& c = pair_count[key];
      c += d;
      if (d > 0) heap.push({c, key});
      if (c == 0) pair_count.erase(key);
    }
    if (merges.size() % 256 == 0) report(false);
  }

  report(true);
  for (std::size_t i = 0; i < n_special; ++i) {
    specials[i].id = static_cast<std::int32_t>(tokens.size());
    tokens.push_back(specials[i].content);
  }
  return Tokenizer::from_parts(std::move(tokens), std::move(merges), std::move(specials),
                               "trained tokenizer");
}

}  // namespace whtlm::tok
