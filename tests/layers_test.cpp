// Every layer's backward against central finite differences of its forward, in
// double precision. Each test defines loss = sum(forward output * R) for a fixed
// random R, runs the backward with dy = R, and compares each input's and each
// parameter's gradient with (loss(v + h) - loss(v - h)) / 2h.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backend/ops.hpp"
#include "model/projection.hpp"
#include "whtlm/hadamard.hpp"

namespace whtlm {
namespace {

using Vec = std::vector<double>;

Vec random_vec(std::size_t n, unsigned seed, double scale = 1.0) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-scale, scale);
  Vec v(n);
  for (double& x : v) x = u(rng);
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

struct Checked {
  std::string name;
  Vec* value;       // perturbed in place
  const Vec* grad;  // the backward's answer
};

// Compares up to `samples` entries of each gradient (all when smaller) with central
// differences of loss().
void expect_gradients(const std::function<double()>& loss, const std::vector<Checked>& vars,
                      std::size_t samples = 400) {
  const double h = 1e-6;
  for (const Checked& c : vars) {
    ASSERT_EQ(c.value->size(), c.grad->size()) << c.name;
    const std::size_t n = c.value->size();
    const std::size_t step = std::max<std::size_t>(1, n / samples);
    double worst = 0;
    for (std::size_t i = 0; i < n; i += step) {
      const double keep = (*c.value)[i];
      (*c.value)[i] = keep + h;
      const double up = loss();
      (*c.value)[i] = keep - h;
      const double down = loss();
      (*c.value)[i] = keep;
      const double fd = (up - down) / (2 * h);
      const double err = std::abs(fd - (*c.grad)[i]) / std::max(1.0, std::abs(fd));
      worst = std::max(worst, err);
      ASSERT_LT(err, 1e-6) << c.name << "[" << i << "]: finite difference " << fd << ", backward "
                           << (*c.grad)[i];
    }
    EXPECT_LT(worst, 1e-6) << c.name;
  }
}

class LinearLayer : public ::testing::TestWithParam<std::tuple<bool, bool>> {};

TEST_P(LinearLayer, BackwardMatchesFiniteDifferences) {
  const auto [w_in_out, with_bias] = GetParam();
  const std::size_t rows = 5, in = 7, out = 6;
  const backend::LinearShape shape{
      rows, in, out, w_in_out ? backend::WeightLayout::in_out : backend::WeightLayout::out_in};
  Vec x = random_vec(rows * in, 1), w = random_vec(in * out, 2), b = random_vec(out, 3);
  const Vec r = random_vec(rows * out, 4);
  auto loss = [&] {
    Vec y(rows * out);
    backend::linear_forward(y.data(), x.data(), w.data(), with_bias ? b.data() : nullptr, shape);
    return dot(y, r);
  };
  Vec dx(rows * in), dw(in * out), db(out);
  backend::linear_backward(dx.data(), dw.data(), with_bias ? db.data() : nullptr, r.data(),
                           x.data(), w.data(), shape, backend::Write::overwrite);
  std::vector<Checked> vars{{"x", &x, &dx}, {"w", &w, &dw}};
  if (with_bias) vars.push_back({"b", &b, &db});
  expect_gradients(loss, vars);
}

INSTANTIATE_TEST_SUITE_P(Layouts, LinearLayer,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()));

TEST(LayerNorm, BackwardMatchesFiniteDifferences) {
  const std::size_t rows = 4, d = 9;
  Vec x = random_vec(rows * d, 5, 2.0), w = random_vec(d, 6), b = random_vec(d, 7);
  const Vec r = random_vec(rows * d, 8);
  Vec mean(rows), rstd(rows);
  auto loss = [&] {
    Vec y(rows * d);
    backend::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(),
                               {rows, d}, 1e-5);
    return dot(y, r);
  };
  loss();
  Vec dx(rows * d), dw(d), db(d);
  backend::layernorm_backward(dx.data(), dw.data(), db.data(), r.data(), x.data(), mean.data(),
                              rstd.data(), w.data(), {rows, d});
  expect_gradients(loss, {{"x", &x, &dx}, {"w", &w, &dw}, {"b", &b, &db}});
}

TEST(RmsNorm, BackwardMatchesFiniteDifferences) {
  const std::size_t rows = 4, d = 10;
  Vec x = random_vec(rows * d, 9, 2.0), w = random_vec(d, 10);
  const Vec r = random_vec(rows * d, 11);
  Vec rstd(rows);
  auto loss = [&] {
    Vec y(rows * d);
    backend::rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), {rows, d}, 1e-5);
    return dot(y, r);
  };
  loss();
  Vec dx(rows * d), dw(d);
  backend::rmsnorm_backward(dx.data(), dw.data(), r.data(), x.data(), rstd.data(), w.data(),
                            {rows, d});
  expect_gradients(loss, {{"x", &x, &dx}, {"w", &w, &dw}});
}

TEST(Gelu, BackwardMatchesFiniteDifferences) {
  const std::size_t n = 50;
  Vec x = random_vec(n, 12, 4.0);
  const Vec r = random_vec(n, 13);
  auto loss = [&] {
    Vec y(n);
    backend::gelu_forward(y.data(), x.data(), n);
    return dot(y, r);
  };
  Vec dx(n);
  backend::gelu_backward(dx.data(), r.data(), x.data(), n);
  expect_gradients(loss, {{"x", &x, &dx}});
}

TEST(Swiglu, BackwardMatchesFiniteDifferences) {
  const std::size_t rows = 3, ff = 8;
  Vec hcat = random_vec(rows * 2 * ff, 14, 4.0);
  const Vec r = random_vec(rows * ff, 15);
  auto loss = [&] {
    Vec y(rows * ff);
    backend::swiglu_forward(y.data(), hcat.data(), rows, ff);
    return dot(y, r);
  };
  Vec dh(rows * 2 * ff);
  backend::swiglu_backward(dh.data(), r.data(), hcat.data(), rows, ff);
  expect_gradients(loss, {{"gate|up", &hcat, &dh}});
}

TEST(Rope, BackwardMatchesFiniteDifferencesAndLeavesValuesAlone) {
  const std::size_t seq = 5, batch = 2, heads = 4, kv = 2, hd = 6;
  const std::size_t width = (heads + 2 * kv) * hd, rows = batch * seq;
  Vec cos(seq * hd / 2), sin(seq * hd / 2);
  backend::rope_tables(cos.data(), sin.data(), seq, hd, 10000.0);
  Vec qkv = random_vec(rows * width, 16);
  const Vec r = random_vec(rows * width, 17);
  auto loss = [&] {
    Vec y = qkv;
    backend::rope_forward(y.data(), cos.data(), sin.data(), rows, seq, {heads, kv, hd});
    return dot(y, r);
  };
  Vec dqkv = r;
  backend::rope_backward(dqkv.data(), cos.data(), sin.data(), rows, seq, {heads, kv, hd});
  expect_gradients(loss, {{"qkv", &qkv, &dqkv}});
  // Position 0 is not rotated, and the v heads never are.
  Vec y = qkv;
  backend::rope_forward(y.data(), cos.data(), sin.data(), rows, seq, {heads, kv, hd});
  for (std::size_t i = 0; i < width; ++i) EXPECT_DOUBLE_EQ(y[i], qkv[i]);
  for (std::size_t row = 0; row < rows; ++row)
    for (std::size_t i = (heads + kv) * hd; i < width; ++i)
      EXPECT_EQ(y[row * width + i], qkv[row * width + i]);
}

// Direct softmax attention over the whole causal row, for comparison.
Vec naive_attention(const Vec& qkv, const backend::AttentionShape& s) {
  const std::size_t width = (s.n_head + 2 * s.n_kv) * s.hd, group = s.n_head / s.n_kv;
  Vec out(s.batch * s.seq * s.n_head * s.hd, 0.0);
  for (std::size_t b = 0; b < s.batch; ++b)
    for (std::size_t h = 0; h < s.n_head; ++h)
      for (std::size_t i = 0; i < s.seq; ++i) {
        const double* q = &qkv[(b * s.seq + i) * width + h * s.hd];
        std::vector<double> p(i + 1);
        double m = -1e300, sum = 0;
        for (std::size_t j = 0; j <= i; ++j) {
          const double* k = &qkv[(b * s.seq + j) * width + (s.n_head + h / group) * s.hd];
          double dotqk = 0;
          for (std::size_t c = 0; c < s.hd; ++c) dotqk += q[c] * k[c];
          p[j] = dotqk / std::sqrt(double(s.hd));
          m = std::max(m, p[j]);
        }
        for (double& v : p) sum += (v = std::exp(v - m));
        for (std::size_t j = 0; j <= i; ++j) {
          const double* v = &qkv[(b * s.seq + j) * width + (s.n_head + s.n_kv + h / group) * s.hd];
          for (std::size_t c = 0; c < s.hd; ++c)
            out[(b * s.seq + i) * s.n_head * s.hd + h * s.hd + c] += p[j] / sum * v[c];
        }
      }
  return out;
}

class AttentionLayer : public ::testing::TestWithParam<std::size_t> {};

// seq 70 spans two query blocks; kv heads 1 and 2 exercise grouped-query sharing.
TEST_P(AttentionLayer, ForwardMatchesDirectSoftmaxAndBackwardMatchesFiniteDifferences) {
  const backend::AttentionShape s{2, 70, 4, GetParam(), 4};
  const std::size_t width = (s.n_head + 2 * s.n_kv) * s.hd, rows = s.batch * s.seq;
  Vec qkv = random_vec(rows * width, 18, 1.5);
  const Vec r = random_vec(rows * s.n_head * s.hd, 19);
  Vec out(rows * s.n_head * s.hd), lse(s.batch * s.n_head * s.seq);
  Vec scratch(backend::attention_scratch_size(s));
  auto loss = [&] {
    backend::attention_forward(out.data(), lse.data(), qkv.data(), s, scratch.data());
    return dot(out, r);
  };
  loss();
  const Vec ref = naive_attention(qkv, s);
  for (std::size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(out[i], ref[i], 1e-12) << i;
  Vec dqkv(rows * width, 123.0);  // must be overwritten, not accumulated into
  backend::attention_backward(dqkv.data(), r.data(), qkv.data(), out.data(), lse.data(), s,
                              scratch.data());
  expect_gradients(loss, {{"qkv", &qkv, &dqkv}}, 600);
}

INSTANTIATE_TEST_SUITE_P(KvHeads, AttentionLayer, ::testing::Values(1, 2, 4));

TEST(Embedding, BackwardMatchesFiniteDifferences) {
  const std::size_t vocab = 6, seq = 4, batch = 2, d = 5, rows = batch * seq;
  const std::vector<std::int32_t> tokens{0, 3, 3, 5, 1, 3, 0, 2};  // repeats add up
  Vec wte = random_vec(vocab * d, 20), wpe = random_vec(seq * d, 21);
  const Vec r = random_vec(rows * d, 22);
  auto loss = [&] {
    Vec x(rows * d);
    backend::embedding_forward(x.data(), tokens.data(), wte.data(), wpe.data(), rows, seq, d);
    return dot(x, r);
  };
  Vec dwte(vocab * d), dwpe(seq * d);
  backend::embedding_backward(dwte.data(), dwpe.data(), r.data(), tokens.data(), rows, seq, d);
  expect_gradients(loss, {{"wte", &wte, &dwte}, {"wpe", &wpe, &dwpe}});
}

TEST(CrossEntropy, BackwardMatchesFiniteDifferencesAndLossIsNegLogSoftmax) {
  const std::size_t rows = 4, vocab = 7;
  const std::vector<std::int32_t> targets{1, 6, 0, 1};
  Vec logits = random_vec(rows * vocab, 23, 3.0);
  const double scale = 0.25;
  auto loss = [&] {
    Vec l(rows), lse(rows);
    backend::cross_entropy_forward(l.data(), lse.data(), logits.data(), targets.data(), rows,
                                   vocab);
    double s = 0;
    for (double v : l) s += scale * v;
    return s;
  };
  Vec l(rows), lse(rows);
  backend::cross_entropy_forward(l.data(), lse.data(), logits.data(), targets.data(), rows, vocab);
  double z = 0;
  for (std::size_t j = 0; j < vocab; ++j) z += std::exp(logits[j]);
  EXPECT_NEAR(l[0], std::log(z) - logits[1], 1e-12);
  Vec g = logits;
  backend::cross_entropy_backward(g.data(), lse.data(), targets.data(), rows, vocab, scale);
  expect_gradients(loss, {{"logits", &logits, &g}});
}

struct ProjectionCase {
  Projection kind;
  int d;
  bool bias, in_out;
};

class OutputProjectionLayer : public ::testing::TestWithParam<ProjectionCase> {};

TEST_P(OutputProjectionLayer, BackwardMatchesFiniteDifferences) {
  const ProjectionCase pc = GetParam();
  const auto proj = model::make_output_projection(pc.kind, pc.d, pc.bias, pc.in_out);
  const std::size_t rows = 3, d = static_cast<std::size_t>(pc.d);
  Vec x = random_vec(rows * d, 24), resid = random_vec(rows * d, 25);
  Vec p = random_vec(proj->parameter_count(), 26);
  const Vec r = random_vec(rows * d, 27);
  auto loss = [&] {
    Vec y = resid;
    proj->forward(y.data(), x.data(), p.data(), rows);
    return dot(y, r);
  };
  Vec dx(rows * d, 55.0), dp(p.size(), 0.0);
  proj->backward(dx.data(), dp.data(), r.data(), x.data(), p.data(), rows);
  std::vector<Checked> vars{{"x", &x, &dx}};
  if (!p.empty()) vars.push_back({"params", &p, &dp});
  expect_gradients(loss, vars);
}

TEST(OutputProjection, WhtIsScaledHadamardPlusAffineAndCountsTwoDParameters) {
  const int d = 12;  // a Paley size, not a power of two
  const auto proj = model::make_output_projection(Projection::wht, d, false, false);
  ASSERT_EQ(proj->parameter_count(), 2u * d);
  const Vec x = random_vec(d, 28), gamma = random_vec(d, 29), beta = random_vec(d, 30);
  Vec p = gamma;
  p.insert(p.end(), beta.begin(), beta.end());
  Vec y(d, 0.0);
  proj->forward(y.data(), x.data(), p.data(), 1);
  const std::vector<double> h = hadamard_matrix(d);
  for (int i = 0; i < d; ++i) {
    double hx = 0;
    for (int j = 0; j < d; ++j) hx += h[std::size_t(i * d + j)] * x[std::size_t(j)];
    EXPECT_NEAR(y[std::size_t(i)],
                gamma[std::size_t(i)] * hx / std::sqrt(12.0) + beta[std::size_t(i)], 1e-12);
  }
}

TEST(OutputProjection, UnsupportedWhtWidthIsRefusedNamingIt) {
  try {
    model::make_output_projection(Projection::wht, 1000, false, false);
    FAIL() << "d = 1000 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("1000"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, OutputProjectionLayer,
                         ::testing::Values(ProjectionCase{Projection::dense, 8, false, false},
                                           ProjectionCase{Projection::dense, 8, true, true},
                                           ProjectionCase{Projection::wht, 16, false, false},
                                           ProjectionCase{Projection::wht, 12, false, false},
                                           ProjectionCase{Projection::identity, 8, false, false}),
                         [](const ::testing::TestParamInfo<ProjectionCase>& param_info) {
                           const ProjectionCase& c = param_info.param;
                           return std::string(projection_name(c.kind)) + "_d" +
                                  std::to_string(c.d) + (c.bias ? "_bias" : "") +
                                  (c.in_out ? "_in_out" : "");
                         });

}  // namespace
}  // namespace whtlm
