// The float causal attention (src/backend/cpu/attention.cpp: the AVX-512 kernels of
// attention_avx512.cpp where the CPU has them) against an exact reference in double, with
// fp32 operands and with bf16 operands.
//
// The reference is attention_forward/backward<double> (checked against a direct softmax
// and finite differences in layers_test.cpp); the bounds below are computed per output
// in double from the reference's own P, dP, D and dS.
//
// The bounds. u is the relative rounding of an operand: 2^-8 for bf16 (as in
// bf16_test.cpp), 0 for fp32 operands; every fp32 sum of k terms adds k 2^-24 of the sum
// of their magnitudes; the kernels' exp is within e = 2^-21 relative.
//   S_ij = q_i . k_j / sqrt(hd), an fp32 product with either operands (the kernels keep
//   the scores out of bf16), moves by at most
//       d_ij = hd 2^-24 sum_c |q_ic k_jc| / sqrt(hd);
//   with d_i = max_j d_ij, a probability computed from the moved scores and a moved
//   log-sum-exp (|dlse_i| <= d_i + 2e + 2^-23 |lse_i|) is within a relative
//       r_i = exp(2 d_i + 3e + 2^-23 |lse_i| + (i + 1) 2^-24) - 1 of P_ij.
//   A product sum_t a_t b_t whose first factor is off by at most E_t (before it is
//   rounded), both factors then rounded, is off by at most
//       sum_t [(|a_t| + E_t)(1 + u)^2 - |a_t|] |b_t| + k 2^-24 sum_t (|a_t| + E_t)(1 + u)^2 |b_t|.
//   That gives O (a = P, E = r P, b = V, and 2^-24 for the division by the row sum), dP
//   (a = dO, E = 0, b = V), D = sum_j P_ij dP_ij, dS = P (dP - D) / sqrt(hd) and from it
//   dQ = dS K, dK = dS^T Q, dV = P^T dO.
// With bf16 the error must also reach a thousandth of its bound somewhere: had the
// products run in fp32, it would stay near 10^-4 of it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "backend/ops.hpp"
#include "random_values.hpp"

namespace whtlm {
namespace {

using backend::AttentionShape;
using backend::Operands;

constexpr double kAcc = 1.0 / 16777216.0;  // 2^-24 per term of an fp32 sum
constexpr double kExp = 1.0 / 2097152.0;   // 2^-21, the kernels' exp

struct Case {
  AttentionShape s;
  Operands operands;
};

std::string name(const ::testing::TestParamInfo<Case>& info) {
  const AttentionShape& s = info.param.s;
  char buf[96];
  std::snprintf(buf, sizeof buf, "b%zu_seq%zu_h%zu_kv%zu_hd%zu_%s", s.batch, s.seq, s.n_head,
                s.n_kv, s.hd, info.param.operands == Operands::bf16 ? "bf16" : "fp32");
  return buf;
}

// Largest |got - want| / bound, and whether every error is within its bound.
struct Check {
  double worst_ratio = 0;
  bool within = true;
  std::string first_failure;
  void add(const char* what, std::size_t i, double got, double want, double bound) {
    const double err = std::fabs(got - want);
    const double ratio = bound > 0 ? err / bound : (err > 0 ? 1e300 : 0);
    worst_ratio = std::max(worst_ratio, ratio);
    if (!(err <= bound) && within) {
      within = false;
      char buf[160];
      std::snprintf(buf, sizeof buf, "%s[%zu]: got %.9g, want %.9g, bound %.3g", what, i, got, want,
                    bound);
      first_failure = buf;
    }
  }
};

class AttentionKernels : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionKernels, ForwardAndBackwardWithinTheBoundOfTheirOperands) {
  const AttentionShape s = GetParam().s;
  const Operands operands = GetParam().operands;
  const bool bf16 = operands == Operands::bf16;
  if (bf16 && !backend::attention_kernels_used(s, operands))
    GTEST_SKIP() << "no bf16 attention products on this CPU (AVX512-BF16) at this shape";
  const double u = bf16 ? 1.0 / 256.0 : 0.0, grow = (1 + u) * (1 + u);
  const std::size_t width = s.heads().width(), out_w = s.n_head * s.hd, rows = s.batch * s.seq;
  const std::size_t group = s.n_head / s.n_kv;
  const std::vector<float> qkv = test::random_normal(rows * width, 31, 1.5f);
  const std::vector<float> dout = test::random_normal(rows * out_w, 32);

  // The float attention under test.
  std::vector<float> out(rows * out_w), lse(s.batch * s.n_head * s.seq), dqkv(rows * width, 5.0f);
  std::vector<float> scratch(backend::attention_scratch_size(s));
  backend::attention_forward(out.data(), lse.data(), qkv.data(), s, scratch.data(), operands);
  backend::attention_backward(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), s,
                              scratch.data(), operands);

  // The reference in double.
  const std::vector<double> qkv_d(qkv.begin(), qkv.end()), dout_d(dout.begin(), dout.end());
  std::vector<double> out_d(out.size()), lse_d(lse.size()), dqkv_d(dqkv.size());
  std::vector<double> scratch_d(backend::attention_scratch_size(s));
  backend::attention_forward(out_d.data(), lse_d.data(), qkv_d.data(), s, scratch_d.data());
  backend::attention_backward(dqkv_d.data(), dout_d.data(), qkv_d.data(), out_d.data(),
                              lse_d.data(), s, scratch_d.data());

  // Bounds, from the reference's own quantities.
  std::vector<double> out_b(out.size(), 0.0), lse_b(lse.size(), 0.0), dqkv_b(dqkv.size(), 0.0);
  const double scale = 1.0 / std::sqrt(double(s.hd));
  // Bound of sum_t a_t b_t for |a_t| = a, its error e, |b_t| = b, over k terms.
  auto term = [&](double a, double e, double b, std::size_t k) {
    return ((a + e) * grow - a) * b + double(k) * kAcc * (a + e) * grow * b;
  };
  for (std::size_t b = 0; b < s.batch; ++b)
    for (std::size_t h = 0; h < s.n_head; ++h) {
      const std::size_t kv = h / group;
      auto at = [&](std::size_t t, std::size_t col) {
        return qkv_d[(b * s.seq + t) * width + col];
      };
      const std::size_t qc = h * s.hd, kc = (s.n_head + kv) * s.hd,
                        vc = (s.n_head + s.n_kv + kv) * s.hd;
      for (std::size_t i = 0; i < s.seq; ++i) {
        const std::size_t keep = i + 1, bh = (b * s.n_head + h) * s.seq + i;
        const double l = lse_d[bh];
        std::vector<double> p(keep), dp(keep), ep(keep), edp(keep);
        double d_max = 0;
        for (std::size_t j = 0; j < keep; ++j) {
          double dotqk = 0, mag = 0, dpv = 0, dpmag = 0;
          for (std::size_t c = 0; c < s.hd; ++c) {
            dotqk += at(i, qc + c) * at(j, kc + c);
            mag += std::fabs(at(i, qc + c) * at(j, kc + c));
            dpv += dout_d[(b * s.seq + i) * out_w + qc + c] * at(j, vc + c);
            dpmag += std::fabs(dout_d[(b * s.seq + i) * out_w + qc + c] * at(j, vc + c));
          }
          p[j] = std::exp(dotqk * scale - l);
          dp[j] = dpv;
          d_max = std::max(d_max, double(s.hd) * kAcc * mag * scale);
          edp[j] = (grow - 1 + double(s.hd) * kAcc) * dpmag;
        }
        const double r =
            std::exp(2 * d_max + 3 * kExp + 2 * kAcc * std::fabs(l) + double(keep) * kAcc) - 1;
        lse_b[bh] = d_max + 2 * kExp + 2 * kAcc * std::fabs(l);
        double dsum = 0, e_d = 0;
        for (std::size_t j = 0; j < keep; ++j) {
          ep[j] = r * p[j];
          dsum += p[j] * dp[j];
          e_d += ep[j] * std::fabs(dp[j]) + p[j] * edp[j] + ep[j] * edp[j] +
                 double(keep) * kAcc * (p[j] + ep[j]) * (std::fabs(dp[j]) + edp[j]);
        }
        for (std::size_t c = 0; c < s.hd; ++c) {
          double e = 0, mag = 0;
          for (std::size_t j = 0; j < keep; ++j) {
            e += term(p[j], ep[j], std::fabs(at(j, vc + c)), keep);
            mag += p[j] * std::fabs(at(j, vc + c));
          }
          out_b[(b * s.seq + i) * out_w + qc + c] = e + kAcc * (mag + e);  // and the / sum
        }
        for (std::size_t j = 0; j < keep; ++j) {
          const double ds = scale * p[j] * (dp[j] - dsum);
          const double e_ds =
              scale * (ep[j] * (std::fabs(dp[j] - dsum) + edp[j] + e_d) + p[j] * (edp[j] + e_d)) +
              3 * kAcc * std::fabs(ds);
          for (std::size_t c = 0; c < s.hd; ++c) {
            dqkv_b[(b * s.seq + i) * width + qc + c] +=
                term(std::fabs(ds), e_ds, std::fabs(at(j, kc + c)), keep);
            dqkv_b[(b * s.seq + j) * width + kc + c] +=
                term(std::fabs(ds), e_ds, std::fabs(at(i, qc + c)), s.seq * group);
            dqkv_b[(b * s.seq + j) * width + vc + c] += term(
                p[j], ep[j], std::fabs(dout_d[(b * s.seq + i) * out_w + qc + c]), s.seq * group);
          }
        }
      }
    }

  Check fwd, lse_check, bwd;
  for (std::size_t i = 0; i < out.size(); ++i) fwd.add("out", i, out[i], out_d[i], out_b[i]);
  for (std::size_t i = 0; i < lse.size(); ++i) lse_check.add("lse", i, lse[i], lse_d[i], lse_b[i]);
  for (std::size_t i = 0; i < dqkv.size(); ++i) bwd.add("dqkv", i, dqkv[i], dqkv_d[i], dqkv_b[i]);
  EXPECT_TRUE(fwd.within) << fwd.first_failure;
  EXPECT_TRUE(lse_check.within) << lse_check.first_failure;
  EXPECT_TRUE(bwd.within) << bwd.first_failure;
  if (bf16) {
    // bf16 really ran: its rounding shows.
    EXPECT_GT(fwd.worst_ratio, 1e-3);
    EXPECT_GT(bwd.worst_ratio, 1e-3);
  }
  std::printf("worst error / bound: out %.3g, lse %.3g, dqkv %.3g\n", fwd.worst_ratio,
              lse_check.worst_ratio, bwd.worst_ratio);
}

std::vector<Case> cases() {
  // seq 70 and 129 end in a partial query block and a partial 16-key group; kv heads
  // below the query heads exercise grouped-query sharing; hd 16 .. 128 (and 48, not a
  // power of two) are the head sizes the kernels take.
  const std::vector<AttentionShape> shapes{{2, 70, 4, 2, 16},
                                           {1, 129, 2, 1, 48},
                                           {2, 64, 2, 2, 64},
                                           {1, 33, 3, 3, 128},
                                           {1, 5, 1, 1, 32}};
  std::vector<Case> all;
  for (const AttentionShape& s : shapes)
    for (Operands o : {Operands::fp32, Operands::bf16}) all.push_back({s, o});
  return all;
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionKernels, ::testing::ValuesIn(cases()), name);

}  // namespace
}  // namespace whtlm
