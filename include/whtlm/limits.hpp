// The bounds of every number a user can set. Whether it comes from the command line,
// config.json, train_state.json or an experiment plan, a value is checked against one
// Bound by one function and refused with one kind of message: where it came from,
// the value, why, and the range that holds, e.g.
//   --threads: 70000 is too large: expected an integer from 0 to 256 (0: all cores)
//   run/train_state.json: field "options.clip": nan is not a number: expected ...
// docs/reliability.md lists the bounds.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace whtlm {

struct Bound {
  double min = 0, max = 0;
  bool integer = true;         // integral values only
  bool min_open = false;       // min itself is refused: (min, max]
  bool max_open = false;       // max itself is refused: [min, max)
  const char* note = nullptr;  // what special values mean, e.g. "0: all cores"
};

namespace limits {

// Sizes of a model (config.json, --layers ..., an experiment plan's sizes).
inline constexpr Bound n_layer{1, 1024};
inline constexpr Bound d_model{1, 65536};
inline constexpr Bound n_head{1, 4096};
inline constexpr Bound d_ff{0, 1 << 20, true, false, false, "0: the family's default"};
inline constexpr Bound vocab_size{1, 1 << 24};
inline constexpr Bound context{1, 1 << 20};
inline constexpr Bound norm_eps{0, 1, false, true};
inline constexpr Bound rope_theta{1, 1e12, false, true};

// Training (train's options, train_state.json, an experiment plan).
inline constexpr Bound batch{1, 65536};
inline constexpr Bound seq{1, 1 << 20};
inline constexpr Bound accum{1, 65536};
inline constexpr Bound steps{0, 1e12, true, false, false, "0: not set"};
inline constexpr Bound tokens{0, 1e18, true, false, false, "0: not set"};
inline constexpr Bound flops{0, 1e30, false, false, false, "0: not set"};
inline constexpr Bound lr{0, 1e6, false, true};
inline constexpr Bound min_lr_ratio{0, 1, false};
inline constexpr Bound lr_factor{0, 1e9, false, true};  // an experiment's lr sweep: times lr
inline constexpr Bound fraction{0, 1, false, true};     // a share, (0, 1]
// An experiment's token rule: tokens grow as (parameters)^tokens_exponent.
inline constexpr Bound tokens_exponent{0, 2, false};
inline constexpr Bound evals{0, 1000000, true, false, false, "0: every eval_every steps"};
inline constexpr Bound sweep_min_steps{0, 1e12, true, false, false, "0: no minimum"};
inline constexpr Bound warmup{-1, 1e12, true, false, false, "-1: 5% of the steps, at most 200"};
inline constexpr Bound adam_beta{0, 1, false, false, true};
inline constexpr Bound adam_eps{0, 1, false, true};
inline constexpr Bound weight_decay{0, 100, false};
inline constexpr Bound clip{0, 1e12, false, false, false, "0: off"};
inline constexpr Bound seed{0, 18446744073709551615.0, true, false, false, "2^64 - 1 at most"};
inline constexpr Bound every{0, 1e12, true, false, false, "0: only at the end"};
inline constexpr Bound eval_batches{1, 2147483647.0};
inline constexpr Bound threads{0, 256, true, false, false, "0: all cores"};
inline constexpr Bound thread_count{1, 256};  // one of several counts to measure
inline constexpr Bound val_fraction{0, 0.5, false, true};
inline constexpr Bound chunk_tokens{1, 1099511627776.0};
inline constexpr Bound stop_after{0, 1e12, true, false, false, "0: not set"};
inline constexpr Bound skip_limit{0, 1e12};
// What a run has done so far (train_state.json).
inline constexpr Bound tokens_done{0, 1e30, false};
inline constexpr Bound flops_done{0, 1e40, false};
inline constexpr Bound elapsed{0, 1e12, false};

// Generation.
inline constexpr Bound max_new_tokens{0, 2147483647.0, true, false, false, "the context bounds it"};
inline constexpr Bound gen_batch{1, 2147483647.0};
inline constexpr Bound temperature{0, 1e6, false, false, false, "0: greedy"};
inline constexpr Bound top_k{0, 1 << 24, true, false, false, "0: off"};
inline constexpr Bound top_p{0, 1, false, true, false, "1: off"};
inline constexpr Bound repetition_penalty{0, 1e6, false, true, false, "1: off"};
inline constexpr Bound eos{-1, (1 << 24) - 1, true, false, false, "-1: none"};
inline constexpr Bound token_id{0, (1 << 24) - 1};

// Evaluation, data and tokenizers.
inline constexpr Bound max_windows{0, 1e15, true, false, false, "0: all"};
inline constexpr Bound shard_tokens{1, 2147483647.0};
inline constexpr Bound bpe_vocab{256, 1 << 24};
inline constexpr Bound min_frequency{0, 1e18};

// Benchmarks and experiments.
inline constexpr Bound repetitions{1, 1000};
inline constexpr Bound bench_steps{1, 1e6};
inline constexpr Bound rows{1, 1 << 24};
inline constexpr Bound batch_mib{0, 65536, false, true};
inline constexpr Bound min_seconds{0, 60, false, true};
inline constexpr Bound bench_context{0, 1 << 20, true, false, false, "0: each preset's own"};
inline constexpr Bound decode_steps{1, 1 << 20};
inline constexpr Bound max_prefill_tokens{0, 1e15, false, true};
inline constexpr Bound max_kv_gib{0, 1e6, false, true};
inline constexpr Bound scale{1, 1e6, false};
inline constexpr Bound seeds{1, 1000};
inline constexpr Bound hadamard_size{1, 1 << 20};
inline constexpr Bound file_bytes{0, 1e18};

}  // namespace limits

// "an integer from 0 to 256 (0: all cores)".
std::string describe(const Bound& b);
// A number as messages show it: integers in full ("70000"), others in the fewest digits
// that read back the same ("0.1", "1e30", "3.1e22").
std::string value_text(double v);

// Returns `value` when b holds it; otherwise throws std::invalid_argument
// "<where>: <value> is <why>: expected <describe(b)>". `where` names an option
// ("--threads") or a file's field ("run/train_state.json: field \"options.threads\"").
double check_bound(const Bound& b, double value, std::string_view where);

// The same for a value typed as text ("70000", "1e6", "nan"): a number that is not
// (or trailing characters) is refused naming `where` and the text.
double parse_bounded(const Bound& b, std::string_view text, std::string_view where);

// check_bound, converted to T (an integer type when b.integer).
template <class T>
T bounded(const Bound& b, double value, std::string_view where) {
  return static_cast<T>(check_bound(b, value, where));
}

}  // namespace whtlm
