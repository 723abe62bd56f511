// Helpers the claims and the report writer share: grouping runs by size and
// projection, parameter counts, and the statistics used for noise.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "whtlm/model.hpp"
#include "whtlm/report.hpp"

namespace whtlm::report::detail {

// Sizes of the training runs in the order of their dense parameter count (smallest
// first), each with the shape of its first run.
std::vector<std::pair<std::string, ModelConfig>> sizes_by_params(const Data& d);
// Sizes of the inference cases, in order of appearance.
std::vector<std::string> infer_sizes(const Data& d);
std::size_t count_params(ModelConfig c, Projection p);
double attn_params_per_block(ModelConfig c, Projection p);
// The finished runs of one size and projection, by seed (for wht: those whose scale
// started as d.wht_init, or as `init` when given).
std::map<std::uint64_t, const TrainRun*> runs_of(const Data& d, const std::string& size,
                                                 Projection p);
std::map<std::uint64_t, const TrainRun*> runs_of(const Data& d, const std::string& size,
                                                 Projection p, ScaleInit init);
// The inference case of (size, projection, batch, prompt); nullptr when not measured.
const InferCase* find_case(const Data& d, const std::string& size, Projection p, int batch,
                           int prompt);

// The wht/dense throughput ratio of one inference case and its noise: the two
// medians' relative half-ranges, added (NaN when either median is missing).
struct CaseRatio {
  double ratio = std::numeric_limits<double>::quiet_NaN();
  double noise = std::numeric_limits<double>::quiet_NaN();
};
CaseRatio case_ratio(const perf::Summary& wht, const perf::Summary& dense);

double mean(const std::vector<double>& v);    // NaN when empty
double spread(const std::vector<double>& v);  // max - min; NaN with fewer than two values

// The downstream proxy (src/report/downstream.cpp): its claim row, and its section's
// text and table (link turns a data file's path into the report's link to it).
struct TextTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  int link_column = -1;
};
Claim downstream_claim(const Data& d);
std::string downstream_note(const Data& d);
TextTable downstream_table(const Data& d,
                           const std::function<std::string(const std::string&)>& link);

}  // namespace whtlm::report::detail
