// Internal: exp and tanh written so the compiler can vectorise loops that call them
// (the C library's versions are scalar calls). float uses a Cody-Waite range
// reduction and a degree-6 polynomial (relative error about 2e-7 over the range
// softmax and the activations use); double keeps the C library (tests only).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace whtlm::backend::cpu {

inline float exp_fast(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // n = round(x / ln 2). nearbyint, not floor(t + 0.5): GCC vectorises floor only
  // without -ftrapping-math, so a floor here left every loop calling exp scalar.
  const float n = std::nearbyint(x * 1.44269504088896341f);
  float r = x - n * 0.693359375f;  // ln 2 in two parts, so
  r = r + n * 2.12194440e-4f;      // r is exact
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const auto bits = static_cast<std::uint32_t>(static_cast<std::int32_t>(n) + 127) << 23;
  return y * std::bit_cast<float>(bits);  // y * 2^n
}

template <class T>
inline T vexp(T x) {
  if constexpr (sizeof(T) == 4)
    return exp_fast(x);
  else
    return std::exp(x);
}

// tanh(x) = 1 - 2 / (e^{2x} + 1): exact limits at both ends, no cancellation issue
// for the accuracy the activations need.
template <class T>
inline T vtanh(T x) {
  if constexpr (sizeof(T) == 4)
    return 1.0f - 2.0f / (exp_fast(2.0f * x) + 1.0f);
  else
    return std::tanh(x);
}

}  // namespace whtlm::backend::cpu
