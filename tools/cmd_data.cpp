// `whtlm data prepare`: argument parsing and the progress bar; the work is in the
// library (data::prepare_shards).
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "commands.hpp"
#include "whtlm/data.hpp"

namespace whtlm::cli {

void add_data_command(CLI::App& app) {
  CLI::App* data = app.add_subcommand("data", "Prepare training data");
  data->require_subcommand(1);
  auto o = std::make_shared<data::PrepareOptions>();
  auto threads = std::make_shared<ThreadsOption>();
  CLI::App* prep = data->add_subcommand(
      "prepare",
      "Tokenize text once into llm.c token shards (train_*.bin, val_*.bin, tokenizer.json, "
      "prepare.json) that `whtlm train --data DIR` reads in order through memory maps");
  prep->add_option("--tokenizer", o->tokenizer,
                   "byte, a tokenizer.json, or a folder with GPT-2's encoder.json + vocab.bpe")
      ->capture_default_str();
  prep->add_option("--data", o->data,
                   "A text file or a folder of text files, each a document (default: the "
                   "built-in corpus)");
  prep->add_option("--out", o->out, "Folder to write (new or empty)")->required();
  prep->add_option("--val-fraction", o->val_fraction, "Share of the tokens held out")
      ->check(bounded(limits::val_fraction))
      ->capture_default_str();
  prep->add_option("--chunk-tokens", o->chunk_tokens, "Granularity of the split, in tokens")
      ->check(bounded(limits::chunk_tokens))
      ->capture_default_str();
  prep->add_option("--shard-tokens", o->shard_tokens, "Tokens per shard at most")
      ->check(bounded(limits::shard_tokens))
      ->capture_default_str();
  add_threads_option(prep, threads.get());
  prep->callback([o, threads] {
    threads->apply();
    data::PrepareOptions opt = *o;
    const bool tty = isatty(STDERR_FILENO) != 0;
    opt.progress = [tty](double f) {
      const int width = 40, filled = static_cast<int>(f * width + 0.5);
      std::fprintf(stderr, "%stokenizing [%s%s] %3.0f%%%s", tty ? "\r" : "  ",
                   std::string(std::size_t(filled), '#').c_str(),
                   std::string(std::size_t(width - filled), '.').c_str(), 100 * f, tty ? "" : "\n");
    };
    const data::PrepareResult r = data::prepare_shards(opt);
    if (tty) std::fprintf(stderr, "\n");
    const double tokens = double(r.train_tokens + r.val_tokens);
    std::printf(
        "whtlm data prepare: %zu documents, %zu bytes -> %.0f tokens (%.3f bytes per token) "
        "in %.1f s (%.1f MB/s)\n  train: %zu tokens in %zu shard(s); val: %zu tokens in %zu "
        "shard(s); %s\n",
        r.documents, r.bytes, tokens, double(r.bytes) / tokens, r.seconds,
        double(r.bytes) / 1e6 / r.seconds, r.train_tokens, r.train_shards, r.val_tokens,
        r.val_shards, o->out.c_str());
  });
}

}  // namespace whtlm::cli
