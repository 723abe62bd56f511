// Fuzzes tokenizer.json loading (Tokenizer::from_json): the input is the file's text.
// Errors must name the origin given; an accepted tokenizer must keep the promises that
// tokenizer_checks.hpp lists (round trips, ids in range, to_json loads back).
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
  const std::string origin = "fuzz-input/tokenizer.json";
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Tokenizer t;
  if (!whtlm::fuzz::expect_clean({origin}, [&] { t = Tokenizer::from_json(text, origin); }))
    return 0;
  whtlm::fuzz::check_tokenizer(t, text.substr(0, 256));
  return 0;
}
