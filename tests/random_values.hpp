// Test inputs: n normally distributed floats from a seeded generator (the same values on
// every run and platform that shares libstdc++'s normal_distribution).
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace whtlm::test {

inline std::vector<float> random_normal(std::size_t n, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

}  // namespace whtlm::test
