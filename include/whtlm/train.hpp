// Training on the CPU or a GPU: AdamW over the one parameter buffer, the learning-rate
// schedule, and the trainer that runs steps, logs metrics, evaluates and writes
// resumable checkpoints.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "whtlm/data.hpp"
#include "whtlm/device_type.hpp"
#include "whtlm/io.hpp"
#include "whtlm/model.hpp"
#include "whtlm/transformer.hpp"

namespace whtlm {

struct AdamWConfig {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float weight_decay = 0.1f;  // decoupled; only on tensors whose TensorSpec::decay is set
};

// AdamW with its two moment buffers mirroring the parameter buffer.
class AdamW {
 public:
  AdamW(const ParamLayout& layout, AdamWConfig config);
  ~AdamW();
  // One update of the model's parameters from its gradients, on the model's device,
  // with learning rate lr; `step` counts from 1 (bias correction).
  void update(Transformer& model, float lr, std::int64_t step);
  // The same over host arrays laid out like the parameter buffer.
  void update(float* params, const float* grads, float lr, std::int64_t step);
  // The moments in host memory. Once update() has run on a GPU the moments live
  // there: download_state() refreshes these copies, upload_state() sends edits back.
  std::span<float> exp_avg();
  std::span<float> exp_avg_sq();
  void download_state();
  void upload_state();
  const AdamWConfig& config() const { return config_; }

 private:
  struct State;
  const ParamLayout& layout_;
  AdamWConfig config_;
  std::unique_ptr<State> state_;
};

// Linear warm-up to peak over warmup steps, then cosine decay to peak * min_ratio at
// total steps. `step` counts from 1.
double learning_rate(std::int64_t step, std::int64_t warmup, std::int64_t total, double peak,
                     double min_ratio);

// sqrt(sum g^2) over a host buffer, in double; the same result for any thread count.
double global_norm(std::span<const float> g);

// One optimizer step: gradients of the mean loss over `accum` micro-batches of
// batch x seq tokens (inputs, targets: accum * batch * seq), clipping to a global
// norm of `clip` (0: none), then AdamW with learning rate lr. `step` counts from 1.
// A loss or gradient that is NaN or infinite makes no update: the model is left as the
// step found it and NonFiniteStep is thrown, naming the step, the loss, the gradient
// norm and the first tensor (in layout order) whose gradient is not finite.
struct StepResult {
  double loss = 0, grad_norm = 0;
};
struct NonFiniteStep : std::runtime_error {
  NonFiniteStep(std::int64_t at_step, const std::string& what)
      : std::runtime_error(what), step(at_step) {}
  std::int64_t step;
};
StepResult train_step(Transformer& model, AdamW& opt, const std::int32_t* inputs,
                      const std::int32_t* targets, int batch, int seq, int accum, double lr,
                      double clip, std::int64_t step);

// What a training run does at a step whose loss or gradients are not finite.
enum class OnNonFinite {
  stop,  // end the run with an error; its last checkpoint stays resumable
  skip,  // make no update, count the step ("skipped" in metrics.jsonl) and go on
};
// Thrown by train() and resume() when a run ends for non-finite values (at a step with
// --on-nonfinite stop, or past --max-skips): the run diverged. `step` is the step.
struct RunDiverged : std::runtime_error {
  RunDiverged(std::int64_t at_step, const std::string& what)
      : std::runtime_error(what), step(at_step) {}
  std::int64_t step;
};
const char* on_nonfinite_name(OnNonFinite p);
OnNonFinite parse_on_nonfinite(std::string_view name);

struct TrainOptions {
  ModelConfig model;
  std::string preset;  // for the record only
  data::DataOptions data;
  int batch = 16, seq = 256, accum = 1;
  // The length of the run: exactly one of steps, tokens, flops is used (first set).
  std::int64_t steps = 0, tokens = 0;
  double flops = 0;
  double lr = 1e-3, min_lr_ratio = 0.1;
  std::int64_t warmup = -1;  // -1: 5% of the steps, at most 200
  AdamWConfig adamw;
  double clip = 1.0;  // global gradient norm; 0 turns clipping off
  std::uint64_t seed = 1;
  ScaleInit scale_init = kDefaultScaleInit;  // how wht's gamma starts (whtlm/model.hpp)
  std::int64_t eval_every = 100;             // steps; 0: only at the end
  int eval_batches = 8;                      // validation batches per evaluation
  std::int64_t save_every = 0;               // steps; 0: only at the end
  int threads = 0;                           // 0: all available cores
  Device device = Device::cpu;               // where the model trains
  Precision precision = Precision::fp32;     // of the matrix products (bf16: CUDA only)
  OnNonFinite on_nonfinite = OnNonFinite::stop;
  std::int64_t max_skips = 100;  // with skip: more skipped steps than this stop the run
  std::string out;               // the run folder
  bool progress = true;          // progress line on stderr
  bool force = false;            // start in a folder that holds files (whtlm's own are replaced)
  // A checkpoint or run folder whose weights a new run starts from instead of
  // init_weights (its config.json must be `model`); the optimizer, step and schedule
  // start fresh. Recorded in train_state.json; a resumed run reads its own checkpoint,
  // never this one again.
  std::string init_from;
};

struct TrainResult {
  std::int64_t steps = 0;
  double tokens = 0, flops = 0, seconds = 0;
  double final_train_loss = 0;
  std::optional<double> final_val_loss;
  std::int64_t skipped_steps = 0;  // steps skipped for non-finite values (--on-nonfinite skip)
};

// Starts a fresh run in options.out, which must be new or empty unless options.force
// (then whtlm's own files there are replaced and other files left alone). The run
// folder gets its train_state.json before the first step, so a run killed before its
// first checkpoint is still recognisably whtlm's and --resume starts it over.
TrainResult train(const TrainOptions& options);
// Continues the run in `run_dir` from its newest intact checkpoint, with the options it
// was started with; the result is bit-identical to an uninterrupted run at the same
// thread count. Every checkpoint train_state.json names is checked (a folder inside
// the run, its files' sizes and checksums) before anything is read or removed; a
// damaged newest checkpoint falls back to the one before it, saying so on stderr.
// `stop_after` (> 0) stops early after that global step, writing a checkpoint (for
// tests and for splitting long runs). `policy`, when given, replaces the run's
// OnNonFinite setting (and max_skips) from here on.
struct ResumeOverrides {
  std::optional<OnNonFinite> on_nonfinite;
  std::optional<std::int64_t> max_skips;
};
TrainResult resume(const std::string& run_dir, std::int64_t stop_after = 0, bool progress = true,
                   const ResumeOverrides& overrides = {});
// The number of optimizer steps a run's options ask for (from steps, tokens or flops).
std::int64_t total_steps(const TrainOptions& options);

// What a run folder's train_state.json records: the options the run was started with
// and its last checkpoint. std::runtime_error names the file when it is missing or bad.
// A checkpoint of a run: checkpoints/step-N inside the run folder.
struct CheckpointRecord {
  std::int64_t step = 0, skipped_steps = 0;
  double tokens = 0, flops = 0, elapsed_s = 0;
  std::string path;  // "checkpoints/step-N", relative to the run folder
  std::map<std::string, io::FileChecksum> files;  // empty for runs from before checksums
};
struct RunState {
  TrainOptions options;  // options.out is the run folder
  std::int64_t step = 0, total_steps = 0, skipped_steps = 0;
  double tokens = 0, flops = 0, elapsed_s = 0;
  std::string checkpoint;  // relative to the run folder; empty before the first one
  // The checkpoints kept, newest first (the newest is `checkpoint`).
  std::vector<CheckpointRecord> checkpoints;
  bool finished() const { return step >= total_steps; }
};
// Every field is checked (type, bounds, a checkpoint path of the form the trainer
// writes); std::runtime_error names the file and the field.
RunState read_run_state(const std::string& run_dir);
RunState run_state_from_json(const std::string& text, const std::string& source,
                             const std::string& run_dir);

// Same as train(), but stops after global step stop_after with a checkpoint.
TrainResult train_until(const TrainOptions& options, std::int64_t stop_after);

// Mean loss over evaluation windows of `tokens` (all of them when max_windows == 0).
// token_bytes, when given (one entry per id: the token's length in bytes), also sums
// the bytes of the predicted tokens, for bits per byte.
struct EvalResult {
  double loss = 0;
  std::size_t tokens = 0;
  double bytes = 0;              // 0 unless token_bytes was given
  double bits_per_byte() const;  // loss * tokens / bytes / ln 2 (NaN without bytes)
};
EvalResult evaluate(Transformer& model, const data::TokenSource& tokens, int batch, int seq,
                    std::size_t max_windows = 0, std::span<const std::int32_t> token_bytes = {});

}  // namespace whtlm
