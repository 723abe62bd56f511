// `whtlm tokenizer train|encode|decode|info|convert|bench`: argument parsing and stdin/stdout
// only; the tokenizers live in the library (include/whtlm/tokenizer.hpp).
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "commands.hpp"
#include "table.hpp"
#include "whtlm/data.hpp"
#include "whtlm/device.hpp"
#include "whtlm/perf.hpp"
#include "whtlm/threads.hpp"
#include "whtlm/tokenizer.hpp"

namespace whtlm::cli {
namespace {

constexpr const char* kTokenizerHelp =
    "Tokenizer: \"byte\", a tokenizer.json, or a folder holding tokenizer.json or GPT-2's "
    "encoder.json + vocab.bpe (or vocab.json + merges.txt)";

// All of stdin, up to 512 MiB and what memory allows (the ids take 4 bytes a token
// beside the text), checked as it grows, so an endless input such as /dev/zero ends
// with a message.
constexpr std::size_t kMaxStdinBytes = std::size_t{512} << 20;
std::string read_stdin() {
  std::string text;
  char buf[1 << 16];
  std::size_t n, next_check = std::size_t{16} << 20;
  while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) {
    text.append(buf, n);
    if (text.size() >= next_check) {
      next_check += std::size_t{16} << 20;
      const double room = double(memory_available_bytes());
      if (8.0 * double(text.size()) > room || text.size() > kMaxStdinBytes)
        throw std::runtime_error("stdin: " + std::to_string(text.size()) +
                                 " bytes read and more coming: more than whtlm takes on stdin "
                                 "(512 MiB, and 1/8 of the " +
                                 std::to_string(static_cast<long long>(room / 1048576)) +
                                 " MiB of memory available); give the text in parts");
    }
  }
  if (std::ferror(stdin)) throw std::runtime_error("stdin: read error");
  return text;
}

void write_stdout(std::string_view bytes) {
  if (std::fwrite(bytes.data(), 1, bytes.size(), stdout) != bytes.size() || std::fflush(stdout))
    throw std::runtime_error("stdout: write error");
}

// "1 2 3" or "[1,2,3]".
std::string ids_text(const std::vector<std::int32_t>& ids, bool json) {
  std::string out;
  out.reserve(ids.size() * 6 + 2);
  if (json) out += '[';
  char buf[16];
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) out += json ? ',' : ' ';
    const auto r = std::to_chars(buf, buf + sizeof buf, ids[i]);
    out.append(buf, r.ptr);
  }
  if (json) out += ']';
  return out;
}

// Token ids from text: whitespace-separated integers, or one JSON array.
std::vector<std::int32_t> parse_ids(std::string_view in) {
  std::size_t first = in.find_first_not_of(" \t\r\n");
  std::vector<std::int32_t> ids;
  if (first == std::string_view::npos) return ids;
  if (in[first] == '[') {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::parse_error& e) {
      throw std::runtime_error(std::string("stdin: not a valid JSON array: ") + e.what());
    }
    for (std::size_t i = 0; i < j.size(); ++i) {
      if (!j[i].is_number_integer() || j[i].get<std::int64_t>() < INT32_MIN ||
          j[i].get<std::int64_t>() > INT32_MAX)
        throw std::runtime_error("stdin: item " + std::to_string(i) + " (" + j[i].dump() +
                                 ") is not a token id");
      ids.push_back(j[i].get<std::int32_t>());
    }
    return ids;
  }
  std::size_t pos = first;
  while (pos < in.size()) {
    std::size_t end = in.find_first_of(" \t\r\n", pos);
    if (end == std::string_view::npos) end = in.size();
    const std::string_view item = in.substr(pos, end - pos);
    std::int32_t id = 0;
    const auto r = std::from_chars(item.data(), item.data() + item.size(), id);
    if (r.ec != std::errc() || r.ptr != item.data() + item.size())
      throw std::runtime_error("stdin: '" + std::string(item.substr(0, 40)) + "' (item " +
                               std::to_string(ids.size()) + ") is not a token id");
    ids.push_back(id);
    pos = in.find_first_not_of(" \t\r\n", end);
    if (pos == std::string_view::npos) break;
  }
  return ids;
}

struct TrainArgs {
  int vocab = 8192;
  ThreadsOption threads;
  std::string data, out;
  std::vector<std::string> specials{"<|endoftext|>"};
  bool no_special = false, quiet = false, force = false;
  std::uint64_t min_frequency = 2;
};

void run_train(const TrainArgs& a) {
  check_new_file("--out", a.out, a.force);
  a.threads.apply();
  const std::string path = a.data.empty() ? data::default_corpus_path() : a.data;
  const std::string text = tok::read_text(path);
  if (text.empty()) throw std::invalid_argument(path + ": no text to learn a tokenizer from");
  tok::BpeTrainOptions o;
  o.vocab_size = a.vocab;
  o.special_tokens = a.no_special ? std::vector<std::string>{} : a.specials;
  for (std::size_t i = 0; i < o.special_tokens.size(); ++i) {
    if (o.special_tokens[i].empty()) throw std::invalid_argument("--special: a token is empty");
    for (std::size_t k = 0; k < i; ++k)
      if (o.special_tokens[k] == o.special_tokens[i])
        throw std::invalid_argument("--special: '" + o.special_tokens[i] + "' is given twice");
  }
  o.min_frequency = a.min_frequency;
  const bool tty = isatty(STDERR_FILENO) != 0;
  if (!a.quiet)
    o.progress = [tty](const tok::BpeTrainProgress& p) {
      if (!tty && !p.finished && p.merges % 2048 != 0) return;
      std::fprintf(stderr,
                   "%swhtlm tokenizer train: %.2f MB, %zu distinct words, %zu/%zu tokens, %zu "
                   "merges, %.1f s%s",
                   tty ? "\r" : "", static_cast<double>(p.text_bytes) / 1e6, p.unique_words,
                   p.tokens, p.target, p.merges, p.seconds, tty && !p.finished ? "" : "\n");
    };
  const tok::Tokenizer t = tok::train_bpe(text, o);
  t.save(a.out);
  if (t.vocab_size() < a.vocab)
    std::fprintf(stderr,
                 "whtlm tokenizer train: stopped at %d tokens: no pair occurs %llu times or "
                 "more\n",
                 t.vocab_size(), static_cast<unsigned long long>(a.min_frequency));
  if (!a.quiet) std::fprintf(stderr, "  %s -> %s\n", t.describe().c_str(), a.out.c_str());
}

struct EncodeArgs {
  std::string tokenizer = "byte";
  bool allow_special = false, json = false, jsonl = false, time = false;
  ThreadsOption threads;
};

void run_encode(const EncodeArgs& a) {
  a.threads.apply();
  const tok::Tokenizer t = tok::load_tokenizer(a.tokenizer);
  const std::string input = read_stdin();
  std::string out;
  std::size_t tokens = 0;
  double seconds = 0;  // encoding only: not reading, parsing or printing
  auto timed = [&](auto&& f) {
    const auto start = std::chrono::steady_clock::now();
    auto result = f();
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
  };
  if (a.jsonl) {
    std::vector<std::string> texts;
    std::size_t line_no = 0;
    for (std::size_t pos = 0; pos < input.size();) {
      std::size_t eol = input.find('\n', pos);
      if (eol == std::string::npos) eol = input.size();
      const std::string_view line(input.data() + pos, eol - pos);
      pos = eol + 1;
      ++line_no;
      try {
        texts.push_back(nlohmann::json::parse(line).get<std::string>());
      } catch (const nlohmann::json::exception& e) {
        throw std::runtime_error("stdin: line " + std::to_string(line_no) +
                                 ": expected a JSON string: " + e.what());
      }
    }
    const std::vector<std::string_view> views(texts.begin(), texts.end());
    for (const auto& ids : timed([&] { return t.encode_batch(views, a.allow_special); })) {
      out += ids_text(ids, true) + "\n";
      tokens += ids.size();
    }
  } else {
    const std::vector<std::int32_t> ids =
        timed([&] { return t.encode_parallel(input, a.allow_special); });
    tokens = ids.size();
    out = ids_text(ids, a.json) + "\n";
  }
  write_stdout(out);
  if (a.time)
    std::fprintf(stderr,
                 "whtlm tokenizer encode: %zu bytes -> %zu tokens in %.4f s of encoding (%.1f "
                 "MB/s, %d threads)\n",
                 input.size(), tokens, seconds, static_cast<double>(input.size()) / seconds / 1e6,
                 num_threads());
}

struct DecodeArgs {
  std::string tokenizer = "byte";
};

void run_decode(const DecodeArgs& a) {
  const tok::Tokenizer t = tok::load_tokenizer(a.tokenizer);
  write_stdout(t.decode(parse_ids(read_stdin())));
}

struct InfoArgs {
  std::string tokenizer = "byte";
  bool json = false;
};

void run_info(const InfoArgs& a) {
  const tok::Tokenizer t = tok::load_tokenizer(a.tokenizer);
  if (a.json) {
    nlohmann::json specials = nlohmann::json::array();
    for (const tok::SpecialToken& sp : t.special_tokens())
      specials.push_back({{"content", sp.content}, {"id", sp.id}});
    nlohmann::json j{{"tokenizer", a.tokenizer},   {"vocab_size", t.vocab_size()},
                     {"merges", t.num_merges()},   {"bytes", t.is_bytes()},
                     {"special_tokens", specials}, {"unicode", tok::unicode_version()}};
    j["eot_id"] = t.eot_id() ? nlohmann::json(*t.eot_id()) : nlohmann::json(nullptr);
    std::cout << j.dump() << "\n";
    return;
  }
  std::printf("%s: %s\n", a.tokenizer.c_str(), t.describe().c_str());
  std::printf("vocab_size %d, merges %zu, <|endoftext|> %s, pre-tokenizer tables: Unicode %s\n",
              t.vocab_size(), t.num_merges(),
              t.eot_id() ? std::to_string(*t.eot_id()).c_str() : "none",
              std::string(tok::unicode_version()).c_str());
}

struct ConvertArgs {
  std::string tokenizer, out;
  bool force = false;
};

void run_convert(const ConvertArgs& a) {
  check_new_file("--out", a.out, a.force);
  const tok::Tokenizer t = tok::load_tokenizer(a.tokenizer);
  t.save(a.out);
  std::fprintf(stderr, "whtlm tokenizer convert: %s -> %s\n", t.describe().c_str(), a.out.c_str());
}

struct BenchArgs {
  perf::TokenizerBenchOptions o;
  JsonOption json;
};

void run_bench(const BenchArgs& a) {
  JsonOutput json(a.json);
  perf::TokenizerBenchOptions o = a.o;
  if (json) o.json_line = [&json](const std::string& line) { json.write(line + "\n"); };
  const perf::TokenizerBenchResult r = perf::tokenizer_bench(o);
  std::printf("%s on %s: %.2f MB -> %zu tokens (%s)\n", o.tokenizer.c_str(), r.data.c_str(),
              static_cast<double>(r.bytes) / 1e6, r.tokens, r.description.c_str());
  Table table({"threads", "MB/s median", "min", "max", "vs 1 thread", "rounds"});
  for (const perf::TokenizerBenchRow& row : r.rows)
    table.add({std::to_string(row.threads), fmt("%.1f", row.mb_per_s.median),
               fmt("%.1f", row.mb_per_s.min), fmt("%.1f", row.mb_per_s.max),
               fmt("%.2f", row.vs_first), std::to_string(r.repetitions)});
  table.print(stdout);
}

}  // namespace

void add_tokenizer_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "tokenizer", "Byte-level BPE tokenizers (GPT-2 style): train, encode, decode, inspect");
  cmd->require_subcommand(1);

  auto ta = std::make_shared<TrainArgs>();
  auto* train = cmd->add_subcommand(
      "train", "Learn a byte-level BPE tokenizer from text and save it as tokenizer.json");
  train->add_option("--vocab", ta->vocab, "Vocabulary size, byte tokens and specials included")
      ->check(bounded(limits::bpe_vocab))
      ->capture_default_str();
  train->add_option("--data", ta->data,
                    "Training text: a file, or a folder of text files (default: the built-in "
                    "corpus)");
  train->add_option("--out", ta->out, "The tokenizer.json to write (a new file)")->required();
  train->add_flag("--force", ta->force, "Replace --out if it exists");
  train->add_option("--special", ta->specials, "Special tokens, appended last")
      ->capture_default_str();
  train->add_flag("--no-special", ta->no_special, "No special tokens");
  train
      ->add_option("--min-frequency", ta->min_frequency,
                   "Stop when the most frequent pair occurs fewer times")
      ->check(bounded(limits::min_frequency))
      ->capture_default_str();
  add_threads_option(train, &ta->threads, "Threads for counting words (default: all cores)");
  train->add_flag("--quiet", ta->quiet, "No progress output");
  train->callback([ta] { run_train(*ta); });

  auto ea = std::make_shared<EncodeArgs>();
  auto* enc = cmd->add_subcommand(
      "encode", "Text on stdin -> token ids on stdout, one line, space-separated");
  enc->add_option("--tokenizer", ea->tokenizer, kTokenizerHelp)->capture_default_str();
  enc->add_flag("--allow-special", ea->allow_special,
                "Turn special tokens' text (e.g. <|endoftext|>) into their ids (default: "
                "encode it as ordinary text)");
  enc->add_flag("--json", ea->json, "Write a JSON array instead");
  enc->add_flag("--jsonl", ea->jsonl,
                "Input: one JSON string per line; output: one JSON array of ids per line");
  add_threads_option(enc, &ea->threads);
  enc->add_flag("--time", ea->time, "Report bytes, tokens and MB/s on stderr");
  enc->callback([ea] { run_encode(*ea); });

  auto da = std::make_shared<DecodeArgs>();
  auto* dec = cmd->add_subcommand(
      "decode",
      "Token ids on stdin (space/newline-separated, or a JSON array) -> raw bytes on stdout");
  dec->add_option("--tokenizer", da->tokenizer, kTokenizerHelp)->capture_default_str();
  dec->callback([da] { run_decode(*da); });

  auto ia = std::make_shared<InfoArgs>();
  auto* info = cmd->add_subcommand("info", "Vocabulary size, merges and special tokens");
  info->add_option("--tokenizer", ia->tokenizer, kTokenizerHelp)->capture_default_str();
  info->add_flag("--json", ia->json, "One JSON object");
  info->callback([ia] { run_info(*ia); });

  auto ca = std::make_shared<ConvertArgs>();
  auto* conv = cmd->add_subcommand(
      "convert", "Write a tokenizer (e.g. GPT-2's encoder.json + vocab.bpe) as tokenizer.json");
  conv->add_option("--tokenizer", ca->tokenizer, kTokenizerHelp)->required();
  conv->add_option("--out", ca->out, "The tokenizer.json to write (a new file)")->required();
  conv->add_flag("--force", ca->force, "Replace --out if it exists");
  conv->callback([ca] { run_convert(*ca); });

  auto ba = std::make_shared<BenchArgs>();
  auto* bench = cmd->add_subcommand(
      "bench",
      "Encoding throughput (MB/s of input) at each thread count, interleaved rounds, cold "
      "caches; file reading not timed");
  bench->add_option("--tokenizer", ba->o.tokenizer, kTokenizerHelp)->required();
  bench->add_option("--data", ba->o.data, "Text to encode (default: the built-in corpus)");
  add_thread_counts_option(bench, &ba->o.threads, "Thread counts")->capture_default_str();
  bench->add_option("--reps", ba->o.repetitions, "Rounds (medians over them)")
      ->check(bounded(limits::repetitions))
      ->capture_default_str();
  add_json_option(bench, &ba->json, "measurement");
  bench->callback([ba] { run_bench(*ba); });
}

}  // namespace whtlm::cli
