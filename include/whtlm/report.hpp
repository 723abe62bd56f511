// The experiment report: reads training runs and inference sweeps, decides the
// paper's claims from the measurements, and writes report/ (index.html, report.md,
// figures as SVG, and PNG where a converter is installed). `whtlm report` redraws it
// from existing folders, so runs can be added and compared.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "whtlm/model.hpp"
#include "whtlm/perf.hpp"

namespace whtlm::report {

// One validation measurement of a training run.
struct CurvePoint {
  double step = 0, tokens = 0, flops = 0, elapsed_s = 0, val_loss = 0;
};

struct TrainRun {
  std::string name;  // folder name
  std::string dir;   // path as given, for links
  std::string size;  // size name; runs of one size share a shape
  Projection proj = Projection::dense;
  std::uint64_t seed = 1;
  ModelConfig model;
  int batch = 0, seq = 0;
  std::int64_t steps_done = 0, steps_total = 0;
  std::vector<CurvePoint> val;     // in step order
  double tokens_per_s = 0;         // median over the run's steps
  std::size_t peak_rss_bytes = 0;  // of the run's process
  bool finished() const { return steps_total > 0 && steps_done >= steps_total; }
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
  std::vector<InferCase> infer;
  std::vector<std::string> sources;  // metrics files and sweep files read, for links
  struct Command {
    std::string command, commit, source;  // as recorded in an experiment.json
  };
  std::vector<Command> commands;
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
