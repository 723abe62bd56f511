// Timing and input helpers for benchmarks (the process's memory is read in io/memory.cpp).
#include <algorithm>
#include <chrono>
#include <random>

#include "whtlm/perf.hpp"

namespace whtlm::perf {

Summary summarize(std::vector<double> samples) {
  Summary s;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  const std::size_t m = samples.size();
  s.median = m % 2 == 1 ? samples[m / 2] : 0.5 * (samples[m / 2 - 1] + samples[m / 2]);
  s.min = samples.front();
  s.max = samples.back();
  return s;
}

double time_calls(const std::function<void()>& f, std::size_t iters) {
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < iters; ++i) f();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double>(t1 - t0).count();
}

std::size_t calibrate(const std::function<void()>& f, double min_seconds) {
  // One call first, untimed: the first call may pay for one-off work (oneDNN
  // generates its kernels then, and buffers are first touched), which would make
  // a single call look long enough to be timed alone.
  f();
  std::size_t iters = 1;
  for (;;) {
    const double t = time_calls(f, iters);
    if (t >= min_seconds || iters >= (std::size_t{1} << 30)) return iters;
    // Aim 20% past the target, growing at most 100x a step.
    const double grow = t > 0 ? std::min(100.0, 1.2 * min_seconds / t) : 100.0;
    iters = std::max(iters + 1, static_cast<std::size_t>(static_cast<double>(iters) * grow));
  }
}

std::vector<float> random_uniform(std::size_t count, unsigned seed, float amplitude) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-amplitude, amplitude);
  std::vector<float> v(count);
  for (auto& x : v) x = dist(rng);
  return v;
}

}  // namespace whtlm::perf
