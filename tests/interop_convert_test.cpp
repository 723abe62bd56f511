// Dense-to-Hadamard conversion (src/interop/fold.cpp, src/interop/convert.cpp): the
// least-squares fit recovers a projection that is exactly of the Hadamard form, leaves
// of a random W_O what the geometry says it must, and a converted model computes the
// dense model's logits whenever its W_O was of that form.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "whtlm/checkpoint.hpp"
#include "whtlm/hadamard.hpp"
#include "whtlm/interop.hpp"
#include "whtlm/transformer.hpp"

namespace whtlm::interop {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("whtlm_convert_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

ModelConfig tiny(Family f, Projection p, int d = 32) {
  ModelConfig c;
  c.family = f;
  c.projection = p;
  c.n_layer = 2;
  c.d_model = d;
  c.n_head = 4;
  c.n_kv_head = f == Family::llama ? 2 : 4;
  c.vocab_size = 40;
  c.max_seq = 16;
  c.d_ff = c.ff();  // as config.json records it
  return c;
}

// A wht model with gamma spread around its initial value and (gpt2) a random beta, so
// that the fit has something per channel to recover. llama's dense W_O has no bias, so
// its beta stays 0 there: the dense model it folds into must represent it exactly.
void randomise_projections(Transformer& m, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> spread(0.5f, 1.5f), bias(-0.1f, 0.1f);
  const std::size_t d = static_cast<std::size_t>(m.config().d_model);
  const bool beta = m.config().has_bias();
  for (const BlockOffsets& b : m.layout().blocks) {
    float* p = m.params().data() + b.proj;
    for (std::size_t i = 0; i < d; ++i) {
      p[i] *= spread(rng);
      p[d + i] = beta ? bias(rng) : 0.0f;
    }
  }
}

TEST(Convert, FoldThenFitGivesBackAHadamardProjection) {
  for (Family f : {Family::gpt2, Family::llama}) {
    for (int d : {32, 64}) {
      const ModelConfig c = tiny(f, Projection::wht, d);
      Transformer m(c);
      m.init_weights(5);
      randomise_projections(m, 11);
      const std::size_t n = static_cast<std::size_t>(d);
      std::vector<float> w(n * n), bias(n), back(2 * n);
      const float* p = m.params().data() + m.layout().blocks[1].proj;
      fold_projection(c, p, w.data(), bias.data());
      const LayerFit fit = fit_projection(c, w.data(), bias.data(), back.data());
      EXPECT_LT(fit.relative_residual, 1e-6) << family_name(f) << " d " << d;
      for (std::size_t i = 0; i < n; ++i) {
        EXPECT_NEAR(back[i], p[i], 1e-6 * std::abs(p[i])) << "gamma " << i;
        EXPECT_NEAR(back[n + i], p[n + i], 1e-6 * std::abs(p[n + i]) + 1e-12) << "beta " << i;
      }
      const auto [lo, hi] = std::minmax_element(p, p + n);
      EXPECT_NEAR(fit.gamma_min, *lo, 1e-6 * std::abs(*lo));
      EXPECT_NEAR(fit.gamma_max, *hi, 1e-6 * std::abs(*hi));
    }
  }
}

// The rows of H / sqrt(d) are orthonormal, and the fit of row i of W is its projection
// on the one unit vector H_i / sqrt(d). A row of iid Gaussian entries has, in
// expectation, 1/d of its squared norm along any fixed unit vector, so the fit keeps
// 1/d of ||W||_F^2 and the relative residual is sqrt(1 - 1/d) (spread over d rows:
// a relative deviation of about sqrt(2/d)/d in the kept share).
TEST(Convert, FitOfARandomDenseMatrixLeavesSqrtOneMinusOneOverD) {
  for (Family f : {Family::gpt2, Family::llama}) {
    const int d = 256;
    const std::size_t n = d;
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    std::vector<float> w(n * n), bias(n, 0.0f), params(2 * n);
    for (float& x : w) x = normal(rng);
    const LayerFit fit =
        fit_projection(tiny(f, Projection::wht, d), w.data(), bias.data(), params.data());
    const double expected = std::sqrt(1.0 - 1.0 / d);  // 0.99804
    EXPECT_NEAR(fit.relative_residual, expected, 8e-4) << family_name(f);
    EXPECT_LT(fit.relative_residual, 1.0);
    // gamma_i = <W_i, H_i> / sqrt(d) ~ N(0, 0.02^2): centred, a few 0.02 wide.
    EXPECT_NEAR(fit.gamma_mean, 0.0, 5 * 0.02 / std::sqrt(double(d)));
    EXPECT_LT(fit.gamma_min, -0.02);
    EXPECT_GT(fit.gamma_max, 0.02);
  }
}

std::vector<float> logits_of(Transformer& m, const std::vector<std::int32_t>& tokens, int batch,
                             int seq) {
  m.forward(tokens.data(), nullptr, batch, seq);
  const auto l = m.logits();
  return {l.begin(), l.end()};
}

// A dense model whose every W_O is what `from`'s projection computes (fold_projection
// written into the dense layout by fit_projection), every other tensor copied by name.
void fold_into_dense(const Transformer& from, Transformer& dense) {
  const ModelConfig& c = from.config();
  const std::size_t d = static_cast<std::size_t>(c.d_model);
  for (const TensorSpec& t : dense.layout().tensors()) {
    if (t.component == Component::attn_out) continue;
    const TensorSpec* s = from.layout().find(t.name);
    ASSERT_NE(s, nullptr) << t.name;
    std::copy_n(from.params().data() + s->offset, t.numel, dense.params().data() + t.offset);
  }
  std::vector<float> w(d * d), bias(d);
  for (std::size_t l = 0; l < from.layout().blocks.size(); ++l) {
    fold_projection(c, from.params().data() + from.layout().blocks[l].proj, w.data(), bias.data());
    fit_projection(dense.config(), w.data(), bias.data(),
                   dense.params().data() + dense.layout().blocks[l].proj);
  }
}

TEST(Convert, AConvertedModelComputesTheDenseLogitsWhenWOIsHadamard) {
  for (Family f : {Family::gpt2, Family::llama}) {
    for (Projection to : {Projection::wht, Projection::identity}) {
      const ModelConfig c = tiny(f, to);
      Transformer source(c);  // the projection the dense model's W_O is built from
      source.init_weights(9);
      if (to == Projection::wht) randomise_projections(source, 13);
      ModelConfig dc = c;
      dc.projection = Projection::dense;
      Transformer dense(dc);
      dense.init_weights(1);
      fold_into_dense(source, dense);

      TempDir tmp;
      write_checksums(tmp / "dense",
                      save_model(tmp / "dense", dense.layout(), dense.params().data()));
      ConvertOptions o;
      o.to = to;
      o.out = tmp / "converted";
      const ConvertResult r = convert_model(tmp / "dense", o);
      EXPECT_EQ(r.config, c);
      ASSERT_EQ(r.layers.size(), 2u);
      for (const LayerFit& fit : r.layers) EXPECT_LT(fit.relative_residual, 1e-6);
      EXPECT_EQ(checkpoint_tokenizer(o.out), "byte");  // the source has none
      const auto converted = load_model(o.out);
      EXPECT_EQ(converted->config(), c);

      const int batch = 2, seq = 16;
      std::mt19937 rng(7);
      std::uniform_int_distribution<int> tok(0, c.vocab_size - 1);
      std::vector<std::int32_t> tokens(std::size_t(batch) * seq);
      for (auto& t : tokens) t = tok(rng);
      const auto want = logits_of(dense, tokens, batch, seq);
      const auto got = logits_of(*converted, tokens, batch, seq);
      const auto direct = logits_of(source, tokens, batch, seq);
      ASSERT_EQ(got.size(), want.size());
      double worst = 0, worst_direct = 0, scale = 0;
      for (std::size_t i = 0; i < want.size(); ++i) {
        worst = std::max(worst, double(std::abs(got[i] - want[i])));
        worst_direct = std::max(worst_direct, double(std::abs(direct[i] - got[i])));
        scale = std::max(scale, double(std::abs(want[i])));
      }
      const std::string what = std::string(family_name(f)) + " -> " + projection_name(to);
      EXPECT_GT(scale, 0.0) << what;
      EXPECT_LT(worst, 1e-5 * scale + 1e-6) << what;
      EXPECT_LT(worst_direct, 1e-5 * scale + 1e-6) << what;
    }
  }
}

TEST(Convert, RefusesANonDenseSourceAndAnExistingCheckpoint) {
  TempDir tmp;
  Transformer wht(tiny(Family::llama, Projection::wht));
  wht.init_weights(1);
  write_checksums(tmp / "wht", save_model(tmp / "wht", wht.layout(), wht.params().data()));
  ConvertOptions o;
  o.out = tmp / "out";
  try {
    convert_model(tmp / "wht", o);
    ADD_FAILURE() << "a wht source was converted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(tmp / "wht"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("is wht"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(o.out));

  Transformer dense(tiny(Family::llama, Projection::dense));
  dense.init_weights(1);
  write_checksums(tmp / "dense", save_model(tmp / "dense", dense.layout(), dense.params().data()));
  o.out = tmp / "wht";  // holds a checkpoint
  EXPECT_THROW(convert_model(tmp / "dense", o), std::invalid_argument);
  o.force = true;
  EXPECT_NO_THROW(convert_model(tmp / "dense", o));
  o.out = tmp / "dense";  // the source itself, even with --force
  EXPECT_THROW(convert_model(tmp / "dense", o), std::invalid_argument);
  o.to = Projection::dense;
  o.out = tmp / "again";
  EXPECT_THROW(convert_model(tmp / "dense", o), std::invalid_argument);
}

}  // namespace
}  // namespace whtlm::interop
