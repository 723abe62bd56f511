// The downstream proxy in the report: "comparable downstream performance" is decided
// by its rule on synthetic runs built to pass, to fail (accuracy or bits per byte worse
// beyond the noise) and to be undecidable (one seed, no data, no cloze); the one-item
// floor of the accuracy noise; the per-size summary; a run folder's downstream.json is
// read (and a damaged one only warned about); the written report has the section, with
// links that resolve, and says "not measured" without the files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "report/analysis.hpp"
#include "whtlm/downstream.hpp"
#include "whtlm/io.hpp"
#include "whtlm/report.hpp"
#include "whtlm/train.hpp"

namespace whtlm::report {
namespace {

namespace fs = std::filesystem;

ModelConfig shape(int layers, int d_model) {
  ModelConfig c = preset("tiny");
  c.n_layer = layers;
  c.d_model = d_model;
  c.n_head = c.n_kv_head = 2;
  return c;
}

// A finished run with one validation point and the given downstream proxy.
TrainRun run_with(const std::string& size, const ModelConfig& m, Projection p, std::uint64_t seed,
                  double accuracy, double bpb, std::size_t items = 200) {
  TrainRun r;
  r.name = size + "-" + projection_name(p) + "-s" + std::to_string(seed);
  r.dir = r.name;
  r.size = size;
  r.proj = p;
  r.seed = seed;
  r.model = m;
  r.model.projection = p;
  r.steps_total = r.steps_done = 10;
  r.val.push_back({10, 1000, 1e9, 1, 2.0});
  Downstream& d = r.downstream;
  d.measured = d.cloze = true;
  d.items = items;
  d.correct = std::size_t(std::lround(accuracy * double(items)));
  d.accuracy = double(d.correct) / double(items);
  d.chance = 1.0 / 16;
  d.majority_accuracy = 0.11;
  d.context_bytes = 96;
  d.candidates = {"him", "them", "LORD"};
  d.bits_per_byte = bpb;
  d.bytes = 8192;
  return r;
}

// Two sizes, dense, wht and identity, two seeds. Seeds differ by `jitter` in accuracy
// and by bpb_jitter in bits per byte; wht is dense plus (d_acc, d_bpb) at size `at`
// (both sizes when at is empty).
Data data_with(double d_acc, double d_bpb, const std::string& at = "", int seeds = 2,
               double jitter = 0.02, double bpb_jitter = 0.01) {
  Data d;
  for (const auto& [name, m] :
       {std::pair<std::string, ModelConfig>{"small", shape(2, 64)}, {"large", shape(4, 128)}})
    for (int s = 1; s <= seeds; ++s) {
      const double acc = 0.20 + jitter * (s - 1), bpb = 2.5 + bpb_jitter * (s - 1);
      const bool shifted = at.empty() || at == name;
      d.runs.push_back(run_with(name, m, Projection::dense, std::uint64_t(s), acc, bpb));
      d.runs.push_back(run_with(name, m, Projection::wht, std::uint64_t(s),
                                acc + (shifted ? d_acc : 0), bpb + (shifted ? d_bpb : 0)));
      d.runs.push_back(
          run_with(name, m, Projection::identity, std::uint64_t(s), acc - 0.05, bpb + 0.1));
    }
  return d;
}

Claim claim_of(const Data& d) {
  for (const Claim& c : decide_claims(d))
    if (c.id == "downstream") return c;
  ADD_FAILURE() << "no downstream claim";
  return {};
}

TEST(ReportDownstream, ComparableWithinTheNoiseHolds) {
  // wht 0.01 below in accuracy (noise 0.02), 0.005 above in bits per byte (noise 0.01).
  const Claim c = claim_of(data_with(-0.01, 0.005));
  EXPECT_EQ(c.verdict, Verdict::held) << c.ours;
  EXPECT_EQ(c.claim, "Comparable downstream performance");
  EXPECT_NE(c.ours.find("small: cloze wht"), std::string::npos) << c.ours;
  EXPECT_NE(c.rule.find("1/items"), std::string::npos);
  // Better is comparable too.
  EXPECT_EQ(claim_of(data_with(0.1, -0.2)).verdict, Verdict::held);
}

TEST(ReportDownstream, WorseBeyondTheNoiseAtOneSizeDoesNotHold) {
  EXPECT_EQ(claim_of(data_with(-0.05, 0, "large")).verdict, Verdict::not_held);
  // Bits per byte worse beyond its noise, the accuracy the same.
  EXPECT_EQ(claim_of(data_with(0, 0.05, "small")).verdict, Verdict::not_held);
}

TEST(ReportDownstream, OneSeedIsInconclusiveAndNoDataIsNotMeasured) {
  const Claim one = claim_of(data_with(-0.3, 0.5, "", 1));
  EXPECT_EQ(one.verdict, Verdict::inconclusive) << one.ours;
  EXPECT_NE(one.ours.find("noise unknown"), std::string::npos) << one.ours;

  Data none = data_with(0, 0);
  for (TrainRun& r : none.runs) r.downstream = {};
  const Claim c = claim_of(none);
  EXPECT_EQ(c.verdict, Verdict::not_measured);
  EXPECT_NE(c.ours.find("not measured"), std::string::npos);
  EXPECT_TRUE(downstream_arms(none).empty());

  Data skipped = data_with(0, 0);
  for (TrainRun& r : skipped.runs) {
    r.downstream.cloze = false;
    r.downstream.cloze_skipped = "the data's tokenizer is not bytes";
  }
  const Claim s = claim_of(skipped);
  EXPECT_EQ(s.verdict, Verdict::not_measured);
  EXPECT_NE(s.ours.find("not bytes"), std::string::npos) << s.ours;
}

TEST(ReportDownstream, TheAccuracyNoiseIsAtLeastOneItem) {
  // Seeds agree exactly: the noise is one item's worth, 1/200. One item fewer right is
  // within it, two are not.
  EXPECT_EQ(claim_of(data_with(-1.0 / 200, 0, "", 2, 0, 0.01)).verdict, Verdict::held);
  EXPECT_EQ(claim_of(data_with(-2.0 / 200, 0, "", 2, 0, 0.01)).verdict, Verdict::not_held);
}

TEST(ReportDownstream, ArmsAreMeansAndSpreadsPerSizeAndVariant) {
  Data d = data_with(0.03, -0.02);
  // A wht run of the other scale init is an arm of its own.
  TrainRun extra = run_with("large", shape(4, 128), Projection::wht, 1, 0.1, 3.0);
  extra.scale_init = ScaleInit::one;
  d.runs.push_back(extra);
  const std::vector<DownstreamArm> arms = downstream_arms(d);
  ASSERT_EQ(arms.size(), 7u);  // small: 3 variants, large: 4
  EXPECT_EQ(arms[0].size, "small");
  EXPECT_EQ(arms[0].label, "dense");
  EXPECT_EQ(arms[0].seeds, 2);
  EXPECT_NEAR(arms[0].accuracy_mean, 0.21, 1e-9);
  EXPECT_NEAR(arms[0].accuracy_spread, 0.02, 1e-9);
  EXPECT_NEAR(arms[0].bpb_mean, 2.505, 1e-9);
  EXPECT_NEAR(arms[0].bpb_spread, 0.01, 1e-9);
  EXPECT_EQ(arms[1].label, "wht");
  EXPECT_NEAR(arms[1].accuracy_mean, 0.24, 1e-9);
  EXPECT_NEAR(arms[1].bpb_mean, 2.485, 1e-9);
  EXPECT_DOUBLE_EQ(arms[1].chance, 1.0 / 16);
  EXPECT_EQ(arms[1].items, 200u);
  EXPECT_EQ(arms[5].label, "wht, scale one");
  EXPECT_EQ(arms[5].seeds, 1);
  EXPECT_TRUE(std::isnan(arms[5].accuracy_spread));
  EXPECT_EQ(arms[6].label, "identity");
}

class ReportDownstreamFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("whtlm-report-downstream-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(ReportDownstreamFiles, ARunsDownstreamJsonIsReadAndADamagedOneWarned) {
  // A real (tiny) training run, so that report::load reads it as it reads any.
  std::string text = "\n";
  for (int i = 0; i < 400; ++i) text += "and he said unto him.\n";
  io::write_file_atomic((dir_ / "corpus.txt").string(), text);
  TrainOptions t;
  t.model = shape(1, 32);
  t.model.max_seq = 32;
  t.data.path = (dir_ / "corpus.txt").string();
  t.data.chunk_tokens = 256;
  t.batch = 2;
  t.seq = 16;
  t.steps = 2;
  t.eval_every = 0;
  t.eval_batches = 1;
  t.threads = 1;
  t.progress = false;
  t.out = (dir_ / "run").string();
  train(t);

  downstream::Result r;
  r.candidates = {"him", "them"};
  r.candidate_counts = {30, 20};
  r.predictions = {12, 28};
  r.items = 40;
  r.correct = 10;
  r.accuracy = 0.25;
  r.chance = 0.5;
  r.majority_accuracy = 0.6;
  r.context_bytes = 16;
  r.bits_per_byte = 3.25;
  r.bytes = 512;
  io::write_file_atomic((dir_ / "run" / "downstream.json").string(), downstream::result_to_json(r));
  Data d = load({t.out});
  ASSERT_EQ(d.runs.size(), 1u);
  const Downstream& x = d.runs[0].downstream;
  EXPECT_TRUE(x.measured);
  EXPECT_TRUE(x.cloze);
  EXPECT_EQ(x.items, 40u);
  EXPECT_EQ(x.correct, 10u);
  EXPECT_DOUBLE_EQ(x.accuracy, 0.25);
  EXPECT_DOUBLE_EQ(x.chance, 0.5);
  EXPECT_DOUBLE_EQ(x.bits_per_byte, 3.25);
  EXPECT_EQ(x.candidates, (std::vector<std::string>{"him", "them"}));
  EXPECT_EQ(x.top_answer, "them");
  EXPECT_DOUBLE_EQ(x.top_share, 0.7);
  EXPECT_NE(
      std::find(d.sources.begin(), d.sources.end(), (dir_ / "run" / "downstream.json").string()),
      d.sources.end());

  // Skipped cloze: bits per byte only.
  r.cloze_skipped = "the data's tokenizer is not bytes";
  io::write_file_atomic((dir_ / "run" / "downstream.json").string(), downstream::result_to_json(r));
  d = load({t.out});
  EXPECT_TRUE(d.runs[0].downstream.measured);
  EXPECT_FALSE(d.runs[0].downstream.cloze);
  EXPECT_EQ(d.runs[0].downstream.cloze_skipped, r.cloze_skipped);

  // Damaged: more correct than items. The run stays, the proxy is left out, warned.
  io::write_file_atomic((dir_ / "run" / "downstream.json").string(),
                        R"({"kind": "whtlm downstream", "bits_per_byte": 1, "bytes_scored": 1,
                            "cloze": {"items": 2, "correct": 3}})");
  d = load({t.out});
  ASSERT_EQ(d.runs.size(), 1u);
  EXPECT_FALSE(d.runs[0].downstream.measured);
  bool warned = false;
  for (const std::string& w : d.warnings)
    warned = warned || (w.find("downstream.json") != std::string::npos &&
                        w.find("correct") != std::string::npos);
  EXPECT_TRUE(warned);

  // Damaged the ways fuzzing looks for: no candidates (nothing to name as the commonest
  // answer), and one count above the items (the sum can wrap around to match).
  const std::string head =
      R"({"kind": "whtlm downstream", "bits_per_byte": 1, "bytes_scored": 1, "cloze": {"items": 2,
          "correct": 1, "chance": 0.5, "majority_accuracy": 0.5, "context_bytes": 8, )";
  const std::vector<std::pair<std::string, std::string>> damaged = {
      {R"("candidates": [], "predictions": []}})", "at least one word"},
      {R"("candidates": ["a", "b"], "predictions": [18446744073709551615, 3]}})",
       "a count above items"}};
  for (const auto& [cloze, field] : damaged) {
    io::write_file_atomic((dir_ / "run" / "downstream.json").string(), head + cloze);
    d = load({t.out});
    ASSERT_EQ(d.runs.size(), 1u) << cloze;
    EXPECT_FALSE(d.runs[0].downstream.measured) << cloze;
    ASSERT_FALSE(d.warnings.empty()) << cloze;
    EXPECT_NE(d.warnings.back().find(field), std::string::npos) << d.warnings.back();
  }
}

TEST_F(ReportDownstreamFiles, TheReportHasTheSectionOrSaysNotMeasured) {
  Data d = data_with(0.0, 0.0);
  for (TrainRun& r : d.runs) {
    r.dir = (dir_ / "runs" / r.name).string();
    fs::create_directories(r.dir);
    std::ofstream(fs::path(r.dir) / "downstream.json") << "{}\n";
  }
  WriteOptions o;
  o.out_dir = (dir_ / "report").string();
  write(d, o);
  const std::string md = io::read_file((dir_ / "report" / "report.md").string());
  const std::size_t at = md.find("## Downstream proxy");
  ASSERT_NE(at, std::string::npos);
  EXPECT_LT(at, md.find("## Inference"));
  EXPECT_NE(md.find("K = 3: him, them, LORD"), std::string::npos);
  EXPECT_NE(md.find("LAMBADA"), std::string::npos);
  EXPECT_NE(md.find("| small | wht | 2 | 0.210 | 0.020 | 0.062 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| Comparable downstream performance |"), std::string::npos);
  const std::string html = io::read_file((dir_ / "report" / "index.html").string());
  EXPECT_NE(html.find("<h2>Downstream proxy</h2>"), std::string::npos);
  // Every downstream.json link resolves from the report folder.
  std::size_t links = 0;
  for (std::size_t p = html.find("href=\""); p != std::string::npos;
       p = html.find("href=\"", p + 1)) {
    const std::string ref = html.substr(p + 6, html.find('"', p + 6) - p - 6);
    if (ref.find("downstream.json") == std::string::npos) continue;
    ++links;
    EXPECT_TRUE(fs::exists(dir_ / "report" / ref)) << ref;
  }
  EXPECT_EQ(links, d.runs.size());

  for (TrainRun& r : d.runs) r.downstream = {};
  WriteOptions o2 = o;
  o2.out_dir = (dir_ / "report2").string();
  write(d, o2);
  const std::string md2 = io::read_file((dir_ / "report2" / "report.md").string());
  EXPECT_NE(md2.find("## Downstream proxy\n\nNot measured"), std::string::npos);
  EXPECT_NE(md2.find("| Comparable downstream performance | comparable or slightly better (v1) | "
                     "not measured"),
            std::string::npos);
}

}  // namespace
}  // namespace whtlm::report
