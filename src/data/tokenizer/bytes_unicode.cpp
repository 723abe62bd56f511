// GPT-2's byte-to-unicode map: how byte-level token strings are written in vocab files.
// The 188 printable Latin-1 bytes stand for themselves; the other 68 (controls, space,
// DEL, 0x80..0xA0, soft hyphen) take the code points from U+0100 upwards, in byte order.
#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "data/tokenizer/pretokenize.hpp"
#include "whtlm/tokenizer.hpp"

namespace whtlm::tok {
namespace {

constexpr bool printable(unsigned b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

constexpr std::array<char32_t, 256> make_map() {
  std::array<char32_t, 256> m{};
  char32_t next = 0x100;
  for (unsigned b = 0; b < 256; ++b) m[b] = printable(b) ? char32_t{b} : next++;
  return m;
}
constexpr std::array<char32_t, 256> kByteToUnicode = make_map();
static_assert(kByteToUnicode[' '] == 0x120 && kByteToUnicode['\n'] == 0x10A &&
              kByteToUnicode[0xAD] == 0x143);

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else {  // the map's image is below U+0800
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Code point (< 0x144) -> byte + 1; 0 where the code point is not in the image.
struct Inverse {
  std::array<std::uint16_t, 0x144> byte_plus_one{};
  constexpr Inverse() {
    for (unsigned b = 0; b < 256; ++b)
      byte_plus_one[kByteToUnicode[b]] = static_cast<std::uint16_t>(b + 1);
  }
};
constexpr Inverse kInverse;

}  // namespace

char32_t byte_to_unicode(unsigned char byte) { return kByteToUnicode[byte]; }

std::string to_unicode_string(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) append_utf8(out, kByteToUnicode[static_cast<unsigned char>(c)]);
  return out;
}

std::optional<std::string> from_unicode_string(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (std::size_t i = 0; i < s.size();) {
    char32_t cp = p[i];
    std::size_t len = 1;
    if (p[i] >= 0x80) {
      if (detail::non_ascii_char(p + i, s.size() - i).len != 2 || (p[i] & 0xE0) != 0xC0)
        return std::nullopt;  // invalid, or a code point of 3-4 bytes (outside the image)
      cp = (char32_t{p[i]} & 0x1F) << 6 | (p[i + 1] & 0x3F);
      len = 2;
    }
    if (cp >= kInverse.byte_plus_one.size() || kInverse.byte_plus_one[cp] == 0) return std::nullopt;
    out += static_cast<char>(kInverse.byte_plus_one[cp] - 1);
    i += len;
  }
  return out;
}

}  // namespace whtlm::tok
