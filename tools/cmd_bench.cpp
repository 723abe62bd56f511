// `whtlm bench fwht|train|infer`: argument parsing and the tables; the measurements
// and their JSON lines are in the library (include/whtlm/perf.hpp).
#include <cstdio>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "commands.hpp"
#include "table.hpp"
#include "whtlm/hadamard.hpp"
#include "whtlm/matmul.hpp"
#include "whtlm/perf.hpp"
#include "whtlm/threads.hpp"

namespace whtlm::cli {
namespace {

struct FwhtArgs {
  perf::FwhtSweepOptions sweep;
  std::vector<int> threads;
  bool no_dense = false;
  JsonOption json;
};

void progress_line(const std::string& line) { std::fprintf(stderr, "  %s\n", line.c_str()); }

void run_fwht(const FwhtArgs& a) {
  for (std::size_t n : a.sweep.sizes) try {
      check_hadamard_size(n);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("--sizes: ") + e.what());
    }
  JsonOutput json(a.json);

  std::fprintf(stderr, "whtlm bench fwht: kernels %s, blas %s\n", isa_name(detected_isa()),
               blas_description().c_str());
  std::fprintf(stderr,
               "times are medians of %d interleaved rounds; GB/s counts each float read once and "
               "written once (2 x 4 bytes), as for memcpy\n",
               a.sweep.repetitions);

  Table t({"n", "rows", "thr", "fwht ns/row", "fwht GB/s", "memcpy GB/s", "fwht/memcpy",
           "fused ns/row", "fused/fwht", "fused/unfused", "dense ns/row", "dense/fused"});
  std::vector<int> threads = a.threads;
  if (threads.empty()) threads.push_back(available_cores());
  for (int th : threads) {
    perf::FwhtSweepOptions o = a.sweep;
    o.threads = th;
    o.dense = !a.no_dense;
    o.progress = progress_line;
    const std::vector<perf::FwhtSweepRow> rows = perf::fwht_sweep(o);
    for (const perf::FwhtSweepRow& r : rows) {
      const double n_rows = static_cast<double>(r.rows);
      t.add({std::to_string(r.n), std::to_string(r.rows), std::to_string(r.threads),
             fmt("%.1f", r.fwht_ns.median / n_rows), fmt("%.1f", r.fwht_gb_per_s()),
             fmt("%.1f", r.memcpy_gb_per_s()), fmt("%.2f", r.fwht_ns.median / r.memcpy_ns.median),
             fmt("%.1f", r.fused_ns.median / n_rows),
             fmt("%.2f", r.fused_ns.median / r.fwht_ns.median),
             fmt("%.2f", r.fused_ns.median / r.unfused_ns.median),
             r.dense_measured ? fmt("%.1f", r.dense_ns.median / n_rows) : "-",
             r.dense_measured ? fmt("%.1f", r.dense_ns.median / r.fused_ns.median) : "-"});
    }
    json.write(perf::fwht_sweep_jsonl(rows, a.sweep.repetitions));
  }
  std::FILE* out = json.text();
  t.print(out);
  std::fprintf(
      out,
      "fwht: in-place orthonormal transform. fused: transform + gamma/beta + residual add, one "
      "pass over memory\n(x read, residual read and written). unfused: the transform, then a "
      "separate "
      "affine + residual pass.\ndense: X[rows x n] * W[n x n] accumulated into the residual by "
      "sgemm, the projection the transform\nreplaces; dense/fused is how many times slower it "
      "is.\n");
}

// A ratio to dense, "0.123", or "-" where the case has no dense row.
std::string ratio_cell(bool has_dense, double ratio) {
  return has_dense ? fmt("%.3f", ratio) : "-";
}

// The options of a bench that runs models (train, infer).
template <class Options>
struct ModelBenchArgs {
  Options o;
  ThreadsOption threads;
  DeviceOptions device;
  JsonOption json;
  std::string weights = "f32";  // bench infer's --weights
  // `o` with the shared options applied, and progress lines on stderr.
  Options options() const {
    Options r = o;
    r.threads = threads.count;
    r.device = device.parsed_device();
    r.precision = device.parsed_precision();
    if constexpr (requires { r.weights; }) r.weights = parse_weight_format(weights);
    r.progress = progress_line;
    return r;
  }
};
using TrainArgs = ModelBenchArgs<perf::TrainBenchOptions>;
using InferArgs = ModelBenchArgs<perf::InferBenchOptions>;

void run_train(const TrainArgs& a) {
  JsonOutput json(a.json);
  const perf::TrainBenchOptions o = a.options();
  std::fprintf(stderr,
               "whtlm bench train: full training steps (forward, backward, clip, AdamW) on random "
               "tokens, batch %d x %d, vocab %d, %s products; %d rounds of %d steps, projections "
               "interleaved\n  blas %s\n  isa %s\n",
               o.batch, o.seq, o.vocab, precision_name(o.precision), o.repetitions, o.steps,
               blas_description().c_str(), isa_summary().c_str());
  const std::vector<perf::TrainBenchRow> rows = perf::train_bench(o);
  Table t({"preset", "proj", "params", "tokens/s", "min", "max", "vs dense", "FLOPs ratio",
           "GFLOP/s", "activations MiB", "peak RSS MiB", "device peak MiB"});
  for (const perf::TrainBenchRow& r : rows) {
    const std::optional<perf::VsDense> vs = perf::train_vs_dense(rows, r);
    const perf::VsDense v = vs.value_or(perf::VsDense{});
    t.add({r.preset, r.proj, fmt("%.2fM", double(r.params) / 1e6),
           fmt("%.0f", r.tokens_per_s.median), fmt("%.0f", r.tokens_per_s.min),
           fmt("%.0f", r.tokens_per_s.max), ratio_cell(bool(vs), v.measured),
           ratio_cell(bool(vs), v.expected),
           fmt("%.1f", r.tokens_per_s.median * r.flops_train_per_token / 1e9),
           fmt("%.0f", double(r.activation_bytes) / 1048576.0),
           fmt("%.0f", double(r.peak_rss_bytes) / 1048576.0),
           fmt("%.0f", double(r.device_peak_bytes) / 1048576.0)});
  }
  json.write(perf::train_bench_jsonl(rows, o));
  std::FILE* out = json.text();
  t.print(out);
  std::fprintf(
      out,
      "tokens/s: median over rounds. vs dense: tokens/s over dense's. FLOPs ratio: dense's "
      "training FLOPs per token over this one's,\nthe speed-up expected if time followed "
      "arithmetic. GFLOP/s: analytic training FLOPs per second. peak RSS: whole process so "
      "far.\ndevice peak: the most this projection's model held at once on its device while "
      "built and stepped\n(weights, gradients, AdamW moments, activations), counted by the "
      "allocator.\n");
}

void run_infer(const InferArgs& a) {
  JsonOutput json(a.json);
  const perf::InferBenchOptions o = a.options();
  std::fprintf(stderr,
               "whtlm bench infer: prefill of batch x prompt tokens, then %d decode steps; random "
               "weights, vocab %d, %s weights, %s products; medians of %d rounds, projections "
               "interleaved\n  blas %s\n  isa %s\n",
               o.decode, o.vocab, weight_format_name(o.weights), precision_name(o.precision),
               o.repetitions, blas_description().c_str(), isa_summary().c_str());
  const perf::InferBenchResult res = perf::infer_bench(o);
  Table t({"preset", "batch", "prompt", "proj", "prefill tok/s", "decode tok/s", "ms/step",
           "prefill vs dense", "(FLOPs)", "decode vs dense", "(bytes)", "weights MiB", "KV MiB",
           "act MiB", "RSS MiB", "device peak MiB"});
  const double mib = 1048576.0;
  for (const perf::InferBenchRow& r : res.rows) {
    const std::optional<perf::InferVsDense> vs = perf::infer_vs_dense(res.rows, r);
    const perf::InferVsDense v = vs.value_or(perf::InferVsDense{});
    t.add({r.preset, std::to_string(r.batch), std::to_string(r.prompt), r.proj,
           fmt("%.0f", r.prefill_tokens_per_s.median), fmt("%.1f", r.decode_tokens_per_s.median),
           fmt("%.2f", r.decode_ms_per_step.median), ratio_cell(bool(vs), v.prefill.measured),
           ratio_cell(bool(vs), v.prefill.expected), ratio_cell(bool(vs), v.decode.measured),
           ratio_cell(bool(vs), v.decode.expected), fmt("%.1f", r.weight_bytes / mib),
           fmt("%.1f", double(r.kv_cache_bytes) / mib),
           fmt("%.1f", double(r.activation_bytes) / mib), fmt("%.0f", double(r.rss_bytes) / mib),
           fmt("%.0f", double(r.device_peak_bytes) / mib)});
  }
  json.write(perf::infer_bench_jsonl(res, o.repetitions));
  std::FILE* out = json.text();
  t.print(out);
  std::fprintf(out,
               "vs dense: this projection's tokens/s over dense's, same case. (FLOPs): dense's "
               "forward FLOPs per prefill token over this one's;\n(bytes): dense's weight bytes "
               "read per decode step over this one's: the speed-ups if time followed arithmetic "
               "or\nweight traffic. KV: the cache for batch x (prompt + decode). RSS: resident "
               "memory while the case ran.\ndevice peak: weights plus the most the session "
               "held at once on the device (KV cache, activations).\n");
  for (const std::string& s : res.skipped) std::fprintf(out, "skipped: %s\n", s.c_str());
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Measure kernels and models");
  bench->require_subcommand(1);

  auto a = std::make_shared<FwhtArgs>();
  auto* f = bench->add_subcommand(
      "fwht", "Hadamard transform vs memcpy and vs the dense projection it replaces");
  f->add_option("--sizes", a->sweep.sizes, "Transform lengths n")
      ->delimiter(',')
      ->check(bounded(limits::hadamard_size))
      ->capture_default_str();
  f->add_option("--rows", a->sweep.rows, "Batch sizes (rows per call)")
      ->delimiter(',')
      ->check(bounded(limits::rows))
      ->capture_default_str();
  f->add_option("--batch-mib", a->sweep.batch_mib,
                "Also run batches of this many MiB per size (e.g. 16,256: in and out of cache)")
      ->delimiter(',')
      ->check(bounded(limits::batch_mib));
  add_thread_counts_option(f, &a->threads, "Thread counts to run (default: all cores)");
  f->add_option("--reps", a->sweep.repetitions, "Interleaved rounds per case (medians)")
      ->check(bounded(limits::repetitions))
      ->capture_default_str();
  f->add_option("--min-time", a->sweep.min_seconds, "Seconds each timed sample lasts at least")
      ->check(bounded(limits::min_seconds))
      ->capture_default_str();
  f->add_flag("--no-dense", a->no_dense, "Skip the dense sgemm comparison");
  add_json_option(f, &a->json, "case");
  f->callback([a] { run_fwht(*a); });

  auto ta = std::make_shared<TrainArgs>();
  auto* tr = bench->add_subcommand(
      "train", "Training tokens/s of dense, wht and identity side by side (random tokens)");
  tr->add_option("--preset", ta->o.presets, "Presets to measure")
      ->delimiter(',')
      ->capture_default_str();
  tr->add_option("--proj", ta->o.projections, "Output projections to measure")
      ->delimiter(',')
      ->capture_default_str();
  tr->add_option("--batch", ta->o.batch, "Sequences per step")
      ->check(bounded(limits::batch))
      ->capture_default_str();
  tr->add_option("--seq", ta->o.seq, "Tokens per sequence")
      ->check(bounded(limits::seq))
      ->capture_default_str();
  tr->add_option("--vocab", ta->o.vocab, "Vocabulary size of the random tokens")
      ->check(bounded(limits::vocab_size))
      ->capture_default_str();
  add_threads_option(tr, &ta->threads);
  add_device_options(tr, &ta->device);
  tr->add_option("--reps", ta->o.repetitions, "Rounds (medians over them)")
      ->check(bounded(limits::repetitions))
      ->capture_default_str();
  tr->add_option("--steps", ta->o.steps, "Optimizer steps per round and projection")
      ->check(bounded(limits::bench_steps))
      ->capture_default_str();
  add_json_option(tr, &ta->json, "measurement");
  tr->callback([ta] { run_train(*ta); });

  auto ia = std::make_shared<InferArgs>();
  auto* inf = bench->add_subcommand(
      "infer", "Prefill and decode tokens/s of dense, wht and identity side by side");
  inf->add_option("--preset", ia->o.presets, "Presets (random weights)")
      ->delimiter(',')
      ->capture_default_str();
  inf->add_option("--proj", ia->o.projections, "Output projections")
      ->delimiter(',')
      ->capture_default_str();
  inf->add_option("--batch", ia->o.batches, "Batch sizes")
      ->delimiter(',')
      ->check(bounded(limits::batch))
      ->capture_default_str();
  inf->add_option("--prompt", ia->o.prompts, "Prompt lengths")
      ->delimiter(',')
      ->check(bounded(limits::seq))
      ->capture_default_str();
  inf->add_option("--decode", ia->o.decode, "Decode steps per measurement")
      ->check(bounded(limits::decode_steps))
      ->capture_default_str();
  inf->add_option("--vocab", ia->o.vocab, "Vocabulary size")
      ->check(bounded(limits::vocab_size))
      ->capture_default_str();
  inf->add_option("--context", ia->o.context,
                  "Context length for every preset (default: each preset's own)")
      ->check(bounded(limits::bench_context));
  add_threads_option(inf, &ia->threads);
  add_device_options(inf, &ia->device);
  add_weights_option(inf, &ia->weights);
  inf->add_option("--reps", ia->o.repetitions, "Rounds (medians over them)")
      ->check(bounded(limits::repetitions))
      ->capture_default_str();
  inf->add_option("--max-prefill-tokens", ia->o.max_prefill_tokens,
                  "Skip cases with more batch x prompt tokens")
      ->check(bounded(limits::max_prefill_tokens))
      ->capture_default_str();
  inf->add_option("--max-kv-gib", ia->o.max_kv_gib, "Skip cases whose KV cache is larger")
      ->check(bounded(limits::max_kv_gib))
      ->capture_default_str();
  add_json_option(inf, &ia->json, "measurement");
  inf->callback([ia] { run_infer(*ia); });
}

}  // namespace whtlm::cli
