// The downstream proxy: cloze items are a pure function of the data, never reach across
// a chunk of the split, and always have their answer among the candidates; the
// candidates are the most frequent final words with ties in byte order; a candidate's
// score (prefill once, decode, truncate) is the sum of log-softmax terms that a full
// forward pass over context + candidate + terminator gives, in double; bits per byte
// and the whole evaluation on a small corpus, and a tokenizer that is not bytes skips
// the cloze saying why.
#include "whtlm/downstream.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "whtlm/io.hpp"
#include "whtlm/tokenizer.hpp"
#include "whtlm/transformer.hpp"

namespace whtlm::downstream {
namespace {

namespace fs = std::filesystem;

TEST(ClozeWords, FinalWordsOfWholeLinesOnly) {
  // Chunks of 48 bytes: [0, 48) and [48, 96).
  const std::string text =
      "x\n"                // 0-1: the first line has no '\n' before it
      "and the LORD.\n"    // 2-15
      "he said;\n"         // 16-24
      "a the Lord's.\n"    // 25-38: an apostrophe before the word
      "b unto him;)\n"     // 39-51: across the chunk boundary at 48
      "c well-pleasing\n"  // 52-67: a hyphen before the word
      "d unto him;)\n"     // 68-80: terminator ';'
      "e them\n"           // 81-87: no punctuation, terminator '\n'
      "f in 5.\n";         // 88-95: a digit, no final word
  const std::vector<FinalWord> w = final_words(text, 48);
  ASSERT_EQ(w.size(), 4u);
  EXPECT_EQ(w[0].word, "LORD");
  EXPECT_EQ(w[0].terminator, '.');
  EXPECT_EQ(w[0].line_begin, 2u);
  EXPECT_EQ(text.substr(w[0].word_begin, 4), "LORD");
  EXPECT_EQ(w[1].word, "said");
  EXPECT_EQ(w[1].terminator, ';');
  EXPECT_EQ(w[2].word, "him");
  EXPECT_EQ(w[2].terminator, ';');
  EXPECT_EQ(w[2].line_begin, 68u);
  EXPECT_EQ(w[3].word, "them");
  EXPECT_EQ(w[3].terminator, '\n');
  // In one chunk the line across the boundary counts too.
  const std::vector<FinalWord> one = final_words(text, 4096);
  ASSERT_EQ(one.size(), 5u);
  EXPECT_EQ(one[2].line_begin, 39u);
}

TEST(ClozeWords, CandidatesAreTheMostFrequentWithTiesInByteOrder) {
  std::string text = "\n";
  for (const char* w : {"b", "a", "c", "a", "b", "B", "d", "c"})
    text += std::string("x ") + w + ".\n";
  const auto c = cloze_candidates(text, 1 << 20, 3);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0], (std::pair<std::string, std::size_t>{"a", 2}));
  EXPECT_EQ(c[1], (std::pair<std::string, std::size_t>{"b", 2}));
  EXPECT_EQ(c[2], (std::pair<std::string, std::size_t>{"c", 2}));
  const auto all = cloze_candidates(text, 1 << 20, 10);
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(all[3].first, "B");  // count 1; "B" < "d" in byte order
  EXPECT_EQ(all[4].first, "d");
  EXPECT_THROW(cloze_candidates(text, 1 << 20, 1), std::invalid_argument);
}

// A corpus of verses: random words, the last one from a small set, random punctuation.
std::string verses(unsigned seed, std::size_t lines) {
  std::mt19937 rng(seed);
  const std::vector<std::string> words{"and", "the", "of", "unto", "he", "said", "that", "in"};
  const std::vector<std::string> finals{"the", "thee", "them", "him", "God", "LORD", "me"};
  const std::string punct = ".;:,?!";
  std::string s = "\n";
  for (std::size_t i = 0; i < lines; ++i) {
    const int n = 3 + int(rng() % 12);
    for (int k = 0; k < n; ++k) s += words[rng() % words.size()] + " ";
    s += finals[rng() % finals.size()];
    if (rng() % 5 != 0) s += punct[rng() % punct.size()];
    s += "\n";
  }
  return s;
}

TEST(ClozeItems, DeterministicWithinChunksAndAnswersAmongTheCandidates) {
  const std::string train = verses(1, 3000), val = verses(2, 600);
  ClozeOptions o;
  o.candidates = 5;
  o.context_bytes = 40;
  o.chunk_tokens = 512;
  o.max_items = 1000;
  const ClozeSet a = build_cloze(train, val, o), b = build_cloze(train, val, o);
  ASSERT_EQ(a.candidates.size(), 5u);
  ASSERT_GT(a.items.size(), 100u);
  EXPECT_EQ(a.items.size(), a.eligible);  // under the cap: every eligible verse
  ASSERT_EQ(a.items.size(), b.items.size());
  bool cut_at_chunk = false;
  for (std::size_t i = 0; i < a.items.size(); ++i) {
    const ClozeItem& it = a.items[i];
    EXPECT_EQ(it.context, b.items[i].context);
    EXPECT_EQ(it.offset, b.items[i].offset);
    EXPECT_NE(std::find(a.candidates.begin(), a.candidates.end(), it.answer), a.candidates.end());
    ASSERT_LE(it.context.size(), o.context_bytes);
    ASSERT_GE(it.offset, it.context.size());
    const std::size_t from = it.offset - it.context.size();
    EXPECT_EQ(from / o.chunk_tokens, it.offset / o.chunk_tokens) << "item " << i;
    EXPECT_EQ(val.substr(from, it.context.size()), it.context);
    EXPECT_EQ(val.substr(it.offset, it.answer.size()), it.answer);
    const char after = val[it.offset + it.answer.size()];
    EXPECT_EQ(it.terminator, after);
    EXPECT_EQ(it.context.back(), ' ');
    if (it.context.size() < o.context_bytes && from % o.chunk_tokens == 0) cut_at_chunk = true;
    if (i > 0) {
      EXPECT_LT(a.items[i - 1].offset, it.offset);
    }
  }
  EXPECT_TRUE(cut_at_chunk) << "no context was cut short by a chunk start";

  // The cap keeps items spread evenly, in order, a subset of the uncapped ones.
  o.max_items = 10;
  const ClozeSet c = build_cloze(train, val, o);
  ASSERT_EQ(c.items.size(), 10u);
  EXPECT_EQ(c.eligible, a.eligible);
  for (std::size_t i = 0; i < 10; ++i)
    EXPECT_EQ(c.items[i].offset, a.items[i * a.items.size() / 10].offset);
}

// A model with every parameter moved off its initial value, so its predictions differ
// from position to position.
std::unique_ptr<Transformer> make_model(Family family, Projection proj, int max_seq) {
  ModelConfig c;
  c.family = family;
  c.projection = proj;
  c.n_layer = 2;
  c.d_model = 32;
  c.n_head = 4;
  c.n_kv_head = family == Family::llama ? 2 : 4;
  c.vocab_size = 256;
  c.max_seq = max_seq;
  auto m = std::make_unique<Transformer>(c);
  m->init_weights(3);
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-0.2f, 0.2f);
  for (float& p : m->params()) p += u(rng);
  return m;
}

// Sum of log-softmax over `text`'s bytes from position `from` on, from one full
// forward pass over the whole text, in double.
double brute_force(Transformer& m, const std::string& text, std::size_t from) {
  std::vector<std::int32_t> ids;
  for (char ch : text) ids.push_back(static_cast<unsigned char>(ch));
  m.forward(ids.data(), nullptr, 1, int(ids.size()));
  const std::span<const float> logits = m.logits();
  const std::size_t V = 256;
  double sum = 0;
  for (std::size_t p = from; p < ids.size(); ++p) {
    const float* row = logits.data() + (p - 1) * V;
    double hi = -1e300, z = 0;
    for (std::size_t v = 0; v < V; ++v) hi = std::max(hi, double(row[v]));
    for (std::size_t v = 0; v < V; ++v) z += std::exp(double(row[v]) - hi);
    sum += double(row[ids[p]]) - hi - std::log(z);
  }
  return sum;
}

struct ScoreCase {
  Family family;
  Projection proj;
};
class ClozeScoring : public ::testing::TestWithParam<ScoreCase> {};

TEST_P(ClozeScoring, CandidateScoreIsTheFullForwardsLogSoftmaxSum) {
  auto model = make_model(GetParam().family, GetParam().proj, 48);
  ClozeSet set;
  // "the" is a prefix of "thee" and "them": its score ends with the terminator's term.
  set.candidates = {"the", "thee", "them", "LORD", "I"};
  set.items = {{"and he said unto ", "thee", '.', 0},
               {"x ", "the", ';', 0},
               {"in the beginning God created ", "them", '\n', 0},
               {"a ", "LORD", ':', 0},
               {"unto the ", "I", '?', 0},
               {"and ", "the", '.', 0},
               {"of the words of the ", "them", '!', 0}};
  for (int batch : {64, 3}) {  // one group, and groups of 3 (the last one short)
    const ClozeScores s = score_cloze(*model, set, batch);
    ASSERT_EQ(s.scores.size(), set.items.size());
    std::size_t correct = 0;
    for (std::size_t i = 0; i < set.items.size(); ++i) {
      const ClozeItem& it = set.items[i];
      int best = 0;
      for (std::size_t k = 0; k < set.candidates.size(); ++k) {
        const std::string text = it.context + set.candidates[k] + it.terminator;
        const double want = brute_force(*model, text, it.context.size());
        EXPECT_NEAR(s.scores[i][k], want, 1e-5 * std::max(1.0, std::abs(want)))
            << "item " << i << " candidate " << set.candidates[k] << " batch " << batch;
        if (s.scores[i][k] > s.scores[i][std::size_t(best)]) best = int(k);
      }
      // Without the terminator "the" would score at least as high as "thee" would.
      const double bytes_only = brute_force(*model, it.context + "the", it.context.size());
      EXPECT_LT(s.scores[i][0], bytes_only);
      EXPECT_EQ(s.predicted[i], best);
      correct += set.candidates[std::size_t(best)] == it.answer ? 1 : 0;
    }
    EXPECT_EQ(s.correct, correct);
    EXPECT_DOUBLE_EQ(s.accuracy(), double(correct) / double(set.items.size()));
  }
  // An item longer than the model's context is refused.
  set.items.push_back({std::string(46, 'a') + " ", "the", '.', 0});
  EXPECT_THROW(score_cloze(*model, set), std::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(FamiliesAndProjections, ClozeScoring,
                         ::testing::Values(ScoreCase{Family::llama, Projection::dense},
                                           ScoreCase{Family::llama, Projection::wht},
                                           ScoreCase{Family::gpt2, Projection::identity}),
                         [](const ::testing::TestParamInfo<ScoreCase>& p) {
                           return std::string(p.param.family == Family::llama ? "llama" : "gpt2") +
                                  "_" + projection_name(p.param.proj);
                         });

class DownstreamEval : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("whtlm-downstream-test-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    corpus_ = (dir_ / "corpus.txt").string();
    io::write_file_atomic(corpus_, verses(7, 4000));
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
  std::string corpus_;
};

TEST_F(DownstreamEval, BytesGiveClozeAndBitsPerByte) {
  auto model = make_model(Family::llama, Projection::wht, 64);
  data::DataOptions d;
  d.path = corpus_;
  d.chunk_tokens = 2048;
  Options o;
  o.cloze.candidates = 4;
  o.cloze.max_items = 40;
  o.windows = 6;
  o.seq = 32;
  const Result r = evaluate(*model, d, o);
  EXPECT_TRUE(r.cloze_skipped.empty()) << r.cloze_skipped;
  EXPECT_EQ(r.tokenizer, "byte");
  EXPECT_EQ(r.candidates.size(), 4u);
  EXPECT_EQ(r.items, 40u);
  EXPECT_GE(r.eligible, r.items);
  EXPECT_DOUBLE_EQ(r.chance, 0.25);
  EXPECT_EQ(r.context_bytes, std::size_t(64 - 4));  // room for the longest candidate ("thee")
  EXPECT_NEAR(r.accuracy, double(r.correct) / 40.0, 1e-12);
  EXPECT_LT(r.mean_answer_logprob, 0);
  EXPECT_EQ(r.windows, 6u);
  EXPECT_EQ(r.tokens, 6u * 32u);
  EXPECT_DOUBLE_EQ(r.bytes, double(r.tokens));  // one byte a token
  EXPECT_NEAR(r.bits_per_byte, r.nats_per_token / std::log(2.0), 1e-12);
  // The same model and data give the same result.
  const Result again = evaluate(*model, d, o);
  EXPECT_EQ(again.correct, r.correct);
  EXPECT_EQ(again.bits_per_byte, r.bits_per_byte);

  const nlohmann::json j = nlohmann::json::parse(result_to_json(r));
  EXPECT_EQ(j.at("kind"), "whtlm downstream");
  EXPECT_EQ(j.at("cloze").at("items"), 40);
  EXPECT_EQ(j.at("cloze").at("K"), 4);
  EXPECT_EQ(j.at("cloze").at("candidates").size(), 4u);
  EXPECT_EQ(j.at("bytes_scored"), r.bytes);
  std::size_t answered = 0;
  for (std::size_t n : j.at("cloze").at("predictions").get<std::vector<std::size_t>>())
    answered += n;
  EXPECT_EQ(answered, 40u);
  EXPECT_FALSE(j.contains("cloze_skipped"));
}

TEST_F(DownstreamEval, ATokenizerThatIsNotBytesSkipsTheClozeSayingWhy) {
  tok::BpeTrainOptions b;
  b.vocab_size = 300;
  const tok::Tokenizer t = tok::train_bpe(verses(7, 500), b);
  const std::string spec = (dir_ / "tokenizer.json").string();
  io::write_file_atomic(spec, t.to_json());
  ModelConfig c;
  c.n_layer = 1;
  c.d_model = 32;
  c.n_head = 2;
  c.n_kv_head = 2;
  c.vocab_size = t.vocab_size();
  c.max_seq = 32;
  Transformer m(c);
  m.init_weights(1);
  data::DataOptions d;
  d.path = corpus_;
  d.tokenizer = spec;
  d.chunk_tokens = 1024;
  Options o;
  o.windows = 4;
  const Result r = evaluate(m, d, o);
  EXPECT_NE(r.cloze_skipped.find("not bytes"), std::string::npos) << r.cloze_skipped;
  EXPECT_EQ(r.items, 0u);
  // Bits per byte counts the decoded bytes: more than one per token.
  EXPECT_GT(r.bytes, double(r.tokens));
  EXPECT_NEAR(r.bits_per_byte, r.nats_per_token * double(r.tokens) / r.bytes / std::log(2.0), 1e-9);
  const nlohmann::json j = nlohmann::json::parse(result_to_json(r));
  EXPECT_TRUE(j.contains("cloze_skipped"));
  EXPECT_FALSE(j.contains("cloze"));
}

}  // namespace
}  // namespace whtlm::downstream
