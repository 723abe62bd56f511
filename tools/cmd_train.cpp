// `whtlm train` and `whtlm eval`: argument parsing only; the trainer and the
// evaluation live in the library (include/whtlm/train.hpp).
#include <cmath>
#include <cstdio>
#include <iostream>
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
                  "Vocabulary size (default 256, byte-level; larger for token shards)");
  cmd->add_option("--layers", a.layers, "Override the preset's number of layers");
  cmd->add_option("--d-model", a.d_model, "Override the preset's width");
  cmd->add_option("--heads", a.heads, "Override the preset's attention heads");
  cmd->add_option("--kv-heads", a.kv_heads, "Override the key/value heads (llama)");
}

ModelConfig model_from(const TrainArgs& a) {
  ModelConfig c = preset(a.preset);
  c.projection = parse_projection(a.proj);
  if (a.vocab > 0) c.vocab_size = a.vocab;
  if (a.layers > 0) c.n_layer = a.layers;
  if (a.d_model > 0) c.d_model = a.d_model;
  if (a.heads > 0) c.n_head = c.n_kv_head = a.heads;
  if (a.kv_heads > 0) c.n_kv_head = a.kv_heads;
  if (a.seq > c.max_seq) c.max_seq = a.seq;
  c.validate();
  return c;
}

void print_result(const TrainResult& r, const std::string& out) {
  std::fprintf(stderr,
               "whtlm train: %lld steps, %.3g tokens, %.3g FLOPs in %.1f s; train loss %.4f",
               static_cast<long long>(r.steps), r.tokens, r.flops, r.seconds, r.final_train_loss);
  if (r.final_val_loss) std::fprintf(stderr, ", val loss %.4f", *r.final_val_loss);
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
  if (a.threads < 0) throw std::invalid_argument("--threads must be >= 0");
  if (a.split != "val" && a.split != "train" && a.split != "all")
    throw std::invalid_argument("--split: expected val, train or all, got '" + a.split + "'");
  set_num_threads(a.threads > 0 ? a.threads : available_cores());
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
  const EvalResult r = evaluate(*model, tokens, a.batch, seq, a.max_windows, lengths);
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
      ->capture_default_str();
  cmd->add_option("--tokenizer", o.data.tokenizer,
                  "How text is tokenized: byte, a tokenizer.json, or a folder with GPT-2's "
                  "encoder.json + vocab.bpe; the vocabulary follows it unless --vocab is given. "
                  "Checkpoints carry it as tokenizer.json")
      ->capture_default_str();
  cmd->add_option("--chunk-tokens", o.data.chunk_tokens,
                  "Granularity of the train/validation split, in tokens")
      ->capture_default_str();
  cmd->add_option("--steps", o.steps, "Length of the run in optimizer steps");
  cmd->add_option("--tokens", a->tokens, "Length of the run in training tokens (e.g. 5e6)");
  cmd->add_option("--flops", o.flops, "Length of the run in training FLOPs (e.g. 1e15)");
  cmd->add_option("--batch", o.batch, "Sequences per micro-batch")->capture_default_str();
  cmd->add_option("--seq", a->seq, "Tokens per sequence (default: the preset's context)");
  cmd->add_option("--accum", o.accum, "Micro-batches per optimizer step")->capture_default_str();
  cmd->add_option("--lr", o.lr, "Peak learning rate")->capture_default_str();
  cmd->add_option("--min-lr-ratio", o.min_lr_ratio, "Final learning rate as a share of the peak")
      ->capture_default_str();
  cmd->add_option("--warmup", o.warmup, "Warm-up steps (default: 5% of the steps, at most 200)");
  cmd->add_option("--weight-decay", o.adamw.weight_decay, "AdamW decoupled weight decay")
      ->capture_default_str();
  cmd->add_option("--clip", o.clip, "Clip the global gradient norm to this (0: off)")
      ->capture_default_str();
  cmd->add_option("--seed", o.seed, "Seed of the weights and of the batches")
      ->capture_default_str();
  cmd->add_option("--eval-every", o.eval_every, "Validation loss every N steps (0: at the end)")
      ->capture_default_str();
  cmd->add_option("--eval-batches", o.eval_batches, "Batches per validation")
      ->capture_default_str();
  cmd->add_option("--save-every", o.save_every, "Checkpoint every N steps (0: at the end)")
      ->capture_default_str();
  cmd->add_option("--threads", o.threads, "Threads (default: all cores)");
  add_device_options(cmd, &a->device, &a->precision);
  cmd->add_option("--out", o.out, "Run folder: checkpoint, metrics.jsonl, state");
  cmd->add_option("--resume", a->resume,
                  "Continue the run in this folder from its last checkpoint (other options are "
                  "taken from the run)");
  cmd->add_option("--stop-after", a->stop_after,
                  "Stop after this step with a checkpoint; --resume continues the same run");
  cmd->add_flag("--quiet", a->quiet, "No progress output");
  cmd->callback([a] {
    if (!a->resume.empty()) {
      print_result(resume(a->resume, a->stop_after, !a->quiet), a->resume);
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
    if (a->tokens < 0) throw std::invalid_argument("--tokens must be positive");
    opts.tokens = static_cast<std::int64_t>(a->tokens);
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
  cmd->add_option("--seq", a->seq, "Context length (default: the preset's)");
  cmd->add_option("--seed", *seed, "Seed of the weights")->capture_default_str();
  cmd->add_option("--out", *out, "Checkpoint folder to write")->required();
  cmd->callback([a, seed, out] {
    Transformer model(model_from(*a));
    model.init_weights(*seed);
    save_model(*out, model.layout(), model.params().data());
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
  cmd->add_option("--batch", a->batch, "Sequences per forward pass")->capture_default_str();
  cmd->add_option("--seq", a->seq, "Tokens per window (default: the model's context)");
  cmd->add_option("--max-windows", a->max_windows,
                  "Evaluate at most this many windows, spread over the data (default: all)");
  cmd->add_option("--threads", a->threads, "Threads (default: all cores)");
  cmd->add_flag("--json", a->json, "One JSON object on stdout");
  cmd->callback([a] { run_eval(*a); });
}

}  // namespace whtlm::cli
