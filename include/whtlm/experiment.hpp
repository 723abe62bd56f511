// The main job: train dense, wht and identity models side by side on the same data,
// seeds and token budget at several sizes, measure their inference throughput, and
// write a report that checks the paper's claims against the measurements
// (include/whtlm/report.hpp). An experiment folder holds
//   experiment.json     the plan, the command and the commit that ran it
//   runs/NAME/          one training run each (train's run folder: metrics.jsonl, ...)
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
  // Training: every run of every size sees the same batches for a given seed.
  std::int64_t tokens = 0;  // per run
  int batch = 16, seq = 128;
  double lr = 1e-3;
  std::int64_t eval_every = 25;  // steps
  int eval_batches = 8;
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

  std::int64_t steps() const;  // tokens / (batch * seq), rounded up
};

// The built-in plans: "default" (about 15 minutes on a 2-core machine), "quick"
// (about 2 minutes). std::invalid_argument lists the names when unknown.
Plan builtin_plan(const std::string& name);
// `factor` times the training tokens (factor >= 1), for longer runs.
Plan scaled(Plan plan, double factor);

// The plan as JSON and back (a config file for `whtlm experiment --config`). Missing
// fields keep builtin_plan("default")'s values; unknown fields and bad values throw
// std::invalid_argument naming the field.
std::string plan_to_json(const Plan& plan);
Plan plan_from_json(const std::string& text, const std::string& source);
// Checks every field; std::invalid_argument names the first bad one.
void validate(const Plan& plan);

// Name of a run folder under runs/: SIZE-PROJ-sSEED, e.g. "xs-wht-s1".
std::string run_name(const std::string& size, Projection p, std::uint64_t seed);

struct Options {
  Plan plan;
  std::string out;           // the experiment folder
  std::string command_line;  // recorded in experiment.json and the report
  bool progress = true;      // progress on stderr
  bool bench = true;         // run the inference sweep
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
