// TokenSource: token ids in memory, or llm.c shards read through memory maps.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "whtlm/data.hpp"

namespace whtlm::data {

// The mapped shards: each file's tokens (little-endian uint16 after the header) and
// the index of its first token in the whole sequence.
struct TokenSource::Mapped {
  struct Shard {
    std::string path;
    void* base = nullptr;
    std::size_t bytes = 0;
    const unsigned char* tokens = nullptr;
    std::size_t count = 0, first = 0;
  };
  std::vector<Shard> shards;
  ~Mapped() {
    for (Shard& s : shards)
      if (s.base != nullptr) munmap(s.base, s.bytes);
  }
};

namespace {

std::int32_t le_i32(const unsigned char* p) {
  return static_cast<std::int32_t>(
      static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
      static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24);
}

}  // namespace

TokenSource::TokenSource(std::vector<std::int32_t> tokens)
    : memory_(std::make_shared<const std::vector<std::int32_t>>(std::move(tokens))),
      size_(memory_->size()) {}

TokenSource TokenSource::map_shards(const std::vector<std::string>& paths) {
  auto m = std::make_shared<Mapped>();
  std::size_t total = 0;
  for (const std::string& path : paths) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (fstat(fd, &st) != 0) {
      close(fd);
      throw std::runtime_error(path + ": cannot get the file size: " + std::strerror(errno));
    }
    const auto bytes = static_cast<std::size_t>(st.st_size);
    if (bytes < kLlmcHeaderBytes) {
      close(fd);
      throw std::runtime_error(path + ": truncated: " + std::to_string(bytes) +
                               " bytes, shorter than the " + std::to_string(kLlmcHeaderBytes) +
                               "-byte header of an llm.c token shard");
    }
    void* base = mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (base == MAP_FAILED)
      throw std::runtime_error(path + ": cannot map: " + std::strerror(errno));
    Mapped::Shard s{path, base, bytes, nullptr, 0, total};
    m->shards.push_back(s);  // owned by m from here: unmapped on any error below
    const auto* h = static_cast<const unsigned char*>(base);
    const std::int32_t magic = le_i32(h), version = le_i32(h + 4), count = le_i32(h + 8);
    if (magic != kLlmcMagic)
      throw std::runtime_error(path + ": bad magic " + std::to_string(magic) + " (expected " +
                               std::to_string(kLlmcMagic) + "): not an llm.c token shard");
    if (version != kLlmcVersion)
      throw std::runtime_error(path + ": bad version " + std::to_string(version) + " (expected " +
                               std::to_string(kLlmcVersion) + ": uint16 tokens)");
    if (count < 0 || kLlmcHeaderBytes + 2 * std::size_t(count) != bytes)
      throw std::runtime_error(
          path + ": the header's token count " + std::to_string(count) +
          " does not match the file size " + std::to_string(bytes) +
          (bytes < kLlmcHeaderBytes + 2 * std::size_t(std::max(count, 0)) ? " (truncated)" : ""));
    m->shards.back().tokens = h + kLlmcHeaderBytes;
    m->shards.back().count = std::size_t(count);
    total += std::size_t(count);
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
    const unsigned char* p = s.tokens + 2 * at;
    for (std::size_t k = 0; k < take; ++k) out[k] = std::int32_t(p[2 * k] | p[2 * k + 1] << 8);
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
