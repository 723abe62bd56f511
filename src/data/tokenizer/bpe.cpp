// Byte-level BPE: building a tokenizer from its parts, encoding (pre-tokens, merges by
// rank, a per-thread cache of pre-token -> ids, chunked parallel encoding) and decoding.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <queue>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "data/tokenizer/pretokenize.hpp"
#include "data/tokenizer/tokenizer_impl.hpp"
#include "whtlm/threads.hpp"
#include "whtlm/tokenizer.hpp"

namespace whtlm::tok {

namespace detail {

void MergeTable::build(const std::vector<std::pair<std::int32_t, std::int32_t>>& merges,
                       const std::vector<std::int32_t>& merged_ids) {
  std::size_t size = 16;
  shift_ = 60;
  while (size < 2 * merges.size()) {
    size *= 2;
    --shift_;
  }
  slots_.assign(size, Slot{});
  mask_ = size - 1;
  for (std::size_t r = 0; r < merges.size(); ++r) {
    const std::uint64_t key = pack(merges[r].first, merges[r].second);
    std::size_t i = slot_of(key);
    while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask_;
    // A pair listed twice takes its later rank, as GPT-2's bpe_ranks dict and Hugging
    // Face's merge map do.
    slots_[i] = Slot{key, static_cast<std::uint32_t>(r), merged_ids[r]};
  }
}

std::uint64_t hash_bytes(const unsigned char* p, std::size_t n) {
  std::uint64_t h = 0x9E3779B97F4A7C15ull * (n + 1);
  while (n >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  std::uint64_t w = 0;
  for (std::size_t i = 0; i < n; ++i) w |= std::uint64_t{p[i]} << (8 * i);
  h = (h ^ w) * 0x94D049BB133111EBull;
  return h ^ (h >> 29);
}

void SpecialMatcher::build(const std::vector<SpecialToken>& specials) {
  longest_first = specials;
  std::stable_sort(longest_first.begin(), longest_first.end(),
                   [](const SpecialToken& x, const SpecialToken& y) {
                     return x.content.size() > y.content.size();
                   });
  first_byte.fill(false);
  for (const SpecialToken& sp : specials)
    first_byte[static_cast<unsigned char>(sp.content[0])] = true;
}

std::vector<Piece> split_specials(const SpecialMatcher& matcher, std::string_view text,
                                  bool allow_special) {
  std::vector<Piece> pieces;
  std::size_t start = 0;
  if (allow_special && !matcher.longest_first.empty()) {
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    for (std::size_t i = 0; i < text.size();) {
      const SpecialToken* hit = nullptr;
      if (matcher.first_byte[s[i]])
        for (const SpecialToken& sp : matcher.longest_first)
          if (text.compare(i, sp.content.size(), sp.content) == 0) {
            hit = &sp;
            break;
          }
      if (!hit) {
        ++i;
        continue;
      }
      if (i > start) pieces.push_back({start, i, -1});
      pieces.push_back({i, i + hit->content.size(), hit->id});
      i += hit->content.size();
      start = i;
    }
  }
  if (start < text.size() || pieces.empty()) pieces.push_back({start, text.size(), -1});
  return pieces;
}

std::vector<Chunk> make_chunks(const unsigned char* s, const std::vector<Piece>& pieces,
                               std::size_t chunk_bytes) {
  std::vector<Chunk> chunks;
  for (const Piece& piece : pieces) {
    if (piece.special >= 0) {
      chunks.push_back({piece.begin, piece.end, piece.end, piece.special});
      continue;
    }
    std::size_t pos = piece.begin;
    while (piece.end - pos > chunk_bytes) {
      std::size_t cut = pos + chunk_bytes;
      while (cut < piece.end && !is_safe_cut(s, cut)) ++cut;
      if (cut >= piece.end) break;
      chunks.push_back({pos, cut, piece.end, -1});
      pos = cut;
    }
    chunks.push_back({pos, piece.end, piece.end, -1});
  }
  return chunks;
}

namespace {

// memcmp(a, b, n) == 0 for short n, inline (a library call costs more than the compare).
inline bool same_bytes(const unsigned char* a, const unsigned char* b, std::size_t n) {
  for (; n >= 8; a += 8, b += 8, n -= 8) {
    std::uint64_t x, y;
    std::memcpy(&x, a, 8);
    std::memcpy(&y, b, 8);
    if (x != y) return false;
  }
  for (std::size_t i = 0; i < n; ++i)
    if (a[i] != b[i]) return false;
  return true;
}

// A thread's cache of pre-token bytes -> token ids for one tokenizer (Impl serial and
// generation). Open addressing over slots; keys and ids in flat arrays.
class WordCache {
 public:
  static constexpr std::size_t kMaxWord = 64;  // longer pre-tokens are not cached

  bool owned_by(const Tokenizer::Impl& impl) const {
    return serial_ == impl.serial && generation_ == impl.generation.load(std::memory_order_relaxed);
  }
  void reset(const Tokenizer::Impl& impl) {
    serial_ = impl.serial;
    generation_ = impl.generation.load(std::memory_order_relaxed);
    slots_.assign(4096, Slot{});
    keys_.clear();
    ids_.clear();
    used_ = 0;
  }

  // Appends the ids of pre-token w[0..n) (2 <= n <= kMaxWord) to out.
  void encode_word(const Tokenizer::Impl& impl, const unsigned char* w, std::size_t n,
                   std::vector<std::int32_t>& out) {
    const std::uint64_t h = hash_bytes(w, n);
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = h & mask;; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.key_len == 0) break;
      if (s.hash == h && s.key_len == n && same_bytes(keys_.data() + s.key_off, w, n)) {
        if (s.ids_len == 1) {
          out.push_back(ids_[s.ids_off]);
        } else {
          out.insert(out.end(), ids_.begin() + s.ids_off, ids_.begin() + s.ids_off + s.ids_len);
        }
        return;
      }
    }
    const std::size_t before = out.size();
    impl.bpe(w, n, out);
    insert(impl, h, w, n, out.data() + before, out.size() - before);
  }

 private:
  struct Slot {
    std::uint64_t hash = 0;
    std::uint32_t key_off = 0, key_len = 0;  // key_len 0: empty
    std::uint32_t ids_off = 0, ids_len = 0;
  };

  void insert(const Tokenizer::Impl& impl, std::uint64_t h, const unsigned char* w, std::size_t n,
              const std::int32_t* ids, std::size_t count) {
    if (keys_.size() + n > kMaxKeyBytes || ids_.size() + count > kMaxIds) reset(impl);
    if (2 * (used_ + 1) > slots_.size()) grow();
    const Slot slot{h, static_cast<std::uint32_t>(keys_.size()), static_cast<std::uint32_t>(n),
                    static_cast<std::uint32_t>(ids_.size()), static_cast<std::uint32_t>(count)};
    keys_.insert(keys_.end(), w, w + n);
    ids_.insert(ids_.end(), ids, ids + count);
    place(slot);
    ++used_;
  }
  void place(const Slot& slot) {
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = slot.hash & mask;
    while (slots_[i].key_len != 0) i = (i + 1) & mask;
    slots_[i] = slot;
  }
  void grow() {
    std::vector<Slot> old(slots_.size() * 2);
    old.swap(slots_);
    for (const Slot& s : old)
      if (s.key_len != 0) place(s);
  }

  static constexpr std::size_t kMaxKeyBytes = std::size_t{64} << 20;
  static constexpr std::size_t kMaxIds = std::size_t{16} << 20;
  std::uint64_t serial_ = 0, generation_ = 0;
  std::vector<Slot> slots_;
  std::vector<unsigned char> keys_;
  std::vector<std::int32_t> ids_;
  std::size_t used_ = 0;
};

WordCache& cache_for(const Tokenizer::Impl& impl) {
  thread_local WordCache cache;
  if (!cache.owned_by(impl)) cache.reset(impl);
  return cache;
}

// Encodes the pre-tokens starting in [p, stop) of a piece of text that ends at `end`;
// stop is `end` or a position where a pre-token certainly starts (is_safe_cut).
void encode_range(const Tokenizer::Impl& impl, const unsigned char* s, std::size_t p,
                  std::size_t stop, std::size_t end, std::vector<std::int32_t>& out) {
  if (impl.merges.empty() && !impl.ignore_merges) {  // no merges: one token per byte
    for (; p < stop; ++p) out.push_back(impl.byte_id[s[p]]);
    return;
  }
  WordCache& cache = cache_for(impl);
  while (p < stop) {
    const std::size_t q = pretoken_end(s, p, end);
    const std::size_t n = q - p;
    if (n == 1) {
      out.push_back(impl.byte_id[s[p]]);
    } else if (n <= WordCache::kMaxWord) {
      cache.encode_word(impl, s + p, n, out);
    } else {
      impl.bpe(s + p, n, out);
    }
    p = q;
  }
}

constexpr std::size_t kShortWord = 48;

// Merges by rank for a short word: symbols and the ranks of adjacent pairs in arrays;
// each step merges the leftmost pair of lowest rank.
void bpe_short(const Tokenizer::Impl& impl, const unsigned char* w, std::size_t n,
               std::vector<std::int32_t>& out) {
  std::int32_t sym[kShortWord];
  std::uint32_t rank[kShortWord];
  std::int32_t merged[kShortWord];
  const MergeTable& table = impl.merge_table;
  for (std::size_t i = 0; i < n; ++i) sym[i] = impl.byte_id[w[i]];
  for (std::size_t i = 0; i + 1 < n; ++i) {
    const MergeTable::Entry e = table.find(sym[i], sym[i + 1]);
    rank[i] = e.rank;
    merged[i] = e.merged;
  }
  std::size_t m = n;
  while (m > 1) {
    std::uint32_t best = MergeTable::kNoRank;
    std::size_t at = 0;
    for (std::size_t i = 0; i + 1 < m; ++i)
      if (rank[i] < best) {
        best = rank[i];
        at = i;
      }
    if (best == MergeTable::kNoRank) break;
    sym[at] = merged[at];
    // Symbol at + 1 goes; pair j (j > at) becomes pair j - 1.
    for (std::size_t j = at + 1; j + 1 < m; ++j) sym[j] = sym[j + 1];
    for (std::size_t j = at + 1; j + 2 < m; ++j) {
      rank[j] = rank[j + 1];
      merged[j] = merged[j + 1];
    }
    --m;
    if (at > 0) {
      const MergeTable::Entry e = table.find(sym[at - 1], sym[at]);
      rank[at - 1] = e.rank;
      merged[at - 1] = e.merged;
    }
    if (at + 1 < m) {
      const MergeTable::Entry e = table.find(sym[at], sym[at + 1]);
      rank[at] = e.rank;
      merged[at] = e.merged;
    }
  }
  out.insert(out.end(), sym, sym + m);
}

// The same for a long word in O(n log n): symbols in a linked list, candidate pairs in
// a min-heap ordered by (rank, position), stale candidates skipped when popped.
void bpe_long(const Tokenizer::Impl& impl, const unsigned char* w, std::size_t n,
              std::vector<std::int32_t>& out) {
  struct Sym {
    std::int32_t id;
    std::int64_t prev, next;  // -1: none
  };
  struct Cand {
    std::uint32_t rank;
    std::int64_t pos;
    std::int32_t left, right, merged;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const MergeTable& table = impl.merge_table;
  std::vector<Sym> sym(n);
  for (std::size_t i = 0; i < n; ++i)
    sym[i] = {impl.byte_id[w[i]], static_cast<std::int64_t>(i) - 1,
              i + 1 < n ? static_cast<std::int64_t>(i + 1) : -1};
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](std::int64_t pos) {
    if (pos < 0 || sym[pos].next < 0) return;
    const std::int32_t a = sym[pos].id, b = sym[sym[pos].next].id;
    const MergeTable::Entry e = table.find(a, b);
    if (e.rank != MergeTable::kNoRank) heap.push({e.rank, pos, a, b, e.merged});
  };
  for (std::size_t i = 0; i + 1 < n; ++i) push(static_cast<std::int64_t>(i));
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& left = sym[c.pos];
    if (left.id != c.left || left.next < 0 || sym[left.next].id != c.right) continue;  // stale
    const std::int64_t gone = left.next;
    left.id = c.merged;
    left.next = sym[gone].next;
    if (left.next >= 0) sym[left.next].prev = c.pos;
    sym[gone].id = -1;
    push(left.prev);
    push(c.pos);
  }
  for (std::int64_t i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

std::atomic<std::uint64_t> next_serial{1};

}  // namespace
}  // namespace detail

void Tokenizer::Impl::bpe(const unsigned char* w, std::size_t n,
                          std::vector<std::int32_t>& out) const {
  if (ignore_merges) {
    const auto it = ids.find(std::string(reinterpret_cast<const char*>(w), n));
    if (it != ids.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (n <= detail::kShortWord) {
    detail::bpe_short(*this, w, n, out);
  } else {
    detail::bpe_long(*this, w, n, out);
  }
}

namespace {

// A token as vocab files write it, quoted.
std::string shown(std::string_view bytes) {
  std::string s(1, '\'');
  s += to_unicode_string(bytes);
  s += '\'';
  return s;
}

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (std::size_t i = 0; i < s.size();) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    const std::size_t len = detail::non_ascii_char(p + i, s.size() - i).len;
    if (len == 1) return false;
    i += len;
  }
  return true;
}

}  // namespace

Tokenizer::Tokenizer() : Tokenizer(bytes()) {}

Tokenizer Tokenizer::bytes() {
  std::vector<std::string> tokens(256);
  for (int b = 0; b < 256; ++b) tokens[b] = std::string(1, static_cast<char>(b));
  return from_parts(std::move(tokens), {}, {}, "byte tokenizer");
}

Tokenizer Tokenizer::from_parts(std::vector<std::string> tokens,
                                std::vector<std::pair<std::int32_t, std::int32_t>> merges,
                                std::vector<SpecialToken> specials, const std::string& origin,
                                bool ignore_merges) {
  auto fail = [&](const std::string& what) { throw std::runtime_error(origin + ": " + what); };
  auto impl = std::make_shared<Impl>();
  if (tokens.size() > 0x7FFFFFFF) fail("too many tokens");
  const auto n = static_cast<std::int32_t>(tokens.size());
  impl->is_special.assign(tokens.size(), 0);
  for (const SpecialToken& sp : specials) {
    if (sp.id < 0 || sp.id >= n)
      fail("special token '" + sp.content + "' has id " + std::to_string(sp.id) + " outside 0.." +
           std::to_string(n - 1));
    if (sp.content.empty()) fail("special token " + std::to_string(sp.id) + " is empty");
    if (!valid_utf8(sp.content)) fail("special token " + std::to_string(sp.id) + " is not UTF-8");
    if (tokens[sp.id] != sp.content)
      fail("special token '" + sp.content + "' (id " + std::to_string(sp.id) +
           ") differs from token " + std::to_string(sp.id) + " " + shown(tokens[sp.id]));
    if (impl->is_special[sp.id]) fail("id " + std::to_string(sp.id) + " is special twice");
    impl->is_special[sp.id] = 1;
  }
  for (std::int32_t id = 0; id < n; ++id) {
    if (impl->is_special[id]) continue;
    if (tokens[id].empty()) fail("token " + std::to_string(id) + " is empty");
    const auto [it, inserted] = impl->ids.emplace(tokens[id], id);
    if (!inserted)
      fail("tokens " + std::to_string(it->second) + " and " + std::to_string(id) + " are both " +
           shown(tokens[id]));
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = impl->ids.find(std::string(1, static_cast<char>(b)));
    if (it == impl->ids.end()) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", b);
      fail(std::string("no token for the byte ") + hex + " " +
           shown(std::string(1, static_cast<char>(b))) +
           " (a byte-level BPE needs all 256 single bytes)");
    }
    impl->byte_id[b] = it->second;
  }
  impl->merged_ids.reserve(merges.size());
  for (std::size_t r = 0; r < merges.size(); ++r) {
    const auto [a, b] = merges[r];
    const std::string where = "merge " + std::to_string(r) + " (ids " + std::to_string(a) + ", " +
                              std::to_string(b) + ")";
    if (a < 0 || a >= n || b < 0 || b >= n)
      fail(where + ": id outside 0.." + std::to_string(n - 1));
    if (impl->is_special[a] || impl->is_special[b]) fail(where + ": names a special token");
    const auto it = impl->ids.find(tokens[a] + tokens[b]);
    if (it == impl->ids.end())
      fail(where + ": the merged token " + shown(tokens[a] + tokens[b]) + " is not a token");
    impl->merged_ids.push_back(it->second);
  }
  std::unordered_set<std::string_view> seen;  // a hash set: files may list 10^5 of them
  for (const SpecialToken& sp : specials)
    if (!seen.insert(sp.content).second) fail("special token '" + sp.content + "' is listed twice");
  impl->tokens = std::move(tokens);
  impl->merges = std::move(merges);
  impl->specials = std::move(specials);
  impl->matcher.build(impl->specials);
  impl->merge_table.build(impl->merges, impl->merged_ids);
  impl->ignore_merges = ignore_merges;
  bool bytes_only = n == 256 && impl->merges.empty() && impl->specials.empty() && !ignore_merges;
  for (int b = 0; b < 256 && bytes_only; ++b) bytes_only = impl->byte_id[b] == b;
  impl->bytes_only = bytes_only;
  impl->serial = detail::next_serial.fetch_add(1);
  impl->origin = origin;
  return Tokenizer(std::move(impl));
}

int Tokenizer::vocab_size() const { return static_cast<int>(impl_->tokens.size()); }
std::size_t Tokenizer::num_merges() const { return impl_->merges.size(); }
const std::vector<std::pair<std::int32_t, std::int32_t>>& Tokenizer::merges() const {
  return impl_->merges;
}
bool Tokenizer::is_bytes() const { return impl_->bytes_only; }
const std::vector<SpecialToken>& Tokenizer::special_tokens() const { return impl_->specials; }

std::optional<std::int32_t> Tokenizer::special_id(std::string_view content) const {
  for (const SpecialToken& sp : impl_->specials)
    if (sp.content == content) return sp.id;
  return std::nullopt;
}

std::optional<std::int32_t> Tokenizer::eot_id() const { return special_id("<|endoftext|>"); }

std::string_view Tokenizer::token_bytes(std::int32_t id) const {
  if (id < 0 || id >= vocab_size())
    throw std::out_of_range("token id " + std::to_string(id) + " is outside the vocabulary (" +
                            std::to_string(vocab_size()) + " tokens)");
  return impl_->tokens[id];
}

std::optional<std::int32_t> Tokenizer::token_id(std::string_view bytes) const {
  const auto it = impl_->ids.find(std::string(bytes));
  if (it == impl_->ids.end()) return std::nullopt;
  return it->second;
}

std::vector<std::int32_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
  const Impl& impl = *impl_;
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  std::vector<std::int32_t> out;
  out.reserve(impl.merges.empty() ? text.size() : text.size() / 3 + 16);
  for (const detail::Piece& piece : detail::split_specials(impl.matcher, text, allow_special)) {
    if (piece.special >= 0) {
      out.push_back(piece.special);
    } else {
      detail::encode_range(impl, s, piece.begin, piece.end, piece.end, out);
    }
  }
  return out;
}

std::vector<std::int32_t> Tokenizer::encode_parallel(std::string_view text, bool allow_special,
                                                     std::size_t chunk_bytes) const {
  const int threads = num_threads();
  if (chunk_bytes == 0) {
    if (threads == 1) return encode(text, allow_special);
    chunk_bytes = std::max<std::size_t>(std::size_t{64} << 10, text.size() / (8 * threads));
  }
  const Impl& impl = *impl_;
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::vector<detail::Chunk> items = detail::make_chunks(
      s, detail::split_specials(impl.matcher, text, allow_special), chunk_bytes);
  std::vector<std::vector<std::int32_t>> parts(items.size());
  const auto count = static_cast<std::ptrdiff_t>(items.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (std::ptrdiff_t i = 0; i < count; ++i) {
    const detail::Chunk& it = items[i];
    if (it.special >= 0) {
      parts[i].push_back(it.special);
    } else {
      parts[i].reserve((it.stop - it.begin) / 3 + 16);
      detail::encode_range(impl, s, it.begin, it.stop, it.end, parts[i]);
    }
  }
  std::size_t total = 0;
  for (const auto& p : parts) total += p.size();
  std::vector<std::int32_t> out;
  out.reserve(total);
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

std::vector<std::vector<std::int32_t>> Tokenizer::encode_batch(
    std::span<const std::string_view> texts, bool allow_special) const {
  std::vector<std::vector<std::int32_t>> out(texts.size());
  const auto count = static_cast<std::ptrdiff_t>(texts.size());
#pragma omp parallel for schedule(dynamic, 1)
  for (std::ptrdiff_t i = 0; i < count; ++i) out[i] = encode(texts[i], allow_special);
  return out;
}

std::string Tokenizer::decode(std::span<const std::int32_t> ids) const {
  const auto& tokens = impl_->tokens;
  std::size_t total = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || static_cast<std::size_t>(ids[i]) >= tokens.size())
      throw std::out_of_range("token id " + std::to_string(ids[i]) + " at position " +
                              std::to_string(i) + " is outside the vocabulary (" +
                              std::to_string(tokens.size()) + " tokens)");
    total += tokens[ids[i]].size();
  }
  std::string out;
  out.reserve(total);
  for (const std::int32_t id : ids) out += tokens[id];
  return out;
}

void Tokenizer::clear_cache() const { impl_->generation.fetch_add(1); }

std::string Tokenizer::describe() const {
  if (is_bytes()) return "bytes: 256 tokens, id = byte value";
  std::string s = "byte-level BPE: " + std::to_string(vocab_size()) + " tokens, " +
                  std::to_string(num_merges()) + " merges";
  if (!impl_->specials.empty()) {
    s += ", special tokens";
    constexpr std::size_t kShown = 8;  // a summary line, not a listing of 10^5 tokens
    for (std::size_t i = 0; i < impl_->specials.size() && i < kShown; ++i)
      s += " " + impl_->specials[i].content + " = " + std::to_string(impl_->specials[i].id);
    if (impl_->specials.size() > kShown)
      s += " and " + std::to_string(impl_->specials.size() - kShown) + " more";
  }
  return s;
}

}  // namespace whtlm::tok
