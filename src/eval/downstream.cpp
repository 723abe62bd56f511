// The downstream proxy (whtlm/downstream.hpp): cloze items from the held-out verses,
// scored through the inference session (each context prefilled once, the candidates
// decoded from it one after another), and bits per byte through the trainer's
// evaluation.
#include "whtlm/downstream.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "whtlm/eval.hpp"
#include "whtlm/infer.hpp"
#include "whtlm/tokenizer.hpp"
#include "whtlm/train.hpp"

namespace whtlm::downstream {
namespace {

using Clock = std::chrono::steady_clock;

bool is_letter(unsigned char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
// ASCII punctuation, as std::ispunct in the C locale.
bool is_punct(unsigned char c) {
  return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
         (c >= 123 && c <= 126);
}

// The final word of the line text[begin, end) (end at its '\n'), if it has one.
bool final_word_of(std::string_view text, std::size_t begin, std::size_t end, FinalWord& out) {
  std::size_t j = end;  // one past the last letter
  while (j > begin && !is_letter(static_cast<unsigned char>(text[j - 1]))) {
    if (!is_punct(static_cast<unsigned char>(text[j - 1]))) return false;
    --j;
  }
  if (j == begin) return false;
  std::size_t i = j;
  while (i > begin && is_letter(static_cast<unsigned char>(text[i - 1]))) --i;
  if (i == begin || text[i - 1] != ' ') return false;
  out.line_begin = begin;
  out.word_begin = i;
  out.word.assign(text.substr(i, j - i));
  out.terminator = j < end ? text[j] : '\n';
  return true;
}

// log(sum(exp(row))) of one logit row, in double.
double log_sum_exp(const float* row, std::size_t vocab) {
  double hi = -std::numeric_limits<double>::infinity();
  for (std::size_t v = 0; v < vocab; ++v) hi = std::max(hi, double(row[v]));
  double sum = 0;
  for (std::size_t v = 0; v < vocab; ++v) sum += std::exp(double(row[v]) - hi);
  return hi + std::log(sum);
}

// Tokens [at, at + n) as bytes into `out`; false (out unspecified) when an id is not a
// byte.
bool read_bytes(const data::TokenSource& tokens, std::size_t at, std::size_t n, std::string& out) {
  std::vector<std::int32_t> ids(n);
  tokens.read(at, n, ids.data());
  out.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] > 255) return false;
    out[i] = static_cast<char>(ids[i]);
  }
  return true;
}

// The k most frequent words, ties in byte order (the map's order, kept by a stable sort).
std::vector<std::pair<std::string, std::size_t>> top_words(
    const std::map<std::string, std::size_t>& counts, int k) {
  std::vector<std::pair<std::string, std::size_t>> v(counts.begin(), counts.end());
  std::stable_sort(v.begin(), v.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  if (v.size() > std::size_t(k)) v.resize(std::size_t(k));
  return v;
}

void check_k(int k) {
  if (k < 2)
    throw std::invalid_argument("cloze: needs at least 2 candidates, got " + std::to_string(k));
}

// The items of the validation text for these candidates (build_cloze's rule).
ClozeSet items_from(const std::vector<std::pair<std::string, std::size_t>>& candidates,
                    std::string_view val_text, const ClozeOptions& o) {
  if (o.context_bytes == 0 || o.max_items == 0)
    throw std::invalid_argument("cloze: context_bytes and max_items must be positive");
  ClozeSet set;
  set.chunk_bytes = o.chunk_tokens;
  set.context_bytes = o.context_bytes;
  for (const auto& [word, count] : candidates) {
    set.candidates.push_back(word);
    set.candidate_counts.push_back(count);
  }
  std::vector<const FinalWord*> eligible;
  const std::vector<FinalWord> words = final_words(val_text, o.chunk_tokens);
  set.verses = words.size();
  for (const FinalWord& w : words)
    if (std::find(set.candidates.begin(), set.candidates.end(), w.word) != set.candidates.end())
      eligible.push_back(&w);
  set.eligible = eligible.size();
  const std::size_t n = std::min(eligible.size(), o.max_items);
  for (std::size_t i = 0; i < n; ++i) {
    const FinalWord& w = *eligible[i * eligible.size() / n];
    const std::size_t chunk_begin = w.word_begin / o.chunk_tokens * o.chunk_tokens;
    const std::size_t from =
        std::max(chunk_begin, w.word_begin - std::min(w.word_begin, o.context_bytes));
    set.items.push_back({std::string(val_text.substr(from, w.word_begin - from)), w.word,
                         w.terminator, w.word_begin});
  }
  return set;
}

}  // namespace

std::vector<FinalWord> final_words(std::string_view text, std::size_t chunk_bytes) {
  if (chunk_bytes == 0) throw std::invalid_argument("final_words: chunk_bytes must be positive");
  std::vector<FinalWord> out;
  for (std::size_t c0 = 0; c0 < text.size(); c0 += chunk_bytes) {
    const std::size_t c1 = std::min(text.size(), c0 + chunk_bytes);
    std::size_t nl = text.find('\n', c0);  // the '\n' a whole line starts after
    while (nl != std::string_view::npos && nl < c1) {
      const std::size_t next = text.find('\n', nl + 1);
      if (next == std::string_view::npos || next >= c1) break;
      FinalWord w;
      if (final_word_of(text, nl + 1, next, w)) out.push_back(std::move(w));
      nl = next;
    }
  }
  return out;
}

std::vector<std::pair<std::string, std::size_t>> cloze_candidates(std::string_view train_text,
                                                                  std::size_t chunk_bytes, int k) {
  check_k(k);
  std::map<std::string, std::size_t> counts;
  for (const FinalWord& w : final_words(train_text, chunk_bytes)) ++counts[w.word];
  return top_words(counts, k);
}

ClozeSet build_cloze(std::string_view train_text, std::string_view val_text,
                     const ClozeOptions& o) {
  return items_from(cloze_candidates(train_text, o.chunk_tokens, o.candidates), val_text, o);
}

double ClozeScores::accuracy() const {
  return predicted.empty() ? std::numeric_limits<double>::quiet_NaN()
                           : double(correct) / double(predicted.size());
}

ClozeScores score_cloze(Transformer& model, const ClozeSet& set, int batch) {
  const ModelConfig& c = model.config();
  if (c.vocab_size < 256)
    throw std::invalid_argument("cloze: needs a byte-level model (vocabulary >= 256), got " +
                                std::to_string(c.vocab_size));
  if (batch < 1) throw std::invalid_argument("cloze: batch must be at least 1");
  ClozeScores out;
  if (set.items.empty() || set.candidates.empty()) return out;
  std::size_t context = 0, longest = 0;
  for (const ClozeItem& it : set.items) {
    if (it.context.empty()) throw std::invalid_argument("cloze: an item has no context");
    context = std::max(context, it.context.size());
  }
  for (const std::string& w : set.candidates) {
    if (w.empty()) throw std::invalid_argument("cloze: an empty candidate");
    longest = std::max(longest, w.size());
  }
  // The longest sequence the session holds: a context, then a candidate (its
  // terminator is predicted, never fed).
  const std::size_t len = context + longest;
  if (len > std::size_t(c.max_seq))
    throw std::invalid_argument("cloze: a context of " + std::to_string(context) +
                                " bytes and a candidate of " + std::to_string(longest) +
                                " exceed the model's context of " + std::to_string(c.max_seq));
  const std::size_t V = std::size_t(c.vocab_size), K = set.candidates.size();
  const std::size_t n = set.items.size();
  const std::size_t group = std::min(n, std::size_t(batch));
  InferenceSession session(model, int(group), int(len));
  out.scores.assign(n, std::vector<double>(K, 0.0));
  std::vector<double> first;  // [item in group][V]: log-probabilities after the context
  for (std::size_t g0 = 0; g0 < n; g0 += group) {
    const std::size_t g = std::min(group, n - g0);
    std::vector<std::vector<std::int32_t>> prompts(g);
    for (std::size_t i = 0; i < g; ++i)
      for (char ch : set.items[g0 + i].context)
        prompts[i].push_back(static_cast<unsigned char>(ch));
    const std::span<const float> after = session.prefill(prompts);
    first.assign(g * V, 0.0);
    for (std::size_t i = 0; i < g; ++i) {
      const double lse = log_sum_exp(after.data() + i * V, V);
      for (std::size_t v = 0; v < V; ++v) first[i * V + v] = double(after[i * V + v]) - lse;
    }
    std::vector<int> slots(g);
    for (std::size_t i = 0; i < g; ++i) slots[i] = int(i);
    std::vector<std::int32_t> feed(g);
    for (std::size_t k = 0; k < K; ++k) {
      const std::string& w = set.candidates[k];
      for (std::size_t i = 0; i < g; ++i)
        out.scores[g0 + i][k] = first[i * V + static_cast<unsigned char>(w[0])];
      for (std::size_t j = 0; j < w.size(); ++j) {
        std::fill(feed.begin(), feed.end(), static_cast<unsigned char>(w[j]));
        const std::span<const float> logits = session.decode(slots, feed);
        for (std::size_t i = 0; i < g; ++i) {
          const unsigned char next = j + 1 < w.size()
                                         ? static_cast<unsigned char>(w[j + 1])
                                         : static_cast<unsigned char>(set.items[g0 + i].terminator);
          const float* row = logits.data() + i * V;
          out.scores[g0 + i][k] += double(row[next]) - log_sum_exp(row, V);
        }
      }
      for (std::size_t i = 0; i < g; ++i) session.truncate(int(i), int(prompts[i].size()));
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    const auto& s = out.scores[i];
    const int best = int(std::max_element(s.begin(), s.end()) - s.begin());  // ties: the first
    out.predicted.push_back(best);
    if (set.candidates[std::size_t(best)] == set.items[i].answer) ++out.correct;
  }
  return out;
}

Result evaluate(Transformer& model, const data::DataOptions& data_options, const Options& o) {
  const auto start = Clock::now();
  const ModelConfig& c = model.config();
  data::DataOptions d = data_options;
  d.vocab_size = c.vocab_size;
  const data::TokenSplit split = data::load_tokens(d);
  const tok::Tokenizer t = data::data_tokenizer(d);
  Result r;
  r.data = split.description;
  r.tokenizer = t.is_bytes() ? "byte" : d.tokenizer;

  // Bits per byte: the bytes of each predicted token (1 for byte tokens).
  const std::vector<std::int32_t> lengths = eval::token_byte_lengths(t, c.vocab_size);
  r.seq = o.seq > 0 ? std::min(o.seq, c.max_seq) : std::min(c.max_seq, 256);
  r.windows = std::min(o.windows, data::num_eval_windows(split.val.size(), r.seq));
  const EvalResult e = whtlm::evaluate(model, split.val, 8, r.seq, r.windows, lengths);
  r.nats_per_token = e.loss;
  r.tokens = e.tokens;
  r.bytes = e.bytes;
  r.bits_per_byte = e.bits_per_byte();

  // Cloze: byte tokens only.
  const auto cloze_start = Clock::now();
  if (!t.is_bytes())
    r.cloze_skipped = "the data's tokenizer is not bytes (" + d.tokenizer + ", " +
                      std::to_string(t.vocab_size()) +
                      " tokens); the cloze items are built and scored on bytes";
  ClozeOptions co = o.cloze;
  co.chunk_tokens = d.chunk_tokens;  // the split's own chunks
  check_k(co.candidates);
  // The training split's final words, a chunk at a time (it may be large), and the
  // validation split as text.
  std::map<std::string, std::size_t> counts;
  std::string val, chunk;
  const char* not_bytes =
      "the data holds token ids above 255 (token shards without a byte tokenizer); the "
      "cloze items are built and scored on bytes";
  for (std::size_t at = 0; r.cloze_skipped.empty() && at < split.train.size();
       at += co.chunk_tokens) {
    if (!read_bytes(split.train, at, std::min(co.chunk_tokens, split.train.size() - at), chunk))
      r.cloze_skipped = not_bytes;
    else
      for (const FinalWord& w : final_words(chunk, co.chunk_tokens)) ++counts[w.word];
  }
  if (r.cloze_skipped.empty() && !read_bytes(split.val, 0, split.val.size(), val))
    r.cloze_skipped = not_bytes;
  if (r.cloze_skipped.empty()) {
    const auto candidates = top_words(counts, co.candidates);
    // Room for the longest candidate after the context, within the model's context.
    std::size_t longest = 0;
    for (const auto& [w, n] : candidates) longest = std::max(longest, w.size());
    if (candidates.size() < 2) {
      r.cloze_skipped =
          "the training split has fewer than 2 distinct verse-final words (lines "
          "that end in a word)";
    } else if (longest + 1 > std::size_t(c.max_seq)) {
      r.cloze_skipped = "the model's context (" + std::to_string(c.max_seq) +
                        ") cannot hold a candidate word after a context";
    } else {
      co.context_bytes = std::min(co.context_bytes, std::size_t(c.max_seq) - longest);
      const ClozeSet set = items_from(candidates, val, co);
      r.candidates = set.candidates;
      r.candidate_counts = set.candidate_counts;
      r.items = set.items.size();
      r.eligible = set.eligible;
      r.verses = set.verses;
      r.context_bytes = set.context_bytes;
      r.chance = set.candidates.empty() ? 0 : 1.0 / double(set.candidates.size());
      if (set.items.empty()) {
        r.cloze_skipped = "no validation verse ends with one of the " +
                          std::to_string(set.candidates.size()) + " candidate words";
      } else {
        const ClozeScores s = score_cloze(model, set, o.batch);
        r.correct = s.correct;
        r.accuracy = s.accuracy();
        r.predictions.assign(set.candidates.size(), 0);
        for (int k : s.predicted) ++r.predictions[std::size_t(k)];
        std::size_t majority = 0;
        double answer = 0;
        for (std::size_t i = 0; i < set.items.size(); ++i) {
          if (set.items[i].answer == set.candidates.front()) ++majority;
          const std::size_t k = std::size_t(
              std::find(set.candidates.begin(), set.candidates.end(), set.items[i].answer) -
              set.candidates.begin());
          answer += s.scores[i][k];
        }
        r.majority_accuracy = double(majority) / double(set.items.size());
        r.mean_answer_logprob = answer / double(set.items.size());
      }
    }
  }
  const auto end = Clock::now();
  r.cloze_seconds = std::chrono::duration<double>(end - cloze_start).count();
  r.seconds = std::chrono::duration<double>(end - start).count();
  return r;
}

std::string result_to_json(const Result& r) {
  nlohmann::json j{{"kind", "whtlm downstream"},
                   {"checkpoint", r.checkpoint},
                   {"data", r.data},
                   {"tokenizer", r.tokenizer},
                   {"bits_per_byte", r.bits_per_byte},
                   {"nats_per_token", r.nats_per_token},
                   {"bytes_scored", r.bytes},
                   {"tokens_scored", r.tokens},
                   {"windows", r.windows},
                   {"seq", r.seq},
                   {"seconds", r.seconds}};
  if (!r.cloze_skipped.empty()) {
    j["cloze_skipped"] = r.cloze_skipped;
  } else {
    j["cloze"] = {{"accuracy", r.accuracy},
                  {"correct", r.correct},
                  {"items", r.items},
                  {"eligible", r.eligible},
                  {"verses", r.verses},
                  {"K", r.candidates.size()},
                  {"chance", r.chance},
                  {"majority_accuracy", r.majority_accuracy},
                  {"mean_answer_logprob", r.mean_answer_logprob},
                  {"context_bytes", r.context_bytes},
                  {"candidates", r.candidates},
                  {"candidate_counts", r.candidate_counts},
                  {"predictions", r.predictions},
                  {"seconds", r.cloze_seconds}};
  }
  return j.dump(2) + "\n";
}

}  // namespace whtlm::downstream
