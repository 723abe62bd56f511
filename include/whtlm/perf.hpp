// Measurement helpers shared by `whtlm bench` and the benchmark programs: robust
// summaries of repeated timings, the Hadamard-vs-dense sweep, the training and
// inference benches with their JSON lines, and the tokenizer's encoding bench.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "whtlm/device_type.hpp"
#include "whtlm/io.hpp"
#include "whtlm/model.hpp"

namespace whtlm::perf {

// Median, minimum and maximum of repeated measurements.
struct Summary {
  double median = 0, min = 0, max = 0;
};
Summary summarize(std::vector<double> samples);

// Wall-clock seconds of `iters` calls of f.
double time_calls(const std::function<void()>& f, std::size_t iters);

// How many calls of f take at least min_seconds (at least 1), after one untimed
// warm-up call.
std::size_t calibrate(const std::function<void()>& f, double min_seconds);

// count floats drawn uniformly from [-amplitude, amplitude], seeded (benchmark inputs).
std::vector<float> random_uniform(std::size_t count, unsigned seed, float amplitude = 1.0f);

// The process's memory (whtlm/io.hpp), which the benches record.
using io::current_rss_bytes;
using io::peak_rss_bytes;

struct FwhtSweepOptions {
  std::vector<std::size_t> sizes{256, 512, 1024, 2048, 4096, 8192};
  std::vector<std::size_t> rows{1, 8, 4096};
  std::vector<double> batch_mib;  // extra cases: as many rows as fill this many MiB
  int threads = 0;                // 0: all available cores
  int repetitions = 7;            // medians over this many interleaved rounds
  double min_seconds = 0.02;      // each timed sample runs at least this long
  bool dense = true;              // also time the dense projection it replaces
  std::function<void(const std::string&)> progress;  // one line per finished case
};

// One (n, rows) case. Times are per call of the whole batch, in nanoseconds.
struct FwhtSweepRow {
  std::size_t n = 0, rows = 0;
  int threads = 0;
  std::string isa;
  Summary fwht_ns;     // in-place orthonormal transform
  Summary fused_ns;    // transform + gamma/beta affine + residual add, one pass
  Summary memcpy_ns;   // copy of the same rows * n floats to another buffer
  Summary unfused_ns;  // in-place transform, then a separate affine + residual pass
  Summary dense_ns;    // X[rows x n] * W[n x n] accumulated into the residual (sgemm)
  bool dense_measured = false;
  double bytes() const { return static_cast<double>(rows * n * sizeof(float)); }
  // GB/s of the median transform and copy, counting each float read once and written
  // once (2 x 4 bytes), as for memcpy.
  double fwht_gb_per_s() const { return 2 * bytes() / fwht_ns.median; }
  double memcpy_gb_per_s() const { return 2 * bytes() / memcpy_ns.median; }
};

std::vector<FwhtSweepRow> fwht_sweep(const FwhtSweepOptions& options);
// The rows as JSON lines, one per row ("bench": "fwht"), as `whtlm bench fwht --json`
// writes them; `repetitions` is the sweep's.
std::string fwht_sweep_jsonl(const std::vector<FwhtSweepRow>& rows, int repetitions);

// A projection's measurement against dense's in the same case: `measured`, its
// throughput over dense's; `expected`, dense's cost per token (FLOPs, or weight bytes
// read) over its own: the ratio if time followed that cost.
struct VsDense {
  double measured = 0, expected = 0;
};

// Training throughput: full optimizer steps (forward, backward, clipping, AdamW) on
// random tokens, the projections of one preset measured in turn (A B C A B C ...)
// so drift on a noisy machine affects all alike.
struct TrainBenchOptions {
  std::vector<std::string> presets{"tiny", "small", "base"};
  std::vector<std::string> projections{"dense", "wht", "identity"};
  int batch = 8, seq = 256, vocab = 8192, threads = 0;
  Device device = Device::cpu;
  Precision precision = Precision::fp32;
  int repetitions = 5;  // rounds; each measures `steps` steps per projection
  int steps = 2;
  std::function<void(const std::string&)> progress;
};
struct TrainBenchRow {
  std::string preset, proj;
  int batch = 0, seq = 0, threads = 0, vocab = 0;
  Summary tokens_per_s;
  double flops_train_per_token = 0;  // analytic (model_cost)
  std::size_t params = 0, activation_bytes = 0;
  std::size_t peak_rss_bytes = 0;  // of the whole process when the row finished
  std::string device;              // the backend's description
  // Peak device memory of this projection's model alone: the most it held at once
  // (weights, gradients, AdamW moments, activations) while it was built and ran its
  // first step, counted by the backend's allocator.
  std::size_t device_peak_bytes = 0;
};
std::vector<TrainBenchRow> train_bench(const TrainBenchOptions& options);
// Row r against the dense row of its preset among `rows` (the last one, when several),
// by training tokens/s and training FLOPs per token; nullopt without one.
std::optional<VsDense> train_vs_dense(const std::vector<TrainBenchRow>& rows,
                                      const TrainBenchRow& r);
// The rows as JSON lines, one per row ("bench": "train"), each with its ratios to dense
// where its preset has a dense row; `options` are those train_bench ran with (rounds,
// steps, precision). What `whtlm bench train --json` writes.
std::string train_bench_jsonl(const std::vector<TrainBenchRow>& rows,
                              const TrainBenchOptions& options);

// Inference throughput: prefill of batch x prompt tokens, then `decode` steps of
// one token per sequence, for each (preset, batch, prompt) case, the projections
// measured in turn in every round. Random weights.
struct InferBenchOptions {
  std::vector<std::string> presets{"tiny", "small", "base", "gpt2-350m"};
  // Named shapes measured instead of the presets when not empty (the projection and
  // vocabulary fields are set by the bench; max_seq by `context` when > 0).
  std::vector<std::pair<std::string, ModelConfig>> models;
  std::vector<std::string> projections{"dense", "wht", "identity"};
  std::vector<int> batches{1, 4, 16, 64};
  std::vector<int> prompts{128, 512, 2048};
  int decode = 32;  // decode steps per measurement
  int vocab = 8192;
  int context = 0;  // 0: each preset's own context; prompts beyond it are skipped
  int threads = 0;
  Device device = Device::cpu;
  Precision precision = Precision::fp32;
  WeightFormat weights = WeightFormat::f32;  // what the sessions' matrix products read
  int repetitions = 3;
  double max_prefill_tokens = 16384;  // cases with more batch x prompt tokens are skipped
  double max_kv_gib = 4;              // cases whose KV cache is larger are skipped
  std::function<void(const std::string&)> progress;
};
struct InferBenchRow {
  std::string preset, proj;
  int batch = 0, prompt = 0, decode = 0, threads = 0;
  Summary prefill_tokens_per_s, decode_tokens_per_s, decode_ms_per_step;
  double weight_bytes = 0;       // all parameters, fp32
  double weight_bytes_read = 0;  // read per decode step (not the embedding table's other rows)
  double prefill_flops_per_token = 0;  // analytic forward FLOPs (head only at the last position)
  std::size_t kv_cache_bytes = 0, activation_bytes = 0;
  std::size_t rss_bytes = 0;       // resident memory while this case's session was alive
  std::size_t peak_rss_bytes = 0;  // of the whole process so far
  std::string device;              // the backend's description
  Precision precision = Precision::fp32;
  WeightFormat weights = WeightFormat::f32;
  std::size_t packed_weight_bytes = 0;  // the session's packed matrix weights (0 for f32)
  // Peak device memory of this case's session (KV cache, activations, packed weights)
  // plus the model's fp32 weights, counted by the backend's allocator.
  std::size_t device_peak_bytes = 0;
};
struct InferBenchResult {
  std::vector<InferBenchRow> rows;
  std::vector<std::string> skipped;  // cases left out, with the reason
};
InferBenchResult infer_bench(const InferBenchOptions& options);
// Row r against the dense row of its case (preset, batch and prompt) among `rows` (the
// last one, when several): prefill by tokens/s and forward FLOPs per token, decode by
// tokens/s and weight bytes read per step; nullopt without one.
struct InferVsDense {
  VsDense prefill, decode;
};
std::optional<InferVsDense> infer_vs_dense(const std::vector<InferBenchRow>& rows,
                                           const InferBenchRow& r);
// The rows as JSON lines, two per row ("phase": "prefill", "decode"), each with its
// ratio to the dense row of the same case and the ratio the FLOPs (prefill) or the
// weight bytes read (decode) predict. `whtlm report` reads these.
std::string infer_bench_jsonl(const InferBenchResult& result, int repetitions);

// Encoding throughput of a tokenizer: the whole text encoded at each thread count in
// turn (sequentially at 1 thread, in parallel otherwise), `repetitions` interleaved
// rounds, every encode starting with empty pre-token caches and checked against one
// untimed sequential encode. Reading the text is not timed. Leaves the kernels'
// thread count at the last one measured.
struct TokenizerBenchOptions {
  std::string tokenizer;  // as tok::load_tokenizer takes it (recorded as given)
  std::string data;       // a text file or folder; empty: the built-in corpus
  std::vector<int> threads{1, 2};
  int repetitions = 5;
  // Each timed encode as it finishes, as one JSON line without its newline (impl,
  // threads, round, seconds, bytes, tokens, mb_per_s, data, tokenizer).
  std::function<void(const std::string&)> json_line;
};
struct TokenizerBenchRow {
  int threads = 0;
  Summary mb_per_s;     // MB (1e6 bytes) of text per second, over the rounds
  double vs_first = 0;  // median over the first thread count's median
};
struct TokenizerBenchResult {
  std::string data;         // the text's path (the built-in corpus's when none was given)
  std::string description;  // the tokenizer's describe()
  std::size_t bytes = 0, tokens = 0;
  int repetitions = 0;
  std::vector<TokenizerBenchRow> rows;  // one per thread count, in the order given
};
TokenizerBenchResult tokenizer_bench(const TokenizerBenchOptions& options);

}  // namespace whtlm::perf
