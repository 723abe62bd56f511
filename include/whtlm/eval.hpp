// What `whtlm eval` measures: the mean loss, perplexity and bits per byte of a
// checkpoint on data, over evaluation windows of one split (whtlm::evaluate in
// whtlm/train.hpp does the arithmetic; this reads the checkpoint and the data).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "whtlm/tokenizer.hpp"
#include "whtlm/train.hpp"

namespace whtlm::eval {

struct Options {
  std::string checkpoint;     // a checkpoint or run folder
  std::string data;           // as for training; empty: the built-in corpus
  std::string val_data;       // separate validation data, as for training
  std::string split = "val";  // which part of `data`: val, train or all (the whole stream)
  // How text is tokenized; empty: the checkpoint's tokenizer.json, else byte.
  std::string tokenizer;
  int batch = 8;                // windows per forward pass
  int seq = 0;                  // tokens per window; 0: the model's context
  std::size_t max_windows = 0;  // at most this many windows, spread over the data; 0: all
};

struct Result {
  std::string checkpoint;  // as given
  std::string data;        // what was measured, e.g. "kjv.txt: ..., val split"
  std::string tokenizer;   // the spec the text was tokenized with
  int seq = 0;
  EvalResult eval;  // loss (nats per token), tokens, bytes, bits_per_byte()
  double perplexity() const;
};

// Loads the checkpoint on the CPU (with the library's current thread count) and
// evaluates it. std::invalid_argument for a bad split ("--split: ..."), a window longer
// than the model's context ("--seq ...") and data too short for a window (naming it).
Result evaluate_checkpoint(const Options& options);

// `whtlm eval --json`: one JSON object (checkpoint, data, tokenizer, tokens, bytes, loss,
// perplexity, bits_per_byte, seq), without a newline.
std::string result_to_json(const Result& r);

// Bytes per token id for bits per byte: entry id is the length of token id's bytes,
// vocab_size entries (ids the tokenizer lacks count 0 bytes).
std::vector<std::int32_t> token_byte_lengths(const tok::Tokenizer& t, int vocab_size);

}  // namespace whtlm::eval
