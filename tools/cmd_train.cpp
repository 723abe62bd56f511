// `whtlm train` and `whtlm eval`: argument parsing only; the trainer and the
// evaluation live in the library (include/whtlm/train.hpp).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "commands.hpp"
#include "whtlm/checkpoint.hpp"
#include "whtlm/data.hpp"
#include "whtlm/threads.hpp"
#include "whtlm/tokenizer.hpp"
#include "whtlm/train.hpp"

namespace whtlm::cli {
namespace {

struct TrainArgs {
  TrainOptions o;
  std::string preset = "tiny", proj = "dense", resume, device = "cpu", precision = "fp32";
  int vocab = 0, layers = 0, d_model = 0, heads = 0, kv_heads = 0, seq = 0;
  std::int64_t stop_after = 0;
  double tokens = 0;
  bool quiet = false;
  std::string on_nonfinite = "stop", scale_init = scale_init_name(kDefaultScaleInit);
  CLI::Option *on_nonfinite_opt = nullptr, *max_skips_opt = nullptr;
};

std::string preset_list() {
  std::string s;
  for (const std::string& p : preset_names()) s += (s.empty() ? "" : ", ") + p;
  return s;
}

void add_model_options(CLI::App* cmd, TrainArgs& a) {
  cmd->add_option("--preset", a.preset, "Model shape: " + preset_list())->capture_default_str();
  cmd->add_option("--proj", a.proj, "Attention output projection: dense, wht or identity")
      ->capture_default_str();
  cmd->add_option("--vocab", a.vocab,
                  "Vocabulary size (default 256, byte-level; larger for token shards)")
      ->check(bounded(limits::vocab_size));
  cmd->add_option("--layers", a.layers, "Override the preset's number of layers")
      ->check(bounded(limits::n_layer));
  cmd->add_option("--d-model", a.d_model, "Override the preset's width")
      ->check(bounded(limits::d_model));
  cmd->add_option("--heads", a.heads, "Override the preset's attention heads")
      ->check(bounded(limits::n_head));
  cmd->add_option("--kv-heads", a.kv_heads, "Override the key/value heads (llama)")
      ->check(bounded(limits::n_head));
  cmd->add_option("--scale-init", a.scale_init,
                  "How wht's per-channel scale starts: matched (the spread a dense output "
                  "projection starts with, 0.02/sqrt(2 layers)*sqrt(d)) or one")
      ->check(CLI::IsMember({"one", "matched"}))
      ->capture_default_str();
}

// The model the options describe; a bad value is refused naming its option.
ModelConfig model_from(const TrainArgs& a, bool exact_seq = false) {
  ModelConfig c;
  try {
    c = preset(a.preset);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("--preset: ") + e.what());
  }
  try {
    c.projection = parse_projection(a.proj);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("--proj: ") + e.what());
  }
  if (a.vocab > 0) c.vocab_size = a.vocab;
  if (a.layers > 0) c.n_layer = a.layers;
  if (a.d_model > 0) c.d_model = a.d_model;
  if (a.heads > 0) c.n_head = c.n_kv_head = a.heads;
  if (a.kv_heads > 0) c.n_kv_head = a.kv_heads;
  if (a.seq > c.max_seq || (exact_seq && a.seq > 0)) c.max_seq = a.seq;
  try {
    c.validate();
  } catch (const ConfigError& e) {
    throw std::invalid_argument(renamed(e, {{"n_layer", "--layers"},
                                            {"d_model", "--d-model"},
                                            {"n_head", "--heads"},
                                            {"n_kv_head", "--kv-heads"},
                                            {"vocab_size", "--vocab"},
                                            {"max_seq", "--seq"}}));
  }
  return c;
}

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

struct EvalArgs {
  std::string checkpoint, data, val_data, split = "val", tokenizer;
  int batch = 8, seq = 0, threads = 0;
  std::size_t max_windows = 0;
  bool json = false;
};

void run_eval(const EvalArgs& a) {
  if (a.split != "val" && a.split != "train" && a.split != "all")
    throw std::invalid_argument("--split: expected val, train or all, got '" + a.split + "'");
  use_threads(a.threads);
  auto model = load_model(a.checkpoint);
  const ModelConfig& c = model->config();
  const int seq = a.seq > 0 ? a.seq : c.max_seq;
  if (seq > c.max_seq)
    throw std::invalid_argument("--seq " + std::to_string(seq) + " exceeds the model's context " +
                                std::to_string(c.max_seq));
  // Text is tokenized as the checkpoint was trained (its tokenizer.json), unless told.
  const std::string spec = a.tokenizer.empty() ? checkpoint_tokenizer(a.checkpoint) : a.tokenizer;
  data::TokenSource tokens;
  std::string described;
  if (a.split == "all") {
    data::TokenStream s = data::read_token_stream(
        a.data.empty() ? data::default_corpus_path() : a.data, c.vocab_size, spec);
    tokens = std::move(s.tokens);
    described = s.name;
  } else {
    data::DataOptions d;
    d.path = a.data;
    d.val_path = a.val_data;
    d.vocab_size = c.vocab_size;
    d.tokenizer = spec;
    data::TokenSplit split = data::load_tokens(d);
    tokens = a.split == "val" ? split.val : split.train;
    described = split.description + ", " + a.split + " split";
  }
  // Bytes per token id, for bits per byte (ids the tokenizer lacks count 0 bytes).
  data::DataOptions spec_only;
  spec_only.tokenizer = spec;
  spec_only.path = a.data;
  const tok::Tokenizer t = data::data_tokenizer(spec_only);
  std::vector<std::int32_t> lengths(static_cast<std::size_t>(c.vocab_size), 0);
  for (int id = 0; id < std::min(c.vocab_size, t.vocab_size()); ++id)
    lengths[std::size_t(id)] = static_cast<std::int32_t>(t.token_bytes(id).size());
  EvalResult r;
  try {
    r = evaluate(*model, tokens, a.batch, seq, a.max_windows, lengths);
  } catch (const std::invalid_argument& e) {  // too little data: name it
    throw std::invalid_argument(described + ": " + e.what());
  }
  if (a.json) {
    nlohmann::json j{{"checkpoint", a.checkpoint},
                     {"data", described},
                     {"tokenizer", spec},
                     {"tokens", r.tokens},
                     {"bytes", r.bytes},
                     {"loss", r.loss},
                     {"perplexity", std::exp(r.loss)},
                     {"bits_per_byte", r.bits_per_byte()},
                     {"seq", seq}};
    std::cout << j.dump() << "\n";
  } else {
    std::printf(
        "%s on %s: %zu tokens (%.0f bytes), loss %.4f, perplexity %.3f, %.4f bits per "
        "byte\n",
        a.checkpoint.c_str(), described.c_str(), r.tokens, r.bytes, r.loss, std::exp(r.loss),
        r.bits_per_byte());
  }
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand(
      "train",
      "Train a model from scratch on text or llm.c token shards (default: the built-in King "
      "James Bible corpus), or continue a run with --resume");
  add_model_options(cmd, *a);
  TrainOptions& o = a->o;
  cmd->add_option("--data", o.data.path,
                  "Training data: a text file, a folder of text files, an llm.c .bin shard or a "
                  "folder of shards (default: the built-in corpus)");
  cmd->add_option("--val-data", o.data.val_path,
                  "Separate validation data (default: a deterministic share of --data)");
  cmd->add_option("--val-fraction", o.data.val_fraction, "Share of --data held out for validation")
      ->check(bounded(limits::val_fraction))
      ->capture_default_str();
  cmd->add_option("--tokenizer", o.data.tokenizer,
                  "How text is tokenized: byte, a tokenizer.json, or a folder with GPT-2's "
                  "encoder.json + vocab.bpe; the vocabulary follows it unless --vocab is given. "
                  "Checkpoints carry it as tokenizer.json")
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
  cmd->add_option("--seq", a->seq, "Tokens per sequence (default: the preset's context)")
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
  add_threads_option(cmd, &o.threads);
  add_device_options(cmd, &a->device, &a->precision);
  cmd->add_option("--out", o.out, "Run folder: checkpoint, metrics.jsonl, state (new or empty)");
  cmd->add_flag("--force", o.force,
                "Start a new run in an --out folder that holds files: whtlm's own files there "
                "are replaced, others left alone");
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
    if (a->vocab == 0) {  // the vocabulary follows the data's tokenizer
      const int v = data::data_tokenizer(opts.data).vocab_size();
      if (v != 256) a->vocab = v;
    }
    opts.model = model_from(*a);
    opts.preset = a->preset;
    opts.device = parse_device(a->device);
    opts.precision = parse_precision(a->precision);
    opts.seq = a->seq > 0 ? a->seq : opts.model.max_seq;
    opts.tokens = static_cast<std::int64_t>(a->tokens);
    opts.on_nonfinite = parse_on_nonfinite(a->on_nonfinite);
    opts.scale_init = parse_scale_init(a->scale_init);
    opts.progress = !a->quiet;
    print_result(train_until(opts, a->stop_after), opts.out);
  });
}

void add_init_command(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  auto seed = std::make_shared<std::uint64_t>(1);
  auto out = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "init",
      "Write a freshly initialised model as a checkpoint folder (config.json + "
      "model.safetensors), e.g. for benchmarks or to compare with other runtimes");
  add_model_options(cmd, *a);
  cmd->add_option("--seq", a->seq, "Context length (default: the preset's)")
      ->check(bounded(limits::context));
  cmd->add_option("--seed", *seed, "Seed of the weights")
      ->check(bounded(limits::seed))
      ->capture_default_str();
  cmd->add_option("--out", *out, "Checkpoint folder to write (new or empty)")->required();
  auto force = std::make_shared<bool>(false);
  cmd->add_flag("--force", *force,
                "Write into an --out folder that holds files (its config.json, "
                "model.safetensors and checksums.json are replaced)");
  cmd->callback([a, seed, out, force] {
    const ModelConfig config = model_from(*a, true);
    std::error_code ec;
    if (std::filesystem::exists(*out, ec) && !*force) {
      if (!std::filesystem::is_directory(*out, ec))
        throw std::invalid_argument("--out " + *out + ": exists and is not a folder");
      for (const char* f : {"model.safetensors", "config.json", "checksums.json"})
        if (std::filesystem::exists(std::filesystem::path(*out) / f, ec))
          throw std::invalid_argument("--out " + *out + ": already holds " + f +
                                      " (a checkpoint?); choose a new folder, or --force to "
                                      "replace it");
    }
    Transformer model(config);
    model.init_weights(*seed, parse_scale_init(a->scale_init));
    write_checksums(*out, save_model(*out, model.layout(), model.params().data()));
    std::fprintf(stderr, "whtlm init: %s -> %s\n", describe(model.config()).c_str(), out->c_str());
  });
}

void add_eval_command(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd =
      app.add_subcommand("eval", "Mean loss, perplexity and bits per byte of a checkpoint on data");
  cmd->add_option("--checkpoint", a->checkpoint, "Checkpoint or run folder")->required();
  cmd->add_option("--data", a->data, "Data as for train (default: the built-in corpus)");
  cmd->add_option("--val-data", a->val_data, "Separate validation data, as for train");
  cmd->add_option("--split", a->split, "Which part of --data: val, train or all")
      ->capture_default_str();
  cmd->add_option("--tokenizer", a->tokenizer,
                  "How text is tokenized (default: the checkpoint's tokenizer.json, else byte)");
  cmd->add_option("--batch", a->batch, "Sequences per forward pass")
      ->check(bounded(limits::batch))
      ->capture_default_str();
  cmd->add_option("--seq", a->seq, "Tokens per window (default: the model's context)")
      ->check(bounded(limits::seq));
  cmd->add_option("--max-windows", a->max_windows,
                  "Evaluate at most this many windows, spread over the data (default: all)")
      ->check(bounded(limits::max_windows));
  add_threads_option(cmd, &a->threads);
  cmd->add_flag("--json", a->json, "One JSON object on stdout");
  cmd->callback([a] { run_eval(*a); });
}

}  // namespace whtlm::cli
