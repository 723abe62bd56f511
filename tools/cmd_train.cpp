// `whtlm train`: argument parsing only; the trainer lives in the library
// (include/whtlm/train.hpp).
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>

#include "commands.hpp"
#include "whtlm/checkpoint.hpp"
#include "whtlm/data.hpp"
#include "whtlm/tokenizer.hpp"
#include "whtlm/train.hpp"

namespace whtlm::cli {
namespace {

struct TrainArgs {
  TrainOptions o;
  ModelOptions model;
  ThreadsOption threads;
  DeviceOptions device;
  std::string resume, init;
  std::int64_t stop_after = 0;
  double tokens = 0;
  bool quiet = false;
  std::string on_nonfinite = "stop";
  CLI::Option *on_nonfinite_opt = nullptr, *max_skips_opt = nullptr, *tokenizer_opt = nullptr;
};

void print_result(const TrainResult& r, const std::string& out) {
  std::fprintf(stderr,
               "whtlm train: %lld steps, %.3g tokens, %.3g FLOPs in %.1f s; train loss %.4f",
               static_cast<long long>(r.steps), r.tokens, r.flops, r.seconds, r.final_train_loss);
  if (r.final_val_loss) std::fprintf(stderr, ", val loss %.4f", *r.final_val_loss);
  if (r.skipped_steps > 0)
    std::fprintf(stderr, "; %lld steps skipped for non-finite values",
                 static_cast<long long>(r.skipped_steps));
  std::fprintf(stderr, "\n  run: %s (model.safetensors, config.json, metrics.jsonl)\n",
               out.c_str());
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand(
      "train",
      "Train a model from scratch on text or llm.c token shards (default: the built-in King "
      "James Bible corpus), or continue a run with --resume");
  add_model_options(cmd, &a->model);
  TrainOptions& o = a->o;
  cmd->add_option("--data", o.data.path,
                  "Training data: a text file, a folder of text files, an llm.c .bin shard or a "
                  "folder of shards (default: the built-in corpus)");
  cmd->add_option("--val-data", o.data.val_path,
                  "Separate validation data (default: a deterministic share of --data)");
  cmd->add_option("--val-fraction", o.data.val_fraction, "Share of --data held out for validation")
      ->check(bounded(limits::val_fraction))
      ->capture_default_str();
  a->tokenizer_opt =
      cmd->add_option("--tokenizer", o.data.tokenizer,
                      "How text is tokenized: byte, a tokenizer.json, or a folder with GPT-2's "
                      "encoder.json + vocab.bpe; the vocabulary follows it unless --vocab is "
                      "given. Checkpoints carry it as tokenizer.json (with --init: the "
                      "checkpoint's, unless given)")
          ->capture_default_str();
  cmd->add_option("--chunk-tokens", o.data.chunk_tokens,
                  "Granularity of the train/validation split, in tokens")
      ->check(bounded(limits::chunk_tokens))
      ->capture_default_str();
  cmd->add_option("--steps", o.steps, "Length of the run in optimizer steps")
      ->check(bounded(limits::steps));
  cmd->add_option("--tokens", a->tokens, "Length of the run in training tokens (e.g. 5e6)")
      ->check(bounded(limits::tokens));
  cmd->add_option("--flops", o.flops, "Length of the run in training FLOPs (e.g. 1e15)")
      ->check(bounded(limits::flops));
  cmd->add_option("--batch", o.batch, "Sequences per micro-batch")
      ->check(bounded(limits::batch))
      ->capture_default_str();
  cmd->add_option("--seq", a->model.seq, "Tokens per sequence (default: the preset's context)")
      ->check(bounded(limits::seq));
  cmd->add_option("--accum", o.accum, "Micro-batches per optimizer step")
      ->check(bounded(limits::accum))
      ->capture_default_str();
  cmd->add_option("--lr", o.lr, "Peak learning rate")
      ->check(bounded(limits::lr))
      ->capture_default_str();
  cmd->add_option("--min-lr-ratio", o.min_lr_ratio, "Final learning rate as a share of the peak")
      ->check(bounded(limits::min_lr_ratio))
      ->capture_default_str();
  cmd->add_option("--warmup", o.warmup, "Warm-up steps (default: 5% of the steps, at most 200)")
      ->check(bounded(limits::warmup));
  cmd->add_option("--weight-decay", o.adamw.weight_decay, "AdamW decoupled weight decay")
      ->check(bounded(limits::weight_decay))
      ->capture_default_str();
  cmd->add_option("--clip", o.clip, "Clip the global gradient norm to this (0: off)")
      ->check(bounded(limits::clip))
      ->capture_default_str();
  cmd->add_option("--seed", o.seed, "Seed of the weights and of the batches")
      ->check(bounded(limits::seed))
      ->capture_default_str();
  cmd->add_option("--eval-every", o.eval_every, "Validation loss every N steps (0: at the end)")
      ->check(bounded(limits::every))
      ->capture_default_str();
  cmd->add_option("--eval-batches", o.eval_batches, "Batches per validation")
      ->check(bounded(limits::eval_batches))
      ->capture_default_str();
  cmd->add_option("--save-every", o.save_every, "Checkpoint every N steps (0: at the end)")
      ->check(bounded(limits::every))
      ->capture_default_str();
  add_threads_option(cmd, &a->threads);
  add_device_options(cmd, &a->device);
  cmd->add_option("--out", o.out, "Run folder: checkpoint, metrics.jsonl, state (new or empty)");
  cmd->add_flag("--force", o.force,
                "Start a new run in an --out folder that holds files: whtlm's own files there "
                "are replaced, others left alone");
  cmd->add_option("--init", a->init,
                  "Start a new run from this checkpoint's (or run folder's) weights: the model "
                  "is the checkpoint's, so --preset, --proj, --vocab, --layers, --d-model, "
                  "--heads, --kv-heads and --scale-init are refused with it (`whtlm convert` "
                  "changes the projection); the optimizer, step count and learning-rate "
                  "schedule start fresh; its tokenizer is used unless --tokenizer is given. "
                  "--resume of the new run continues from the run's own checkpoints");
  cmd->add_option("--resume", a->resume,
                  "Continue the run in this folder from its newest intact checkpoint (the run's "
                  "own options are used; only --stop-after, --quiet, --on-nonfinite and "
                  "--max-skips may be given with it)");
  cmd->add_option("--stop-after", a->stop_after,
                  "Stop after this step with a checkpoint; --resume continues the same run")
      ->check(bounded(limits::stop_after));
  a->on_nonfinite_opt =
      cmd->add_option("--on-nonfinite", a->on_nonfinite,
                      "At a step whose loss or gradients are NaN or infinite: stop (the last "
                      "checkpoint stays resumable) or skip the step (no update; counted in "
                      "metrics.jsonl)")
          ->check(CLI::IsMember({"stop", "skip"}))
          ->capture_default_str();
  a->max_skips_opt = cmd->add_option("--max-skips", o.max_skips,
                                     "With --on-nonfinite skip: stop once more steps than this "
                                     "have been skipped")
                         ->check(bounded(limits::skip_limit))
                         ->capture_default_str();
  cmd->add_flag("--quiet", a->quiet, "No progress output");
  cmd->callback([a, cmd] {
    if (!a->resume.empty()) {
      // The run's options are its own: any other option given here would be ignored, so
      // it is refused rather than silently dropped.
      for (const CLI::Option* opt : cmd->get_options()) {
        const std::string name = opt->get_name();
        if (opt->count() == 0 || name == "--resume" || name == "--stop-after" ||
            name == "--quiet" || name == "--on-nonfinite" || name == "--max-skips" ||
            name == "--help")
          continue;
        throw std::invalid_argument(name +
                                    " cannot be given with --resume: a resumed run keeps "
                                    "the options it was started with (only --stop-after, "
                                    "--quiet, --on-nonfinite and --max-skips may change)");
      }
      ResumeOverrides overrides;
      if (a->on_nonfinite_opt->count() > 0)
        overrides.on_nonfinite = parse_on_nonfinite(a->on_nonfinite);
      if (a->max_skips_opt->count() > 0) overrides.max_skips = a->o.max_skips;
      print_result(resume(a->resume, a->stop_after, !a->quiet, overrides), a->resume);
      return;
    }
    TrainOptions opts = a->o;
    ModelOptions m = a->model;
    if (!a->init.empty()) {
      // The model is the checkpoint's: an option that would shape another is refused
      // rather than silently dropped.
      for (const char* name : {"--preset", "--proj", "--vocab", "--layers", "--d-model", "--heads",
                               "--kv-heads", "--scale-init"})
        if (cmd->get_option(name)->count() > 0)
          throw std::invalid_argument(std::string(name) + " cannot be given with --init: the " +
                                      "model is the checkpoint's (to change its projection, " +
                                      "`whtlm convert` it first)");
      opts.model = read_config(a->init);
      opts.init_from = a->init;
      if (a->tokenizer_opt->count() == 0) opts.data.tokenizer = checkpoint_tokenizer(a->init);
    } else {
      if (m.vocab == 0) {  // the vocabulary follows the data's tokenizer
        const int v = data::data_tokenizer(opts.data).vocab_size();
        if (v != 256) m.vocab = v;
      }
      opts.model = model_from(m);
      opts.preset = m.preset;
    }
    opts.threads = a->threads.count;
    opts.device = a->device.parsed_device();
    opts.precision = a->device.parsed_precision();
    opts.seq = m.seq > 0 ? m.seq : opts.model.max_seq;
    opts.tokens = static_cast<std::int64_t>(a->tokens);
    opts.on_nonfinite = parse_on_nonfinite(a->on_nonfinite);
    opts.scale_init = parse_scale_init(m.scale_init);
    opts.progress = !a->quiet;
    print_result(train_until(opts, a->stop_after), opts.out);
  });
}

}  // namespace whtlm::cli
