// How the GPU tests compare a GPU result with the CPU's: the relative error of the
// whole array, with every GPU value required to be finite (NaN poison left over, or a
// NaN computed, fails whatever the reference holds). Each error is recorded in the
// test's JSON report.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <span>
#include <string>

namespace whtlm::gpu_test {

inline std::string rel_err_text(double rel) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", rel);
  return buf;
}

// ||gpu - cpu|| / ||cpu|| <= tol.
inline ::testing::AssertionResult matches(std::span<const float> gpu, std::span<const float> cpu,
                                          double tol, const std::string& what) {
  if (gpu.size() != cpu.size())
    return ::testing::AssertionFailure()
           << what << ": " << gpu.size() << " values from the GPU, " << cpu.size() << " expected";
  double num = 0, den = 0, worst = -1;
  std::size_t worst_i = 0, bad = 0, first_bad = 0;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    if (!std::isfinite(gpu[i]) && std::isfinite(cpu[i])) {
      if (bad++ == 0) first_bad = i;
      continue;
    }
    const double d = static_cast<double>(gpu[i]) - static_cast<double>(cpu[i]);
    num += d * d;
    den += static_cast<double>(cpu[i]) * static_cast<double>(cpu[i]);
    if (std::abs(d) > worst) {
      worst = std::abs(d);
      worst_i = i;
    }
  }
  if (bad > 0)
    return ::testing::AssertionFailure()
           << what << ": " << bad << " of " << cpu.size()
           << " GPU values are not finite (first at [" << first_bad << "]: gpu " << gpu[first_bad]
           << ", cpu " << cpu[first_bad] << ")";
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  ::testing::Test::RecordProperty("rel_err " + what, rel_err_text(rel));
  if (rel <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << what << ": relative error " << rel << " > " << tol << " (largest difference at ["
         << worst_i << "]: gpu " << gpu[worst_i] << ", cpu " << cpu[worst_i] << ", n " << cpu.size()
         << ")";
}

// |gpu - cpu| / |cpu| <= tol for one value.
inline ::testing::AssertionResult matches(double gpu, double cpu, double tol,
                                          const std::string& what) {
  const double rel = cpu != 0 ? std::abs(gpu - cpu) / std::abs(cpu) : std::abs(gpu);
  ::testing::Test::RecordProperty("rel_err " + what, rel_err_text(rel));
  if (std::isfinite(gpu) && rel <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": gpu " << gpu << ", cpu " << cpu
                                       << ", relative error " << rel << " > " << tol;
}

}  // namespace whtlm::gpu_test
