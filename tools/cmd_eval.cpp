// `whtlm eval`: argument parsing and output only; the evaluation lives in the library
// (include/whtlm/eval.hpp).
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "commands.hpp"
#include "whtlm/eval.hpp"

namespace whtlm::cli {
namespace {

struct EvalArgs {
  eval::Options o;
  ThreadsOption threads;
  bool json = false;
};

void run_eval(const EvalArgs& a) {
  a.threads.apply();
  const eval::Result r = eval::evaluate_checkpoint(a.o);
  if (a.json) {
    std::cout << eval::result_to_json(r) << "\n";
    return;
  }
  std::printf(
      "%s on %s: %zu tokens (%.0f bytes), loss %.4f, perplexity %.3f, %.4f bits per "
      "byte\n",
      r.checkpoint.c_str(), r.data.c_str(), r.eval.tokens, r.eval.bytes, r.eval.loss,
      r.perplexity(), r.eval.bits_per_byte());
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  eval::Options& o = a->o;
  CLI::App* cmd =
      app.add_subcommand("eval", "Mean loss, perplexity and bits per byte of a checkpoint on data");
  cmd->add_option("--checkpoint", o.checkpoint, "Checkpoint or run folder")->required();
  cmd->add_option("--data", o.data, "Data as for train (default: the built-in corpus)");
  cmd->add_option("--val-data", o.val_data, "Separate validation data, as for train");
  cmd->add_option("--split", o.split, "Which part of --data: val, train or all")
      ->capture_default_str();
  cmd->add_option("--tokenizer", o.tokenizer,
                  "How text is tokenized (default: the checkpoint's tokenizer.json, else byte)");
  cmd->add_option("--batch", o.batch, "Sequences per forward pass")
      ->check(bounded(limits::batch))
      ->capture_default_str();
  cmd->add_option("--seq", o.seq, "Tokens per window (default: the model's context)")
      ->check(bounded(limits::seq));
  cmd->add_option("--max-windows", o.max_windows,
                  "Evaluate at most this many windows, spread over the data (default: all)")
      ->check(bounded(limits::max_windows));
  add_threads_option(cmd, &a->threads);
  cmd->add_flag("--json", a->json, "One JSON object on stdout");
  cmd->callback([a] { run_eval(*a); });
}

}  // namespace whtlm::cli
