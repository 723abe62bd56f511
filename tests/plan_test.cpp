// Experiment plans: the built-in plans meet the experiment's design (three or more sizes
// spanning 8x in parameters, tokens growing with size, a learning-rate sweep), the token
// rule and the sweep and validation lengths follow their definitions, and the GPU plan
// in plans/ reads and validates as it stands.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "whtlm/experiment.hpp"
#include "whtlm/io.hpp"

namespace whtlm::experiment {
namespace {

std::size_t dense_params(ModelConfig c) {
  c.projection = Projection::dense;
  return ParamLayout(c).count();
}

TEST(Plan, DefaultSpansThreeSizesWithTokensGrowingAndASweep) {
  const Plan p = builtin_plan("default");
  ASSERT_GE(p.sizes.size(), 3u);
  EXPECT_GE(double(dense_params(p.sizes.back().model)) / double(dense_params(p.sizes[0].model)),
            8.0);
  for (std::size_t i = 1; i < p.sizes.size(); ++i) {
    EXPECT_GT(dense_params(p.sizes[i].model), dense_params(p.sizes[i - 1].model));
    EXPECT_GT(p.tokens_of(p.sizes[i]), p.tokens_of(p.sizes[i - 1])) << p.sizes[i].name;
  }
  for (const Size& s : p.sizes) EXPECT_GE(s.seeds, 2) << s.name;
  EXPECT_GE(p.lr_factors.size(), 3u);
  EXPECT_NO_THROW(validate(p));
  const Plan q = builtin_plan("quick");
  EXPECT_GE(q.sizes.size(), 3u);
  EXPECT_NO_THROW(validate(q));
}

TEST(Plan, TokenRuleScalesWithParametersToThePowerGiven) {
  Plan p = builtin_plan("default");
  p.tokens = 1000 * p.batch * p.seq;
  p.tokens_exponent = 0;
  for (const Size& s : p.sizes) EXPECT_EQ(p.tokens_of(s), p.tokens);
  for (double e : {0.5, 1.0}) {
    p.tokens_exponent = e;
    const double n0 = double(dense_params(p.sizes[0].model));
    for (const Size& s : p.sizes) {
      const double want =
          double(p.tokens) * std::pow(double(dense_params(s.model)) / n0, e) / (p.batch * p.seq);
      EXPECT_EQ(p.steps(s), std::int64_t(std::ceil(want - 1e-9))) << s.name << " exponent " << e;
      EXPECT_EQ(p.tokens_of(s), p.steps(s) * p.batch * p.seq);
    }
  }
  // Every variant of a size trains the same tokens: the rule counts a dense projection.
  Size wht = p.sizes[1];
  wht.model.projection = Projection::wht;
  EXPECT_EQ(p.tokens_of(wht), p.tokens_of(p.sizes[1]));
  // --scale multiplies every size's tokens.
  const Plan big = scaled(p, 4);
  for (std::size_t i = 0; i < p.sizes.size(); ++i)
    EXPECT_NEAR(double(big.steps(big.sizes[i])), 4.0 * double(p.steps(p.sizes[i])), 1.0);
}

TEST(Plan, SweepAndValidationLengths) {
  Plan p = builtin_plan("default");
  p.sizes.resize(1);
  p.tokens_exponent = 0;
  p.tokens = 200 * p.batch * p.seq;
  p.lr_sweep_fraction = 0.25;
  p.lr_sweep_min_steps = 20;
  EXPECT_EQ(p.sweep_steps(p.sizes[0]), 50);
  p.tokens = 40 * p.batch * p.seq;
  EXPECT_EQ(p.sweep_steps(p.sizes[0]), 20);  // the minimum
  p.tokens = 12 * p.batch * p.seq;
  EXPECT_EQ(p.sweep_steps(p.sizes[0]), 12);  // never more than the run
  p.lr_sweep_min_steps = 0;
  EXPECT_EQ(p.sweep_steps(p.sizes[0]), 3);
  p.evals = 0;
  p.eval_every = 7;
  EXPECT_EQ(p.eval_every_of(p.sizes[0]), 7);
  p.evals = 5;
  EXPECT_EQ(p.eval_every_of(p.sizes[0]), 3);  // ceil(12 / 5)
}

TEST(Plan, NewFieldsRoundTripAndBadValuesAreNamed) {
  Plan p = builtin_plan("default");
  p.tokens_exponent = 0.75;
  p.evals = 12;
  p.lr_sweep_min_steps = 7;
  p.device = Device::cuda;
  p.precision = Precision::bf16;
  p.note = "a \"budget\" note";
  const std::string j = plan_to_json(p);
  EXPECT_EQ(plan_to_json(plan_from_json(j, "p.json")), j);
  auto refused = [](const std::string& text, const std::string& want) {
    try {
      (void)plan_from_json(text, "p.json");
      ADD_FAILURE() << "accepted " << text;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  };
  refused(R"({"tokens_exponent": -1})", "tokens_exponent");
  refused(R"({"evals": 1.5})", "evals");
  refused(R"({"device": "tpu"})", "device");
  refused(R"({"precision": "fp16"})", "precision");
  refused(R"({"lr_sweep": {"min_steps": -3}})", "min_steps");
  refused(R"({"note": 3})", "note");
}

// At bf16 the default plan spends the time its products save on more tokens per run,
// says so in its note, and records its precision; the fp32 plan is the one on record.
TEST(Plan, DefaultPlanAtBf16TrainsMoreTokensAndSaysSo) {
  const Plan f = builtin_plan("default"), b = builtin_plan("default", Precision::bf16);
  EXPECT_EQ(f.precision, Precision::fp32);
  EXPECT_EQ(b.precision, Precision::bf16);
  EXPECT_EQ(f.tokens, 32 * 16 * 128);
  EXPECT_EQ(b.tokens, 45 * 16 * 128);
  EXPECT_TRUE(f.note.empty());
  EXPECT_NE(b.note.find("1.41x"), std::string::npos) << b.note;
  for (std::size_t i = 0; i < f.sizes.size(); ++i)
    EXPECT_GT(b.steps(b.sizes[i]), f.steps(f.sizes[i])) << f.sizes[i].name;
  EXPECT_EQ(b.steps(b.sizes.back()), 210);
  EXPECT_EQ(builtin_plan("quick", Precision::bf16).precision, Precision::bf16);
  EXPECT_NO_THROW(validate(b));
}

TEST(Plan, GpuPlanReadsAsItStands) {
  const std::string path = std::string(WHTLM_SOURCE_DIR) + "/plans/gpu-124m.json";
  const Plan p = plan_from_json(io::read_file(path), path);
  EXPECT_EQ(p.device, Device::cuda);
  EXPECT_EQ(p.precision, Precision::bf16);
  ASSERT_GE(p.sizes.size(), 3u);
  bool has124 = false, has350 = false;
  for (const Size& s : p.sizes) {
    EXPECT_EQ(s.model.family, Family::gpt2) << s.name;
    has124 = has124 || (s.model.n_layer == 12 && s.model.d_model == 768);
    has350 = has350 || (s.model.n_layer == 24 && s.model.d_model == 1024);
  }
  EXPECT_TRUE(has124 && has350);
  EXPECT_FALSE(p.data.path.empty());  // prepared shards of the larger corpus
  EXPECT_FALSE(p.lr_factors.empty());
}

}  // namespace
}  // namespace whtlm::experiment
