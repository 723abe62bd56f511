// The inside of a Tokenizer: token bytes, the merge table and the special tokens,
// immutable once built (copies of a Tokenizer share one Impl).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "whtlm/tokenizer.hpp"

namespace whtlm::tok {

namespace detail {

// Finds special tokens in text: at each position the longest one that matches.
struct SpecialMatcher {
  std::vector<SpecialToken> longest_first;
  std::array<bool, 256> first_byte{};  // bytes that start a special token
  void build(const std::vector<SpecialToken>& specials);
};

// (left id, right id) -> (rank, merged id): open addressing, Fibonacci hashing.
class MergeTable {
 public:
  static constexpr std::uint32_t kNoRank = 0xFFFFFFFFu;
  struct Entry {
    std::uint32_t rank = kNoRank;
    std::int32_t merged = -1;
  };

  void build(const std::vector<std::pair<std::int32_t, std::int32_t>>& merges,
             const std::vector<std::int32_t>& merged_ids);

  Entry find(std::int32_t a, std::int32_t b) const {
    if (slots_.empty()) return {};
    const std::uint64_t key = pack(a, b);
    for (std::size_t i = slot_of(key);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key == key) return {s.rank, s.merged};
      if (s.key == kEmpty) return {};
    }
  }

 private:
  static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};
  struct Slot {
    std::uint64_t key = kEmpty;
    std::uint32_t rank = kNoRank;
    std::int32_t merged = -1;
  };
  static std::uint64_t pack(std::int32_t a, std::int32_t b) {
    return std::uint64_t{static_cast<std::uint32_t>(a)} << 32 | static_cast<std::uint32_t>(b);
  }
  std::size_t slot_of(std::uint64_t key) const {
    return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_);
  }
  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
  int shift_ = 64;
};

}  // namespace detail

struct Tokenizer::Impl {
  std::vector<std::string> tokens;       // id -> bytes
  std::vector<std::uint8_t> is_special;  // id -> 1 for special tokens
  std::vector<SpecialToken> specials;    // in the order given
  detail::SpecialMatcher matcher;
  std::vector<std::pair<std::int32_t, std::int32_t>> merges;  // in rank order
  std::vector<std::int32_t> merged_ids;                       // merges[r] -> its token
  std::unordered_map<std::string, std::int32_t> ids;          // non-special bytes -> id
  std::array<std::int32_t, 256> byte_id{};                    // single-byte tokens
  detail::MergeTable merge_table;
  bool ignore_merges = false;
  bool bytes_only = false;                           // the byte tokenizer
  std::uint64_t serial = 0;                          // unique per Impl: keys the per-thread caches
  mutable std::atomic<std::uint64_t> generation{0};  // bumped by clear_cache()
  std::string origin;

  // Token ids of one pre-token (bytes w[0..n)), appended to out.
  void bpe(const unsigned char* w, std::size_t n, std::vector<std::int32_t>& out) const;
};

namespace detail {

// One piece of text between special tokens (special = -1), or a special token.
struct Piece {
  std::size_t begin = 0, end = 0;
  std::int32_t special = -1;
};
// The text cut at the special tokens' occurrences (leftmost first, the longest at a
// position); a single piece when !allow_special or there are none.
std::vector<Piece> split_specials(const SpecialMatcher& matcher, std::string_view text,
                                  bool allow_special);

// A unit of parallel work: the pre-tokens starting in [begin, stop) of a piece of text
// that ends at `end` (for the pattern's lookahead), or a special token.
struct Chunk {
  std::size_t begin = 0, stop = 0, end = 0;
  std::int32_t special = -1;
};
// Cuts each text piece into chunks of about chunk_bytes, only where a pre-token certainly
// starts (is_safe_cut), so encoding the chunks one by one gives the same pre-tokens.
std::vector<Chunk> make_chunks(const unsigned char* s, const std::vector<Piece>& pieces,
                               std::size_t chunk_bytes);

// Hash of a byte string (also used by training's word counts).
std::uint64_t hash_bytes(const unsigned char* p, std::size_t n);

}  // namespace detail

}  // namespace whtlm::tok
