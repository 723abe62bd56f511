// TokenSource: token ids in memory, or llm.c shards read from disk as needed.
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "whtlm/data.hpp"
#include "whtlm/io.hpp"

namespace whtlm::data {

// The shards: each file, open, with its token count and the index of its first token in
// the whole sequence. Tokens are read by offset (pread), not through a memory map, so a
// shard truncated while training gives an error naming it instead of a SIGBUS; the
// page cache still serves repeated reads, and shards larger than memory work.
struct TokenSource::Mapped {
  struct Shard {
    io::InputFile file;
    std::size_t count = 0, first = 0;
  };
  std::vector<Shard> shards;
};

namespace {

std::int32_t le_i32(const unsigned char* p) {
  return static_cast<std::int32_t>(
      static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
      static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24);
}

// The token count of an llm.c shard, from its header, checked against the file size.
std::size_t shard_token_count(const io::InputFile& f) {
  const std::string& path = f.path();
  const std::uint64_t bytes = f.size();
  if (bytes < kLlmcHeaderBytes)
    throw std::runtime_error(path + ": truncated: " + std::to_string(bytes) +
                             " bytes, shorter than the " + std::to_string(kLlmcHeaderBytes) +
                             "-byte header of an llm.c token shard");
  unsigned char h[12];
  f.read_at(0, h, sizeof h);
  const std::int32_t magic = le_i32(h), version = le_i32(h + 4), count = le_i32(h + 8);
  if (magic != kLlmcMagic)
    throw std::runtime_error(path + ": bad magic " + std::to_string(magic) + " (expected " +
                             std::to_string(kLlmcMagic) + "): not an llm.c token shard");
  if (version != kLlmcVersion)
    throw std::runtime_error(path + ": bad version " + std::to_string(version) + " (expected " +
                             std::to_string(kLlmcVersion) + ": uint16 tokens)");
  if (count < 0)
    throw std::runtime_error(path + ": bad token count " + std::to_string(count) + " (negative)");
  const std::uint64_t expected = kLlmcHeaderBytes + 2 * std::uint64_t(count);
  if (expected != bytes)
    throw std::runtime_error(path + ": " + (bytes < expected ? "truncated" : "size mismatch") +
                             ": the header's token count " + std::to_string(count) + " needs " +
                             std::to_string(expected) + " bytes, but the file has " +
                             std::to_string(bytes));
  return std::size_t(count);
}

// Each shard stays open while the source lives; raise the soft limit on open files
// (often 1024) towards the hard one when there are many shards.
void make_room_for_files(std::size_t n) {
  struct rlimit r {};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return;
  const rlim_t want = static_cast<rlim_t>(n) + 64;
  if (r.rlim_cur == RLIM_INFINITY || r.rlim_cur >= want) return;
  r.rlim_cur = r.rlim_max == RLIM_INFINITY ? want : std::min(want, r.rlim_max);
  setrlimit(RLIMIT_NOFILE, &r);
}

}  // namespace

TokenSource::TokenSource(std::vector<std::int32_t> tokens)
    : memory_(std::make_shared<const std::vector<std::int32_t>>(std::move(tokens))),
      size_(memory_->size()) {}

TokenSource TokenSource::map_shards(const std::vector<std::string>& paths) {
  auto m = std::make_shared<Mapped>();
  std::size_t total = 0;
  make_room_for_files(paths.size());
  for (const std::string& path : paths) {
    std::optional<io::InputFile> opened;
    try {
      opened.emplace(path);
    } catch (const std::runtime_error& e) {
      // Close the shards opened so far first: at the open-file limit nothing else can
      // open a descriptor (UBSan's type check of `e` needs one, for instance).
      m->shards.clear();
      if (std::string(e.what()).find(std::strerror(EMFILE)) == std::string::npos) throw;
      throw std::runtime_error(std::string(e.what()) + " (" + std::to_string(paths.size()) +
                               " shards are kept open while they are read; raise `ulimit -n`)");
    }
    io::InputFile f = std::move(*opened);
    const std::size_t count = shard_token_count(f);
    m->shards.push_back({std::move(f), count, total});
    total += count;
  }
  TokenSource t;
  t.mapped_ = std::move(m);
  t.size_ = total;
  return t;
}

void TokenSource::read(std::size_t offset, std::size_t n, std::int32_t* out) const {
  if (offset > size_ || n > size_ - offset)
    throw std::out_of_range("tokens [" + std::to_string(offset) + ", " +
                            std::to_string(offset + n) + ") past the end (" +
                            std::to_string(size_) + " tokens)");
  if (n == 0) return;
  if (memory_) {
    std::copy_n(memory_->data() + offset, n, out);
    return;
  }
  const auto& shards = mapped_->shards;
  // The shard holding `offset`: the last one whose first token is at or before it.
  auto it = std::upper_bound(shards.begin(), shards.end(), offset,
                             [](std::size_t v, const Mapped::Shard& s) { return v < s.first; });
  std::size_t i = std::size_t(it - shards.begin()) - 1;
  while (n > 0) {
    const Mapped::Shard& s = shards[i];
    const std::size_t at = offset - s.first;
    const std::size_t take = std::min(n, s.count - at);
    // Read into the tail of `out` (2 bytes a token), then widen from the front: each
    // int32 written lies at or before the bytes still to be read.
    auto* raw = reinterpret_cast<unsigned char*>(out) + 2 * take;
    s.file.read_at(kLlmcHeaderBytes + 2 * std::uint64_t(at), raw, 2 * take);
    for (std::size_t k = 0; k < take; ++k) out[k] = std::int32_t(raw[2 * k] | raw[2 * k + 1] << 8);
    out += take;
    offset += take;
    n -= take;
    ++i;
  }
}

std::int32_t TokenSource::operator[](std::size_t i) const {
  std::int32_t v = 0;
  read(i, 1, &v);
  return v;
}

std::vector<std::int32_t> TokenSource::to_vector() const {
  if (memory_) return *memory_;
  std::vector<std::int32_t> v(size_);
  read(0, size_, v.data());
  return v;
}

}  // namespace whtlm::data
