// Byte-level BPE tokenizers (include/whtlm/tokenizer.hpp): GPT-2's pre-tokenization on
// hand-worked cases, the byte-to-unicode map, merges by rank against a naive reference,
// round trips over arbitrary bytes, special tokens, parallel encoding equal to sequential
// on adversarial text, training against a naive trainer, tokenizer.json round trips and
// clear errors for malformed files. Encodings equal to GPT-2's reference encoders are
// checked by tests/gpt2_reference_test.sh.
#include "whtlm/tokenizer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "whtlm/data.hpp"
#include "whtlm/threads.hpp"

namespace whtlm::tok {
namespace {

namespace fs = std::filesystem;
using Ids = std::vector<std::int32_t>;
using nlohmann::json;

std::vector<std::string> pieces(std::string_view text) {
  std::vector<std::string> out;
  for (std::string_view p : pretokenize(text)) out.emplace_back(p);
  return out;
}

using P = std::vector<std::string>;

TEST(TokenizerPretokenize, Gpt2PatternOnHandWorkedCases) {
  EXPECT_EQ(pieces("Hello world"), (P{"Hello", " world"}));
  // Contractions are lower-case only, and only at the start of a match.
  EXPECT_EQ(pieces("I'm you're they've we'll he'd it's don't"),
            (P{"I", "'m", " you", "'re", " they", "'ve", " we", "'ll", " he", "'d", " it", "'s",
               " don", "'t"}));
  EXPECT_EQ(pieces("IT'S 's x''s"), (P{"IT", "'", "S", " '", "s", " x", "''", "s"}));
  EXPECT_EQ(pieces("'sa 'rex"), (P{"'s", "a", " '", "rex"}));
  // Whitespace: a run before a word leaves its last space to the word; other
  // whitespace stands alone; a run at the end stays whole.
  EXPECT_EQ(pieces("a  b"), (P{"a", " ", " b"}));
  EXPECT_EQ(pieces("a   b"), (P{"a", "  ", " b"}));
  EXPECT_EQ(pieces("a\n\nb"), (P{"a", "\n", "\n", "b"}));
  EXPECT_EQ(pieces("a \n b"), (P{"a", " \n", " b"}));
  EXPECT_EQ(pieces("a\tb"), (P{"a", "\t", "b"}));
  EXPECT_EQ(pieces("x  "), (P{"x", "  "}));
  EXPECT_EQ(pieces("x \n\t "), (P{"x", " \n\t "}));
  EXPECT_EQ(pieces("   "), (P{"   "}));
  EXPECT_EQ(pieces(" "), (P{" "}));
  EXPECT_EQ(pieces("\n"), (P{"\n"}));
  EXPECT_EQ(pieces(""), P{});
  // Numbers, punctuation runs with a leading space.
  EXPECT_EQ(pieces("123abc 42 3.14"), (P{"123", "abc", " 42", " 3", ".", "14"}));
  EXPECT_EQ(pieces("foo!! !?x ..."), (P{"foo", "!!", " !?", "x", " ..."}));
  EXPECT_EQ(pieces("f(x) = {y};"), (P{"f", "(", "x", ")", " =", " {", "y", "};"}));
}

TEST(TokenizerPretokenize, UnicodeClassesAndInvalidUtf8) {
  EXPECT_EQ(pieces("h\xC3\xA9llo w\xC3\xB6rld"), (P{"h\xC3\xA9llo", " w\xC3\xB6rld"}));
  // CJK letters; U+3000 ideographic space and U+00A0 no-break space are White_Space.
  EXPECT_EQ(pieces("\xE6\x97\xA5\xE6\x9C\xAC \xE8\xAA\x9E"),
            (P{"\xE6\x97\xA5\xE6\x9C\xAC", " \xE8\xAA\x9E"}));
  EXPECT_EQ(pieces("a\xE3\x80\x80"
                   "b"),
            (P{"a", "\xE3\x80\x80", "b"}));
  EXPECT_EQ(pieces("a\xC2\xA0"
                   "b"),
            (P{"a", "\xC2\xA0", "b"}));
  EXPECT_EQ(pieces("a \xC2\x85"
                   "b"),
            (P{"a", " ", "\xC2\x85", "b"}));  // U+0085 is White_Space
  // A combining mark (Mn) is not a letter: it splits the word.
  EXPECT_EQ(pieces("cafe\xCC\x81s"), (P{"cafe", "\xCC\x81", "s"}));
  // Numbers beyond ASCII: Arabic-Indic digits (Nd), a Roman numeral (Nl), one half (No).
  EXPECT_EQ(pieces("x\xD9\xA3\xD9\xA4 \xE2\x85\xAB\xC2\xBD"),
            (P{"x", "\xD9\xA3\xD9\xA4", " \xE2\x85\xAB\xC2\xBD"}));
  // Emoji with a skin-tone modifier: symbols, one Other run.
  EXPECT_EQ(pieces("ok \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD!"),
            (P{"ok", " \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD!"}));
  // Invalid UTF-8: each bad byte is an Other character.
  EXPECT_EQ(pieces("a\xFF\xFE"
                   "b"),
            (P{"a", "\xFF\xFE", "b"}));
  EXPECT_EQ(pieces(" \x80x"), (P{" \x80", "x"}));
  EXPECT_EQ(pieces("x\xE2\x82"), (P{"x", "\xE2\x82"}));                  // truncated
  EXPECT_EQ(pieces("x\xE2\x82y"), (P{"x", "\xE2\x82", "y"}));            // truncated mid-text
  EXPECT_EQ(pieces("\xED\xA0\x80z"), (P{"\xED\xA0\x80", "z"}));          // surrogate
  EXPECT_EQ(pieces("\xC0\xAFz"), (P{"\xC0\xAF", "z"}));                  // overlong
  EXPECT_EQ(pieces("\xF4\x90\x80\x80z"), (P{"\xF4\x90\x80\x80", "z"}));  // above U+10FFFF
  EXPECT_EQ(pieces("\xC3"
                   "a"),
            (P{"\xC3", "a"}));  // a lead byte before ASCII
  EXPECT_FALSE(unicode_version().empty());
}

TEST(TokenizerPretokenize, PiecesTileAnyBytes) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::string text(rng() % 200, '\0');
    for (char& c : text) c = static_cast<char>(rng() & 0xFF);
    std::string joined;
    for (std::string_view p : pretokenize(text)) {
      ASSERT_FALSE(p.empty());
      joined += p;
    }
    EXPECT_EQ(joined, text);
  }
}

TEST(TokenizerBytes, Gpt2ByteToUnicodeMap) {
  EXPECT_EQ(byte_to_unicode('A'), U'A');
  EXPECT_EQ(byte_to_unicode(' '), char32_t{0x120});  // "Ġ"
  EXPECT_EQ(byte_to_unicode('\n'), char32_t{0x10A});
  EXPECT_EQ(byte_to_unicode(0), char32_t{0x100});
  EXPECT_EQ(byte_to_unicode(0xAD), char32_t{0x143});
  EXPECT_EQ(byte_to_unicode(0xA1), char32_t{0xA1});
  std::set<char32_t> image;
  for (int b = 0; b < 256; ++b) image.insert(byte_to_unicode(static_cast<unsigned char>(b)));
  EXPECT_EQ(image.size(), 256u);
  EXPECT_EQ(to_unicode_string(" the"), "\xC4\xA0the");
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  EXPECT_EQ(from_unicode_string(to_unicode_string(all)), all);
  EXPECT_FALSE(from_unicode_string("\xE2\x82\xAC"));  // U+20AC: outside the image
  EXPECT_FALSE(from_unicode_string(" "));             // U+0020 is written U+0120
  EXPECT_FALSE(from_unicode_string("\xC4"));          // invalid UTF-8
}

// A tokenizer over the 256 bytes plus the given merges (each merge's token appended).
Tokenizer with_merges(const std::vector<std::pair<std::string, std::string>>& merges,
                      std::vector<std::string> specials = {}) {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.emplace_back(1, static_cast<char>(b));
  auto id_of = [&](const std::string& s) {
    return static_cast<std::int32_t>(std::find(tokens.begin(), tokens.end(), s) - tokens.begin());
  };
  std::vector<std::pair<std::int32_t, std::int32_t>> ids;
  for (const auto& [a, b] : merges) {
    ids.emplace_back(id_of(a), id_of(b));
    if (id_of(a + b) == static_cast<std::int32_t>(tokens.size())) tokens.push_back(a + b);
  }
  std::vector<SpecialToken> sp;
  for (const std::string& s : specials) {
    sp.push_back({s, static_cast<std::int32_t>(tokens.size())});
    tokens.push_back(s);
  }
  return Tokenizer::from_parts(std::move(tokens), std::move(ids), std::move(sp), "test");
}

std::vector<std::string> token_strings(const Tokenizer& t, const Ids& ids) {
  std::vector<std::string> out;
  for (std::int32_t id : ids) out.emplace_back(t.token_bytes(id));
  return out;
}

TEST(TokenizerBpe, MergesLowestRankFirstLeftmostAmongEquals) {
  const Tokenizer t = with_merges({{"a", "b"}, {"ab", "c"}, {"a", "a"}, {"b", "c"}});
  EXPECT_EQ(token_strings(t, t.encode("abc")), (P{"abc"}));
  EXPECT_EQ(token_strings(t, t.encode("aaa")), (P{"aa", "a"}));
  EXPECT_EQ(token_strings(t, t.encode("aaaa")), (P{"aa", "aa"}));
  EXPECT_EQ(token_strings(t, t.encode("bcab")), (P{"bc", "ab"}));
  // "abc" wins over "a" + "bc" because (a, b) ranks before (b, c).
  EXPECT_EQ(token_strings(t, t.encode("xabcx")), (P{"x", "abc", "x"}));
  EXPECT_EQ(t.vocab_size(), 256 + 4);
  EXPECT_EQ(t.num_merges(), 4u);
  EXPECT_FALSE(t.is_bytes());
}

// Hugging Face / tiktoken semantics done the slow way: repeatedly merge the leftmost
// adjacent pair of lowest rank.
Ids naive_bpe(const Tokenizer& t,
              const std::map<std::pair<std::int32_t, std::int32_t>,
                             std::pair<std::size_t, std::int32_t>>& ranks,
              std::string_view word) {
  Ids sym;
  for (char c : word) sym.push_back(*t.token_id(std::string(1, c)));
  for (;;) {
    std::size_t best = SIZE_MAX, at = 0;
    std::int32_t merged = -1;
    for (std::size_t i = 0; i + 1 < sym.size(); ++i) {
      const auto it = ranks.find({sym[i], sym[i + 1]});
      if (it != ranks.end() && it->second.first < best) {
        best = it->second.first;
        at = i;
        merged = it->second.second;
      }
    }
    if (best == SIZE_MAX) return sym;
    sym[at] = merged;
    sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(at) + 1);
  }
}

std::string letters_text(std::mt19937& rng, std::size_t n, const std::string& alphabet) {
  std::string s(n, ' ');
  for (char& c : s) c = alphabet[rng() % alphabet.size()];
  return s;
}

// A small tokenizer trained here, shared by several tests.
const Tokenizer& trained() {
  static const Tokenizer t = [] {
    std::mt19937 rng(3);
    std::string text;
    const std::vector<std::string> words{"the", "then", "there", "and", "band", "banana", "ab",
                                         "aaa", "abc",  "cab",   "dad", "add",  "1234",   "It's"};
    for (int i = 0; i < 4000; ++i) {
      text += words[rng() % words.size()];
      text += (rng() % 13 == 0) ? "\n" : (rng() % 7 == 0 ? ". " : " ");
    }
    text += letters_text(rng, 3000, "abcde");
    BpeTrainOptions o;
    o.vocab_size = 420;
    return train_bpe(text, o);
  }();
  return t;
}

TEST(TokenizerBpe, LongAndShortWordsEqualANaiveMergeLoop) {
  const Tokenizer& t = trained();
  const json j = json::parse(t.to_json());
  std::map<std::pair<std::int32_t, std::int32_t>, std::pair<std::size_t, std::int32_t>> ranks;
  const json& vocab = j["model"]["vocab"];
  for (std::size_t r = 0; r < j["model"]["merges"].size(); ++r) {
    const std::string m = j["model"]["merges"][r];
    const std::string a = m.substr(0, m.find(' ')), b = m.substr(m.find(' ') + 1);
    ranks[{vocab[a].get<std::int32_t>(), vocab[b].get<std::int32_t>()}] = {
        r, vocab[a + b].get<std::int32_t>()};
  }
  std::mt19937 rng(11);
  for (const std::size_t n : {2, 3, 5, 8, 20, 47, 48, 49, 64, 65, 100, 400, 1500}) {
    for (int trial = 0; trial < 5; ++trial) {
      const std::string word = letters_text(rng, n, "abcde");
      EXPECT_EQ(t.encode(word), naive_bpe(t, ranks, word)) << "word of " << n << " letters";
    }
  }
}

std::string random_bytes(std::mt19937& rng, std::size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xFF);
  return s;
}

// Text built from pieces that stress the pattern: whitespace runs, apostrophes, class
// changes, multi-byte characters, invalid bytes and special-token text.
std::string adversarial_text(std::mt19937& rng, std::size_t parts) {
  static const std::vector<std::string> atoms{" ",
                                              "  ",
                                              "\n",
                                              "\n\n",
                                              "\t",
                                              " \n",
                                              "\r\n",
                                              "a",
                                              "the",
                                              "s",
                                              "'",
                                              "'s",
                                              "'S",
                                              "'ll",
                                              "1",
                                              "2024",
                                              ".",
                                              "!?",
                                              "\xC3\xA9",
                                              "\xE3\x80\x80",
                                              "\xE6\x97\xA5",
                                              "\xCC\x81",
                                              "\xFF",
                                              "\xE2\x82",
                                              "\xC2\xA0",
                                              "\xF0\x9F\x91\x8D",
                                              "<|endoftext|>",
                                              "<|endof",
                                              "x",
                                              ",",
                                              "-"};
  std::string s;
  for (std::size_t i = 0; i < parts; ++i) s += atoms[rng() % atoms.size()];
  return s;
}

TEST(TokenizerEncode, RoundTripsAnyBytes) {
  std::mt19937 rng(5);
  const Tokenizer bytes = Tokenizer::bytes();
  for (int trial = 0; trial < 50; ++trial) {
    const std::string text = trial % 2 ? random_bytes(rng, rng() % 400) : adversarial_text(rng, 80);
    for (const Tokenizer* t : {&trained(), &bytes}) {
      EXPECT_EQ(t->decode(t->encode(text)), text);
      EXPECT_EQ(t->decode(t->encode(text, true)), text);
    }
  }
}

TEST(TokenizerEncode, ByteTokenizerIsIdentityAndMatchesDataByteTokenizer) {
  const Tokenizer t = Tokenizer::bytes();
  EXPECT_TRUE(t.is_bytes());
  EXPECT_EQ(t.vocab_size(), 256);
  EXPECT_FALSE(t.eot_id());
  const std::string text = "Hello \xFF\x00 world\n";
  EXPECT_EQ(t.encode(text), data::ByteTokenizer{}.encode(text));
  const Tokenizer back = Tokenizer::from_json(t.to_json(), "bytes.json");
  EXPECT_TRUE(back.is_bytes());
  EXPECT_EQ(back.encode(text), data::ByteTokenizer{}.encode(text));
  EXPECT_TRUE(load_tokenizer("byte").is_bytes());
}

TEST(TokenizerEncode, SpecialTokensOnlyWhereAllowed) {
  const Tokenizer& t = trained();
  const std::int32_t eot = *t.eot_id();
  EXPECT_EQ(eot, t.vocab_size() - 1);
  EXPECT_EQ(t.special_id("<|endoftext|>"), eot);
  const std::string text = "the band<|endoftext|>then <|endoftext|><|endoftext|>";
  const Ids plain = t.encode(text);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), eot), 0);
  EXPECT_EQ(t.decode(plain), text);
  const Ids allowed = t.encode(text, true);
  EXPECT_EQ(std::count(allowed.begin(), allowed.end(), eot), 3);
  EXPECT_EQ(t.decode(allowed), text);
  // The text between specials is encoded on its own.
  Ids expected = t.encode("the band");
  expected.push_back(eot);
  const Ids then = t.encode("then ");
  expected.insert(expected.end(), then.begin(), then.end());
  expected.push_back(eot);
  expected.push_back(eot);
  EXPECT_EQ(allowed, expected);
  // Longest special token at a position wins.
  const Tokenizer two = with_merges({}, {"<|a|>", "<|a|><|b|>"});
  const Ids ids = two.encode("x<|a|><|b|>y<|a|>", true);
  EXPECT_EQ(token_strings(two, ids), (P{"x", "<|a|><|b|>", "y", "<|a|>"}));
}

TEST(TokenizerEncode, ParallelEqualsSequentialOnAdversarialText) {
  std::mt19937 rng(9);
  const Tokenizer& t = trained();
  const int saved = num_threads();
  for (int trial = 0; trial < 8; ++trial) {
    const std::string text = trial % 3 == 2 ? random_bytes(rng, 3000) : adversarial_text(rng, 600);
    for (const bool special : {false, true}) {
      const Ids sequential = t.encode(text, special);
      for (const int threads : {1, 2, 3}) {
        set_num_threads(threads);
        for (const std::size_t chunk : {1, 2, 3, 7, 64, 1000}) {
          t.clear_cache();
          EXPECT_EQ(t.encode_parallel(text, special, chunk), sequential)
              << "trial " << trial << ", threads " << threads << ", chunk " << chunk;
        }
      }
    }
  }
  set_num_threads(saved);
}

TEST(TokenizerEncode, BatchEqualsOneByOneAndCacheIsTransparent) {
  std::mt19937 rng(13);
  const Tokenizer& t = trained();
  std::vector<std::string> texts;
  for (int i = 0; i < 20; ++i) texts.push_back(adversarial_text(rng, 30));
  const std::vector<std::string_view> views(texts.begin(), texts.end());
  const std::vector<Ids> batch = t.encode_batch(views);
  ASSERT_EQ(batch.size(), texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(batch[i], t.encode(texts[i]));
    t.clear_cache();
    EXPECT_EQ(batch[i], t.encode(texts[i]));
  }
  // A copy shares the model; another tokenizer in the same thread keeps its own cache.
  const Tokenizer other = with_merges({{"t", "h"}});
  EXPECT_EQ(token_strings(other, other.encode("the")), (P{"th", "e"}));
  EXPECT_EQ(Tokenizer(t).encode(texts[0]), batch[0]);
}

TEST(TokenizerEncode, DecodeRejectsIdsOutsideTheVocabulary) {
  const Tokenizer& t = trained();
  const Ids bad{1, t.vocab_size()};
  try {
    t.decode(bad);
    FAIL() << "no exception";
  } catch (const std::out_of_range& e) {
    EXPECT_NE(std::string(e.what()).find("position 1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(std::to_string(t.vocab_size())), std::string::npos);
  }
  EXPECT_THROW(t.decode(Ids{-1}), std::out_of_range);
  EXPECT_THROW(t.token_bytes(-1), std::out_of_range);
}

// The slow trainer: recount every pair each step; pick the most frequent, ties to the
// smaller (left, right) ids; merge it everywhere left to right.
std::vector<std::pair<std::string, std::string>> naive_train(const std::string& text,
                                                             std::size_t merges_wanted) {
  std::map<std::string, std::int64_t> counts;
  for (std::string_view p : pretokenize(text))
    if (p.size() > 1) ++counts[std::string(p)];
  std::vector<std::string> tokens;
  std::map<std::string, std::int32_t> ids;
  for (int b = 0; b < 256; ++b) {
    tokens.emplace_back(1, static_cast<char>(b));
    ids[tokens.back()] = b;
  }
  std::vector<std::pair<Ids, std::int64_t>> words;
  for (const auto& [w, c] : counts) {
    Ids s;
    for (char ch : w) s.push_back(static_cast<unsigned char>(ch));
    words.emplace_back(s, c);
  }
  std::vector<std::pair<std::string, std::string>> out;
  while (tokens.size() < 256 + merges_wanted) {
    std::map<std::pair<std::int32_t, std::int32_t>, std::int64_t> pairs;
    for (const auto& [s, c] : words)
      for (std::size_t i = 0; i + 1 < s.size(); ++i) pairs[{s[i], s[i + 1]}] += c;
    std::pair<std::int32_t, std::int32_t> best{-1, -1};
    std::int64_t best_count = 0;
    for (const auto& [p, c] : pairs)
      if (c > best_count) best = p, best_count = c;  // map order: smaller ids win ties
    if (best_count < 2) break;
    const std::string bytes = tokens[best.first] + tokens[best.second];
    std::int32_t id;
    if (ids.count(bytes)) {
      id = ids[bytes];
    } else {
      id = static_cast<std::int32_t>(tokens.size());
      tokens.push_back(bytes);
      ids[bytes] = id;
    }
    out.emplace_back(tokens[best.first], tokens[best.second]);
    for (auto& [s, c] : words) {
      Ids m;
      for (std::size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == best.first && s[i + 1] == best.second) {
          m.push_back(id);
          ++i;
        } else {
          m.push_back(s[i]);
        }
      }
      s = m;
    }
  }
  return out;
}

TEST(TokenizerTrain, MergesEqualANaiveTrainer) {
  std::mt19937 rng(17);
  std::string text;
  for (int i = 0; i < 300; ++i)
    text += adversarial_text(rng, 3) + letters_text(rng, rng() % 9, "abcab");
  BpeTrainOptions o;
  o.vocab_size = 256 + 120;
  o.special_tokens = {};
  const Tokenizer t = train_bpe(text, o);
  const auto expected = naive_train(text, 120);
  ASSERT_EQ(t.num_merges(), expected.size());
  const json j = json::parse(t.to_json());
  for (std::size_t r = 0; r < expected.size(); ++r)
    EXPECT_EQ(j["model"]["merges"][r].get<std::string>(),
              to_unicode_string(expected[r].first) + " " + to_unicode_string(expected[r].second))
        << "merge " << r;
}

TEST(TokenizerTrain, DeterministicSizedAndReloadable) {
  std::mt19937 rng(19);
  std::string text;
  for (int i = 0; i < 2000; ++i)
    text += adversarial_text(rng, 4) + " word" + std::to_string(i % 50);
  BpeTrainOptions o;
  o.vocab_size = 300;
  o.special_tokens = {"<|endoftext|>", "<|pad|>"};
  std::size_t calls = 0;
  bool finished = false;
  o.progress = [&](const BpeTrainProgress& p) {
    ++calls;
    finished = p.finished;
  };
  const int saved = num_threads();
  set_num_threads(1);
  const Tokenizer one = train_bpe(text, o);
  set_num_threads(2);
  const Tokenizer two = train_bpe(text, o);
  set_num_threads(saved);
  EXPECT_GE(calls, 2u);
  EXPECT_TRUE(finished);
  EXPECT_EQ(one.to_json(), two.to_json());
  EXPECT_EQ(one.vocab_size(), 300);
  EXPECT_EQ(one.special_id("<|endoftext|>"), 298);
  EXPECT_EQ(one.special_id("<|pad|>"), 299);
  // Special tokens' text in the training data is cut out, not learned from.
  std::string with_specials;
  for (int i = 0; i < 300; ++i) with_specials += "ab<|endoftext|>";
  BpeTrainOptions cut;
  cut.vocab_size = 300;
  const Tokenizer only_ab = train_bpe(with_specials, cut);
  EXPECT_EQ(only_ab.num_merges(), 1u);
  EXPECT_EQ(only_ab.vocab_size(), 258);

  const fs::path dir = fs::path(testing::TempDir()) / "whtlm_tokenizer_test";
  fs::create_directories(dir);
  const std::string path = (dir / "tokenizer.json").string();
  one.save(path);
  const Tokenizer back = load_tokenizer(path);
  const Tokenizer from_dir = load_tokenizer(dir.string());
  EXPECT_EQ(back.to_json(), one.to_json());
  const std::string probe = adversarial_text(rng, 500);
  EXPECT_EQ(back.encode(probe), one.encode(probe));
  EXPECT_EQ(from_dir.encode(probe, true), one.encode(probe, true));
  fs::remove_all(dir);

  // Too small a corpus stops early; too small a vocabulary is refused.
  BpeTrainOptions tiny;
  tiny.vocab_size = 1000;
  EXPECT_LT(train_bpe("ab ab cd", tiny).vocab_size(), 1000);
  tiny.vocab_size = 256;
  EXPECT_THROW(train_bpe("ab", tiny), std::invalid_argument);
  tiny.special_tokens = {};
  EXPECT_EQ(train_bpe("ab", tiny).vocab_size(), 256);
}

// Loading: a base tokenizer.json to corrupt field by field.
json base_json() { return json::parse(trained().to_json()); }

// Expects std::runtime_error mentioning every one of `parts`.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one mentioning " << parts.front();
  } catch (const std::runtime_error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message '" << e.what() << "' lacks '" << p << "'";
  }
}

void expect_json_error(const json& j, const std::vector<std::string>& parts) {
  std::vector<std::string> all{"bad.json"};
  all.insert(all.end(), parts.begin(), parts.end());
  expect_error([&] { Tokenizer::from_json(j.dump(), "bad.json"); }, all);
}

TEST(TokenizerFiles, JsonRoundTripAndMergeForms) {
  const json j = base_json();
  EXPECT_EQ(j["model"]["type"], "BPE");
  EXPECT_EQ(j["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(j["added_tokens"][0]["content"], "<|endoftext|>");
  EXPECT_EQ(j["model"]["vocab"]["<|endoftext|>"], trained().vocab_size() - 1);
  EXPECT_EQ(j["model"]["vocab"]["\xC4\xA0"], int{' '});  // the byte 0x20 written as U+0120
  // Merges as ["a", "b"] pairs load to the same tokenizer.
  json pairs = j;
  for (json& m : pairs["model"]["merges"]) {
    const std::string s = m;
    m = json::array({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  const Tokenizer a = Tokenizer::from_json(j.dump(), "a.json");
  const Tokenizer b = Tokenizer::from_json(pairs.dump(), "b.json");
  EXPECT_EQ(a.to_json(), b.to_json());
  EXPECT_EQ(a.to_json(), trained().to_json());
}

TEST(TokenizerFiles, MalformedJsonGivesClearErrors) {
  expect_error([] { Tokenizer::from_json("{\"model\": ", "bad.json"); }, {"bad.json", "JSON"});
  expect_error([] { Tokenizer::from_json("[1, 2]", "bad.json"); }, {"bad.json", "object"});
  json j = base_json();
  j.erase("model");
  expect_json_error(j, {"model", "missing"});
  j = base_json();
  j["model"]["type"] = "WordPiece";
  expect_json_error(j, {"model.type", "WordPiece"});
  j = base_json();
  j["model"].erase("vocab");
  expect_json_error(j, {"model.vocab", "missing"});
  j = base_json();
  j["model"].erase("merges");
  expect_json_error(j, {"model.merges", "missing"});
  j = base_json();
  j["model"]["merges"][3] = "zzz q";
  expect_json_error(j, {"model.merges[3]", "unknown token 'zzz'"});
  j = base_json();
  j["model"]["merges"][2] = "a b c";
  expect_json_error(j, {"model.merges[2]", "a b c"});
  j = base_json();
  j["model"]["merges"][1] = 5;
  expect_json_error(j, {"model.merges[1]"});
  j = base_json();
  j["model"]["merges"].push_back("x y");  // both known, but "xy" is no token
  expect_json_error(
      j, {"model.merges[" + std::to_string(j["model"]["merges"].size() - 1) + "]", "'xy'"});
  j = base_json();
  j["model"]["vocab"]["extra"] = 7;  // id 7 twice
  expect_json_error(j, {"model.vocab", "duplicate id 7"});
  j = base_json();
  j["model"]["vocab"]["extra"] = j["model"]["vocab"].size() + 5;  // a gap: refused before sizing
  expect_json_error(j, {"model.vocab", "'extra'", "without gaps"});
  j = base_json();
  j["model"]["vocab"]["extra"] = 1 << 26;  // one huge id in a small file: no 2^26-entry table
  expect_json_error(j, {"model.vocab", "67108864", "without gaps"});
  j = base_json();
  j["model"]["vocab"]["extra"] = "seven";
  expect_json_error(j, {"model.vocab", "'extra'"});
  j = base_json();
  j["model"]["vocab"].erase("\xC4\x8A");  // the byte '\n'
  expect_json_error(j, {"model.vocab"});
  j = base_json();
  j["pre_tokenizer"] = nullptr;
  expect_json_error(j, {"pre_tokenizer", "ByteLevel"});
  j = base_json();
  j["pre_tokenizer"]["add_prefix_space"] = true;
  expect_json_error(j, {"pre_tokenizer.add_prefix_space"});
  j = base_json();
  j["normalizer"] = {{"type", "NFC"}};
  expect_json_error(j, {"normalizer"});
  j = base_json();
  j["model"]["dropout"] = 0.1;
  expect_json_error(j, {"model.dropout"});
  j = base_json();
  j["added_tokens"][0]["id"] = 3;
  expect_json_error(j, {"added_tokens[0]"});
  j = base_json();
  j["added_tokens"][0].erase("content");
  expect_json_error(j, {"added_tokens[0].content"});
}

TEST(TokenizerFiles, Gpt2FilesAndSpecs) {
  const fs::path dir = fs::path(testing::TempDir()) / "whtlm_tokenizer_gpt2";
  fs::create_directories(dir);
  // encoder.json + vocab.bpe written from the trained tokenizer's JSON.
  const json j = base_json();
  std::ofstream(dir / "encoder.json") << j["model"]["vocab"].dump();
  {
    std::ofstream bpe(dir / "vocab.bpe");
    bpe << "#version: 0.2\n";
    for (const json& m : j["model"]["merges"]) bpe << m.get<std::string>() << "\n";
  }
  const Tokenizer t = load_tokenizer(dir.string());
  EXPECT_EQ(t.to_json(), trained().to_json());
  EXPECT_EQ(t.eot_id(), trained().eot_id());
  // vocab.json + merges.txt are the same files under other names.
  const fs::path other = dir / "hf";
  fs::create_directories(other);
  fs::copy_file(dir / "encoder.json", other / "vocab.json");
  fs::copy_file(dir / "vocab.bpe", other / "merges.txt");
  EXPECT_EQ(load_tokenizer(other.string()).to_json(), t.to_json());
  // Errors name the file and the line.
  {
    std::ofstream bpe(dir / "vocab.bpe", std::ios::app);
    bpe << "Q nosuchtoken\n";
  }
  const std::string bpe_path = (dir / "vocab.bpe").string();
  expect_error([&] { load_tokenizer(dir.string()); },
               {bpe_path, "line " + std::to_string(j["model"]["merges"].size() + 2),
                "unknown token 'nosuchtoken'", "encoder.json"});
  std::ofstream(dir / "encoder.json") << "{\"a\": 0, \"b\": 0}";
  expect_error([&] { load_tokenizer(dir.string()); },
               {(dir / "encoder.json").string(), "duplicate id 0"});
  const fs::path empty = dir / "empty";
  fs::create_directories(empty);
  expect_error([&] { load_tokenizer(empty.string()); }, {empty.string(), "tokenizer.json"});
  expect_error([&] { load_tokenizer((dir / "missing.json").string()); },
               {"missing.json", "no such file"});
  fs::remove_all(dir);
}

TEST(TokenizerFiles, FromPartsValidates) {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.emplace_back(1, static_cast<char>(b));
  auto missing_byte = tokens;
  missing_byte[10] = "xx";
  expect_error([&] { Tokenizer::from_parts(missing_byte, {}, {}, "parts"); }, {"parts", "0x0A"});
  auto duplicate = tokens;
  duplicate.push_back("a");
  expect_error([&] { Tokenizer::from_parts(duplicate, {}, {}, "parts"); }, {"parts", "'a'"});
  expect_error(
      [&] {
        Tokenizer::from_parts(tokens, {{'a', 'b'}}, {}, "parts");
      },
      {"parts", "merge 0", "'ab'"});
  expect_error([&] { Tokenizer::from_parts(tokens, {}, {{"<s>", 3}}, "parts"); }, {"parts", "<s>"});
}

}  // namespace
}  // namespace whtlm::tok
