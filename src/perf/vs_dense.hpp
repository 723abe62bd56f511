// The one comparison with dense that the training and inference benches share
// (whtlm/perf.hpp: train_vs_dense, infer_vs_dense).
#pragma once

#include <vector>

#include "whtlm/perf.hpp"

namespace whtlm::perf {

// The dense row of r's case among `rows` (same_case(d, r) says whether d measures the
// same case): the last one when several, nullptr when there is none.
template <class Row, class SameCase>
const Row* dense_row(const std::vector<Row>& rows, const Row& r, SameCase same_case) {
  const Row* dense = nullptr;
  for (const Row& d : rows)
    if (d.proj == "dense" && same_case(d, r)) dense = &d;
  return dense;
}

// Throughput `speed` against dense's, and dense's cost against this one's.
inline VsDense vs_dense(double speed, double dense_speed, double cost, double dense_cost) {
  return {speed / dense_speed, dense_cost / cost};
}

}  // namespace whtlm::perf
