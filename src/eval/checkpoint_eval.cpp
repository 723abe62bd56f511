// `whtlm eval` as a library call (whtlm/eval.hpp): a checkpoint, the split of the
// data it is measured on, and the trainer's evaluation over its windows.
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>

#include "whtlm/checkpoint.hpp"
#include "whtlm/data.hpp"
#include "whtlm/eval.hpp"

namespace whtlm::eval {

double Result::perplexity() const { return std::exp(eval.loss); }

std::vector<std::int32_t> token_byte_lengths(const tok::Tokenizer& t, int vocab_size) {
  std::vector<std::int32_t> lengths(static_cast<std::size_t>(vocab_size), 0);
  for (int id = 0; id < std::min(vocab_size, t.vocab_size()); ++id)
    lengths[std::size_t(id)] = static_cast<std::int32_t>(t.token_bytes(id).size());
  return lengths;
}

Result evaluate_checkpoint(const Options& a) {
  if (a.split != "val" && a.split != "train" && a.split != "all")
    throw std::invalid_argument("--split: expected val, train or all, got '" + a.split + "'");
  auto model = load_model(a.checkpoint);
  const ModelConfig& c = model->config();
  Result r;
  r.checkpoint = a.checkpoint;
  r.seq = a.seq > 0 ? a.seq : c.max_seq;
  if (r.seq > c.max_seq)
    throw std::invalid_argument("--seq " + std::to_string(r.seq) + " exceeds the model's context " +
                                std::to_string(c.max_seq));
  // Text is tokenized as the checkpoint was trained (its tokenizer.json), unless told.
  r.tokenizer = a.tokenizer.empty() ? checkpoint_tokenizer(a.checkpoint) : a.tokenizer;
  data::TokenSource tokens;
  if (a.split == "all") {
    data::TokenStream s = data::read_token_stream(
        a.data.empty() ? data::default_corpus_path() : a.data, c.vocab_size, r.tokenizer);
    tokens = std::move(s.tokens);
    r.data = s.name;
  } else {
    data::DataOptions d;
    d.path = a.data;
    d.val_path = a.val_data;
    d.vocab_size = c.vocab_size;
    d.tokenizer = r.tokenizer;
    data::TokenSplit split = data::load_tokens(d);
    tokens = a.split == "val" ? split.val : split.train;
    r.data = split.description + ", " + a.split + " split";
  }
  data::DataOptions spec_only;
  spec_only.tokenizer = r.tokenizer;
  spec_only.path = a.data;
  const std::vector<std::int32_t> lengths =
      token_byte_lengths(data::data_tokenizer(spec_only), c.vocab_size);
  try {
    r.eval = whtlm::evaluate(*model, tokens, a.batch, r.seq, a.max_windows, lengths);
  } catch (const std::invalid_argument& e) {  // too little data: name it
    throw std::invalid_argument(r.data + ": " + e.what());
  }
  return r;
}

std::string result_to_json(const Result& r) {
  const nlohmann::json j{{"checkpoint", r.checkpoint},
                         {"data", r.data},
                         {"tokenizer", r.tokenizer},
                         {"tokens", r.eval.tokens},
                         {"bytes", r.eval.bytes},
                         {"loss", r.eval.loss},
                         {"perplexity", r.perplexity()},
                         {"bits_per_byte", r.eval.bits_per_byte()},
                         {"seq", r.seq}};
  return j.dump();
}

}  // namespace whtlm::eval
