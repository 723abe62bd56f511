// Options several commands share, defined once: bounded numbers (every numeric option
// is checked against its Bound from whtlm/limits.hpp, the same bounds config files,
// train_state.json and experiment plans are held to), and one helper per family:
// --threads, --device with --precision, --json with its --force, and the model shape
// of train and init.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "whtlm/device_type.hpp"
#include "whtlm/limits.hpp"
#include "whtlm/model.hpp"

namespace whtlm::cli {

// A CLI11 check of one value (each item of a list) against `b`: "--threads: 70000 is too
// large: expected an integer from 0 to 256 (0: all cores)". Integers written as 1e6 or
// 16.0 are accepted and passed on as 1000000 and 16.
CLI::Validator bounded(const Bound& b);

// --threads N (0: all cores), checked against limits::threads as it is parsed.
struct ThreadsOption {
  int count = 0;
  CLI::Option* option = nullptr;  // set by add_threads_option
  bool given() const { return option != nullptr && option->count() > 0; }
  // Runs the library's kernels in this process on `count` threads (0: all cores): for
  // the commands that run kernels themselves; the others pass `count` on.
  void apply() const;
};
void add_threads_option(CLI::App* cmd, ThreadsOption* threads,
                        const std::string& help = "Threads (default: all cores)");
// --threads N,N,...: thread counts a bench runs in turn, each checked against
// limits::thread_count.
CLI::Option* add_thread_counts_option(CLI::App* cmd, std::vector<int>* counts,
                                      const std::string& help);

// --device cpu|cuda and --precision fp32|bf16.
struct DeviceOptions {
  std::string device = "cpu", precision = "fp32";
  Device parsed_device() const { return parse_device(device); }
  Precision parsed_precision() const { return parse_precision(precision); }
};
// For the commands that run models: cpu and fp32 unless given.
void add_device_options(CLI::App* cmd, DeviceOptions* d);
// For a command whose device and precision come from elsewhere (an experiment's plan)
// unless given: both start empty; the help texts say where the defaults come from.
void add_device_override_options(CLI::App* cmd, DeviceOptions* d, const std::string& device_help,
                                 const std::string& precision_help);

// --weights f32|bf16|q8_0: the format inference's matrix products read (CPU).
void add_weights_option(CLI::App* cmd, std::string* weights);

// --json FILE ('-': stdout) and --force: JSON lines `per` case or measurement to a new
// FILE ("Also write JSON lines, one per measurement, ...").
struct JsonOption {
  std::string path;
  bool force = false;
};
void add_json_option(CLI::App* cmd, JsonOption* json, const std::string& per);

// Where a command writes its --json lines, opened when the command runs: an existing
// FILE is refused unless --force ("--json out.jsonl: exists; give --force ...").
class JsonOutput {
 public:
  explicit JsonOutput(const JsonOption& option);
  explicit operator bool() const { return out_ != nullptr; }
  // Writes `lines` as they are (each ending in a newline) and flushes; nothing without --json.
  void write(const std::string& lines);
  // Where the command's table and notes go: stdout, or stderr when the JSON lines go to
  // stdout, so stdout stays parseable.
  std::FILE* text() const { return out_ == &std::cout ? stderr : stdout; }

 private:
  std::unique_ptr<std::ofstream> file_;
  std::ostream* out_ = nullptr;
};

// Refuses to overwrite an existing file the user names as an output unless --force was
// given: "--out tok.json: exists; give --force to replace it".
void check_new_file(const std::string& option, const std::string& path, bool force);

// The model shape of train and init: a preset with overrides. --seq is each command's own
// (its help and bound differ); it is kept here because the context follows it.
struct ModelOptions {
  std::string preset = "tiny", proj = "dense", scale_init = scale_init_name(kDefaultScaleInit);
  int vocab = 0, layers = 0, d_model = 0, heads = 0, kv_heads = 0, seq = 0;
};
// --preset, --proj, --vocab, --layers, --d-model, --heads, --kv-heads, --scale-init.
void add_model_options(CLI::App* cmd, ModelOptions* m);
// The model the options describe; a bad value is refused naming its option. The context
// is the preset's, or --seq when longer (exact_seq: whenever --seq is given).
ModelConfig model_from(const ModelOptions& m, bool exact_seq = false);

}  // namespace whtlm::cli
