// `whtlm generate`: argument parsing, the byte-level tokenizer at the edges, and
// output; prefill, decoding and sampling are in the library (include/whtlm/infer.hpp).
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "whtlm/checkpoint.hpp"
#include "whtlm/data.hpp"
#include "whtlm/infer.hpp"
#include "whtlm/io.hpp"
#include "whtlm/tokenizer.hpp"

namespace whtlm::cli {
namespace {

struct GenerateArgs {
  std::string checkpoint, prompt, prompts_file, prompt_tokens, tokenizer;
  DeviceOptions device;
  ThreadsOption threads;
  GenerateOptions o;
  int batch = 8;
  std::string weights = "f32";
  bool json = false;
  CLI::Option *prompt_opt = nullptr, *prompts_opt = nullptr, *tokens_opt = nullptr;
};

// "12,7,300" -> ids, each checked against the model's vocabulary (a value such as
// 4294967296 or -1 is refused, not wrapped into some other token).
std::vector<std::int32_t> parse_tokens(const std::string& list, int vocab_size) {
  const std::string note = "the model's vocabulary has " + std::to_string(vocab_size) + " tokens";
  const Bound id{0, double(vocab_size - 1), true, false, false, note.c_str()};
  std::vector<std::int32_t> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ','))
    out.push_back(static_cast<std::int32_t>(
        parse_bounded(id, item, "--prompt-tokens item " + std::to_string(out.size() + 1))));
  if (out.empty()) throw std::invalid_argument("--prompt-tokens: no token ids given");
  return out;
}

// The text of tokens: decoded by the tokenizer when there is one, else the ids.
std::string text_of(const std::vector<std::int32_t>& tokens, const tok::Tokenizer* t) {
  if (t != nullptr) return t->decode(tokens);
  std::string s;
  for (std::int32_t id : tokens) s += (s.empty() ? "" : " ") + std::to_string(id);
  return s;
}

// Bytes to stdout as they are (a token may be a NUL byte; printf("%s") would stop there).
void write_out(const std::string& bytes) {
  if (std::fwrite(bytes.data(), 1, bytes.size(), stdout) != bytes.size())
    throw std::runtime_error("stdout: write error");
}

void run(const GenerateArgs& a) {
  const std::size_t given = a.prompt_opt->count() + a.prompts_opt->count() + a.tokens_opt->count();
  if (given != 1)
    throw std::invalid_argument("give exactly one of --prompt, --prompts and --prompt-tokens");
  a.threads.apply();
  GenerateOptions options = a.o;
  options.weights = parse_weight_format(a.weights);
  auto model = load_model(a.checkpoint, a.device.parsed_device(), a.device.parsed_precision());
  const ModelConfig& c = model->config();
  if (a.o.eos_token >= c.vocab_size)
    throw std::invalid_argument("--eos " + std::to_string(a.o.eos_token) +
                                " is outside the model's vocabulary of " +
                                std::to_string(c.vocab_size) + " tokens (-1: none)");
  // The checkpoint's tokenizer.json (or --tokenizer); without one, a vocabulary of 256
  // is byte-level and any other takes token ids only.
  const std::string spec = a.tokenizer.empty() ? checkpoint_tokenizer(a.checkpoint) : a.tokenizer;
  std::optional<tok::Tokenizer> tokenizer;
  if (spec != "byte" || c.vocab_size == data::ByteTokenizer::kVocabSize)
    tokenizer = tok::load_tokenizer(spec);
  if (tokenizer && tokenizer->vocab_size() > c.vocab_size)
    throw std::invalid_argument(spec + ": the tokenizer has " +
                                std::to_string(tokenizer->vocab_size()) +
                                " tokens, more than the model's " + std::to_string(c.vocab_size));
  const tok::Tokenizer* t = tokenizer ? &*tokenizer : nullptr;
  std::vector<std::string> texts;
  std::vector<std::vector<std::int32_t>> prompts;
  if (a.tokens_opt->count() > 0) {
    prompts.push_back(parse_tokens(a.prompt_tokens, c.vocab_size));
    texts.push_back(a.prompt_tokens);
  } else {
    if (t == nullptr)
      throw std::invalid_argument(a.checkpoint + ": vocabulary " + std::to_string(c.vocab_size) +
                                  " without a tokenizer file; give the prompt as "
                                  "--prompt-tokens ID,ID,...");
    if (a.prompt_opt->count() > 0) {
      texts.push_back(a.prompt);
    } else {
      // A regular file of bounded size (a FIFO or /dev/zero is refused, not waited on).
      std::istringstream in(io::read_file(a.prompts_file));
      std::string line;
      for (int n = 1; std::getline(in, line); ++n) {
        if (line.empty())
          throw std::invalid_argument(a.prompts_file + " line " + std::to_string(n) +
                                      ": empty prompt");
        texts.push_back(line);
      }
      if (texts.empty()) throw std::invalid_argument(a.prompts_file + ": no prompts");
    }
    for (const std::string& text : texts) prompts.push_back(t->encode(text));
  }
  // A file of prompts always gives JSON lines; one prompt streams unless --json.
  const bool json = a.json || a.prompts_opt->count() > 0;
  const bool stream = !json && prompts.size() == 1;
  if (stream) write_out(texts[0]);
  GenerateStats total;
  for (std::size_t first = 0; first < prompts.size(); first += std::size_t(a.batch)) {
    const std::size_t n = std::min(prompts.size() - first, std::size_t(a.batch));
    const std::vector<std::vector<std::int32_t>> group(prompts.begin() + std::ptrdiff_t(first),
                                                       prompts.begin() + std::ptrdiff_t(first + n));
    GenerateStats st;
    // Sequence numbers continue across groups, so prompt i samples the same tokens
    // whatever --batch splits the prompts into.
    GenerateOptions o = options;
    o.first_sequence = first;
    const auto results = generate(*model, group, o, &st, [&](int, std::int32_t token) {
      if (!stream) return;
      write_out(text_of({token}, t));
      std::fflush(stdout);
    });
    total.prefill_seconds += st.prefill_seconds;
    total.decode_seconds += st.decode_seconds;
    total.prefill_tokens += st.prefill_tokens;
    total.decode_tokens += st.decode_tokens;
    const double pre = st.prefill_seconds > 0 ? double(st.prefill_tokens) / st.prefill_seconds : 0;
    const double dec = st.decode_seconds > 0 ? double(st.decode_tokens) / st.decode_seconds : 0;
    for (std::size_t i = 0; i < n && !stream; ++i) {
      const Generation& g = results[i];
      // Tokens/s are the batch's: the prompts of a batch run together.
      const nlohmann::json j{{"prompt", texts[first + i]},
                             {"text", text_of(g.tokens, t)},
                             {"tokens", g.tokens},
                             {"stop", g.stopped_at_eos ? "eos"
                                      : g.hit_context  ? "context"
                                                       : "length"},
                             {"batch", n},
                             {"prefill_tokens_per_s", pre},
                             {"decode_tokens_per_s", dec}};
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    }
  }
  if (stream) write_out("\n");
  std::fflush(stdout);
  std::fprintf(stderr,
               "whtlm generate: prefill %zu tokens in %.3f s (%.0f tokens/s), decode %zu tokens "
               "in %.3f s (%.1f tokens/s)\n",
               total.prefill_tokens, total.prefill_seconds,
               total.prefill_seconds > 0 ? double(total.prefill_tokens) / total.prefill_seconds : 0,
               total.decode_tokens, total.decode_seconds,
               total.decode_seconds > 0 ? double(total.decode_tokens) / total.decode_seconds : 0);
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand(
      "generate", "Generate text from a checkpoint: batched prefill, then KV-cache decoding");
  cmd->add_option("--checkpoint", a->checkpoint, "Checkpoint or run folder")->required();
  cmd->add_option("--tokenizer", a->tokenizer,
                  "Tokenizer for prompts and output (default: the checkpoint's tokenizer.json, "
                  "else byte-level for a vocabulary of 256)");
  a->prompt_opt =
      cmd->add_option("--prompt", a->prompt, "One prompt (its continuation streams to stdout)");
  a->prompts_opt = cmd->add_option("--prompts", a->prompts_file,
                                   "A file of prompts, one per line: one JSON line per prompt");
  a->tokens_opt =
      cmd->add_option("--prompt-tokens", a->prompt_tokens,
                      "One prompt as token ids, comma-separated (for non-byte vocabularies)");
  cmd->add_option("--max-new-tokens", a->o.max_new_tokens,
                  "Tokens to generate per prompt (the context bounds it)")
      ->check(bounded(limits::max_new_tokens))
      ->capture_default_str();
  cmd->add_option("--temperature", a->o.sampling.temperature, "Sampling temperature; 0: greedy")
      ->check(bounded(limits::temperature))
      ->capture_default_str();
  cmd->add_option("--top-k", a->o.sampling.top_k, "Sample among the k most likely (0: off)")
      ->check(bounded(limits::top_k))
      ->capture_default_str();
  cmd->add_option("--top-p", a->o.sampling.top_p,
                  "Sample among the most likely tokens holding this probability (1: off)")
      ->check(bounded(limits::top_p))
      ->capture_default_str();
  cmd->add_option("--repetition-penalty", a->o.sampling.repetition_penalty,
                  "Penalise tokens already present (1: off)")
      ->check(bounded(limits::repetition_penalty))
      ->capture_default_str();
  cmd->add_option("--seed", a->o.sampling.seed, "Sampling seed")
      ->check(bounded(limits::seed))
      ->capture_default_str();
  cmd->add_option("--eos", a->o.eos_token, "Stop a sequence at this token id (-1: none)")
      ->check(bounded(limits::eos))
      ->capture_default_str();
  cmd->add_option("--batch", a->batch, "Prompts generated together")
      ->check(bounded(limits::gen_batch))
      ->capture_default_str();
  add_threads_option(cmd, &a->threads);
  add_device_options(cmd, &a->device);
  add_weights_option(cmd, &a->weights);
  cmd->add_flag("--json", a->json, "One JSON line per prompt");
  cmd->callback([a] { run(*a); });
}

}  // namespace whtlm::cli
