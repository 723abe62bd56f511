// Correctness of the Hadamard constructions and fast transforms: against the
// explicit matrix in float64, algebraic properties, the fused variant, agreement of
// every kernel family, awkward batch shapes and refused sizes.
#include "whtlm/hadamard.hpp"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using whtlm::Isa;

std::vector<float> random_floats(std::size_t count, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(count);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<Isa> available_isas() {
  std::vector<Isa> isas;
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512})
    if (whtlm::isa_available(isa)) isas.push_back(isa);
  return isas;
}

double rel_error(const std::vector<double>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / den);
}

TEST(HadamardBase, EveryBaseMatrixIsSymmetricWithOrthogonalRows) {
  for (std::size_t k : {1, 12, 20, 28}) {
    const std::vector<int> h = whtlm::hadamard_base_matrix(k);
    ASSERT_EQ(h.size(), k * k);
    for (std::size_t i = 0; i < k; ++i) {
      for (std::size_t j = 0; j < k; ++j) {
        EXPECT_TRUE(h[i * k + j] == 1 || h[i * k + j] == -1);
        EXPECT_EQ(h[i * k + j], h[j * k + i]) << "K=" << k;
        long dot = 0;
        for (std::size_t c = 0; c < k; ++c) dot += h[i * k + c] * h[j * k + c];
        EXPECT_EQ(dot, i == j ? static_cast<long>(k) : 0) << "K=" << k << " rows " << i << "," << j;
      }
    }
  }
  EXPECT_THROW(whtlm::hadamard_base_matrix(16), std::invalid_argument);
}

TEST(HadamardSizes, SupportedListHasPowersOfTwoAndKTimesPowersOfTwo) {
  for (std::size_t n = 2; n <= 32768; n *= 2) EXPECT_TRUE(whtlm::hadamard_supported(n)) << n;
  for (std::size_t n : {12, 24, 768, 1280, 1536, 1792, 3584, 20480, 24576, 28672})
    EXPECT_TRUE(whtlm::hadamard_supported(n)) << n;
  for (std::size_t n : {0, 1, 3, 6, 10, 36, 1000, 65536, 40960})
    EXPECT_FALSE(whtlm::hadamard_supported(n)) << n;
}

TEST(HadamardSizes, BadSizeIsRefusedNamingNAndNeighbours) {
  try {
    whtlm::check_hadamard_size(1000);
    FAIL() << "1000 accepted";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("1000"), std::string::npos) << msg;
    EXPECT_NE(msg.find("896"), std::string::npos) << msg;  // 28 * 32
    EXPECT_NE(msg.find("1024"), std::string::npos) << msg;
  }
  std::vector<float> x(1000);
  EXPECT_THROW(whtlm::fwht(x.data(), 1, 1000), std::invalid_argument);
  EXPECT_THROW(whtlm::fwht(x.data(), 1, 0), std::invalid_argument);
  EXPECT_THROW(whtlm::fwht(x.data(), 1, 65536), std::invalid_argument);
  EXPECT_THROW(
      whtlm::fwht_affine_residual(x.data(), nullptr, x.data(), x.data(), nullptr, 1, 3, 1.0f),
      std::invalid_argument);
}

// Reference: y = scale * M x with the explicit matrix, all in float64.
std::vector<double> reference(const std::vector<double>& m, const double* x, std::size_t n,
                              double scale) {
  std::vector<double> y(n, 0.0);
  for (std::size_t r = 0; r < n; ++r) {
    double acc = 0;
    for (std::size_t c = 0; c < n; ++c) acc += m[r * n + c] * x[c];
    y[r] = acc * scale;
  }
  return y;
}

std::vector<std::size_t> sizes_up_to(std::size_t limit) {
  std::vector<std::size_t> out;
  for (std::size_t n : whtlm::hadamard_supported_sizes())
    if (n <= limit) out.push_back(n);
  return out;
}

TEST(HadamardMatrix, ExplicitMatrixIsSylvesterForPowersOfTwo) {
  // H_{2n} = [[H_n, H_n], [H_n, -H_n]]: spot-check the recursive structure.
  const std::size_t n = 16;
  const auto m = whtlm::hadamard_matrix(n);
  const auto h = whtlm::hadamard_matrix(n / 2);
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t c = 0; c < n; ++c) {
      const double sub = h[(r % 8) * 8 + (c % 8)];
      EXPECT_EQ(m[r * n + c], (r >= 8 && c >= 8) ? -sub : sub);
    }
}

TEST(Fwht, MatchesExplicitMatrixProductInFloat64ForEverySizeUpTo4096) {
  for (std::size_t n : sizes_up_to(4096)) {
    const auto m = whtlm::hadamard_matrix(n);
    const auto xf = random_floats(2 * n, static_cast<unsigned>(n));
    std::vector<double> x(xf.begin(), xf.end());
    const double scale = whtlm::hadamard_orthonormal_scale(n);
    std::vector<double> want;
    for (std::size_t r = 0; r < 2; ++r) {
      auto y = reference(m, x.data() + r * n, n, scale);
      want.insert(want.end(), y.begin(), y.end());
    }
    std::vector<double> got = x;
    whtlm::fwht(got.data(), 2, n, scale);
    EXPECT_LT(rel_error(got, want), 1e-12) << "float64, n=" << n;
    for (Isa isa : available_isas()) {
      std::vector<float> gf = xf;
      whtlm::fwht(gf.data(), 2, n, static_cast<float>(scale), isa);
      std::vector<double> g(gf.begin(), gf.end());
      EXPECT_LT(rel_error(g, want), 1e-6) << whtlm::isa_name(isa) << " n=" << n;
    }
  }
}

TEST(Fwht, OrthonormalTransformIsItsOwnInverseAndPreservesNorm) {
  for (std::size_t n : whtlm::hadamard_supported_sizes()) {
    const auto x0 = random_floats(3 * n, 7);
    auto x = x0;
    const float s = static_cast<float>(whtlm::hadamard_orthonormal_scale(n));
    whtlm::fwht(x.data(), 3, n, s);
    for (std::size_t r = 0; r < 3; ++r) {
      double n0 = 0, n1 = 0;
      for (std::size_t i = 0; i < n; ++i) {
        n0 += double{x0[r * n + i]} * x0[r * n + i];
        n1 += double{x[r * n + i]} * x[r * n + i];
      }
      EXPECT_NEAR(std::sqrt(n1), std::sqrt(n0), 1e-5 * std::sqrt(n0)) << "n=" << n;
    }
    whtlm::fwht(x.data(), 3, n, s);
    double err = 0, ref = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      err = std::max(err, double{std::fabs(x[i] - x0[i])});
      ref = std::max(ref, double{std::fabs(x0[i])});
    }
    EXPECT_LT(err, 1e-5 * ref) << "n=" << n;
  }
}

TEST(Fwht, IsLinear) {
  for (std::size_t n : {64, 768, 2048, 1792}) {
    auto a = random_floats(n, 1), b = random_floats(n, 2);
    std::vector<double> x(n), y(n), z(n);
    const double alpha = 0.75, beta = -2.5;
    for (std::size_t i = 0; i < n; ++i) {
      x[i] = a[i];
      y[i] = b[i];
      z[i] = alpha * a[i] + beta * b[i];
    }
    whtlm::fwht(x.data(), 1, n);
    whtlm::fwht(y.data(), 1, n);
    whtlm::fwht(z.data(), 1, n);
    for (std::size_t i = 0; i < n; ++i)
      EXPECT_NEAR(z[i], alpha * x[i] + beta * y[i], 1e-10 * n) << "n=" << n << " i=" << i;
  }
}

TEST(Fwht, EveryKernelFamilyGivesBitIdenticalResults) {
  const auto isas = available_isas();
  for (std::size_t n : whtlm::hadamard_supported_sizes()) {
    const std::size_t rows = n <= 1024 ? 5 : 2;
    const auto x0 = random_floats(rows * n, static_cast<unsigned>(n + 3));
    const float scale = 0.37f;
    auto want = x0;
    whtlm::fwht(want.data(), rows, n, scale, Isa::scalar);
    for (Isa isa : isas) {
      auto got = x0;
      whtlm::fwht(got.data(), rows, n, scale, isa);
      EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
          << whtlm::isa_name(isa) << " n=" << n;
    }
  }
}

TEST(Fwht, FloatAndDoubleAgree) {
  for (std::size_t n : {256, 1280, 8192}) {
    const auto xf0 = random_floats(n, 11);
    auto xf = xf0;
    std::vector<double> xd(xf0.begin(), xf0.end());
    whtlm::fwht(xf.data(), 1, n, 1.0f);
    whtlm::fwht(xd.data(), 1, n, 1.0);
    for (std::size_t i = 0; i < n; ++i)
      EXPECT_NEAR(xf[i], xd[i], 1e-5 * std::sqrt(static_cast<double>(n))) << n;
  }
}

// Odd batch sizes, a misaligned start (the buffer begins one float past an
// allocation boundary) and many threads: each row equals its own single-row result.
TEST(Fwht, OddBatchesAndUnalignedRowsEqualRowByRow) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(3);
  for (std::size_t n : {16, 48, 256, 768, 4096}) {
    for (std::size_t rows : {1, 3, 7, 33, 257}) {
      std::vector<float> storage(rows * n + 1);
      const auto src = random_floats(rows * n, static_cast<unsigned>(rows));
      float* x = storage.data() + 1;
      std::memcpy(x, src.data(), src.size() * sizeof(float));
      whtlm::fwht(x, rows, n, 0.5f);
      for (std::size_t r = 0; r < rows; ++r) {
        std::vector<float> one(src.begin() + static_cast<long>(r * n),
                               src.begin() + static_cast<long>((r + 1) * n));
        whtlm::fwht(one.data(), 1, n, 0.5f, Isa::scalar);
        ASSERT_EQ(0, std::memcmp(one.data(), x + r * n, n * sizeof(float)))
            << "n=" << n << " rows=" << rows << " row " << r;
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST(Fwht, ZeroRowsIsANoOp) { EXPECT_NO_THROW(whtlm::fwht(static_cast<float*>(nullptr), 0, 256)); }

// The fused step must equal the unfused sequence: t = scale * H x, then
// resid += gamma * t + beta, with the same rounding.
TEST(FwhtAffineResidual, EqualsTransformThenAffineThenAdd) {
  for (std::size_t n : {8, 12, 64, 256, 768, 1024, 1280, 4096, 32768}) {
    const std::size_t rows = n >= 4096 ? 3 : 9;
    const auto x = random_floats(rows * n, 21);
    const auto gamma = random_floats(n, 22), beta = random_floats(n, 23);
    const auto resid0 = random_floats(rows * n, 24);
    const float scale = static_cast<float>(whtlm::hadamard_orthonormal_scale(n));
    for (bool with_beta : {true, false}) {
      auto t = x;
      whtlm::fwht(t.data(), rows, n, scale, Isa::scalar);
      auto want = resid0;
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t i = 0; i < n; ++i) {
          float q = gamma[i] * t[r * n + i];
          if (with_beta) q = q + beta[i];
          want[r * n + i] = want[r * n + i] + q;
        }
      for (Isa isa : available_isas()) {
        for (bool keep : {true, false}) {
          auto resid = resid0;
          std::vector<float> out(keep ? rows * n : 0, -1.0f);
          const auto x_before = x;
          whtlm::fwht_affine_residual(x.data(), keep ? out.data() : nullptr, resid.data(),
                                      gamma.data(), with_beta ? beta.data() : nullptr, rows, n,
                                      scale, isa);
          const std::string what = std::string(whtlm::isa_name(isa)) + " n=" + std::to_string(n) +
                                   " keep=" + std::to_string(keep) +
                                   " beta=" + std::to_string(with_beta);
          EXPECT_EQ(0, std::memcmp(resid.data(), want.data(), want.size() * sizeof(float))) << what;
          EXPECT_EQ(x, x_before) << what;
          if (keep) {
            EXPECT_EQ(0, std::memcmp(out.data(), t.data(), t.size() * sizeof(float))) << what;
          }
        }
      }
    }
  }
}

TEST(Isa, DetectedIsAvailableAndNamed) {
  const Isa isa = whtlm::detected_isa();
  EXPECT_NE(isa, Isa::best);
  EXPECT_TRUE(whtlm::isa_available(isa));
  EXPECT_TRUE(whtlm::isa_available(Isa::scalar));
  EXPECT_STRNE(whtlm::isa_name(isa), "?");
}

}  // namespace
