// The promises an accepted tokenizer must keep, checked by the tokenizer_json and
// gpt2_files harnesses: on a fixed sample text (words, digits, spaces, non-ASCII,
// invalid UTF-8, <|endoftext|>) and on the input's own first bytes, decode(encode(x)) == x
// with and without allow_special, every id inside the vocabulary, the same ids again
// (from the cache), encode_parallel (small chunks) == encode; and to_json() loads back
// (from_json) into a tokenizer of the same size that encodes the same.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "whtlm/tokenizer.hpp"

namespace whtlm::fuzz {

inline constexpr std::string_view kSampleText =
    "In the beginning God created the heaven and the earth. It's 1611; they'll've "
    "said: \"Let there be light\"\n\n  and\tthere   was\r\nlight. na\xc3\xafve caf\xc3\xa9 "
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80 <|endoftext|>The second <|endo"
    "ftext|><|endoftext|> invalid \xff\xfe\xc0\xaf \xed\xa0\x80 \xe6\x97 end ";

inline std::string show_ids(const std::vector<std::int32_t>& ids) {
  std::string s = "[";
  for (std::size_t i = 0; i < ids.size() && i < 40; ++i)
    s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + (ids.size() > 40 ? ", ...]" : "]");
}

inline void check_text(const tok::Tokenizer& t, std::string_view text, bool allow_special) {
  const std::string mode = allow_special ? " (allow_special)" : "";
  const std::vector<std::int32_t> ids = t.encode(text, allow_special);
  for (std::int32_t id : ids)
    check(id >= 0 && id < t.vocab_size(), "encode" + mode + " gave id " + std::to_string(id) +
                                              " outside the vocabulary of " +
                                              std::to_string(t.vocab_size()));
  const std::string back = t.decode(ids);
  check(back == text, "decode(encode(x))" + mode + " != x for x = '" + quote(text) + "': got '" +
                          quote(back) + "' from " + show_ids(ids));
  check(t.encode(text, allow_special) == ids,
        "encode" + mode + " gave another result the second time (cached)");
  check(t.encode_parallel(text, allow_special, 16) == ids,
        "encode_parallel" + mode + " (16-byte chunks) != encode");
}

// All the checks above; `own` is a piece of the input to encode as text too.
inline void check_tokenizer(const tok::Tokenizer& t, std::string_view own) {
  expect_no_throw("encoding with an accepted tokenizer", [&] {
    for (bool allow : {false, true}) {
      check_text(t, kSampleText, allow);
      check_text(t, own, allow);
    }
  });
  expect_no_throw("to_json() + from_json of an accepted tokenizer", [&] {
    const tok::Tokenizer again = tok::Tokenizer::from_json(t.to_json(), "round trip");
    check(again.vocab_size() == t.vocab_size() && again.num_merges() == t.num_merges(),
          "to_json round trip: " + t.describe() + " became " + again.describe());
    for (bool allow : {false, true})
      for (std::string_view x : {kSampleText, own})
        check(again.encode(x, allow) == t.encode(x, allow),
              std::string("to_json round trip encodes differently") +
                  (allow ? " (allow_special)" : "") + ": '" + quote(x) +
                  "': " + show_ids(t.encode(x, allow)) + " vs " + show_ids(again.encode(x, allow)));
  });
}

}  // namespace whtlm::fuzz
