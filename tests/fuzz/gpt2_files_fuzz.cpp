// Fuzzes GPT-2's tokenizer files (Tokenizer::from_gpt2_files): the input holds both files,
// encoder.json first, then the separator line "#vocab.bpe" (the bytes "\n#vocab.bpe\n"),
// then vocab.bpe. A raw newline cannot occur inside a JSON string and '#' is not JSON, so
// no valid encoder.json contains the separator; without it the whole input is
// encoder.json and vocab.bpe is empty. Errors must name one of the two files; an accepted
// tokenizer must keep the promises that tokenizer_checks.hpp lists.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_common.hpp"
#include "tokenizer_checks.hpp"
#include "whtlm/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using whtlm::tok::Tokenizer;
  whtlm::fuzz::init_once();
  constexpr std::string_view kSeparator = "\n#vocab.bpe\n";
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t cut = input.find(kSeparator);
  const std::string_view encoder = input.substr(0, cut);
  const std::string_view merges =
      cut == std::string_view::npos ? std::string_view() : input.substr(cut + kSeparator.size());
  const std::string encoder_path = whtlm::fuzz::write_input("encoder.json", encoder);
  const std::string merges_path = whtlm::fuzz::write_input("vocab.bpe", merges);
  Tokenizer t;
  if (!whtlm::fuzz::expect_clean({encoder_path, merges_path}, [&] {
        t = Tokenizer::from_gpt2_files(encoder_path, merges_path);
      }))
    return 0;
  whtlm::fuzz::check_tokenizer(t, merges.substr(0, 256));
  return 0;
}
