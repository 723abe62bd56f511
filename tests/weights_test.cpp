// Inference weight formats (src/backend/weights.hpp) against references written here:
// fp16 conversion against the nearest representable value, q8_0 packing byte for byte
// against ggml's reference quantizer (as ../shared/INTEROP.md quotes it), unpacking
// exact, and the decode product of every kernel family the CPU runs against a double
// reference with a stated bound, bit-identical across families' lanes where they claim
// it, across thread counts and across row counts.
//
// The decode bounds. f32 and bf16 weights: the product is computed from the exactly
// dequantized weights in fp32, so |y - exact| <= k 2^-24 sum |x w| (+ one rounding of
// the sum), k = in. q8_0: the activations are quantized per block of 32 with
// d_x = amax / 127, so each moves by at most d_x / 2; then |y - exact| <=
// sum over blocks (amax_block(x) / 254) sum_block |w| + k 2^-24 sum |x w|, `exact`
// taken with the dequantized weights and the fp32 activations.
#include "backend/weights.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/weights_kernels.hpp"
#include "random_values.hpp"
#include "whtlm/threads.hpp"

namespace whtlm {
namespace {

using backend::fp16_to_fp32;
using backend::fp32_to_fp16;
using backend::PackedWeight;
using backend::WeightLayout;
using backend::weights_detail::Family;

float bits_f(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

using test::random_normal;

std::vector<const Family*> families() {
  const Family* f[8];
  const std::size_t n = backend::weights_detail::available_families(f, 8);
  return {f, f + std::min<std::size_t>(n, 8)};
}

TEST(Fp16, EveryHalfRoundTrips) {
  for (std::uint32_t h = 0; h < 0x10000u; ++h) {
    const float f = fp16_to_fp32(static_cast<std::uint16_t>(h));
    const bool nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
    if (nan) {
      ASSERT_TRUE(std::isnan(f)) << h;
      // A NaN stays a NaN, made quiet, sign kept.
      const std::uint16_t back = fp32_to_fp16(f);
      EXPECT_EQ(back & 0x7e00u, 0x7e00u) << h;
      EXPECT_EQ(back & 0x8000u, h & 0x8000u) << h;
      continue;
    }
    ASSERT_EQ(fp32_to_fp16(f), h) << "half " << h << " -> " << f;
  }
}

// The nearest half to x by double arithmetic, ties to the even code; overflow at
// 65520 (half-way above the largest half, 65504) as IEEE says.
std::uint16_t nearest_half(float x) {
  const double a = std::fabs(double(x));
  const std::uint16_t sign = std::signbit(x) ? 0x8000u : 0u;
  if (a >= 65520.0) return sign | 0x7c00u;
  // Halves are ordered like their codes: the largest code not above a, then its
  // successor.
  std::uint32_t lo = 0, hi = 0x7bffu;
  while (lo < hi) {
    const std::uint32_t mid = (lo + hi + 1) / 2;
    if (double(fp16_to_fp32(static_cast<std::uint16_t>(mid))) <= a)
      lo = mid;
    else
      hi = mid - 1;
  }
  std::uint16_t best = static_cast<std::uint16_t>(lo);
  if (lo < 0x7bffu) {
    const double below = a - double(fp16_to_fp32(static_cast<std::uint16_t>(lo))),
                 above = double(fp16_to_fp32(static_cast<std::uint16_t>(lo + 1))) - a;
    if (above < below || (above == below && (lo & 1u) != 0))
      best = static_cast<std::uint16_t>(lo + 1);
  }
  return sign | best;
}

TEST(Fp16, RoundsToNearestEven) {
  // Edges: the largest half, the overflow threshold, the smallest subnormal and the
  // ties around it, the subnormal/normal boundary.
  const float edges[] = {65504.0f,
                         65519.996f,
                         65520.0f,
                         0x1p-24f,
                         0x1p-25f,
                         0x1.8p-25f,
                         0x1.0p-14f,
                         0x1.ffcp-15f,
                         0x1.ffep-15f,  // half-way to 2^-14 from below: ties to even (up)
                         1.0f + 0x1p-11f,
                         1.0f + 0x3p-11f,
                         -2.5e-6f,
                         3.1415926f,
                         bits_f(0x00000001u),
                         0.0f,
                         -0.0f};
  for (float x : edges) EXPECT_EQ(fp32_to_fp16(x), nearest_half(x)) << x;
  EXPECT_EQ(fp32_to_fp16(INFINITY), 0x7c00u);
  EXPECT_EQ(fp32_to_fp16(-INFINITY), 0xfc00u);
  std::mt19937 g(7);
  std::uniform_int_distribution<std::uint32_t> u(0, 0x477fffffu);  // |x| up to past 65520
  for (int i = 0; i < 3000; ++i) {
    const std::uint32_t b = u(g) | (i % 2 ? 0x80000000u : 0u);
    EXPECT_EQ(fp32_to_fp16(bits_f(b)), nearest_half(bits_f(b))) << std::hex << b;
  }
}

// ggml's quantize_row_q8_0_ref, written from its description: per block of 32,
// amax = max |x|, d = amax / 127, id = d ? 1 / d : 0, d stored as fp16,
// qs[j] = roundf(x[j] * id).
std::vector<unsigned char> reference_q8_0(const float* w, std::size_t out, std::size_t in) {
  std::vector<unsigned char> bytes(out * in / 32 * 34);
  for (std::size_t r = 0; r < out; ++r)
    for (std::size_t blk = 0; blk < in / 32; ++blk) {
      const float* x = w + r * in + blk * 32;
      unsigned char* b = bytes.data() + (r * (in / 32) + blk) * 34;
      float amax = 0.0f;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
      const float d = amax / 127.0f;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      const std::uint16_t h = fp32_to_fp16(d);
      std::memcpy(b, &h, 2);
      for (int j = 0; j < 32; ++j) b[2 + j] = static_cast<unsigned char>(std::roundf(x[j] * id));
    }
  return bytes;
}

// A weight with the cases a quantizer gets wrong: an all-zero block, a block with one
// large value, exact half-way products, negative maxima, tiny values.
std::vector<float> awkward_weight(std::size_t out, std::size_t in) {
  std::vector<float> w = random_normal(out * in, 3, 0.05f);
  for (std::size_t j = 0; j < 32; ++j) w[j] = 0.0f;                   // block 0 of row 0
  w[32 + 5] = 40.0f;                                                  // one outlier
  for (std::size_t j = 0; j < 32; ++j) w[64 + j] = float(j) - 15.5f;  // ties at 127/16
  w[64 + 31] = -127.0f;                                               // amax negative
  for (std::size_t j = 0; j < 32; ++j) w[in + j] = 1e-30f * float(j);
  return w;
}

TEST(Q8_0, PackingMatchesTheReferenceQuantizerInEveryFamilyAndLayout) {
  const std::size_t out = 7, in = 96;
  const std::vector<float> w = awkward_weight(out, in);
  std::vector<float> w_t(in * out);  // [in, out]
  for (std::size_t o = 0; o < out; ++o)
    for (std::size_t i = 0; i < in; ++i) w_t[i * out + o] = w[o * in + i];
  const std::vector<unsigned char> ref = reference_q8_0(w.data(), out, in);
  ASSERT_EQ(backend::packed_weight_bytes(WeightFormat::q8_0, out, in), ref.size());
  for (const Family* f : families()) {
    std::vector<unsigned char> a(ref.size()), b(ref.size());
    backend::weights_detail::pack_weight_with(*f, a.data(), WeightFormat::q8_0, w.data(), out, in,
                                              false);
    backend::weights_detail::pack_weight_with(*f, b.data(), WeightFormat::q8_0, w_t.data(), out, in,
                                              true);
    EXPECT_EQ(a, ref) << f->name << " out_in";
    EXPECT_EQ(b, ref) << f->name << " in_out";
  }
}

TEST(Q8_0, UnpackIsExactlyScaleTimesInteger) {
  const std::size_t out = 5, in = 64;
  const std::vector<float> w = awkward_weight(out, in);
  std::vector<unsigned char> q(backend::packed_weight_bytes(WeightFormat::q8_0, out, in));
  backend::pack_weight(q.data(), WeightFormat::q8_0, w.data(), out, in, WeightLayout::out_in);
  const PackedWeight p{WeightFormat::q8_0, q.data(), out, in};
  std::vector<float> back(out * in);
  backend::unpack_weight_f32(back.data(), p, 0, out);
  for (std::size_t r = 0; r < out; ++r)
    for (std::size_t blk = 0; blk < in / 32; ++blk) {
      const unsigned char* b = q.data() + (r * (in / 32) + blk) * 34;
      std::uint16_t h;
      std::memcpy(&h, b, 2);
      for (std::size_t j = 0; j < 32; ++j) {
        const float expect = float(static_cast<std::int8_t>(b[2 + j])) * fp16_to_fp32(h);
        ASSERT_EQ(back[r * in + blk * 32 + j], expect) << r << " " << blk << " " << j;
      }
    }
  // Two rows from the middle equal those rows of the whole.
  std::vector<float> mid(2 * in);
  backend::unpack_weight_f32(mid.data(), p, 2, 2);
  EXPECT_TRUE(std::equal(mid.begin(), mid.end(), back.begin() + 2 * in));
  EXPECT_THROW(backend::unpack_weight_f32(mid.data(), p, 4, 2), std::invalid_argument);
}

TEST(Bf16Packing, PackAndUnpackAreTheRoundedUpperHalf) {
  const std::size_t out = 3, in = 40;
  std::vector<float> w = random_normal(out * in, 5);
  w[0] = bits_f(0x3f808000u);  // a tie, rounds to even (down)
  w[1] = bits_f(0x3f818000u);  // a tie, rounds to even (up)
  std::vector<std::uint16_t> h(out * in);
  backend::pack_weight(h.data(), WeightFormat::bf16, w.data(), out, in, WeightLayout::out_in);
  EXPECT_EQ(h[0], 0x3f80u);
  EXPECT_EQ(h[1], 0x3f82u);
  std::vector<float> back(out * in);
  backend::unpack_weight_f32(back.data(), {WeightFormat::bf16, h.data(), out, in}, 0, out);
  for (std::size_t i = 0; i < w.size(); ++i) {
    std::uint32_t u = std::uint32_t{h[i]} << 16;
    ASSERT_EQ(back[i], bits_f(u));
    ASSERT_LE(std::fabs(back[i] - w[i]), std::ldexp(std::fabs(w[i]), -8));
  }
}

TEST(Q8_0, RefusesAnInputSizeNotAMultipleOf32) {
  try {
    (void)backend::packed_weight_bytes(WeightFormat::q8_0, 4, 48);
    FAIL() << "no throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("in = 48"), std::string::npos) << e.what();
  }
}

struct Case {
  WeightFormat format;
  std::size_t out, in, rows;
};

// y and the bound of every output, from the dequantized weights in double.
void reference(const std::vector<float>& x, const std::vector<float>& wq, const float* b,
               const Case& c, std::vector<double>& y, std::vector<double>& bound) {
  y.assign(c.rows * c.out, 0.0);
  bound.assign(c.rows * c.out, 0.0);
  for (std::size_t r = 0; r < c.rows; ++r)
    for (std::size_t j = 0; j < c.out; ++j) {
      double s = 0, mag = 0, quant = 0;
      for (std::size_t k = 0; k < c.in; ++k) {
        const double t = double(x[r * c.in + k]) * wq[j * c.in + k];
        s += t;
        mag += std::fabs(t);
      }
      if (c.format == WeightFormat::q8_0)
        for (std::size_t blk = 0; blk < c.in / 32; ++blk) {
          double amax = 0, wsum = 0;
          for (std::size_t k = blk * 32; k < blk * 32 + 32; ++k) {
            amax = std::max(amax, std::fabs(double(x[r * c.in + k])));
            wsum += std::fabs(double(wq[j * c.in + k]));
          }
          quant += amax / 254.0 * wsum * (1 + 1e-6);  // d_x itself is an fp32 quotient
        }
      y[r * c.out + j] = s + (b ? b[j] : 0.0);
      bound[r * c.out + j] =
          quant + (double(c.in) + 2) * 0x1p-24 * (mag + std::fabs(b ? b[j] : 0.0f)) + 1e-30;
    }
}

TEST(PackedGemv, EveryFamilyWithinItsBound) {
  const Case cases[] = {{WeightFormat::f32, 37, 70, 1},   {WeightFormat::f32, 16, 64, 9},
                        {WeightFormat::bf16, 33, 70, 3},  {WeightFormat::bf16, 48, 512, 1},
                        {WeightFormat::q8_0, 29, 96, 1},  {WeightFormat::q8_0, 64, 512, 4},
                        {WeightFormat::q8_0, 17, 32, 11}, {WeightFormat::bf16, 5, 31, 16}};
  for (const Case& c : cases) {
    const std::vector<float> w = random_normal(c.out * c.in, 11);
    const std::vector<float> x = random_normal(c.rows * c.in, 12);
    const std::vector<float> b = random_normal(c.out, 13, 0.1f);
    std::vector<unsigned char> packed(backend::packed_weight_bytes(c.format, c.out, c.in));
    backend::pack_weight(packed.data(), c.format, w.data(), c.out, c.in, WeightLayout::out_in);
    const PackedWeight p{c.format, packed.data(), c.out, c.in};
    std::vector<float> wq(c.out * c.in);
    backend::unpack_weight_f32(wq.data(), p, 0, c.out);
    std::vector<double> ref, bound;
    reference(x, wq, b.data(), c, ref, bound);
    const std::string what = std::string(weight_format_name(c.format)) + " " +
                             std::to_string(c.out) + "x" + std::to_string(c.in) + " rows " +
                             std::to_string(c.rows);
    std::vector<float> first;
    double worst = 0;
    for (const Family* f : families()) {
      std::vector<float> y(c.rows * c.out, 0.5f);
      backend::weights_detail::packed_gemv_with(*f, y.data(), x.data(), c.format, packed.data(),
                                                c.out, c.in, b.data(), c.rows, false);
      for (std::size_t i = 0; i < y.size(); ++i) {
        ASSERT_LE(std::fabs(double(y[i]) - ref[i]), bound[i])
            << f->name << " " << what << " @" << i;
        worst = std::max(worst, std::fabs(double(y[i]) - ref[i]) / bound[i]);
      }
      // Accumulate adds the same values to what y held.
      std::vector<float> acc(y.size(), 2.0f);
      backend::weights_detail::packed_gemv_with(*f, acc.data(), x.data(), c.format, packed.data(),
                                                c.out, c.in, b.data(), c.rows, true);
      for (std::size_t i = 0; i < y.size(); ++i) ASSERT_EQ(acc[i], 2.0f + y[i]) << f->name;
      // The two AVX-512 families compute the same lanes with the same integers.
      if (std::string(f->name).rfind("avx512", 0) == 0) {
        if (first.empty())
          first = y;
        else
          EXPECT_EQ(y, first) << f->name << " " << what;
      }
    }
    // q8_0's bound is not vacuous: the activations' rounding shows.
    if (c.format == WeightFormat::q8_0) {
      EXPECT_GT(worst, 1e-3) << what;
    }
  }
}

TEST(PackedGemv, SameBitsWhateverTheThreadsAndRows) {
  const std::size_t out = 512, in = 512, rows = 5;
  const std::vector<float> w = random_normal(out * in, 21, 0.05f);
  const std::vector<float> x = random_normal(rows * in, 22);
  const int saved = num_threads();
  for (WeightFormat f : {WeightFormat::f32, WeightFormat::bf16, WeightFormat::q8_0}) {
    std::vector<unsigned char> packed(backend::packed_weight_bytes(f, out, in));
    backend::pack_weight(packed.data(), f, w.data(), out, in, WeightLayout::out_in);
    const PackedWeight p{f, packed.data(), out, in};
    std::vector<float> all(rows * out), one(out), two(rows * out);
    set_num_threads(1);
    backend::packed_gemv(one.data(), x.data() + 3 * in, p, nullptr, 1);
    set_num_threads(2);
    backend::packed_gemv(all.data(), x.data(), p, nullptr, rows);
    // Packing with two threads gives the same bytes.
    std::vector<unsigned char> again(packed.size());
    backend::pack_weight(again.data(), f, w.data(), out, in, WeightLayout::out_in);
    EXPECT_EQ(again, packed) << weight_format_name(f);
    set_num_threads(1);
    backend::packed_gemv(two.data(), x.data(), p, nullptr, rows);
    EXPECT_EQ(all, two) << weight_format_name(f);
    EXPECT_TRUE(std::equal(one.begin(), one.end(), all.begin() + 3 * out)) << weight_format_name(f);
  }
  set_num_threads(saved);
}

}  // namespace
}  // namespace whtlm
