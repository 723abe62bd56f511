// The character classes behind GPT-2's pre-tokenization pattern, and pretokenize().
#include "data/tokenizer/pretokenize.hpp"

#include <array>
#include <cstdint>
#include <map>
#include <string_view>
#include <vector>

#include "whtlm/tokenizer.hpp"

namespace whtlm::tok {
namespace detail {
namespace {

#include "data/tokenizer/unicode_tables.inc"

// Code point -> class in two levels: blocks of 256 code points, identical blocks shared.
struct ClassTable {
  std::array<std::uint16_t, 0x110000 / 256> block{};
  std::vector<CharClass> classes;  // 256 per distinct block

  ClassTable() {
    std::vector<CharClass> all(0x110000, kOther);
    for (const UnicodeRange& r : kUnicodeRanges)
      for (char32_t cp = r.first; cp <= r.last; ++cp) all[cp] = r.cls;
    std::map<std::vector<CharClass>, std::uint16_t> seen;
    for (std::size_t b = 0; b < block.size(); ++b) {
      std::vector<CharClass> blk(all.begin() + static_cast<std::ptrdiff_t>(b * 256),
                                 all.begin() + static_cast<std::ptrdiff_t>(b * 256 + 256));
      auto [it, inserted] = seen.emplace(blk, static_cast<std::uint16_t>(seen.size()));
      if (inserted) classes.insert(classes.end(), blk.begin(), blk.end());
      block[b] = it->second;
    }
  }
  CharClass operator()(char32_t cp) const {
    return classes[static_cast<std::size_t>(block[cp >> 8]) * 256 + (cp & 0xFF)];
  }
};

const ClassTable& class_table() {
  static const ClassTable table;
  return table;
}

constexpr bool ascii_matches_tables() {
  for (char32_t cp = 0; cp < 128; ++cp) {
    CharClass cls = kOther;
    for (const UnicodeRange& r : kUnicodeRanges)
      if (r.first <= cp && cp <= r.last) cls = r.cls;
    if (kAsciiClass[cp] != cls) return false;
  }
  return true;
}
static_assert(ascii_matches_tables(), "kAsciiClass disagrees with unicode_tables.inc");

bool continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

}  // namespace

CharClass code_point_class(char32_t cp) {
  if (cp < 128) return kAsciiClass[cp];
  return class_table()(cp);
}

// Well-formed sequences (Unicode Table 3-7):
//   C2..DF 80..BF | E0 A0..BF 80..BF | E1..EC,EE..EF 80..BF 80..BF | ED 80..9F 80..BF
//   F0 90..BF 80..BF 80..BF | F1..F3 80..BF x3 | F4 80..8F 80..BF 80..BF
CharInfo non_ascii_char(const unsigned char* s, std::size_t n) {
  const unsigned char b0 = s[0];
  char32_t cp = 0;
  std::uint32_t len = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (n < 2 || !continuation(s[1])) return {kOther, 1};
    cp = (char32_t{b0} & 0x1F) << 6 | (s[1] & 0x3F);
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (n < 3 || !continuation(s[1]) || !continuation(s[2])) return {kOther, 1};
    if (b0 == 0xE0 && s[1] < 0xA0) return {kOther, 1};  // overlong
    if (b0 == 0xED && s[1] > 0x9F) return {kOther, 1};  // surrogate
    cp = (char32_t{b0} & 0x0F) << 12 | char32_t{s[1] & 0x3Fu} << 6 | (s[2] & 0x3F);
    len = 3;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (n < 4 || !continuation(s[1]) || !continuation(s[2]) || !continuation(s[3]))
      return {kOther, 1};
    if (b0 == 0xF0 && s[1] < 0x90) return {kOther, 1};  // overlong
    if (b0 == 0xF4 && s[1] > 0x8F) return {kOther, 1};  // above U+10FFFF
    cp = (char32_t{b0} & 0x07) << 18 | char32_t{s[1] & 0x3Fu} << 12 | char32_t{s[2] & 0x3Fu} << 6 |
         (s[3] & 0x3F);
    len = 4;
  } else {
    return {kOther, 1};  // 80..C1 (continuation or overlong lead), F5..FF
  }
  return {class_table()(cp), len};
}

}  // namespace detail

std::string_view unicode_version() { return detail::kUnicodeVersion; }

std::vector<std::string_view> pretokenize(std::string_view text) {
  std::vector<std::string_view> out;
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  for (std::size_t p = 0; p < text.size();) {
    const std::size_t q = detail::pretoken_end(s, p, text.size());
    out.push_back(text.substr(p, q - p));
    p = q;
  }
  return out;
}

}  // namespace whtlm::tok
