// `whtlm tokenizer bench`: encoding throughput of a tokenizer at each thread count,
// interleaved rounds, cold caches, every encoding checked against the sequential one.
#include <chrono>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "whtlm/data.hpp"
#include "whtlm/perf.hpp"
#include "whtlm/threads.hpp"
#include "whtlm/tokenizer.hpp"

namespace whtlm::perf {

TokenizerBenchResult tokenizer_bench(const TokenizerBenchOptions& o) {
  const tok::Tokenizer t = tok::load_tokenizer(o.tokenizer);
  TokenizerBenchResult result;
  result.data = o.data.empty() ? data::default_corpus_path() : o.data;
  const std::string text = tok::read_text(result.data);
  const double mb = static_cast<double>(text.size()) / 1e6;
  const std::vector<std::int32_t> reference = t.encode(text);  // warm-up, and the check
  std::vector<std::vector<double>> rates(o.threads.size());
  for (int r = 0; r < o.repetitions; ++r)
    for (std::size_t k = 0; k < o.threads.size(); ++k) {
      set_num_threads(o.threads[k]);
      t.clear_cache();  // every timed encode starts with empty pre-token caches
      const auto start = std::chrono::steady_clock::now();
      const std::vector<std::int32_t> ids =
          o.threads[k] == 1 ? t.encode(text) : t.encode_parallel(text);
      const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (ids != reference)
        throw std::runtime_error("encoding with " + std::to_string(o.threads[k]) +
                                 " threads differs from the sequential encoding");
      rates[k].push_back(mb / s);
      if (o.json_line)
        o.json_line(nlohmann::json{{"impl", "whtlm"},
                                   {"threads", o.threads[k]},
                                   {"round", r + 1},
                                   {"seconds", s},
                                   {"bytes", text.size()},
                                   {"tokens", ids.size()},
                                   {"mb_per_s", mb / s},
                                   {"data", result.data},
                                   {"tokenizer", o.tokenizer}}
                        .dump());
    }
  result.description = t.describe();
  result.bytes = text.size();
  result.tokens = reference.size();
  result.repetitions = o.repetitions;
  if (o.threads.empty()) return result;
  const double base = summarize(rates[0]).median;
  for (std::size_t k = 0; k < o.threads.size(); ++k) {
    TokenizerBenchRow row;
    row.threads = o.threads[k];
    row.mb_per_s = summarize(rates[k]);
    row.vs_first = row.mb_per_s.median / base;
    result.rows.push_back(row);
  }
  return result;
}

}  // namespace whtlm::perf
