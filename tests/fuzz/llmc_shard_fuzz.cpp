// Fuzzes llm.c token shards: the input is a .bin file, read by data::read_llmc_shard and
// mapped by data::TokenSource::map_shards (alone, and twice in a row as two shards).
// Both promise the same checks (magic, version, exact size), so they must accept and
// refuse the same files, and when they accept, give the same tokens.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "whtlm/data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace whtlm;
  fuzz::init_once();
  const std::string path = fuzz::write_input("shard.bin", data, size);

  std::vector<std::int32_t> read;
  const bool read_ok = fuzz::expect_clean({path}, [&] { read = data::read_llmc_shard(path); });
  std::vector<std::int32_t> mapped, twice;
  const bool map_ok = fuzz::expect_clean({path}, [&] {
    const data::TokenSource one = data::TokenSource::map_shards({path});
    mapped = one.to_vector();
    const data::TokenSource two = data::TokenSource::map_shards({path, path});
    twice = two.to_vector();
    // Reads that cross from the first shard into the second.
    if (!mapped.empty()) {
      std::vector<std::int32_t> window(mapped.size());
      two.read(mapped.size() / 2 + 1, mapped.size(), window.data());
      for (std::size_t i = 0; i < window.size(); ++i) {
        const std::size_t at = (mapped.size() / 2 + 1 + i) % mapped.size();
        fuzz::check(window[i] == mapped[at],
                    "map_shards: a read across two shards differs at " + std::to_string(i));
      }
      fuzz::check(two[mapped.size()] == mapped[0], "map_shards: operator[] of the second shard");
    }
  });
  fuzz::check(read_ok == map_ok, std::string("read_llmc_shard ") +
                                     (read_ok ? "accepted" : "refused") + " the file, map_shards " +
                                     (map_ok ? "accepted" : "refused") + " it");
  if (!read_ok) return 0;
  fuzz::check(read == mapped, "read_llmc_shard and map_shards give different tokens");
  fuzz::check(twice.size() == 2 * read.size(), "two shards do not hold twice the tokens");
  for (std::size_t i = 0; i < twice.size(); ++i)
    fuzz::check(twice[i] == read[i % read.size()], "two shards: token " + std::to_string(i));
  for (std::int32_t t : read)
    fuzz::check(t >= 0 && t <= 65535, "a token outside uint16: " + std::to_string(t));
  return 0;
}
