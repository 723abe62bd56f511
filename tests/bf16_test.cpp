// bf16 products on the CPU (src/backend/cpu/bf16.hpp) against their fp32 twins.
//
// The bound. bf16 keeps 8 significant bits, so rounding an operand to nearest moves it
// by at most u = 2^-8 of itself (half a unit in the last place: 2^-9 relative, taken
// as 2^-8 to cover the binade's lower end). A product term a b then moves by at most
// (2u + u^2) |a b|, and a sum of k terms accumulated in fp32 adds at most
// k 2^-24 sum |a b| more. So for each output
//     |bf16 - exact| <= (2u + u^2 + k 2^-24) sum_p |a_p b_p|,
// with `exact` computed in double from the fp32 inputs. The tests check that bound
// for every output, and that it is not trivially loose: the observed error must be
// more than a thousandth of it somewhere (bf16 really ran).
#include "backend/cpu/bf16.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "backend/backend.hpp"
#include "random_values.hpp"
#include "whtlm/matmul.hpp"

namespace whtlm {
namespace {

using backend::LinearShape;
using backend::WeightLayout;
using backend::Write;

constexpr double kU = 1.0 / 256.0;

backend::Backend* bf16_backend() {
  if (precision_support().bf16 == "none") return nullptr;
  return &backend::get(Device::cpu, Precision::bf16);
}

using test::random_normal;

// out[i][j] = sum_p A(i,p) B(p,j) in double, and the bound's sum of |terms|.
struct Exact {
  std::vector<double> value, magnitude;
};
template <class A, class B>
Exact exact(std::size_t m, std::size_t n, std::size_t k, A&& a, B&& b) {
  Exact e{std::vector<double>(m * n), std::vector<double>(m * n)};
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double s = 0, mag = 0;
      for (std::size_t p = 0; p < k; ++p) {
        const double t = double(a(i, p)) * double(b(p, j));
        s += t;
        mag += std::fabs(t);
      }
      e.value[i * n + j] = s;
      e.magnitude[i * n + j] = mag;
    }
  return e;
}

// Checks got against exact (+ base, what was in the output before) within the bound.
void expect_within_bound(const std::vector<float>& got, const Exact& e, std::size_t k,
                         const std::vector<float>& base, const char* what) {
  const double rel = 2 * kU + kU * kU + double(k) * std::ldexp(1.0, -24);
  double worst_share = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double want = e.value[i] + (base.empty() ? 0.0 : double(base[i]));
    const double bound = rel * e.magnitude[i] + std::ldexp(std::fabs(want), -23);
    const double err = std::fabs(double(got[i]) - want);
    ASSERT_LE(err, bound) << what << " output " << i;
    worst_share = std::max(worst_share, err / bound);
  }
  EXPECT_GT(worst_share, 1e-3) << what << ": no bf16 rounding seen; did fp32 run?";
}

class Bf16Linear : public ::testing::TestWithParam<WeightLayout> {};

TEST_P(Bf16Linear, ForwardAndBackwardWithinTheBoundOfBf16Operands) {
  backend::Backend* be = bf16_backend();
  if (be == nullptr) GTEST_SKIP() << "no bf16 products on this CPU";
  const WeightLayout layout = GetParam();
  const bool in_out = layout == WeightLayout::in_out;
  const std::size_t rows = 37, in = 96, out = 80;
  const LinearShape s{rows, in, out, layout};
  const std::vector<float> x = random_normal(rows * in, 1), w = random_normal(in * out, 2, 0.1f),
                           b = random_normal(out, 3), dy = random_normal(rows * out, 4);
  auto W = [&](std::size_t i, std::size_t o) { return in_out ? w[i * out + o] : w[o * in + i]; };

  // Forward, overwriting and accumulating (a bias, then a residual add).
  std::vector<float> y(rows * out);
  be->linear_forward(y.data(), x.data(), w.data(), nullptr, s, Write::overwrite);
  const Exact fwd = exact(
      rows, out, in, [&](std::size_t r, std::size_t p) { return x[r * in + p]; },
      [&](std::size_t p, std::size_t o) { return W(p, o); });
  expect_within_bound(y, fwd, in, {}, "y = x w");
  std::vector<float> base = random_normal(rows * out, 5), y2 = base;
  be->linear_forward(y2.data(), x.data(), w.data(), b.data(), s, Write::accumulate);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t o = 0; o < out; ++o) base[r * out + o] += b[o];
  expect_within_bound(y2, fwd, in, base, "y += x w + b");

  // Backward: dx = dy w^T, dw += x^T dy (onto what is there), db += sum dy.
  std::vector<float> dx(rows * in), dw0 = random_normal(in * out, 6), dw = dw0, db(out, 1.0f);
  be->linear_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), s,
                      Write::overwrite);
  const Exact bdx = exact(
      rows, in, out, [&](std::size_t r, std::size_t o) { return dy[r * out + o]; },
      [&](std::size_t o, std::size_t i) { return W(i, o); });
  expect_within_bound(dx, bdx, out, {}, "dx");
  // dw in its stored layout.
  const Exact bdw =
      in_out ? exact(
                   in, out, rows, [&](std::size_t i, std::size_t r) { return x[r * in + i]; },
                   [&](std::size_t r, std::size_t o) { return dy[r * out + o]; })
             : exact(
                   out, in, rows, [&](std::size_t o, std::size_t r) { return dy[r * out + o]; },
                   [&](std::size_t r, std::size_t i) { return x[r * in + i]; });
  expect_within_bound(dw, bdw, rows, dw0, "dw");
  for (std::size_t o = 0; o < out; ++o) {
    double s_ = 1.0;
    for (std::size_t r = 0; r < rows; ++r) s_ += dy[r * out + o];
    EXPECT_NEAR(db[o], s_, 1e-4) << "db is summed in fp32";
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, Bf16Linear,
                         ::testing::Values(WeightLayout::in_out, WeightLayout::out_in));

// The bf16 copy of a weight is made once and reused; every way of changing the weight
// through the backend (upload, copy, zero, the optimizer) or behind it (with
// parameters_changed()) makes the next product read the new values.
TEST(Bf16Weights, CopiesFollowEveryChangeOfTheWeight) {
  backend::Backend* be = bf16_backend();
  if (be == nullptr) GTEST_SKIP() << "no bf16 products on this CPU";
  const std::size_t rows = 8, in = 32, out = 16;
  const LinearShape s{rows, in, out, WeightLayout::out_in};
  backend::DeviceArray<float> w(*be, in * out), y(*be, rows * out);
  std::vector<float> x(rows * in, 1.0f);
  auto first_output = [&] {
    be->linear_forward(y.data(), x.data(), w.data(), nullptr, s, Write::overwrite);
    return y.data()[0];
  };
  std::vector<float> ones(in * out, 1.0f), twos(in * out, 2.0f);
  be->upload(w.data(), ones.data(), ones.size() * sizeof(float));
  EXPECT_EQ(first_output(), float(in));
  be->upload(w.data(), twos.data(), twos.size() * sizeof(float));
  EXPECT_EQ(first_output(), float(2 * in)) << "after upload";
  be->zero(w.data(), in * sizeof(float));  // row 0 of w: output 0 reads it
  EXPECT_EQ(first_output(), 0.0f) << "after zero";
  be->copy(w.data(), ones.data(), in * sizeof(float));
  EXPECT_EQ(first_output(), float(in)) << "after copy";
  // AdamW's first step with lr 1 and a positive gradient moves every weight by -1.
  std::vector<float> g(in * out, 1.0f), m(in * out), v(in * out);
  be->adamw(w.data(), g.data(), m.data(), v.data(), in * out, 1.0f, 0.9f, 0.999f, 1e-8f,
            1.0f / (1 - 0.9f), 1.0f / (1 - 0.999f), 1.0f);
  EXPECT_NEAR(first_output(), 0.0f, 1e-3) << "after adamw";
  for (std::size_t i = 0; i < in; ++i) w.data()[i] = 3.0f;  // behind the backend's back
  be->parameters_changed();
  EXPECT_EQ(first_output(), float(3 * in)) << "after parameters_changed";
}

// Norms and activations that write a product's operand in bf16 write exactly the
// rounding of what they write in fp32 (the values a product would have converted), and
// a bf16 product reads such an operand as it would have read the converted fp32 one.
TEST(Bf16Operands, NormAndActivationOutputsAreTheRoundedFp32Outputs) {
  backend::Backend* be = bf16_backend();
  if (be == nullptr) GTEST_SKIP() << "no bf16 products on this CPU";
  EXPECT_EQ(be->operand_type(), backend::Operands::bf16);
  EXPECT_EQ(backend::get(Device::cpu, Precision::fp32).operand_type(), backend::Operands::fp32);
  const std::size_t rows = 20, d = 48, ff = 40;  // more rows than a decode product has
  const std::vector<float> x = random_normal(rows * 2 * ff, 41, 2.0f);
  const std::vector<float> w = random_normal(d, 42), b = random_normal(d, 43);
  std::vector<float> y(rows * 2 * ff), stats(2 * rows);
  std::vector<std::uint16_t> yb(rows * 2 * ff);
  auto expect_rounded = [&](const char* what, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
      ASSERT_EQ(yb[i], backend::cpu::to_bf16(y[i])) << what << " value " << i;
  };
  const backend::NormShape ns{rows, d};
  be->layernorm_forward(y.data(), stats.data(), stats.data() + rows, x.data(), w.data(), b.data(),
                        ns, 1e-5f);
  be->layernorm_forward(yb.data(), stats.data(), stats.data() + rows, x.data(), w.data(), b.data(),
                        ns, 1e-5f);
  expect_rounded("layernorm", rows * d);
  be->rmsnorm_forward(y.data(), stats.data(), x.data(), w.data(), ns, 1e-5f);
  be->rmsnorm_forward(yb.data(), stats.data(), x.data(), w.data(), ns, 1e-5f);
  expect_rounded("rmsnorm", rows * d);
  be->gelu_forward(y.data(), x.data(), rows * ff);
  be->gelu_forward(yb.data(), x.data(), rows * ff);
  expect_rounded("gelu", rows * ff);
  be->swiglu_forward(y.data(), x.data(), rows, ff);
  be->swiglu_forward(yb.data(), x.data(), rows, ff);
  expect_rounded("swiglu", rows * ff);

  // A linear layer's forward and weight gradient from the bf16 operand equal those from
  // the fp32 one (at more than 16 rows: fewer, a decode product, read fp32 x as it is).
  const LinearShape s{rows, ff, 24, WeightLayout::out_in};
  const std::vector<float> wl = random_normal(s.in * s.out, 44), dy = random_normal(rows * 24, 45);
  std::vector<float> out32(rows * 24), out16(rows * 24), dw32(s.in * s.out), dw16(s.in * s.out);
  std::vector<float> dx(rows * ff);
  be->linear_forward(out32.data(), y.data(), wl.data(), nullptr, s, Write::overwrite);
  be->linear_forward(out16.data(), yb.data(), wl.data(), nullptr, s, Write::overwrite);
  be->linear_backward(dx.data(), dw32.data(), nullptr, dy.data(), y.data(), wl.data(), s,
                      Write::overwrite);
  be->linear_backward(dx.data(), dw16.data(), nullptr, dy.data(), yb.data(), wl.data(), s,
                      Write::overwrite);
  EXPECT_EQ(out32, out16);
  EXPECT_EQ(dw32, dw16);
  // The fp32 backend takes only fp32 activations, and says so.
  EXPECT_THROW(
      backend::get(Device::cpu, Precision::fp32)
          .linear_forward(out16.data(), yb.data(), wl.data(), nullptr, s, Write::overwrite),
      std::logic_error);
}

TEST(Bf16Conversion, RoundsToNearestEvenAndKeepsNaN) {
  using backend::cpu::to_bf16;
  EXPECT_EQ(to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
  EXPECT_EQ(to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up to even.
  EXPECT_EQ(to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)), 0x3f81);
  EXPECT_EQ(to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(to_bf16(INFINITY), 0x7f80);
  const std::uint16_t nan = to_bf16(std::nanf(""));
  EXPECT_TRUE(std::isnan(backend::cpu::from_bf16(nan)));
  EXPECT_EQ(backend::cpu::from_bf16(0x3f80), 1.0f);
}

}  // namespace
}  // namespace whtlm
