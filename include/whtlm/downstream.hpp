// A downstream proxy for a trained model, cheap enough to run after every training run
// of an experiment (docs/experiment.md, "The downstream proxy"):
//  - held-out cloze accuracy: verses of the validation split whose last word is one of
//    the K most frequent verse-final words of the training split; the model picks the
//    word from those K given the text before it;
//  - bits per byte over fixed validation windows.
// It is a proxy, not a benchmark such as LAMBADA or HellaSwag: the items come from the
// training corpus's own held-out text and the candidates from its own statistics.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "whtlm/data.hpp"
#include "whtlm/transformer.hpp"

namespace whtlm::downstream {

struct ClozeOptions {
  int candidates = 16;               // K: the most frequent verse-final words of training
  std::size_t context_bytes = 96;    // of text before the answer, at most
  std::size_t max_items = 256;       // items kept, spread evenly over the eligible ones
  std::size_t chunk_tokens = 16384;  // the split's chunks: no context crosses one
};

// A verse's last word: the line (a whole line: it starts after a '\n' and ends at the
// next '\n', both inside one chunk) ends with a run of ASCII letters preceded by a space
// and followed only by ASCII punctuation (". ; : , ? !" and the like, possibly none).
// `terminator` is the byte right after the word: the first punctuation byte, or '\n'.
struct FinalWord {
  std::size_t line_begin = 0, word_begin = 0;  // offsets in the text
  std::string word;
  char terminator = '\n';
};
// Every whole line's final word in `text`, taken chunk by chunk (chunks of chunk_bytes
// from offset 0; a line across a chunk boundary belongs to neither), in text order.
std::vector<FinalWord> final_words(std::string_view text, std::size_t chunk_bytes);

// The K most frequent final words of `train_text` with their counts, most frequent
// first, ties broken by byte order ("God" before "LORD" before "him"); fewer than K
// when the text has fewer distinct ones.
std::vector<std::pair<std::string, std::size_t>> cloze_candidates(std::string_view train_text,
                                                                  std::size_t chunk_bytes, int k);

struct ClozeItem {
  std::string context;  // the text before the answer word (ends with the space before it)
  std::string answer;   // one of the candidates
  char terminator = '\n';
  std::size_t offset = 0;  // of the answer word in the validation text
};

struct ClozeSet {
  std::vector<std::string> candidates;        // as cloze_candidates orders them
  std::vector<std::size_t> candidate_counts;  // their counts in the training text
  std::vector<ClozeItem> items;
  std::size_t eligible = 0;  // validation verses whose final word is a candidate
  std::size_t verses = 0;    // validation verses with a final word
  std::size_t chunk_bytes = 0, context_bytes = 0;
};

// Items from the validation text: every verse whose final word is a candidate, in text
// order; the context is the text before the word within the same chunk, its last
// context_bytes bytes. More than max_items: items floor(i * eligible / max_items) for
// i < max_items. A pure function of the two texts and the options.
ClozeSet build_cloze(std::string_view train_text, std::string_view val_text,
                     const ClozeOptions& options);

// Scores every candidate of every item with a byte-level model (vocabulary >= 256):
// scores[i][k] = sum of the log-probabilities (natural log) of candidate k's bytes
// followed by item i's terminator, given its context. The context of each item is
// prefilled once (batch items at a time); the candidates are decoded from it one after
// another. std::invalid_argument when an item does not fit the model's context.
struct ClozeScores {
  std::vector<std::vector<double>> scores;  // [item][candidate]
  std::vector<int> predicted;               // best-scoring candidate (ties: the first)
  std::size_t correct = 0;
  double accuracy() const;  // correct / items (NaN without items)
};
ClozeScores score_cloze(Transformer& model, const ClozeSet& set, int batch = 128);

struct Options {
  ClozeOptions cloze;
  // Bits per byte: the mean loss over `windows` validation windows of `seq` tokens
  // (spread evenly over the split, as whtlm eval takes them); seq 0: the model's
  // context, at most 256.
  int seq = 0;
  std::size_t windows = 64;
  int batch = 128;  // items per prefill (cloze), windows per forward are 8
};

struct Result {
  // Cloze (when `cloze_skipped` is empty).
  std::string cloze_skipped;  // why no cloze was scored, e.g. the data is not bytes
  std::vector<std::string> candidates;
  std::vector<std::size_t> candidate_counts;
  std::vector<std::size_t> predictions;  // per candidate: the items it was the answer given to
  std::size_t items = 0, eligible = 0, verses = 0, correct = 0, context_bytes = 0;
  double accuracy = 0;
  double chance = 0;               // 1 / K
  double majority_accuracy = 0;    // always answering the most frequent training word
  double mean_answer_logprob = 0;  // of the right answer's bytes and terminator, nats
  // Bits per byte.
  double bits_per_byte = 0, nats_per_token = 0, bytes = 0;
  std::size_t tokens = 0, windows = 0;
  int seq = 0;
  std::string checkpoint;  // what was measured (set by the caller; written as given)
  std::string data;        // the split's description
  std::string tokenizer;   // "byte" or the data's tokenizer
  double seconds = 0, cloze_seconds = 0;
};

// Both measurements for `model` on the data it was trained on (`data`: the run's data
// options; data.vocab_size is the model's). Cloze needs byte tokens: with any other
// tokenizer it is skipped and Result::cloze_skipped says so; bits per byte then counts
// the bytes of the decoded tokens.
Result evaluate(Transformer& model, const data::DataOptions& data, const Options& options = {});

// downstream.json: every field of Result.
std::string result_to_json(const Result& r);

}  // namespace whtlm::downstream
