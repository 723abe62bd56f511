// Properties of the whole model and its configuration that the layer tests and the
// PyTorch comparison do not cover: accumulation, determinism, planned memory,
// config validation and config.json round trips.
#include "whtlm/transformer.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/projection.hpp"
#include "whtlm/checkpoint.hpp"
#include "whtlm/matmul.hpp"
#include "whtlm/threads.hpp"

namespace whtlm {
namespace {

ModelConfig small_config(Family f, Projection p) {
  ModelConfig c;
  c.family = f;
  c.projection = p;
  c.n_layer = 2;
  c.d_model = 32;
  c.n_head = 4;
  c.n_kv_head = f == Family::llama ? 2 : 4;
  c.vocab_size = 40;
  c.max_seq = 16;
  return c;
}

std::vector<std::int32_t> random_tokens(std::size_t n, int vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(0, vocab - 1);
  std::vector<std::int32_t> t(n);
  for (auto& x : t) x = d(rng);
  return t;
}

TEST(Transformer, TwoHalfBatchesAccumulateToTheFullBatchGradient) {
  for (Family f : {Family::gpt2, Family::llama}) {
    const ModelConfig c = small_config(f, Projection::wht);
    Transformer m(c);
    m.init_weights(3);
    const int batch = 4, seq = 16;
    const auto in = random_tokens(batch * seq, c.vocab_size, 1);
    const auto tg = random_tokens(batch * seq, c.vocab_size, 2);
    m.zero_grads();
    const double full = m.forward(in.data(), tg.data(), batch, seq);
    m.backward();
    const std::vector<float> g_full(m.grads().begin(), m.grads().end());
    m.zero_grads();
    const std::size_t half = std::size_t(batch / 2) * seq;
    double acc = 0;
    for (int k = 0; k < 2; ++k) {
      acc += 0.5 * m.forward(in.data() + k * half, tg.data() + k * half, batch / 2, seq);
      m.backward(0.5f);
    }
    EXPECT_NEAR(acc, full, 1e-6 * full);
    double worst = 0, scale = 0;
    for (std::size_t i = 0; i < g_full.size(); ++i) {
      worst = std::max(worst, double(std::abs(m.grads()[i] - g_full[i])));
      scale = std::max(scale, double(std::abs(g_full[i])));
    }
    EXPECT_LT(worst, 1e-5 * scale) << family_name(f);
  }
}

// RMS of the output projection's contribution P(x) over RMS of x, for 64 random rows,
// with the projection's parameters as init_weights leaves them.
double branch_gain(ModelConfig c, Projection p, ScaleInit s) {
  c.projection = p;
  Transformer m(c);
  m.init_weights(7, s);
  const auto proj = model::make_output_projection(p, c.d_model, false, false);
  const float* w = m.params().data() + m.layout().blocks[0].proj;
  const std::vector<double> params(w, w + proj->parameter_count());
  const std::size_t rows = 64, d = std::size_t(c.d_model);
  std::mt19937 rng(11);
  std::normal_distribution<double> normal;
  std::vector<double> x(rows * d), y(rows * d, 0.0);
  for (double& v : x) v = normal(rng);
  proj->forward(y.data(), x.data(), params.data(), rows);
  double sx = 0, sy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    sx += x[i] * x[i];
    sy += y[i] * y[i];
  }
  return std::sqrt(sy / sx);
}

TEST(Transformer, MatchedScaleInitGivesWhtTheBranchSpreadOfDensesInitialOutputProjection) {
  ModelConfig c = small_config(Family::llama, Projection::wht);
  c.n_layer = 4;
  c.d_model = 256;
  c.n_head = c.n_kv_head = 4;
  const double matched = 0.02 / std::sqrt(8.0) * 16.0;  // 0.113
  EXPECT_NEAR(initial_wht_scale(c, ScaleInit::matched), matched, 1e-15);
  EXPECT_EQ(initial_wht_scale(c, ScaleInit::one), 1.0);
  for (ScaleInit s : {ScaleInit::one, ScaleInit::matched}) {
    Transformer m(c);
    m.init_weights(1, s);
    const TensorSpec* t = m.layout().find("model.layers.3.self_attn.o_proj.scale");
    ASSERT_NE(t, nullptr);
    for (std::size_t i = 0; i < t->numel; ++i)
      ASSERT_EQ(m.params()[t->offset + i], float(initial_wht_scale(c, s))) << i;
  }
  // The branch's gain: dense's random W_O against wht's orthonormal transform times gamma.
  const double dense = branch_gain(c, Projection::dense, ScaleInit::one);
  EXPECT_NEAR(dense, matched, 0.03 * matched);  // 0.02/sqrt(2 L) * sqrt(d), sampled
  EXPECT_NEAR(branch_gain(c, Projection::wht, ScaleInit::matched) / dense, 1.0, 0.03);
  EXPECT_NEAR(branch_gain(c, Projection::wht, ScaleInit::one), 1.0, 1e-12);
  EXPECT_THROW(parse_scale_init("half"), std::invalid_argument);
  EXPECT_EQ(parse_scale_init(scale_init_name(ScaleInit::one)), ScaleInit::one);
}

TEST(Transformer, SameSeedAndThreadsGiveBitIdenticalGradients) {
  const ModelConfig c = small_config(Family::llama, Projection::dense);
  const auto in = random_tokens(2 * 16, c.vocab_size, 5);
  const auto tg = random_tokens(2 * 16, c.vocab_size, 6);
  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    Transformer m(c);
    m.init_weights(9);
    m.zero_grads();
    m.forward(in.data(), tg.data(), 2, 16);
    m.backward();
    if (run == 0)
      first.assign(m.grads().begin(), m.grads().end());
    else
      EXPECT_TRUE(std::equal(first.begin(), first.end(), m.grads().begin()));
  }
}

TEST(Transformer, ArenaIsTheSizePlannedBeforeTheRun) {
  const ModelConfig c = small_config(Family::gpt2, Projection::dense);
  Transformer m(c);
  m.reserve(3, 16);
  EXPECT_EQ(m.activation_bytes(), activation_floats(c, 3, 16) * sizeof(float));
  // Activation memory grows linearly in the sequence length (no seq x seq matrix).
  const double a1 = double(activation_floats(c, 1, 8));
  const double a2 = double(activation_floats(c, 1, 16));
  EXPECT_LT(a2, 2.2 * a1);
}

// At bf16 on the CPU the norms' and the MLP activation's outputs, which only feed products,
// are kept in bf16: the arena is the smaller plan, and the step still trains.
TEST(Transformer, Bf16KeepsProductOperandsInHalfTheRoom) {
  if (precision_support().bf16 == "none") GTEST_SKIP() << "no bf16 products on this CPU";
  for (Family family : {Family::gpt2, Family::llama}) {
    const ModelConfig c = small_config(family, Projection::wht);
    const std::size_t fp32 = activation_floats(c, 3, 16, Precision::fp32);
    const std::size_t bf16 = activation_floats(c, 3, 16, Precision::bf16);
    // Per block: two norm outputs of d and the activation of ff values, and the final norm.
    const std::size_t halved = (c.n_layer * (2 * c.d_model + c.ff()) + c.d_model) * 3 * 16 / 2;
    EXPECT_LE(bf16 + halved, fp32 + 16 * (2 * c.n_layer + 1) * 16) << family_name(family);
    EXPECT_GE(bf16 + halved, fp32) << family_name(family);
    Transformer m(c, Device::cpu, Precision::bf16);
    m.init_weights(3);
    m.reserve(3, 16);
    EXPECT_EQ(m.activation_bytes(), bf16 * sizeof(float));
    std::vector<std::int32_t> tokens(48), targets(48);
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = static_cast<std::int32_t>((7 * i) % c.vocab_size);
      targets[i] = static_cast<std::int32_t>((7 * i + 1) % c.vocab_size);
    }
    const double loss = m.forward(tokens.data(), targets.data(), 3, 16);
    EXPECT_NEAR(loss, std::log(double(c.vocab_size)), 0.5);
    m.zero_grads();
    m.backward(1.0f);
    EXPECT_GT(m.grad_norm(), 0.0);
    EXPECT_TRUE(std::isfinite(m.grad_norm()));
  }
}

TEST(Transformer, InitialLossIsNearLogVocabAndTokensOutOfRangeAreRefused) {
  const ModelConfig c = small_config(Family::llama, Projection::identity);
  Transformer m(c);
  m.init_weights(1);
  auto in = random_tokens(16, c.vocab_size, 7);
  const auto tg = random_tokens(16, c.vocab_size, 8);
  EXPECT_NEAR(m.forward(in.data(), tg.data(), 1, 16), std::log(40.0), 0.1);
  in[5] = 40;
  try {
    m.forward(in.data(), tg.data(), 1, 16);
    FAIL() << "token 40 accepted with vocabulary 40";
  } catch (const std::out_of_range& e) {
    EXPECT_NE(std::string(e.what()).find("position 5"), std::string::npos) << e.what();
  }
  EXPECT_THROW(m.forward(in.data(), tg.data(), 1, 17), std::invalid_argument);  // > max_seq
}

TEST(ModelConfig, ValidationNamesTheField) {
  auto expect_field = [](ModelConfig c, const std::string& field) {
    try {
      c.validate();
      FAIL() << "accepted a bad " << field;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  ModelConfig c = preset("tiny");
  c.n_head = 3;
  expect_field(c, "n_head");
  c = preset("tiny");
  c.n_kv_head = 3;
  expect_field(c, "n_kv_head");
  c = preset("base");
  c.n_kv_head = 4;
  expect_field(c, "n_kv_head");
  c = preset("tiny");
  c.projection = Projection::wht;
  c.d_model = 100;
  c.n_head = c.n_kv_head = 2;
  expect_field(c, "d_model");
  c = preset("tiny");
  c.vocab_size = 0;
  expect_field(c, "vocab_size");
  EXPECT_THROW(preset("huge"), std::invalid_argument);
}

TEST(ModelConfig, ConfigJsonRoundTripsForEveryPresetAndProjection) {
  for (const std::string& name : preset_names())
    for (Projection p : {Projection::dense, Projection::wht, Projection::identity}) {
      ModelConfig c = preset(name);
      c.projection = p;
      const ModelConfig back = config_from_json(config_to_json(c), "test");
      EXPECT_EQ(back.family, c.family);
      EXPECT_EQ(back.projection, c.projection);
      EXPECT_EQ(back.n_layer, c.n_layer);
      EXPECT_EQ(back.d_model, c.d_model);
      EXPECT_EQ(back.n_head, c.n_head);
      EXPECT_EQ(back.n_kv_head, c.n_kv_head);
      EXPECT_EQ(back.ff(), c.ff());
      EXPECT_EQ(back.vocab_size, c.vocab_size);
      EXPECT_EQ(back.max_seq, c.max_seq);
      EXPECT_EQ(ParamLayout(back).count(), ParamLayout(c).count()) << name;
    }
}

TEST(ModelConfig, GptTwoSmallWithItsVocabularyHasItsPublishedParameterCount) {
  ModelConfig c = preset("gpt2-124m");
  c.vocab_size = 50257;
  EXPECT_EQ(ParamLayout(c).count(), 124439808u);  // GPT-2 small, as published
  c.projection = Projection::wht;
  EXPECT_EQ(ParamLayout(c).count(), 124439808u - 12u * (768u * 768u + 768u) + 12u * 2u * 768u);
}

}  // namespace
}  // namespace whtlm
