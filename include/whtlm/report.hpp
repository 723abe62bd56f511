// The experiment report: reads training runs and inference sweeps, decides the
// paper's claims from the measurements, and writes report/ (index.html, report.md,
// figures as SVG, and PNG where a converter is installed). `whtlm report` redraws it
// from existing folders, so runs can be added and compared.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "whtlm/device_type.hpp"
#include "whtlm/model.hpp"
#include "whtlm/perf.hpp"

namespace whtlm::report {

// One validation measurement of a training run.
struct CurvePoint {
  double step = 0, tokens = 0, flops = 0, elapsed_s = 0, val_loss = 0;
};

// A run's downstream proxy, read from its downstream.json (whtlm/downstream.hpp):
// held-out cloze accuracy over K candidate words and bits per byte.
struct Downstream {
  bool measured = false;  // the run has a downstream.json (older folders have none)
  bool cloze = false;     // the cloze was scored (else cloze_skipped says why)
  std::string cloze_skipped;
  double accuracy = 0, chance = 0, majority_accuracy = 0;
  std::size_t items = 0, correct = 0, context_bytes = 0;
  std::vector<std::string> candidates;
  // The answer the model gave most often and its share of the items (a model that
  // always gives one answer scores that word's share, whatever the context).
  std::string top_answer;
  double top_share = 0;
  double bits_per_byte = 0, bytes = 0;
};

struct TrainRun {
  std::string name;  // folder name
  std::string dir;   // path as given, for links
  std::string size;  // size name; runs of one size share a shape
  Projection proj = Projection::dense;
  ScaleInit scale_init = kDefaultScaleInit;  // how wht's scale started (meaningful for wht)
  std::uint64_t seed = 1;
  ModelConfig model;
  int batch = 0, seq = 0;
  double lr = 0;                          // peak learning rate
  Precision precision = Precision::fp32;  // of the matrix products
  std::int64_t steps_done = 0, steps_total = 0;
  std::vector<CurvePoint> val;     // in step order
  double tokens_per_s = 0;         // median over the run's steps
  std::size_t peak_rss_bytes = 0;  // of the run's process
  Downstream downstream;           // runs/NAME/downstream.json, when there is one
  bool finished() const { return steps_total > 0 && steps_done >= steps_total; }
};

// One run of an experiment's learning-rate sweep (its folder under sweep/).
struct SweepRun {
  std::string name, dir, size;
  Projection proj = Projection::dense;
  ScaleInit scale_init = kDefaultScaleInit;
  double lr = 0;
  double final_loss = 0;  // the last validation loss; NaN when none or diverged
  bool diverged = false;  // stopped for non-finite values (diverged.json)
  bool finished = false;  // reached its last step, or diverged
};

// One row of an inference sweep (see perf::InferBenchRow).
struct InferCase {
  std::string size;
  Projection proj = Projection::dense;
  int batch = 0, prompt = 0;
  perf::Summary prefill_tokens_per_s, decode_tokens_per_s;
  double memory_bytes = 0;  // weights + KV cache + activations the session holds
};

struct Data {
  std::vector<TrainRun> runs;
  // The wht runs the claims use are those that started their scale this way: the first
  // of an experiment plan's scale_inits, else the way most wht runs read did (ties: the
  // default). wht runs started otherwise are an ablation, reported beside them.
  ScaleInit wht_init = kDefaultScaleInit;
  std::vector<SweepRun> sweep;  // learning-rate sweeps, in folder order
  std::vector<InferCase> infer;
  std::vector<std::string> sources;  // metrics files and sweep files read, for links
  struct Command {
    std::string command, commit, source;  // as recorded in an experiment.json
  };
  std::vector<Command> commands;
  std::vector<std::string> notes;     // the plans' notes (what a budget is and why)
  std::vector<std::string> warnings;  // e.g. unfinished runs, unreadable lines
};

// Reads experiment folders (experiment.json, runs/, bench/infer.jsonl) and training
// run folders (metrics.jsonl + train_state.json), in the order given. Runs of the same
// shape share a size; a run folder outside an experiment is named after its shape
// ("L4-d256-h4-llama"). std::runtime_error names a path that is neither.
Data load(const std::vector<std::string>& paths);

// ---- Claims -----------------------------------------------------------------------

enum class Verdict { held, not_held, inconclusive, not_measured };
const char* verdict_name(Verdict v);  // "held", "did not hold", "inconclusive", "not measured"

struct Claim {
  std::string id;     // stable key, e.g. "attn_params"
  std::string claim;  // the paper's claim in words
  std::string paper;  // the paper's figure and version
  std::string ours;   // what we measured, with the numbers
  std::string rule;   // how the verdict is decided, noise included
  Verdict verdict = Verdict::not_measured;
};

// Loss at equal training FLOPs, per size: every run's validation loss interpolated
// (linearly in log FLOPs) at the smallest final FLOPs among the size's finished runs.
struct EqualFlops {
  std::string size;
  double flops = 0;  // the common budget
  // Per projection (dense, wht, identity): mean over seeds, spread (max - min) over
  // seeds, and the number of seeds; NaN where no run reached the budget.
  double mean[3], spread[3];
  int seeds[3];
};
std::vector<EqualFlops> loss_at_equal_flops(const Data& data);

// How wht's scale should start, compared per size where the data hold wht runs of more
// than one ScaleInit: every variant's final validation loss (equal tokens) and its loss
// at the common FLOPs budget (the least final FLOPs among the size's dense and wht runs),
// mean over seeds, spread and seeds.
struct InitArm {
  std::string label;  // "dense", "wht (scale one)", ...
  Projection proj = Projection::dense;
  ScaleInit scale_init = ScaleInit::one;
  double final_mean = 0, final_spread = 0, budget_mean = 0, budget_spread = 0;
  int seeds = 0;
};
struct InitComparison {
  std::string size;
  double flops = 0;  // the common budget
  std::vector<InitArm> arms;
};
std::vector<InitComparison> compare_scale_inits(const Data& data);
// Which ScaleInit gives the lower final validation loss, decided from
// compare_scale_inits with the rule it states: `decided` is false when the data do
// not separate them.
struct InitChoice {
  bool decided = false;
  ScaleInit best = kDefaultScaleInit;
  std::string ours, rule;
};
InitChoice choose_scale_init(const Data& data);

// The learning rate a size and variant's seeded runs use, from the sweep: the rate whose
// sweep run ended with the lowest validation loss (a diverged run counts as the worst;
// ties go to the smaller rate). 0 when the variant has no sweep run, or one that has
// not finished, or every one diverged. `init` only matters for wht.
double best_rate(const Data& data, const std::string& size, Projection p, ScaleInit init);
// The rule best_rate applies, in words, for the report.
const char* best_rate_rule();

// The downstream proxy per size and variant (dense, wht with each scale init, identity),
// over the finished runs that measured it: cloze accuracy and bits per byte, mean over
// seeds and spread (max - min; NaN with one seed).
struct DownstreamArm {
  std::string size, label;  // label: "dense", "wht", "wht, scale one", "identity"
  Projection proj = Projection::dense;
  ScaleInit scale_init = kDefaultScaleInit;
  int seeds = 0;        // runs with a downstream.json
  int cloze_seeds = 0;  // of which scored the cloze
  double accuracy_mean = 0, accuracy_spread = 0, bpb_mean = 0, bpb_spread = 0;
  double chance = 0, majority_accuracy = 0;
  std::size_t items = 0;    // the fewest items among its runs
  std::string top_answers;  // each seed's commonest answer and its share ("me 0.98, it 0.61")
};
std::vector<DownstreamArm> downstream_arms(const Data& data);

// Every claim of the paper that the data can speak to, decided from the data.
std::vector<Claim> decide_claims(const Data& data);

// ---- Writing ----------------------------------------------------------------------

struct WriteOptions {
  // Report folder: created, or one whtlm wrote a report into before (it holds
  // .whtlm-report); any other folder with files in it is refused unless `force`, so
  // that no file of the user's is overwritten without asking.
  std::string out_dir;
  bool force = false;
  std::string command_line;  // what produced the data, as recorded
  std::string commit;        // of the build that produced the data
  std::string title = "whtlm experiment: Hadamard vs dense attention output projection";
};

struct Written {
  std::string index_html, report_md;
  std::vector<std::string> figures;  // SVG (and PNG) paths
  std::vector<Claim> claims;
};

// Writes index.html, report.md and the figures; links point at the data files
// relative to the report folder.
Written write(const Data& data, const WriteOptions& options);

// The commit this binary was built from ("unknown" outside a git checkout), with
// "-dirty" when the tree had uncommitted changes.
const char* build_commit();

}  // namespace whtlm::report
