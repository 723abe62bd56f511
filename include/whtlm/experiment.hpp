// The main job: train dense, wht and identity models side by side on the same data,
// seeds and token budget at several sizes, measure their inference throughput, and
// write a report that checks the paper's claims against the measurements
// (include/whtlm/report.hpp). An experiment folder holds
//   experiment.json     the plan, the command and the commit that ran it
//   runs/NAME/          one training run each (train's run folder: metrics.jsonl, ...)
//                       and its downstream proxy, downstream.json (whtlm/downstream.hpp)
//   bench/infer.jsonl   the inference sweep over the trained shapes
//   report/             index.html, report.md, figures (written by the report)
// A folder whose experiment was interrupted is continued by running the same command
// again: finished runs are kept, an unfinished one resumes from its last checkpoint.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "whtlm/data.hpp"
#include "whtlm/device_type.hpp"
#include "whtlm/model.hpp"

namespace whtlm::experiment {

// One model size: a shape trained once per projection and seed.
struct Size {
  std::string name;   // short, used in run folder names and figure legends ("xs", "s")
  ModelConfig model;  // its projection field is ignored (the plan's projections are used)
  int seeds = 1;      // seeds first_seed, first_seed + 1, ...
};

struct Plan {
  std::vector<Size> sizes;
  std::vector<Projection> projections{Projection::dense, Projection::wht, Projection::identity};
  // How wht's scale starts (whtlm/model.hpp ScaleInit). The first is the one the claims
  // use; each further one trains wht again at every size and seed, as an ablation the
  // report sets beside it (run folders SIZE-wht-init_NAME-sSEED).
  std::vector<ScaleInit> scale_inits{kDefaultScaleInit};
  // Training: every run of every size sees the same batches for a given seed. A run of
  // size s trains on tokens * (N_s / N_0)^tokens_exponent tokens, N the size's parameter
  // count with a dense projection (so every variant of a size sees the same tokens) and
  // 0 the first size, rounded up to whole steps: exponent 0 gives every size the same
  // tokens, 1 the same tokens per parameter.
  std::int64_t tokens = 0;  // per run of the first size
  double tokens_exponent = 0;
  int batch = 16, seq = 128;
  double lr = 1e-3;
  // Learning-rate sweep before the seeded runs: every size and variant (projection, and
  // each of wht's scale inits) trained once, at seed first_seed, for `lr_sweep_fraction`
  // of the run's steps at lr times each factor, in sweep/SIZE-PROJ[-TAG]-lrRATE. The
  // seeded runs of a size and variant then use the rate whose sweep run ended with the
  // lowest validation loss (report::best_rate states the rule). No factors: no sweep,
  // every run at lr. A sweep run is at least lr_sweep_min_steps steps (all of a shorter
  // run), so that a small size's sweep is not a few steps of warm-up.
  std::vector<double> lr_factors;
  double lr_sweep_fraction = 0.25;
  std::int64_t lr_sweep_min_steps = 20;
  // Validation every eval_every steps; with evals > 0, instead about `evals` times per
  // run whatever its length (every ceil(steps / evals) steps), so that every size gives
  // the scaling fits the same number of points.
  std::int64_t eval_every = 25;
  int evals = 0;
  int eval_batches = 8;
  // Where and in what precision the runs train (bf16: the matrix products, where the
  // device has them; train's --device and --precision).
  Device device = Device::cpu;
  Precision precision = Precision::fp32;
  std::uint64_t first_seed = 1;
  data::DataOptions data;  // path empty: the built-in corpus
  // Inference sweep over the same shapes (random weights: throughput and memory do
  // not depend on the values).
  std::vector<int> bench_batches{1, 4, 16};
  std::vector<int> bench_prompts{64, 256, 1024};
  int bench_decode = 32;
  int bench_repetitions = 3;
  double bench_max_prefill_tokens = 8192;
  int threads = 0;  // 0: all cores
  // A sentence the report's introduction carries: what the plan's budget is and why.
  std::string note;

  std::int64_t tokens_of(const Size& s) const;  // whole steps of batch x seq
  std::int64_t steps(const Size& s) const;
  std::int64_t sweep_steps(const Size& s) const;  // as above
  std::int64_t eval_every_of(const Size& s) const;
};

// The built-in plans: "default" (at most 15 minutes on a 2-core machine), "quick"
// (at most 3). std::invalid_argument lists the names when unknown.
// precision: what the runs will train in; the default plan takes more tokens at bf16,
// whose products leave time for them within the same bound.
Plan builtin_plan(const std::string& name, Precision precision = Precision::fp32);
// `factor` times the training tokens of every size (factor >= 1), for longer runs.
Plan scaled(Plan plan, double factor);

// The plan as JSON and back (a config file for `whtlm experiment --config`). Missing
// fields keep builtin_plan("default")'s values; unknown fields and bad values throw
// std::invalid_argument naming the field.
std::string plan_to_json(const Plan& plan);
Plan plan_from_json(const std::string& text, const std::string& source);
// Checks every field; std::invalid_argument names the first bad one.
void validate(const Plan& plan);

// Name of a run folder under runs/: SIZE-PROJ-sSEED, e.g. "xs-wht-s1"; with a tag
// (an ablation), SIZE-PROJ-TAG-sSEED.
std::string run_name(const std::string& size, Projection p, std::uint64_t seed,
                     const std::string& tag = "");

// One training run of a plan.
struct RunSpec {
  const Size* size = nullptr;  // into the plan
  Projection projection = Projection::dense;
  ScaleInit scale_init = kDefaultScaleInit;
  std::uint64_t seed = 1;
  std::string name;  // its folder under runs/ (under sweep/ for a sweep run)
  double lr = 0;     // sweep runs: the rate tried; seeded runs: 0 until chosen
};
// Every run of a plan, seed-major (every size and variant gets its first seed before
// any second), within a seed by size, then projection, then wht's ablations.
std::vector<RunSpec> plan_runs(const Plan& plan);
// The learning-rate sweep's runs (empty without lr_factors): size-major, then variant
// as in plan_runs, then rate.
std::vector<RunSpec> plan_sweep(const Plan& plan);

struct Options {
  Plan plan;
  std::string out;           // the experiment folder
  std::string command_line;  // recorded in experiment.json and the report
  bool progress = true;      // progress on stderr
  bool bench = true;         // run the inference sweep
  bool downstream = true;    // measure each run's downstream proxy (runs/NAME/downstream.json)
  bool report = true;        // write report/ at the end
};

struct Result {
  int runs_trained = 0, runs_resumed = 0, runs_kept = 0;
  double seconds = 0;
  std::string report_index;  // path of report/index.html when written
};

// Runs (or continues) an experiment. Each training run and the inference sweep run in
// a child process of their own, so each run's peak memory is its own. Refuses a folder
// that holds a different plan, naming the first field that differs.
Result run(const Options& options);

}  // namespace whtlm::experiment
