// llm.c token shards: a 1024-byte header of little-endian int32 (magic, version, token
// count, then zeros) followed by the tokens as little-endian uint16. Bytes are packed
// and unpacked explicitly, so the format does not depend on the host's byte order.
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "whtlm/data.hpp"
#include "whtlm/io.hpp"

namespace whtlm::data {
namespace {

namespace fs = std::filesystem;

std::int32_t load_i32(const unsigned char* p) {
  const std::uint32_t u = static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
                          static_cast<std::uint32_t>(p[2]) << 16 |
                          static_cast<std::uint32_t>(p[3]) << 24;
  return static_cast<std::int32_t>(u);
}

void store_i32(unsigned char* p, std::int32_t v) {
  const auto u = static_cast<std::uint32_t>(v);
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(u >> (8 * i));
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

}  // namespace

std::vector<std::int32_t> read_llmc_shard(const std::string& path) {
  // One reader for shards: the one training streams through (token_source.cpp).
  return TokenSource::map_shards({path}).to_vector();
}

void write_llmc_shard(const std::string& path, std::span<const std::int32_t> tokens) {
  if (tokens.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
    fail(path, "too many tokens for one shard: " + std::to_string(tokens.size()));
  }
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] > 65535) {
      fail(path, "token " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                     " does not fit an llm.c shard (ids must be 0..65535)");
    }
  }
  io::write_file_atomic_with(path, [&](io::AtomicWriter& out) {
    std::array<unsigned char, kLlmcHeaderBytes> header{};
    store_i32(&header[0], kLlmcMagic);
    store_i32(&header[4], kLlmcVersion);
    store_i32(&header[8], static_cast<std::int32_t>(tokens.size()));
    out.write(header.data(), header.size());
    std::vector<unsigned char> block(std::size_t{1} << 20);
    for (std::size_t done = 0; done < tokens.size();) {
      const std::size_t n = std::min(tokens.size() - done, block.size() / 2);
      for (std::size_t i = 0; i < n; ++i) {
        const auto t = static_cast<std::uint32_t>(tokens[done + i]);
        block[2 * i] = static_cast<unsigned char>(t);
        block[2 * i + 1] = static_cast<unsigned char>(t >> 8);
      }
      out.write(block.data(), 2 * n);
      done += n;
    }
  });
}

bool looks_like_llmc_shard(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  if (fs::path(path).extension() == ".bin") return true;
  std::ifstream in(path, std::ios::binary);
  unsigned char head[4];
  if (!in.read(reinterpret_cast<char*>(head), sizeof head)) return false;
  return load_i32(head) == kLlmcMagic;
}

}  // namespace whtlm::data
