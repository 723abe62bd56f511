// GPT-2's pre-tokenization pattern as a hand-written scanner over UTF-8 bytes:
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// Characters fall in four classes (Letter = \p{L}, Number = \p{N}, Space = White_Space,
// Other = the rest; tables from scripts/gen-unicode-tables). A byte that does not begin
// a well-formed UTF-8 sequence is a one-byte Other character.
//
// Every character is matched by some alternative, so the matches tile the text, and the
// match at a position depends only on the text from there on (the pattern has a
// lookahead but no lookbehind). pretoken_end() returns where the match starting at p
// ends, looking no further than `end` (the end of the text, or of the piece between two
// special tokens).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace whtlm::tok::detail {

enum CharClass : std::uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 3 };

struct UnicodeRange {
  char32_t first, last;
  CharClass cls;
};

// Classes of the 128 ASCII bytes (pretokenize.cpp checks them against the generated
// tables at compile time).
constexpr std::array<CharClass, 128> make_ascii_classes() {
  std::array<CharClass, 128> t{};
  for (int c = 0; c < 128; ++c) {
    if ((c >= 9 && c <= 13) || c == ' ') t[c] = kSpace;
    if (c >= '0' && c <= '9') t[c] = kNumber;
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) t[c] = kLetter;
  }
  return t;
}
inline constexpr std::array<CharClass, 128> kAsciiClass = make_ascii_classes();

struct CharInfo {
  CharClass cls;
  std::uint32_t len;  // bytes: 1..4
};

// The character at s[0] (s[0] >= 0x80), with n >= 1 bytes available. A lead byte that
// does not start a well-formed sequence within n bytes gives {kOther, 1}.
CharInfo non_ascii_char(const unsigned char* s, std::size_t n);

// The class of code point cp (cp <= 0x10FFFF).
CharClass code_point_class(char32_t cp);

inline CharInfo char_at(const unsigned char* s, std::size_t n) {
  if (s[0] < 0x80) return {kAsciiClass[s[0]], 1};
  return non_ascii_char(s, n);
}

// The end of the run of class-`cls` characters starting at q.
inline std::size_t run_end(const unsigned char* s, std::size_t q, std::size_t end, CharClass cls) {
  while (q < end) {
    const unsigned char b = s[q];
    if (b < 0x80) {
      if (kAsciiClass[b] != cls) break;
      ++q;
    } else {
      const CharInfo c = non_ascii_char(s + q, end - q);
      if (c.cls != cls) break;
      q += c.len;
    }
  }
  return q;
}

// The end of the pattern's match that starts at p (p < end). The alternatives in order:
inline std::size_t pretoken_end(const unsigned char* s, std::size_t p, std::size_t end) {
  const unsigned char c = s[p];
  // 's 't 're 've 'm 'll 'd (case-sensitive: 'S is not one).
  if (c == '\'' && p + 1 < end) {
    const unsigned char d = s[p + 1];
    if (d == 's' || d == 't' || d == 'm' || d == 'd') return p + 2;
    if (p + 2 < end && ((d == 'r' && s[p + 2] == 'e') || (d == 'v' && s[p + 2] == 'e') ||
                        (d == 'l' && s[p + 2] == 'l')))
      return p + 3;
  }
  // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": a space joins the run after it.
  if (c == ' ' && p + 1 < end) {
    const CharInfo next = char_at(s + p + 1, end - p - 1);
    if (next.cls != kSpace) return run_end(s, p + 1 + next.len, end, next.cls);
  }
  const CharInfo first = char_at(s + p, end - p);
  if (first.cls != kSpace) return run_end(s, p + first.len, end, first.cls);
  // A whitespace run [p, q). "\s+(?!\S)" takes all of it at the end of the text, and
  // otherwise all but its last character (when that leaves any); "\s+" takes a single
  // whitespace character before a non-space.
  std::size_t last = p, q = p + first.len;
  while (q < end) {
    const CharInfo x = char_at(s + q, end - q);
    if (x.cls != kSpace) break;
    last = q;
    q += x.len;
  }
  if (q == end) return q;
  return last > p ? last : q;
}

// True if a pre-token certainly starts at b (0 < b < the text's end), whatever comes
// before and after: s[b-1] and s[b] are ASCII characters of different classes, and
// s[b-1] is neither a space nor an apostrophe. Proof: the match holding s[b-1] is a
// contraction, which ends in a letter and is followed by no more letters of itself past
// a class change ('s 't ... consist of an apostrophe, excluded, and letters); a
// " ?X+" run of s[b-1]'s class X (its optional leading space is at its start, and s[b-1]
// is not a space), which stops at the first character not of class X; or a run of
// whitespace, which stops at the first non-space. So that match ends at b, and as the
// matches tile the text, the next one starts at b. ASCII bytes are always characters
// of their own, even next to invalid UTF-8.
inline bool is_safe_cut(const unsigned char* s, std::size_t b) {
  const unsigned char a = s[b - 1], c = s[b];
  return a < 0x80 && c < 0x80 && a != ' ' && a != '\'' && kAsciiClass[a] != kAsciiClass[c];
}

}  // namespace whtlm::tok::detail
